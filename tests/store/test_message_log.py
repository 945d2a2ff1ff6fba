"""The MessageLog contract, on both backends; and moving montydb's messages into the log."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from montydb.types.objectid import ObjectId as MontyObjectId

from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, message_log_get
from webapp.store.message_log import MessageLog, MongoMessageLog, SqliteMessageLog

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("fresh_clients")


def config_of(folder: Path, app: str = "office") -> StoreConfig:
    return StoreConfig(app=app, mongo_url=None, embedded_dir=folder)


@pytest.fixture(params=["sqlite", "mongo"])
def log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make(app: str = "office") -> MessageLog:
        if request.param == "sqlite":
            return SqliteMessageLog(tmp_path / "messages.sqlite3", app=app)
        db = database_get(config_of(tmp_path))
        return MongoMessageLog(db["messages"], app=app, object_id=MontyObjectId)

    return make


def doc_of(conversation: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "_id": str(MontyObjectId()),
        "app": "office",
        "conversation_id": conversation,
        "seq": seq,
        "role": "user" if seq % 2 == 0 else "assistant",
        "content": f"{conversation} {seq}",
        "created_at": T0 + timedelta(seconds=seq),
        **extra,
    }


def test_pages_walk_back_through_one_conversation_only(log_factory: Any) -> None:
    log = log_factory()
    log.insert([doc_of("a", seq) for seq in range(7)] + [doc_of("b", seq) for seq in range(3)])
    log_factory("character").insert([{**doc_of("a", 99), "app": "character"}])

    newest = log.page("a", before=None, limit=3)
    assert [d["seq"] for d in newest] == [6, 5, 4]
    assert [d["seq"] for d in log.page("a", before=4, limit=3)] == [3, 2, 1]
    assert [d["seq"] for d in log.page("a", before=1, limit=3)] == [0]
    assert log.page("a", before=0, limit=3) == []
    assert [d["seq"] for d in log.upto("a", seq=2)] == [0, 1, 2]
    assert log.count("a") == 7 and log.count("b") == 3 and log.count("nothing") == 0
    assert {d["conversation_id"] for d in log.page("b", before=None, limit=50)} == {"b"}


def test_a_document_reads_back_as_it_was_written(log_factory: Any) -> None:
    log = log_factory()
    meta = {
        "timings": {"ttft_ms": 12.5, "tokens_per_s": 40.0},
        "sources": [{"document": "보고서.pdf", "chunk": 3, "score": 0.5}],
        "tool_calls": [{"name": "calc", "arguments": {"x": [1, 2, {"y": None}]}}],
        "finish_reason": "stop",
    }
    written = doc_of("a", 0, content="안녕하세요 😀\n<b>&</b>", **meta)
    log.insert([written])

    (page,) = log.page("a", before=None, limit=1)
    found = log.get(str(written["_id"]))
    for read in (page, found):
        assert read is not None
        assert str(read["_id"]) == written["_id"]
        assert read["created_at"] == written["created_at"] and read["created_at"].utcoffset() == timedelta(0)
        assert {k: read[k] for k in ("content", "role", "seq", *meta)} == {
            k: written[k] for k in ("content", "role", "seq", *meta)
        }


def test_get_finds_by_id_and_nothing_for_unknown_or_malformed_ids(log_factory: Any) -> None:
    log = log_factory()
    written = doc_of("a", 0)
    log.insert([written])
    assert log.get(written["_id"])["content"] == "a 0"  # type: ignore[index]
    assert log.get(str(MontyObjectId())) is None
    assert log.get("not an object id") is None
    assert log_factory("character").get(written["_id"]) is None, "another app's log does not see it"


def test_dropping_a_conversation_leaves_the_others(log_factory: Any) -> None:
    log = log_factory()
    log.insert([doc_of("a", seq) for seq in range(4)] + [doc_of("b", 0)])
    assert log.conversation_drop("a") == 4
    assert log.page("a", before=None, limit=10) == []
    assert [d["content"] for d in log.page("b", before=None, limit=10)] == ["b 0"]


def test_sqlite_refuses_a_taken_place_and_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    log = SqliteMessageLog(tmp_path / "messages.sqlite3", app="office")
    log.insert([doc_of("a", 0)])
    with pytest.raises(sqlite3.IntegrityError):
        log.insert([doc_of("a", 1), doc_of("a", 2), doc_of("a", 0)])  # the last one's place is taken
    assert [d["seq"] for d in log.page("a", before=None, limit=10)] == [0], "none of the batch was kept"


def test_the_sqlite_log_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "messages.sqlite3"
    first = SqliteMessageLog(path, app="office")
    first.insert([doc_of("a", seq) for seq in range(3)])
    first.close()
    assert [d["seq"] for d in SqliteMessageLog(path, app="office").upto("a", seq=10)] == [0, 1, 2]


def legacy_write(folder: Path, app: str, docs: list[dict[str, Any]]) -> None:
    """Messages where the office store kept them before the MessageLog: montydb's collection."""
    db = database_get(config_of(folder))
    db["messages"].insert_many([{**d, "_id": MontyObjectId(d["_id"]), "app": app} for d in docs])


