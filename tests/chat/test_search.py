"""Conversation search's own pieces: the query's terms, the snippet, the background indexer
(with the real Kiwi term extractor and a real store in a temp folder)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webapp.chat.search import MessageIndexer, messages_search, query_terms, snippet
from webapp.core.errors import ApplicationError
from webapp.retrieval.lexical import TermExtractor
from webapp.store.chat_store import ChatStore, MessageDraft
from webapp.store.client import StoreConfig, database_get, message_log_get


@pytest.fixture(scope="module")
def kiwi() -> TermExtractor:
    return TermExtractor()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    database_get.cache_clear()
    message_log_get.cache_clear()
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)
    yield ChatStore(database_get(config), app="office", embedded=True, messages=message_log_get(config))
    database_get.cache_clear()
    message_log_get.cache_clear()


def test_a_query_is_its_distinct_terms_and_one_without_any_is_refused(kiwi: TermExtractor) -> None:
    assert query_terms("회의록을 회의록에서 찾아", kiwi.terms) == ["회의록", "찾"]
    assert query_terms("The Reports and the REPORT", kiwi.terms) == ["report"]
    assert len(query_terms(" ".join(f"word{chr(97 + i)}x" for i in range(26)), kiwi.terms)) == 16
    for q in ("the and of", "?!", "…"):
        with pytest.raises(ApplicationError) as refused:
            query_terms(q, kiwi.terms)
        assert (refused.value.field, refused.value.code) == ("q", "no_search_terms")


def test_a_snippet_is_the_text_around_the_first_match() -> None:
    text = ("lorem ipsum " * 30) + "the budget line is here " + ("dolor sit " * 30)

    cut = snippet(text, ["budget"], width=60)

    assert "budget" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) <= 62
    assert snippet("short  text\nhere", ["x"]) == "short text here", "whitespace folded, nothing cut"
    assert snippet(text, ["absent"], width=20).startswith("lorem ipsum"), "no match: the start"


def test_the_indexer_thread_indexes_what_is_stored_without_any_search(store: ChatStore, kiwi: TermExtractor) -> None:
    drafts = [MessageDraft("user", f"회의록 {i}번째 메모" if i % 2 else f"meeting note {i}") for i in range(300)]
    store.conversation_import(db_id="c1", user_id="alice", persona="p", title="notes", messages=drafts)
    assert store.terms_pending_count() == 300
    indexer = MessageIndexer(store, lambda: kiwi.terms)

    indexer.start()
    indexer.start()  # once: a second start does nothing
    deadline = time.monotonic() + 30
    while store.terms_pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert store.terms_pending_count() == 0
    found = store.messages_search(store.conversations_all("alice"), ["회의록"], limit=500)
    assert len(found) == 150
    store.message_append(store.conversation_get("c1"), role="user", content="새 회의록", persona="p")  # type: ignore[arg-type]
    indexer.wake()
    deadline = time.monotonic() + 10
    while store.terms_pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.terms_pending_count() == 0, "woken: indexed before the next idle check"


def test_a_search_catches_up_on_the_users_own_messages_first(store: ChatStore, kiwi: TermExtractor) -> None:
    others = [MessageDraft("user", f"budget line {i}") for i in range(600)]
    store.conversation_import(db_id="big", user_id="bob", persona="p", title="bob's", messages=others)
    store.conversation_import(
        db_id="mine", user_id="alice", persona="p", title="mine", messages=[MessageDraft("user", "the budget, mine")]
    )

    found = messages_search(store=store, terms_of=kiwi.terms, user_id="alice", q="budget", limit=10)

    assert [(h.conversation.db_id, h.message.content) for h in found.hits] == [("mine", "the budget, mine")]
    assert found.pending == 0 and found.terms == ["budget"], "alice's own: nothing left"
    assert store.terms_pending_count() == 600, "bob's import is the indexer's to do"
