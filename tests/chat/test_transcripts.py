"""Exports as files: SillyTavern's chat JSONL, our JSON and Markdown, from stored messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from webapp.chat.transcripts import JSON_FORMAT, transcript_json, transcript_jsonl, transcript_markdown
from webapp.store.chat_store import Conversation, Message

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ST_MESSAGE_KEYS = {"name", "is_user", "is_system", "send_date", "mes", "swipes", "swipe_id", "swipe_info", "extra"}


def conversation() -> Conversation:
    return Conversation(
        db_id="d1", app="character", user_id="a1", persona="rhea", title="Night watch",
        message_count=4, created_at=T0, updated_at=T0 + timedelta(minutes=3),
    )  # fmt: skip


def message(seq: int, role: str, content: str, **meta: Any) -> Message:
    return Message(
        id=f"m{seq}", conversation_id="d1", seq=seq, role=role, content=content,
        created_at=T0 + timedelta(minutes=seq), meta=meta,
    )  # fmt: skip


def lines_of(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_has_sillytaverns_header_and_one_line_per_message() -> None:
    messages = [
        message(0, "user", "안녕, 선장님"),
        message(1, "assistant", "Welcome aboard.", model="smollm2", tokens=4, finish_reason="stop"),
        message(2, "user", 'quote " and \\ and\nnewline'),
    ]

    header, *rest = lines_of(
        transcript_jsonl(conversation=conversation(), messages=messages, user_name="minji", character_name="Rhea")
    )

    assert set(header) == {"user_name", "character_name", "create_date", "chat_metadata"}
    assert (header["user_name"], header["character_name"]) == ("minji", "Rhea")
    assert datetime.fromisoformat(header["create_date"]) == T0
    assert [set(line) for line in rest] == [ST_MESSAGE_KEYS] * 3
    assert [(m["name"], m["is_user"], m["mes"]) for m in rest] == [
        ("minji", True, "안녕, 선장님"),
        ("Rhea", False, "Welcome aboard."),
        ("minji", True, 'quote " and \\ and\nnewline'),
    ]
    assert [datetime.fromisoformat(m["send_date"]) for m in rest] == [m.created_at for m in messages]
    assert rest[1]["swipes"] == ["Welcome aboard."] and rest[1]["swipe_id"] == 0
    assert rest[1]["extra"] == {"model": "smollm2", "token_count": 4, "finish_reason": "stop"}


def test_jsonl_folds_a_regenerated_reply_into_swipes_with_the_later_one_chosen() -> None:
    messages = [
        message(0, "user", "hi"),
        message(1, "assistant", "first try"),
        message(2, "assistant", "second try", regenerates="m1"),
        message(3, "assistant", "third try", regenerates="m2"),
        message(4, "user", "thanks"),
    ]

    _, *rest = lines_of(
        transcript_jsonl(conversation=conversation(), messages=messages, user_name="u", character_name="c")
    )

    assert [m["mes"] for m in rest] == ["hi", "third try", "thanks"]
    assert rest[1]["swipes"] == ["first try", "second try", "third try"] and rest[1]["swipe_id"] == 2
    assert len(rest[1]["swipe_info"]) == 3


def test_json_keeps_every_stored_message_with_its_meta() -> None:
    messages = [message(0, "user", "hi"), message(1, "assistant", "yo", tokens=1, timings={"ttft_ms": 5.0})]

    exported = json.loads(json.dumps(transcript_json(conversation=conversation(), messages=messages)))

    assert exported["format"] == JSON_FORMAT and exported["version"] == 1
    assert exported["conversation"]["db_id"] == "d1" and exported["conversation"]["title"] == "Night watch"
    assert [(m["id"], m["seq"], m["role"], m["content"], m["meta"]) for m in exported["messages"]] == [
        ("m0", 0, "user", "hi", {}),
        ("m1", 1, "assistant", "yo", {"tokens": 1, "timings": {"ttft_ms": 5.0}}),
    ]


def test_markdown_shows_the_visible_messages_under_their_speakers() -> None:
    messages = [
        message(0, "user", "hi"),
        message(1, "assistant", "old reply"),
        message(2, "assistant", "new reply", regenerates="m1"),
    ]

    text = transcript_markdown(conversation=conversation(), messages=messages, user_name="minji", character_name="Rhea")

    assert text.startswith("# Night watch\n")
    assert "## minji · 2026-11-30 09:00" in text and "## Rhea · 2026-11-30 09:02" in text
    assert "new reply" in text and "old reply" not in text


def test_jsonl_writes_a_replys_stored_alternatives_as_its_swipes() -> None:
    swipes = [
        {"id": "m1", "content": "one", "created_at": "2026-11-30T09:01:00+00:00", "meta": {"tokens": 1}},
        {"id": "k2", "content": "two", "created_at": "2026-11-30T09:05:00+00:00", "meta": {"model": "x"}},
    ]
    messages = [message(0, "user", "hi"), message(1, "assistant", "one", swipes=swipes, swipe_id=0)]

    _, _, reply = lines_of(
        transcript_jsonl(conversation=conversation(), messages=messages, user_name="u", character_name="c")
    )

    assert reply["mes"] == "one" and reply["swipes"] == ["one", "two"] and reply["swipe_id"] == 0
    assert reply["swipe_info"] == [
        {"send_date": "2026-11-30T09:01:00+00:00", "extra": {"token_count": 1}},
        {"send_date": "2026-11-30T09:05:00+00:00", "extra": {"model": "x"}},
    ]
