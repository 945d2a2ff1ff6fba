"""The message log's search index, on both backends, and ChatStore's search over a user's
conversations. Terms here come from a plain word splitter (the chat layer passes Kiwi's):
what is tested is that the index follows the messages, not how words are split."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from montydb.types.objectid import ObjectId as MontyObjectId

from webapp.store.chat_store import ChatStore, MessageDraft
from webapp.store.client import StoreConfig, database_get, message_log_get
from webapp.store.message_log import MessageLog, MongoMessageLog, SqliteMessageLog, fts_query

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def words(text: str) -> list[str]:
    return text.lower().split()


pytestmark = pytest.mark.usefixtures("fresh_clients")


@pytest.fixture(params=["sqlite", "mongo"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> MessageLog:
    if request.param == "sqlite":
        return SqliteMessageLog(tmp_path / "messages.sqlite3", app="office")
    db = database_get(StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path))
    return MongoMessageLog(db["messages"], app="office", object_id=MontyObjectId)


def doc(conversation: str, seq: int, content: str, *, at: int | None = None) -> dict[str, Any]:
    return {
        "_id": str(MontyObjectId()),
        "app": "office",
        "conversation_id": conversation,
        "seq": seq,
        "role": "user",
        "content": content,
        "created_at": T0 + timedelta(seconds=seq if at is None else at),
    }


def index_all(log: MessageLog) -> int:
    pending = log.terms_pending(1000)
    return log.terms_set([(d, words(d["content"])) for d in pending])


def found(log: MessageLog, conversations: list[str], *terms: str) -> list[str]:
    return [d["content"] for d in log.search(conversations, list(terms), limit=50)]


def test_a_stored_message_is_pending_until_indexed_then_found_by_every_term(log: MessageLog) -> None:
    log.insert(
        [doc("a", 0, "quarterly budget review"), doc("a", 1, "budget approved"), doc("b", 0, "budget memo", at=-1)]
    )
    assert log.terms_pending_count() == 3
    assert found(log, ["a", "b"], "budget") == [], "nothing is searched before it is indexed"

    assert index_all(log) == 3

    assert log.terms_pending_count() == 0 and log.terms_pending(10) == []
    assert found(log, ["a", "b"], "budget") == ["budget approved", "quarterly budget review", "budget memo"]
    assert found(log, ["a", "b"], "budget", "review") == ["quarterly budget review"], "every term must occur"
    assert found(log, ["a"], "budget") == ["budget approved", "quarterly budget review"], "only these conversations"
    assert found(log, ["a", "b"], "missing") == [] and found(log, [], "budget") == []
    assert "terms" not in log.search(["a"], ["budget"], limit=1)[0], "the index's fields stay out of documents"


def test_an_edit_drops_the_old_terms_and_a_deletion_drops_the_message(log: MessageLog) -> None:
    first, second = doc("a", 0, "old wording here"), doc("a", 1, "keep this one")
    log.insert([first, second])
    index_all(log)

    assert log.replace({**first, "content": "new wording", "rev": 1}, rev=0)
    assert found(log, ["a"], "old") == [], "a changed message loses its old terms at once"
    assert log.terms_pending_count() == 1
    index_all(log)
    assert found(log, ["a"], "new") == ["new wording"] and found(log, ["a"], "wording") == ["new wording"]

    log.delete([second["_id"]])
    assert found(log, ["a"], "keep") == []
    log.conversation_drop("a")
    assert found(log, ["a"], "new") == [] and log.terms_pending_count() == 0


def test_terms_made_from_a_text_that_changed_meanwhile_are_not_stored(log: MessageLog) -> None:
    message = doc("a", 0, "before the edit")
    log.insert([message])
    read = log.terms_pending(10)  # the indexer reads the message...
    assert log.replace({**message, "content": "after the edit", "rev": 1}, rev=0)  # ...an edit lands...

    assert log.terms_set([(d, words(d["content"])) for d in read]) == 0  # ...its terms are refused
    assert found(log, ["a"], "before") == [] and log.terms_pending_count() == 1
    index_all(log)
    assert found(log, ["a"], "after") == ["after the edit"]


def test_a_query_cannot_be_read_as_fts_syntax(tmp_path: Path) -> None:
    log = SqliteMessageLog(tmp_path / "m.sqlite3", app="office")
    log.insert([doc("a", 0, 'say "hi" or NEAR(x y) and -z*')])
    log.terms_set([(d, ['"hi"', "near(x", "y)", "-z*"]) for d in log.terms_pending(5)])

    for term in ('"hi"', "near(x", "-z*", "OR", "*", '"'):
        log.search(["a"], [term], limit=5)  # never an FTS5 syntax error
    assert found(log, ["a"], '"hi"') == ['say "hi" or NEAR(x y) and -z*']
    assert fts_query(['a"b', "c"]) == '"a""b" AND "c"'


def test_a_log_from_before_search_indexes_every_message_it_has(tmp_path: Path) -> None:
    path = tmp_path / "messages.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, app TEXT NOT NULL, conversation_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL);"
        "INSERT INTO messages VALUES ('64b000000000000000000001', 'office', 'a', 0,"
        ' \'2026-11-30T12:00:00.000+00:00\', \'{"role": "user", "content": "legacy budget"}\');'
    )
    old.commit()
    old.close()

    log = SqliteMessageLog(path, app="office")

    assert log.terms_pending_count() == 1
    index_all(log)
    assert found(log, ["a"], "budget") == ["legacy budget"]


def test_chat_store_searches_only_the_users_own_conversations(tmp_path: Path) -> None:
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)
    store = ChatStore(database_get(config), app="office", embedded=True, messages=message_log_get(config))
    mine = store.conversation_import(
        db_id="c1", user_id="alice", persona="p", title="Budget talk", messages=[MessageDraft("user", "budget plan")]
    )
    store.conversation_import(
        db_id="c2", user_id="bob", persona="p", title="Other", messages=[MessageDraft("user", "budget secrets")]
    )
    store.message_append(mine, role="assistant", content="the budget is fine", persona="p")

    assert store.terms_pending_count() == 3
    assert store.terms_pending_count(conversation_ids=["c2"]) == 1
    assert store.terms_index(words, limit=5, conversation_ids=["c2"]) == 1, "one user's pending messages first"
    assert store.terms_pending_count() == 2 and store.terms_pending_count(conversation_ids=["c2"]) == 0
    assert store.terms_index(words, limit=1) == 1 and store.terms_index(words, limit=2) == 1
    assert store.terms_index(words, limit=2) == 0 and store.terms_pending_count() == 0

    alice = store.conversations_all("alice")
    assert list(alice) == ["c1"] and alice["c1"].title == "Budget talk"
    hits = store.messages_search(alice, ["budget"], limit=10)
    assert [(c.db_id, m.content) for c, m in hits] == [("c1", "the budget is fine"), ("c1", "budget plan")]
    assert store.messages_search(alice, ["secrets"], limit=10) == [], "bob's messages are never searched"
    assert store.messages_search(store.conversations_all("nobody"), ["budget"], limit=10) == []


def test_pending_messages_can_be_taken_conversation_by_conversation(log: MessageLog) -> None:
    log.insert([doc("a", 0, "one"), doc("b", 0, "two"), doc("b", 1, "three")])

    assert log.terms_pending_count(conversation_ids=["b"]) == 2
    assert {d["content"] for d in log.terms_pending(10, conversation_ids=["b"])} == {"two", "three"}
    assert log.terms_pending(10, conversation_ids=[]) == [] and log.terms_pending_count(conversation_ids=[]) == 0
