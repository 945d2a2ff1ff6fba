"""The load-test dashboard: its numbers on a hand-computed fixture, the page that shows them, run comparison,
an empty run, escaping of data and a page that loads nothing from elsewhere."""

from __future__ import annotations

import ast
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from perf.dashboard import build, run_summary

FIELDS = (  # the header perf/locustfile.py writes, in its order
    "timestamp",
    "elapsed_s",
    "run_id",
    "user_id",
    "test_type",
    "endpoint",
    "persona",
    "status_code",
    "response_time",
    "ttft",
    "tokens",
    "tokens_per_s",
    "success",
    "failure_reason",
    "retry_count",
    "retry_after_seconds",
    "is_retry_record",
    "is_final_failure",
    "response_size",
    "active_users",
    "db_id",
    "message_id",
)
OFFICE = "POST /office/Llama"
CHARACTER = "WS /character/ws/chat/"
KOREAN = "김민지"
EVIL_PERSONA = "<script>alert('persona')</script>"
EVIL_REASON = "<script>alert('reason')</script>"
SETTINGS = {
    "run_id": "20261122-230501",
    "started_at": "2026-11-22T23:05:01Z",
    "ended_at": "2026-11-22T23:05:17Z",
    "users": 4,
    "spawn_rate": 2,
    "duration_s": 15,
    "host": "http://127.0.0.1:8080",
    "weights": {"rest_office": 1, "ws_character": 2},
    "think_time_s": [1, 3],
    "model": {"office": "office-model-q4", "character": "character-model-q4"},
    "slots": {"office": 2, "character": 3},
    "commit": "abc1234",
    "locust_version": "2.32.4",
}


def row(elapsed_s: float, endpoint: str, persona: str, status: int, response_ms: float, **extra: Any) -> dict[str, Any]:
    """One requests.csv row: a successful final record unless `extra` says otherwise."""
    success = extra.pop("success", True)
    retry = extra.pop("retry", False)
    values = {
        "timestamp": f"2026-11-22T23:05:{1 + int(elapsed_s):02d}.000Z",
        "elapsed_s": elapsed_s,
        "run_id": "run",
        "user_id": 1,
        "test_type": "rest_office" if endpoint == OFFICE else "ws_character",
        "endpoint": endpoint,
        "persona": persona,
        "status_code": status,
        "response_time": response_ms,
        "ttft": "",
        "tokens": 0,
        "tokens_per_s": 0,
        "success": str(success).lower(),
        "failure_reason": "",
        "retry_count": 0,
        "retry_after_seconds": "",
        "is_retry_record": str(retry).lower(),
        "is_final_failure": str(not success and not retry).lower(),
        "response_size": 100,
        "active_users": 4,
        # A successful turn names its conversation and the stored reply; the dashboard does not use them.
        "db_id": "6f1c1d4e-2b1a-4c39-9a51-8f2b8d0a4e11" if success else "",
        "message_id": f"{int(elapsed_s * 10):024x}" if success else "",
    }
    values.update(extra)
    return values


FIXTURE_ROWS = [
    row(0.0, OFFICE, "Llama", 200, 1000, ttft=200, tokens=50),
    row(0.5, CHARACTER, KOREAN, 101, 2000, ttft=300, tokens=80),
    # A 429 that was retried (an intermediate record), then its successful final record (REST: no TTFT).
    row(1.0, OFFICE, "Llama", 429, 5, success=False, retry=True, failure_reason="server_busy", retry_after_seconds=1.0),
    row(2.0, OFFICE, "Llama", 200, 1500, tokens=60, retry_count=1),
    row(3.0, CHARACTER, KOREAN, 101, 3000, ttft=500, tokens=120),
    row(4.0, OFFICE, "Llama", 500, 250, success=False, failure_reason="http_500"),
    row(5.0, CHARACTER, EVIL_PERSONA, 101, 4000, ttft=400, tokens=100),
    # A failure whose partial tokens must not count, and whose reason is an HTML payload.
    row(6.0, CHARACTER, EVIL_PERSONA, 0, 9000, success=False, failure_reason=EVIL_REASON, tokens=7),
    # A 429 that was not retried any more: a final failure.
    row(7.0, CHARACTER, KOREAN, 429, 10, success=False, failure_reason="server_busy"),
]


