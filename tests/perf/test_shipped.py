"""perf.shipped's own parts: its characters are as long as real cards, and its table compares
each of our rows with the peer of the same workload."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from perf.serving import Turn
from perf.shipped import CHARACTERS, Run, cpu_seconds, report
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import registry_load


def turns(ttft: float, tokens: int) -> tuple[Turn, ...]:
    return tuple(Turn(conversation=i, turn=1 + i % 3, ttft_s=ttft, total_s=1.0, tokens=tokens) for i in range(6))


def test_the_table_gives_ratios_to_the_peer_of_the_same_workload() -> None:
    runs = [
        Run("ours (make run)", "one busy", 10.0, turns(0.5, 100), cores=1.9),
        Run("llama-server", "one busy", 10.0, turns(1.0, 80), cores=1.95),
        Run("ours (make run)", "long chars", 10.0, turns(2.0, 50)),
        Run("llama-server", "long chars", 10.0, turns(8.0, 50)),
    ]
    table = report(runs, repeat=1).splitlines()
    assert "| one busy | ours (make run) | 60.0 | 0.50 | 0.50 | 0.50 | 1.25 | 0.50 | 1.90 |" in table
    assert "| one busy | llama-server | 48.0 | 1.00 | 1.00 | 1.00 | - | - | 1.95 |" in table
    assert "| long chars | ours (make run) | 30.0 | 2.00 | 2.00 | 2.00 | 1.00 | 0.25 | - |" in table
    assert "| long chars | llama-server | 30.0 | 8.00 | 8.00 | 8.00 | - | - | - |" in table


def test_cpu_seconds_counts_the_marked_process_and_its_children_only() -> None:
    """A busy child of a marked process counts; this test's own process, unmarked, does not."""
    marker = f"cpu-seconds-probe-{time.monotonic_ns()}"
    spin = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])", marker]
    )
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(marker) < 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        measured = cpu_seconds(marker)
        assert 1.0 <= measured < 3.0, measured
        assert cpu_seconds(f"{marker}-nothing-has-this") == 0.0
    finally:
        for child in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split():
            subprocess.run(["kill", child], check=False)
        parent.kill()
        parent.wait()


@pytest.mark.slow
def test_the_long_characters_are_about_a_thousand_tokens() -> None:
    from llama_cpp import _internals

    spec = registry_load(REPO_ROOT / "models" / "registry.toml")["character"]
    model = _internals.LlamaModel(
        path_model=str(spec.path), params=_internals.llama_cpp.llama_model_default_params(), verbose=False
    )
    try:
        sizes = [len(model.tokenize(text.encode(), add_bos=False, special=False)) for text in CHARACTERS]
    finally:
        model.close()
    assert all(900 <= size <= 1400 for size in sizes), sizes
    assert CHARACTERS[0] != CHARACTERS[1]
