"""perf.shipped's own parts: its characters are as long as real cards, and its table compares
each of our rows with the peer of the same workload."""

from __future__ import annotations

import pytest

from perf.serving import Turn
from perf.shipped import CHARACTERS, Run, report
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import registry_load


def turns(ttft: float, tokens: int) -> tuple[Turn, ...]:
    return tuple(Turn(conversation=i, turn=1 + i % 3, ttft_s=ttft, total_s=1.0, tokens=tokens) for i in range(6))


def test_the_table_gives_ratios_to_the_peer_of_the_same_workload() -> None:
    runs = [
        Run("ours (make run)", "one busy", 10.0, turns(0.5, 100)),
        Run("llama-server", "one busy", 10.0, turns(1.0, 80)),
        Run("ours (make run)", "long chars", 10.0, turns(2.0, 50)),
        Run("llama-server", "long chars", 10.0, turns(8.0, 50)),
    ]
    table = report(runs, repeat=1).splitlines()
    assert "| one busy | ours (make run) | 60.0 | 0.50 | 0.50 | 0.50 | 1.25 | 0.50 |" in table
    assert "| long chars | ours (make run) | 30.0 | 2.00 | 2.00 | 2.00 | 1.00 | 0.25 |" in table
    assert "| long chars | llama-server | 30.0 | 8.00 | 8.00 | 8.00 | - | - |" in table


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
