"""The grounder's budget and web rules, on a real index with a stand-in embedder (unit tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from webapp.office.grounding import Grounder, WebHit, WebSearchUnavailable
from webapp.retrieval.index import ChunkRecord, SqliteChunkIndex
from webapp.retrieval.lexical import TermExtractor
from webapp.retrieval.search import Retriever


class OneHotEmbedder:
    """Maps every text to the same vector: dense ranking is neutral, BM25 decides."""

    alias = "one-hot"
    dim = 4

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.array([1, 0, 0, 0], dtype=np.float32), (len(texts), 1))


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def terms() -> TermExtractor:
    return TermExtractor()


@pytest.fixture
def retriever(tmp_path: Path, terms: TermExtractor) -> Retriever:
    index = SqliteChunkIndex(tmp_path / "i.sqlite3", dim=4)
    texts = ["Receipts are due within thirty days.", "Flights are booked by the travel desk. " * 30]
    index.chunks_add(
        [
            ChunkRecord(
                chunk_id=f"d:{i}",
                user_id="u",
                document_id="d",
                title="Policy",
                heading="",
                position=i,
                text=text,
                terms=tuple(terms.terms(text)),
                vector=np.array([1, 0, 0, 0], dtype=np.float32),
            )
            for i, text in enumerate(texts)
        ]
    )
    return Retriever(index=index, embedder=OneHotEmbedder(), terms=terms)


def ground(grounder: Grounder, *, budget: int, web: bool = False, user_id: str = "u"):
    return grounder.ground(
        user_id=user_id,
        question="When are receipts due and how are flights booked?",
        earlier_user_turns=[],
        budget_tokens=budget,
        count_tokens=words,
        web=web,
    )


def test_sources_fill_the_budget_and_the_question_stays_whole(retriever):
    roomy = ground(Grounder(retriever=retriever), budget=1000)
    assert [s.chunk_id for s in roomy.sources] == ["d:0", "d:1"]
    assert roomy.prompt_text.endswith("Question: When are receipts due and how are flights booked?")
    tight = ground(Grounder(retriever=retriever), budget=100)
    assert words(tight.prompt_text) <= 100
    assert tight.prompt_text.endswith("Question: When are receipts due and how are flights booked?")
    assert len(tight.sources) >= 1
    assert ground(Grounder(retriever=retriever), budget=40) is None  # no room for any source


def test_a_user_without_documents_and_without_web_gets_nothing(retriever):
    assert ground(Grounder(retriever=retriever), budget=1000, user_id="nobody") is None


def test_web_results_follow_the_documents(retriever):
    def search(user_id: str, query: str) -> list[WebHit]:
        return [WebHit("News", "https://example.org/n", "Flights are cheaper in May.")]

    grounding = ground(Grounder(retriever=retriever, web_search=search), budget=1000, web=True)
    assert [(s.n, s.kind) for s in grounding.sources] == [(1, "document"), (2, "document"), (3, "web")]
    assert grounding.sources[2].public()["url"] == "https://example.org/n"
    assert grounding.notice is None


def test_web_search_that_cannot_run_becomes_a_notice_not_a_failure(retriever):
    def unavailable(user_id: str, query: str) -> list[WebHit]:
        raise WebSearchUnavailable("web search is not configured: set SEARXNG_URL")

    grounding = ground(Grounder(retriever=retriever, web_search=unavailable), budget=1000, web=True, user_id="nobody")
    assert grounding.sources == ()
    assert grounding.notice == "Web search was not used: web search is not configured: set SEARXNG_URL"
    assert grounding.prompt_text == "When are receipts due and how are flights booked?"
    no_tool = ground(Grounder(retriever=retriever), budget=1000, web=True, user_id="nobody")
    assert no_tool.notice.startswith("Web search was not used")


def test_braces_in_the_question_are_just_text(retriever):
    question = 'Receipts: what does {"due": "{sources}"} mean for flights?'
    grounding = Grounder(retriever=retriever).ground(
        user_id="u", question=question, earlier_user_turns=[], budget_tokens=1000, count_tokens=words
    )
    assert grounding.sources
    assert grounding.prompt_text.endswith(f"Question: {question}")
    assert grounding.prompt_text.count("\n[1] Policy") == 1  # the sources once, not pasted into the question
