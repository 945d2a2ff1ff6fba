"""Grounded office answers: the best chunks of the user's documents, numbered, in the prompt.

The chat service asks the grounder for a turn's context. With `web` (the seed API's
google_access), the web_search tool runs too, under the same rules as any tool call (rate
limit, audit); its results become sources after the documents' ones. When it cannot run
(no provider configured, over the limit, provider down), the turn goes on without it and
carries a notice that says why, which the reply shows: never invented results. The chunks go into the user's
message as numbered sources ([1], [2], …) with an instruction to cite them; the persona
(system prompt) and the question are never cut to make room: the sources get what is left
of a token budget after them, and chunks that do not fit are dropped, the last one
shortened. The sources the prompt held are stored with the reply (excerpts only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webapp.retrieval.search import Retriever

GROUNDING_K = 4
EXCERPT_CHARS = 240
MIN_SOURCE_TOKENS = 48
SHORT_QUESTION_TERMS = 4

INSTRUCTION = (
    "Answer the question using the numbered sources below from the user's documents. "
    "Cite the sources you use as [1], [2]. If the sources do not contain the answer, say so."
)


@dataclass(frozen=True)
class Source:
    n: int
    kind: str  # "document" | "web"
    title: str
    excerpt: str
    score: float
    document_id: str = ""
    chunk_id: str = ""
    heading: str = ""
    url: str = ""

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"n": self.n, "kind": self.kind, "title": self.title, "excerpt": self.excerpt}
        if self.kind == "web":
            return {**shown, "url": self.url}
        return {
            **shown,
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "heading": self.heading,
            "score": self.score,
        }


@dataclass(frozen=True)
class Grounding:
    sources: tuple[Source, ...]
    prompt_text: str  # the user turn as the model sees it: instruction, sources, question
    notice: str | None = None  # shown to the user before the reply (web search unavailable)


@dataclass(frozen=True)
class WebHit:
    title: str
    url: str
    snippet: str


class WebSearchUnavailable(Exception):
    """web_search could not run; the message says why, for the user."""


# (user_id, query) -> results, or WebSearchUnavailable. Runs the tool under the registry's rules.
WebSearch = Callable[[str, str], list[WebHit]]


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class _Candidate:
    label: str
    text: str
    source: Source


class Grounder:
    def __init__(self, *, retriever: Retriever, web_search: WebSearch | None = None, k: int = GROUNDING_K) -> None:
        self._retriever = retriever
        self._web_search = web_search
        self._k = k

    def ground(
        self,
        *,
        user_id: str,
        question: str,
        earlier_user_turns: Sequence[str],
        budget_tokens: int,
        count_tokens: Callable[[str], int],
        web: bool = False,
    ) -> Grounding | None:
        """Sources for `question`, or None when there is nothing to add and nothing to say.

        A short follow-up ("and the deadline?") is searched together with the previous
        user turn, so that it still finds the document the conversation is about.
        """
        candidates = self._document_candidates(user_id=user_id, question=question, earlier=earlier_user_turns)
        notice = None
        if web:
            try:
                candidates += self._web_candidates(user_id=user_id, question=question)
            except WebSearchUnavailable as exc:
                notice = f"Web search was not used: {exc}"
        if not candidates:
            return Grounding(sources=(), prompt_text=question, notice=notice) if notice else None

        def prompt(blocks: list[str]) -> str:
            # Joined, never str.format: the question is user text and may hold braces.
            return f"{INSTRUCTION}\n\nSources:\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"

        remaining = budget_tokens - count_tokens(prompt([]))
        blocks: list[str] = []
        sources: list[Source] = []
        for candidate in candidates:
            if remaining < MIN_SOURCE_TOKENS:
                break
            n = len(sources) + 1
            block = f"[{n}] {candidate.label}\n{candidate.text}"
            cost = count_tokens(block) + 2
            if cost > remaining:
                # Shorten the last source to what fits (by characters, about 3 per token).
                block = block[: max(0, remaining * 3 - 8)].rstrip() + "…"
                cost = count_tokens(block) + 2
                if cost > remaining:
                    break
            blocks.append(block)
            remaining -= cost
            sources.append(replace(candidate.source, n=n))
        if not sources:
            return Grounding(sources=(), prompt_text=question, notice=notice) if notice else None
        return Grounding(sources=tuple(sources), prompt_text=prompt(blocks), notice=notice)

    def _document_candidates(self, *, user_id: str, question: str, earlier: Sequence[str]) -> list[_Candidate]:
        if self._retriever.index.chunk_count(user_id=user_id) == 0:
            return []
        query = question
        if earlier and len(self._retriever.terms.terms(question)) < SHORT_QUESTION_TERMS:
            query = f"{earlier[-1]}\n{question}"
        return [
            _Candidate(
                label=hit.title + (f" — {hit.heading}" if hit.heading else ""),
                text=hit.text,
                source=Source(
                    n=0,
                    kind="document",
                    title=hit.title,
                    excerpt=_excerpt(hit.text),
                    score=round(hit.score, 6),
                    document_id=hit.document_id,
                    chunk_id=hit.chunk_id,
                    heading=hit.heading,
                ),
            )
            for hit in self._retriever.search(user_id=user_id, query=query, k=self._k, relevant_only=True).hits
        ]

    def _web_candidates(self, *, user_id: str, question: str) -> list[_Candidate]:
        if self._web_search is None:
            raise WebSearchUnavailable("web search is not available in this app")
        return [
            _Candidate(
                label=f"{hit.title} ({hit.url})",
                text=hit.snippet,
                source=Source(n=0, kind="web", title=hit.title, excerpt=_excerpt(hit.snippet), score=0.0, url=hit.url),
            )
            for hit in self._web_search(user_id, question)
        ]