def run_write(runs: Path, run_id: str, rows: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> Path:
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    with (run_dir / "requests.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**values, "run_id": run_id} for values in rows)
    if settings is not None:
        (run_dir / "settings.json").write_text(json.dumps({**settings, "run_id": run_id}), encoding="utf-8")
    return run_dir


class _Page(HTMLParser):
    """The text of every data-metric element, and the attributes of every table row."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, str] = {}
        self.rows: list[dict[str, str | None]] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "tr":
            self.rows.append(named)
        if "data-metric" in named:
            self._open.append(named["data-metric"] or "")
            self.metrics[self._open[-1]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            self.metrics[name] += data


def page_parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_fields_are_the_locustfile_header() -> None:
    # Read, not imported: importing the locustfile imports locust, which monkey-patches the process for gevent.
    source = (Path(__file__).resolve().parents[2] / "perf" / "locustfile.py").read_text(encoding="utf-8")
    assigned = next(
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FIELDS" for t in node.targets)
    )
    assert tuple(ast.literal_eval(assigned)) == FIELDS


@pytest.fixture
def fixture_run(tmp_path: Path) -> Path:
    return run_write(tmp_path / "runs", "20261122-230501", FIXTURE_ROWS, SETTINGS)


def test_summary_numbers_match_hand_computation(fixture_run: Path) -> None:
    summary = run_summary(fixture_run)

    # Final records: every row but the retried 429 -> 8; successes: 1, 2, 4, 5, 7 (the 0.0, 0.5, 2.0, 3.0, 5.0 rows).
    assert summary.run_id == "20261122-230501"
    assert summary.requests == 8
    assert summary.success_rate == 5 / 8
    # Successful response times sorted: 1000 1500 2000 3000 4000; p50 index round(0.5*4)=2, p95 round(0.95*4)=4.
    assert summary.p50_ms == 2000
    assert summary.p95_ms == 4000
    # Successful TTFTs (the REST retry success has none): 200 300 400 500; index round(0.5*3)=2.
    assert summary.ttft_p50_ms == 400
    # Tokens of successes: 50+80+60+120+100 = 410 (the failure's 7 do not count). Span over final records:
    # first start 0.0, last end 6.0 + 9000 ms = 15.0 (the retry record is not final) -> 15 s.
    assert summary.span_s == 15.0
    assert summary.tokens_per_s == pytest.approx(410 / 15)
    # 429s: the retried one and the final one; retries: one retry record.
    assert summary.count_429 == 2
    assert summary.retries == 1
    assert summary.settings["commit"] == "abc1234"
    assert dict(summary.outcomes) == {"ok": 5, "http_500": 1, "server_busy": 1, EVIL_REASON: 1}


def test_per_endpoint_rows(fixture_run: Path) -> None:
    rows = {row.name: row for row in run_summary(fixture_run).endpoints}

    office, character = rows[OFFICE], rows[CHARACTER]
    # Office finals: 1000 ok, 1500 ok, 250 failed. p50 index round(0.5*1)=0 (Python rounds half to even).
    assert (office.test_type, office.requests, office.success_rate) == ("rest_office", 3, 2 / 3)
    assert (office.p50_ms, office.p95_ms, office.ttft_p50_ms) == (1000, 1500, 200)
    assert office.tokens_per_s == pytest.approx((50 + 60) / 15)
    assert office.count_429 == 1
    # Character finals: 2000, 3000, 4000 ok; 9000 and the 429 failed. TTFTs 300 500 400 -> 400.
    assert (character.test_type, character.requests, character.success_rate) == ("ws_character", 5, 3 / 5)
    assert (character.p50_ms, character.p95_ms, character.ttft_p50_ms) == (3000, 4000, 400)
    assert character.tokens_per_s == pytest.approx((80 + 120 + 100) / 15)
    assert character.count_429 == 1


def test_page_shows_the_summary_numbers_and_settings(fixture_run: Path, tmp_path: Path) -> None:
    out = build(fixture_run.parent, tmp_path / "site" / "perf" / "index.html")
    text = out.read_text(encoding="utf-8")

    assert page_parse(text).metrics == {
        "requests": "8",
        "success_rate": "62.5%",  # 5/8
        "p50_ms": "2000",
        "p95_ms": "4000",
        "ttft_p50_ms": "400",
        "tokens_per_s": "27.3",  # 410/15 = 27.33
        "count_429": "2",
        "retries": "1",
    }
    assert "Load test — 20261122-230501" in text
    for shown in ("http://127.0.0.1:8080", "office-model-q4", "character-model-q4", "abc1234", "2.32.4"):
        assert shown in text
    assert "rest_office: 1 · ws_character: 2" in text
    assert "1\N{EN DASH}3 s" in text
    assert "office: 2 · character: 3" in text
    assert KOREAN in text
    assert "http_500" in text
    assert text.count("<svg") >= 4


def test_data_is_escaped(fixture_run: Path, tmp_path: Path) -> None:
    text = build(fixture_run.parent, tmp_path / "index.html").read_text(encoding="utf-8")

    assert "<script" not in text  # the page has no script of its own, so any would come from data
    assert "&lt;script&gt;alert(&#x27;persona&#x27;)&lt;/script&gt;" in text
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in text


def test_page_loads_nothing_from_elsewhere(fixture_run: Path, tmp_path: Path) -> None:
    text = build(fixture_run.parent, tmp_path / "index.html").read_text(encoding="utf-8")

    assert not re.search(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text
    assert "@import" not in text
    assert "url(" not in text


def test_comparison_marks_a_p95_regression(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_write(runs, "20261121-100000", FIXTURE_ROWS, {**SETTINGS, "commit": "old1111"})
    # The same run with every response 50% slower: p95 4000 -> 6000 (+50%); tokens/s drops too.
    slower = [{**values, "response_time": values["response_time"] * 1.5} for values in FIXTURE_ROWS]
    run_write(runs, "20261122-230501", slower, {**SETTINGS, "commit": "new2222"})

    text = build(runs, tmp_path / "index.html").read_text(encoding="utf-8")

    rows = {row["data-run"]: row for row in page_parse(text).rows if row.get("data-run")}
    assert list(rows) == ["20261121-100000", "20261122-230501"]
    assert rows["20261122-230501"].get("data-regression") == "true"
    assert "current" in (rows["20261122-230501"].get("class") or "")
    assert "data-regression" not in rows["20261121-100000"]
    assert "p95 +50%" in text
    assert "old1111" in text and "new2222" in text


def test_comparison_without_regression_has_no_marker(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_write(runs, "20261121-100000", FIXTURE_ROWS, SETTINGS)
    # 10% slower is within the 20% allowance, for p95 and for tokens/s alike.
    slower = [{**values, "response_time": values["response_time"] * 1.1} for values in FIXTURE_ROWS]
    run_write(runs, "20261122-230501", slower, SETTINGS)

    text = build(runs, tmp_path / "index.html").read_text(encoding="utf-8")

    assert "data-regression" not in text
    assert "▲ regression" not in text


def test_an_older_run_can_be_chosen(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_write(runs, "20261121-100000", FIXTURE_ROWS[:2], SETTINGS)
    run_write(runs, "20261122-230501", FIXTURE_ROWS, SETTINGS)

    text = build(runs, tmp_path / "index.html", run_id="20261121-100000").read_text(encoding="utf-8")

    assert "Load test — 20261121-100000" in text
    assert page_parse(text).metrics["requests"] == "2"
    assert 'data-run="20261122-230501"' not in text  # the comparison stops at the chosen run


def test_empty_run_builds_and_says_there_is_no_data(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_write(runs, "20261122-230501", [], None)  # header only, and an old run without settings.json

    summary = run_summary(runs / "20261122-230501")
    text = build(runs, tmp_path / "index.html").read_text(encoding="utf-8")

    assert (summary.requests, summary.success_rate, summary.p95_ms, summary.tokens_per_s) == (0, None, None, None)
    assert 'data-empty="true"' in text
    assert "No data" in text
    metrics = page_parse(text).metrics
    assert metrics["requests"] == "0"
    assert metrics["success_rate"] == metrics["p95_ms"] == metrics["tokens_per_s"] == "—"
    assert '<dd data-setting="users">—</dd>' in text


def test_a_run_of_only_retried_attempts_counts_as_empty(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_write(runs, "20261122-230501", [FIXTURE_ROWS[2]], SETTINGS)

    text = build(runs, tmp_path / "index.html").read_text(encoding="utf-8")

    assert 'data-empty="true"' in text
    assert page_parse(text).metrics["count_429"] == "1"


def test_no_runs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run"):
        build(tmp_path / "runs", tmp_path / "index.html")