def store_of(folder: Path, app: str = "office") -> ChatStore:
    config = config_of(folder, app)
    return ChatStore(database_get(config), app=app, embedded=True, messages=message_log_get(config))


def test_messages_kept_in_montydb_move_into_the_log_once(tmp_path: Path) -> None:
    store = store_of(tmp_path)
    conversation = store.conversation_create(db_id="c1", user_id="alice", persona="assistant", title="t")
    legacy = [doc_of("c1", seq, tokens=seq) for seq in range(5)]
    legacy_write(tmp_path, "office", legacy)
    legacy_write(tmp_path, "character", [doc_of("c9", 0)])  # another app's: not this store's to move
    database_get(config_of(tmp_path))["conversations"].update_one({"_id": "office:c1"}, {"$set": {"message_count": 5}})

    assert store.messages_adopt() == 5
    moved = store.messages_all("c1")
    assert [(m.id, m.seq, m.content, m.meta.get("tokens")) for m in moved] == [
        (d["_id"], d["seq"], d["content"], d["tokens"]) for d in legacy
    ]
    db = database_get(config_of(tmp_path))
    assert db["messages"].count_documents({"app": "office"}) == 0
    assert db["messages"].count_documents({"app": "character"}) == 1
    assert store.messages_adopt() == 0, "a second start has nothing to move"
    appended = store.message_append(conversation, role="user", content="after", persona="assistant")
    assert appended.seq == 5  # the conversation's count was kept with it


def test_a_move_cut_short_is_finished_by_the_next_start(tmp_path: Path) -> None:
    """A crash after the copy, before montydb's copies were deleted: nothing is doubled."""
    store = store_of(tmp_path)
    legacy = [doc_of("c1", seq) for seq in range(4)]
    legacy_write(tmp_path, "office", legacy)
    log = message_log_get(config_of(tmp_path))
    log.insert([{**legacy[0]}, {**legacy[1]}])  # half copied, then the process died

    assert store.messages_adopt() == 4
    assert [m.seq for m in store.messages_all("c1")] == [0, 1, 2, 3]
    assert database_get(config_of(tmp_path))["messages"].count_documents({}) == 0


def test_a_message_whose_place_is_taken_stays_in_montydb(tmp_path: Path) -> None:
    store = store_of(tmp_path)
    log = message_log_get(config_of(tmp_path))
    log.insert([doc_of("c1", 0)])
    clash = doc_of("c1", 0)  # another message claiming place 0
    legacy_write(tmp_path, "office", [clash, doc_of("c1", 1)])

    assert store.messages_adopt() == 1
    assert [m.seq for m in store.messages_all("c1")] == [0, 1]
    left = list(database_get(config_of(tmp_path))["messages"].find({}))
    assert [str(d["_id"]) for d in left] == [clash["_id"]], "kept, not lost"


def test_delete_removes_only_the_named_messages(log_factory: Any) -> None:
    log = log_factory()
    docs = [doc_of("a", seq) for seq in range(4)]
    log.insert(docs)
    assert log.delete([docs[1]["_id"], docs[3]["_id"], str(MontyObjectId())]) == 2
    assert [d["seq"] for d in log.upto("a", seq=10)] == [0, 2]


def test_replace_writes_only_over_the_revision_it_read(log_factory: Any) -> None:
    log = log_factory()
    written = doc_of("a", 0)
    log.insert([written])
    stored = log.get(written["_id"])

    assert log.replace({**stored, "content": "one", "rev": 1}, rev=0) is True
    assert log.replace({**stored, "content": "stale", "rev": 1}, rev=0) is False, "someone wrote rev 1 meanwhile"
    assert log.replace({**stored, "content": "two", "rev": 2}, rev=1) is True
    again = log.get(written["_id"])
    assert (again["content"], again["rev"], again["seq"]) == ("two", 2, 0)
    assert again["created_at"] == written["created_at"]
