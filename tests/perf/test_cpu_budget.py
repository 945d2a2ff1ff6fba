"""perf.cpu_budget's table: medians per setting, ratios to make run's setting of the same run."""

from __future__ import annotations

from perf.cpu_budget import LAUNCHER, report


def run(one: float, both: float, during: float = 0.0, after: float = 0.0) -> dict[str, float]:
    return {"one": one, "both": both, "idle_during": during, "idle_after": after}


def test_medians_and_ratios_to_the_launchers_setting() -> None:
    results = {
        "before": [run(80, 100), run(90, 104), run(70, 96)],
        LAUNCHER: [run(100, 120, 0.1), run(90, 130, 0.3), run(110, 110, 0.2, 0.4)],
    }
    table = report(results).splitlines()
    assert table[0].startswith("Two engine processes, 8 x 128 tokens each, medians of 3 runs")
    assert "| before | 80.0 (0.80x) | 100.0 (0.83x) | 0.0 | 0.0 |" in table
    assert f"| {LAUNCHER} | 100.0 | 120.0 | 0.2 | 0.0 |" in table
