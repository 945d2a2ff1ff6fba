"""The soak's reconciliation and report on hand-made runs: what counts as reconciled, missing,
duplicated, stored after a client-side failure, extra, and a seq error; and the verdict line."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from perf import soak
from perf.soak import StoredConversation, StoredMessage, Turn, reconcile, report_lines, turns_from_rows
from tests.perf.test_dashboard import FIELDS

OFFICE_DB = "6f1c1d4e-2b1a-4c39-9a51-8f2b8d0a4e11"
OTHER_DB = "0b9f3c57-5d7e-4a55-8d8f-2a3c4e5f6a7b"
USER = "load-1234abcd"


def ok(message_id: str, db_id: str = OFFICE_DB, user_id: str = USER) -> Turn:
    return Turn("office", user_id, True, "", 200, db_id, message_id)


def failed(status: int, reason: str, *, message_id: str = "", db_id: str = "") -> Turn:
    return Turn("office", USER, False, reason, status, db_id, message_id)


def conversation(db_id: str, *pairs: tuple[str, str], message_count: int | None = None) -> StoredConversation:
    """`pairs` are (role, id) in seq order."""
    messages = tuple(StoredMessage(id=m_id, seq=i, role=role) for i, (role, m_id) in enumerate(pairs))
    return StoredConversation(db_id=db_id, message_count=message_count, messages=messages)


def turn_pairs(*reply_ids: str) -> list[tuple[str, str]]:
    """A user message and its reply for each id."""
    return [pair for reply in reply_ids for pair in (("user", f"u-{reply}"), ("assistant", reply))]


def test_every_successful_turn_stored_once_is_clean() -> None:
    stored = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1", "a2"), message_count=4)]}

    result = reconcile([ok("a1"), ok("a2"), failed(429, "server_busy")], stored)

    assert result.clean
    assert (result.turns_ok, result.reconciled, result.conversations) == (2, 2, 1)
    assert (result.stored_user, result.stored_assistant, result.late) == (2, 2, 0)


def test_a_reply_that_is_not_stored_is_missing() -> None:
    stored = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1"), ("user", "u-a2"))]}

    result = reconcile([ok("a1"), ok("a2")], stored)

    assert result.reconciled == 1
    assert len(result.missing) == 1 and "a2" in result.missing[0]
    assert not result.clean


def test_a_reply_in_another_conversation_is_missing_from_its_own() -> None:
    stored = {("office", USER): [conversation(OFFICE_DB, ("user", "u1")), conversation(OTHER_DB, *turn_pairs("a1"))]}

    result = reconcile([ok("a1", db_id=OFFICE_DB)], stored)

    assert len(result.missing) == 1 and OTHER_DB in result.missing[0]


def test_a_conversation_that_is_gone_makes_its_turns_missing() -> None:
    stored = {("office", USER): [StoredConversation(db_id=OFFICE_DB, message_count=None, messages=(), found=False)]}

    result = reconcile([ok("a1")], stored)

    assert result.conversations == 0
    assert result.missing and not result.clean


def test_a_success_without_ids_cannot_be_reconciled() -> None:
    result = reconcile([ok("", db_id="")], {})

    assert f"office user {USER}: a successful turn without db_id/message_id" in result.missing


def test_one_reply_stored_twice_or_given_to_two_turns_is_duplicated() -> None:
    twice = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1"), ("assistant", "a1"))]}
    assert reconcile([ok("a1")], twice).duplicated

    shared = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1"))]}
    result = reconcile([ok("a1"), ok("a1")], shared)
    assert any("2 successful turns" in problem for problem in result.duplicated)


def test_a_reply_the_client_never_saw_is_counted_apart_not_as_a_duplicate() -> None:
    # A WebSocket turn failed after `start` (it knows the id); a REST turn timed out (it does not).
    stored = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1", "ws-late", "rest-late", "a4"))]}
    turns = [
        ok("a1"),
        failed(0, "connection_error", message_id="ws-late", db_id=OFFICE_DB),
        failed(0, "connection_error"),
        ok("a4"),
    ]

    result = reconcile(turns, stored)

    assert result.clean, result
    assert (result.reconciled, result.late, result.turns_failed_after_admission) == (2, 2, 2)


def test_a_reply_no_turn_explains_is_extra() -> None:
    # The refused turn (429) must have stored nothing: its reply and user message are extra.
    stored = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1", "ghost"))]}

    result = reconcile([ok("a1"), failed(429, "server_busy")], stored)

    assert result.reconciled == 1
    assert len(result.extra) == 2
    assert "ghost" in result.extra[0] and "user messages" in result.extra[1]
    assert not result.clean


def test_a_started_websocket_turn_whose_reply_is_not_there_is_reported() -> None:
    stored = {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1"), ("user", "u-x"))]}

    result = reconcile([ok("a1"), failed(0, "client_stopped", message_id="x", db_id=OFFICE_DB)], stored)

    assert result.started_not_stored == 1
    assert result.clean


@pytest.mark.parametrize(
    ("seqs", "message_count"),
    [((0, 2), None), ((0, 0), None), ((1, 2), None), ((0, 1), 3)],
    ids=["gap", "repeat", "not-from-zero", "count-differs"],
)
def test_seq_must_run_from_zero_without_gaps_or_repeats(seqs: tuple[int, int], message_count: int | None) -> None:
    messages = (StoredMessage("u1", seqs[0], "user"), StoredMessage("a1", seqs[1], "assistant"))
    stored = {("office", USER): [StoredConversation(OFFICE_DB, message_count, messages)]}

    result = reconcile([ok("a1")], stored)

    assert len(result.seq_errors) == 1 and not result.clean


def test_turns_are_the_final_rows_of_rest_and_websocket() -> None:
    rows = [
        {"test_type": "rest_office", "user_id": "u", "success": "true", "status_code": "200", "db_id": OFFICE_DB,
         "message_id": "m1", "is_retry_record": "false"},
        {"test_type": "ws_character", "user_id": "v", "success": "false", "status_code": "429",
         "failure_reason": "server_busy", "is_retry_record": "true"},
        {"test_type": "ws_character", "user_id": "v", "success": "true", "status_code": "101", "db_id": OTHER_DB,
         "message_id": "m2", "is_retry_record": "false"},
        {"test_type": "openai_office", "user_id": "w", "success": "true", "status_code": "200",
         "is_retry_record": "false"},
    ]  # fmt: skip

    turns = turns_from_rows(rows)

    assert [(t.app, t.user_id, t.message_id, t.db_id) for t in turns] == [
        ("office", "u", "m1", OFFICE_DB),
        ("character", "v", "m2", OTHER_DB),
    ]


def _run_dir(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    run_dir = tmp_path / "runs" / "20261122-230501"
    run_dir.mkdir(parents=True)
    with (run_dir / "requests.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        for values in rows:
            writer.writerow({name: values.get(name, "") for name in FIELDS})
    return run_dir


def _row(endpoint: str, test_type: str, status: int, ms: float, **extra: Any) -> dict[str, Any]:
    success = status in (200, 101)
    return {
        "elapsed_s": extra.pop("elapsed_s", 0.0), "endpoint": endpoint, "test_type": test_type, "status_code": status,
        "response_time": ms, "success": str(success).lower(), "tokens": 64 if success else 0,
        "is_retry_record": "false", "failure_reason": "" if success else f"http_{status}", **extra,
    }  # fmt: skip


def test_report_shows_the_tables_and_passes_a_clean_run(tmp_path: Path) -> None:
    rest, ws = "POST /office/Llama", "WS /office/ws/chat/"
    run_dir = _run_dir(
        tmp_path,
        [
            _row(rest, "rest_office", 429, 5, is_retry_record="true", failure_reason="server_busy"),
            _row(rest, "rest_office", 200, 1000, elapsed_s=1.0),
            _row(ws, "ws_office", 101, 2000, elapsed_s=2.0),
            _row(ws, "ws_office", 101, 4000, elapsed_s=4.0),  # last end 8 s: span 7 s
        ],
    )
    result = reconcile(
        [ok("a1"), ok("a2"), ok("a3")], {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1", "a2", "a3"))]}
    )

    text = "\n".join(report_lines(run_dir=run_dir, result=result))

    assert "| POST /office/Llama | 429 | 0 | 1 |" in text
    assert "| POST /office/Llama | 200 | 1 | 0 |" in text
    assert "| WS /office/ws/chat/ | 101 | 2 | 0 |" in text
    # ws: p50 of 2000, 4000 (index round(0.5) = 0) -> 2000, p95 -> 4000; tokens 128 / 7 s.
    assert "| WS /office/ws/chat/ | 2 | 2 | 0 | 0 | 2000 | 4000 | 18.3 |" in text
    assert "| turns reconciled (reply stored exactly once) | 3 |" in text
    assert "| responses ≥ 500 | 0 |" in text
    assert "| responses 429 (retried or final) | 1 |" in text
    assert text.endswith("**PASS**")


def test_report_fails_on_a_5xx_and_warns_when_nothing_was_refused(tmp_path: Path) -> None:
    run_dir = _run_dir(
        tmp_path,
        [_row("POST /office/Llama", "rest_office", 200, 900), _row("POST /office/Llama", "rest_office", 502, 30)],
    )
    result = reconcile([ok("a1")], {("office", USER): [conversation(OFFICE_DB, *turn_pairs("a1"))]})

    lines = report_lines(run_dir=run_dir, result=result)

    assert "| responses ≥ 500 | 1 |" in lines
    assert any(line.startswith("warning: no 429") for line in lines)
    assert lines[-1] == "**FAIL: 1 5xx**"


def test_report_fails_on_missing_duplicated_and_extra(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, [_row("POST /office/Llama", "rest_office", 200, 900)])
    result = soak.Reconciliation(turns_ok=1, missing=["m"], duplicated=["d"], extra=["e1", "e2"])

    lines = report_lines(run_dir=run_dir, result=result)

    assert lines[-1] == "**FAIL: 1 missing, 1 duplicated, 2 extra**"
    assert "- missing: m" in lines and "- extra: e2" in lines
