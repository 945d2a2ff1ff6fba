"""What every layer shares and nothing Django-specific: bounded input parsing, and (as the
web layer is reshaped) errors, ids and clocks. The engine, retrieval and tools may import it."""
