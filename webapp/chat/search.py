"""Search over a user's own conversations, and the indexer that keeps it current.

A query and every message's shown text go through the same term extractor as document
retrieval (webapp.retrieval.lexical: Kiwi morphemes for Korean, plain words for
English), so "회의록을" finds "회의록에서" and "reports" finds "report". A hit has every term
of the query; hits come newest first, which is what people look for in a chat history
(a word they remember from a recent exchange), and each opens its conversation at the
message.

Indexing runs off the request path. Storing or changing a message leaves it pending
(see webapp.store.message_log); `MessageIndexer` is one thread per process that indexes
pending messages in small batches, yielding between them (Kiwi holds the GIL while it
splits a text, about 0.25 ms a message). A search first indexes up to CATCH_UP of the
user's own pending messages itself, so a message sent a moment ago is found even while
another user's large import is being indexed; after the user's own large import the rest
is indexed in the background and the answer says how many of theirs are still pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from webapp.core.errors import ApplicationError
from webapp.store.chat_store import ChatStore, Conversation, Message

log = logging.getLogger(__name__)

TermsOf = Callable[[str], list[str]]

QUERY_MAX = 200  # characters in a query
TERMS_MAX = 16  # distinct terms of a query that are searched for
RESULTS_MAX = 100
CATCH_UP = 256  # pending messages a search indexes before it searches
BATCH = 64  # messages the indexer takes at a time
IDLE_WAIT_S = 2.0  # how often an idle indexer looks for pending messages
SNIPPET_CHARS = 160


@dataclass(frozen=True)
class SearchHit:
    conversation: Conversation
    message: Message
    snippet: str  # the message's text around the first place a term occurs


@dataclass(frozen=True)
class SearchResult:
    terms: list[str]  # what was searched for
    hits: list[SearchHit]
    pending: int  # the user's messages not indexed yet (not searched): after a large import, say


def query_terms(q: str, terms_of: TermsOf) -> list[str]:
    """The distinct terms of a query, in order, at most TERMS_MAX; 400 naming `q` when it
    has none (only punctuation or words too common to search for)."""
    terms = list(dict.fromkeys(terms_of(q)))[:TERMS_MAX]
    if not terms:
        raise ApplicationError(
            "q has no words to search for (common words such as 'the' and particles are left out)",
            field="q",
            code="no_search_terms",
        )
    return terms


def snippet(text: str, terms: list[str], *, width: int = SNIPPET_CHARS) -> str:
    """Up to `width` characters of `text` around the first occurrence of any of `terms`
    (case-insensitive; a term is a stem, so it is found inside its inflected forms), with
    "…" where text was cut. The start of the text when no term occurs as written."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lowered = flat.lower()
    places = [i for i in (lowered.find(t.lower()) for t in terms) if i >= 0]
    first = min(places) if places else 0
    start = max(0, min(first - width // 4, len(flat) - width))
    end = start + width
    return ("…" if start else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")


def messages_search(*, store: ChatStore, terms_of: TermsOf, user_id: str, q: str, limit: int) -> SearchResult:
    """`user_id`'s messages that have every term of `q`, newest first (at most `limit`)."""
    terms = query_terms(q, terms_of)
    conversations = store.conversations_all(user_id)
    mine = list(conversations)
    # The user's own pending messages first, whatever else waits (another user's import).
    store.terms_index(terms_of, limit=CATCH_UP, conversation_ids=mine)
    found = store.messages_search(conversations, terms, limit=limit)
    hits = [SearchHit(c, m, snippet(m.content, terms)) for c, m in found]
    return SearchResult(terms=terms, hits=hits, pending=store.terms_pending_count(conversation_ids=mine))


class MessageIndexer:
    """One daemon thread that indexes a store's pending messages until the process ends."""

    def __init__(self, store: ChatStore, terms_of: Callable[[], TermsOf]) -> None:
        self._store = store
        self._terms_of = terms_of  # built on the thread: Kiwi's model takes a second or two
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="message-indexer", daemon=True)

    def start(self) -> None:
        """Start the thread (once: later calls do nothing)."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def wake(self) -> None:
        """Look for pending messages now rather than at the next idle check."""
        self._wake.set()

    def _run(self) -> None:
        terms_of = self._terms_of()
        while True:
            try:
                read = self._store.terms_index(terms_of, limit=BATCH)
            except Exception:  # a store error must not end indexing for the process's life
                log.exception("indexing messages for search failed; retrying")
                read = 0
            if read < BATCH:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
            else:
                time.sleep(0.005)  # let request threads have the GIL between batches
