"""Benchmarks. Each prints a table that compares against a peer measured in the same run,
and keeps it under var/perf/ (see the README's performance sections)."""

from __future__ import annotations

from pathlib import Path

from webapp.config.env import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "var" / "perf"


def table_publish(name: str, table: str) -> Path:
    """Print a benchmark's table and keep it as var/perf/<name>.md."""
    print()
    print(table)
    out = RESULTS_DIR / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(f"\nwritten to {out}")
    return out
