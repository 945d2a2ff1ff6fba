"""Exports as files: SillyTavern's chat JSONL, our JSON and Markdown, from stored messages."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webapp.chat import transcripts
from webapp.chat.transcripts import (
    JSON_FORMAT,
    ChatFileError,
    chat_file_parse,
    transcript_json,
    transcript_jsonl,
    transcript_markdown,
)
from webapp.core.errors import PayloadTooLargeError
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


# --- reading chat files ---------------------------------------------------------------------


def stored_like(drafts: list[Any]) -> list[Message]:
    """Parsed drafts as the store would give them back (ids and places assigned)."""
    return [
        Message(
            id=f"n{i}",
            conversation_id="d2",
            seq=i,
            role=d.role,
            content=d.content,
            created_at=d.created_at,
            meta=d.meta,
        )
        for i, d in enumerate(drafts)
    ]


def test_sillytavern_jsonl_round_trips_every_message_swipe_and_date() -> None:
    swipes = [
        {"id": "m1", "content": "one", "created_at": "2026-11-30T09:01:00+00:00", "meta": {}},
        {"id": "k2", "content": "two", "created_at": "2026-11-30T09:05:00+00:00", "meta": {}},
    ]
    messages = [
        message(0, "user", "안녕 😀"),
        message(1, "assistant", "two", swipes=swipes, swipe_id=1, tokens=7, model="smollm2"),
        message(2, "user", 'a "quote"\nand a line'),
    ]
    exported = transcript_jsonl(conversation=conversation(), messages=messages, user_name="u", character_name="Rhea")

    parsed = chat_file_parse(exported.encode())

    assert parsed.character_name == "Rhea" and parsed.skipped == 0
    assert [(d.role, d.content, d.created_at) for d in parsed.messages] == [
        (m.role, m.content, m.created_at) for m in messages
    ]
    reply = parsed.messages[1]
    assert [s["content"] for s in reply.meta["swipes"]] == ["one", "two"] and reply.meta["swipe_id"] == 1
    assert [s["created_at"] for s in reply.meta["swipes"]] == [s["created_at"] for s in swipes]
    assert (reply.meta["tokens"], reply.meta["model"]) == (7, "smollm2")
    again = transcript_jsonl(
        conversation=conversation(), messages=stored_like(parsed.messages), user_name="u", character_name="Rhea"
    )
    assert [json.loads(x) for x in again.splitlines()[1:]] == [json.loads(x) for x in exported.splitlines()[1:]]


def test_our_json_round_trips_and_sillytavern_dates_and_system_lines_are_read() -> None:
    messages = [message(0, "user", "hi"), message(1, "assistant", "yo", tokens=1, timings={"ttft_ms": 5.0})]
    ours = json.dumps(transcript_json(conversation=conversation(), messages=messages), indent=2).encode()
    parsed = chat_file_parse(ours)
    assert parsed.title == "Night watch" and parsed.persona == "rhea"
    assert [(d.role, d.content, d.created_at, d.meta) for d in parsed.messages] == [
        ("user", "hi", T0, {}),
        ("assistant", "yo", T0 + timedelta(minutes=1), {"tokens": 1, "timings": {"ttft_ms": 5.0}}),
    ]

    st = "\n".join(
        json.dumps(line)
        for line in (
            {"user_name": "You", "character_name": "Seraphina", "create_date": "2024-6-24@16h16m30s"},
            {"name": "Seraphina", "is_user": False, "send_date": "June 24, 2024 4:16pm", "mes": "Hello"},
            {"name": "System", "is_user": False, "is_system": True, "send_date": 1719245790000, "mes": "note"},
            {"name": "You", "is_user": True, "send_date": 1719245790000, "mes": "Hi"},
        )
    )
    parsed = chat_file_parse(st.encode())
    assert [(d.role, d.content) for d in parsed.messages] == [("assistant", "Hello"), ("user", "Hi")]
    assert parsed.skipped == 1
    assert parsed.messages[0].created_at == datetime(2024, 6, 24, 16, 16, tzinfo=UTC)
    assert parsed.messages[1].created_at == datetime.fromtimestamp(1719245790, tz=UTC)


HEADER = json.dumps({"user_name": "u", "character_name": "c", "create_date": "", "chat_metadata": {}})


def st_file(*lines: Any) -> bytes:
    return "\n".join([HEADER, *(x if isinstance(x, str) else json.dumps(x) for x in lines)]).encode()


def ours_file(messages: Any) -> bytes:
    return json.dumps({"format": JSON_FORMAT, "version": 1, "conversation": {}, "messages": messages}).encode()


GOOD = {"name": "u", "is_user": True, "is_system": False, "send_date": "", "mes": "hi"}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b"[1, 2]", "line 1"),
        (b'{"just": "an object"}', "line 1"),
        (st_file("{not json"), "line 2"),
        (st_file([1, 2]), "line 2"),
        (st_file({**GOOD, "mes": 5}), "line 2: mes"),
        (st_file({**GOOD, "is_user": "yes"}), "line 2: is_user"),
        (st_file(GOOD, {**GOOD, "mes": "x" * 100_001}), "line 3: mes"),
        (st_file({**GOOD, "swipes": ["a", "b"], "swipe_id": 2}), "line 2: swipe_id"),
        (st_file({**GOOD, "swipes": ["a", 3]}), "line 2: swipes[1]"),
        (st_file({**GOOD, "swipes": ["a"] * 101}), "line 2: swipes"),
        (st_file('{"is_user": true, "mes": "x", "extra": ' + "[" * 40 + "]" * 40 + "}"), "line 2"),
        (st_file({**GOOD, "mes": "\ud800"}), "line 2"),
        (json.dumps({"format": JSON_FORMAT, "version": 2}).encode(), "version"),
        (ours_file([{"role": "system"}]), "messages[0]"),
        (ours_file({}), "messages list"),
    ],
)
def test_a_malformed_chat_file_is_refused_naming_where(data: bytes, names: str) -> None:
    with pytest.raises(ChatFileError) as refused:
        chat_file_parse(data)
    assert refused.value.status == 400 and refused.value.field == "file"
    assert names in refused.value.message, refused.value.message


def test_a_chat_file_over_the_limit_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcripts, "MAX_FILE_BYTES", 100)
    with pytest.raises(PayloadTooLargeError) as refused:
        chat_file_parse(st_file(GOOD, GOOD))
    assert refused.value.field == "file" and refused.value.code == "file_too_large"


def test_a_group_chat_exports_each_reply_under_its_members_name_and_reads_back_its_speakers() -> None:
    group = replace(conversation(), members=("rhea", "seoyeon"), activation="list", title="Crew")
    messages = [
        message(0, "user", "hello, both"),
        message(1, "assistant", "Aye.", speaker="rhea"),
        message(2, "assistant", "안녕하세요.", speaker="seoyeon"),
    ]
    names = {"rhea": "Captain Rhea", "seoyeon": "서연"}

    _, *rest = lines_of(
        transcript_jsonl(
            conversation=group, messages=messages, user_name="minji", character_name="Crew", speaker_names=names
        )
    )
    text = transcript_markdown(
        conversation=group, messages=messages, user_name="minji", character_name="Crew", speaker_names=names
    )
    ours = transcript_json(conversation=group, messages=messages)

    assert [line["name"] for line in rest] == ["minji", "Captain Rhea", "서연"]
    assert "## Captain Rhea · " in text and "## 서연 · " in text
    assert ours["conversation"]["members"] == ["rhea", "seoyeon"] and ours["conversation"]["activation"] == "list"
    back = chat_file_parse(json.dumps(ours).encode())
    assert [d.meta.get("speaker") for d in back.messages] == [None, "rhea", "seoyeon"]
