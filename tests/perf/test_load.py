"""A short real Locust run against the real stack: the CSV, the soak's reconciliation of it against the
store, then the dashboard built from it."""

from __future__ import annotations

import csv
import re
import uuid

import pytest
import requests

from perf import load, soak
from perf.dashboard import run_summary

pytestmark = pytest.mark.slow

REQUIRED = [
    "user_id", "test_type", "endpoint", "persona", "status_code", "response_time", "ttft", "tokens",
    "tokens_per_s", "success", "failure_reason", "retry_count", "retry_after_seconds", "timestamp",
    "response_size", "is_retry_record", "is_final_failure", "db_id", "message_id",
]  # fmt: skip
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def test_a_short_load_test_writes_real_rows_and_a_dashboard_served_by_nginx(stack, gateway, service_key, monkeypatch):
    monkeypatch.setenv("LOAD_API_KEY", service_key)  # the users act as end users of the tests' service key
    out_dir = stack.config.var_dir / "perf"
    if not (out_dir / "dashboard" / "index.html").exists():
        assert "No load test yet" in requests.get(f"{gateway}/perf/", timeout=10).text
    page = load.main(
        ["--users", "5", "--spawn-rate", "5", "--duration", "12", "--think", "0.2,0.5", "--host", gateway,
         "--out-dir", str(out_dir)]
    )  # fmt: skip

    run_dir = next((out_dir / "runs").iterdir())
    with (run_dir / "requests.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(REQUIRED) <= set(rows[0])
    ok = [r for r in rows if r["success"] == "true"]
    assert ok, rows
    assert {r["test_type"] for r in rows} & {"ws_office", "ws_character"}, "WebSocket users ran"
    for row in ok:
        assert float(row["response_time"]) > 0 and int(row["tokens"]) > 0
        assert row["ttft"] and 0 < float(row["ttft"]) <= float(row["response_time"])
        assert row["status_code"] in ("200", "101") and row["failure_reason"] == ""
        assert row["persona"] in ("assistant", "writer", "captain-rhea", "seoyeon")
    ws = [r for r in ok if r["test_type"].startswith("ws_")]
    assert all(float(r["tokens_per_s"]) > 0 for r in ws)
    rest = [r for r in ok if r["test_type"].startswith("rest_")]
    assert rest, "REST users ran"
    for row in ws + rest:  # turns that store a reply name it, and their conversation
        assert str(uuid.UUID(row["db_id"])) == row["db_id"] and OBJECT_ID.fullmatch(row["message_id"]), row
    assert all(r["db_id"] == r["message_id"] == "" for r in rows if r["test_type"] == "openai_office")
    assert len({r["message_id"] for r in ws + rest}) == len(ws + rest)

    # Every successful turn's reply is in the store exactly once, as the soak checks it.
    assert soak.idle_wait(gateway, timeout_s=120)
    turns = soak.turns_from_rows(rows)
    stored, warnings = soak.store_fetch(gateway, turns, api_key=service_key)
    result = soak.reconcile(turns, stored)
    assert result.clean and not warnings, result
    assert result.reconciled == len(ws + rest)

    summary = run_summary(run_dir)
    html = page.read_text(encoding="utf-8")
    finals = [r for r in rows if r["is_retry_record"] == "false"]
    assert summary.requests == len(finals)
    shown = re.search(r'data-metric="requests"[^>]*>([^<]+)<', html)
    assert shown and shown.group(1).strip() == str(len(finals)), "the card shows the measured count"
    assert run_dir.name in html and "smollm2" in html, "the run's settings are on the page"

    served = requests.get(f"{gateway}/perf/", timeout=10)
    assert served.status_code == 200 and run_dir.name in served.text


def test_load_refuses_a_non_loopback_host():
    with pytest.raises(SystemExit):
        load.main(["--host", "http://example.com:8080", "--duration", "5"])
