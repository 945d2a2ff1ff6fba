"""Grounded office answers: the best chunks of the user's documents, numbered, in the prompt.

The chat service asks the grounder for a turn's context. The chunks go into the user's
message as numbered sources ([1], [2], …) with an instruction to cite them; the persona
(system prompt) and the question are never cut to make room: the sources get what is left
of a token budget after them, and chunks that do not fit are dropped, the last one
shortened. The sources the prompt held are stored with the reply (excerpts only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    document_id: str
    title: str
    chunk_id: str
    heading: str
    excerpt: str
    score: float

    def public(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "document_id": self.document_id,
            "title": self.title,
            "chunk_id": self.chunk_id,
            "heading": self.heading,
            "excerpt": self.excerpt,
            "score": self.score,
        }


@dataclass(frozen=True)
class Grounding:
    sources: tuple[Source, ...]
    prompt_text: str  # the user turn as the model sees it: instruction, sources, question


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"


class Grounder:
    def __init__(self, *, retriever: Retriever, k: int = GROUNDING_K) -> None:
        self._retriever = retriever
        self._k = k

    def ground(
        self,
        *,
        user_id: str,
        question: str,
        earlier_user_turns: Sequence[str],
        budget_tokens: int,
        count_tokens: Callable[[str], int],
    ) -> Grounding | None:
        """Sources for `question`, or None when the user has no documents or nothing matched.

        A short follow-up ("and the deadline?") is searched together with the previous
        user turn, so that it still finds the document the conversation is about.
        """
        if self._retriever.index.chunk_count(user_id=user_id) == 0:
            return None
        query = question
        if earlier_user_turns and len(self._retriever.terms.terms(question)) < SHORT_QUESTION_TERMS:
            query = f"{earlier_user_turns[-1]}\n{question}"
        hits = self._retriever.search(user_id=user_id, query=query, k=self._k).hits
        if not hits:
            return None

        frame = f"{INSTRUCTION}\n\nSources:\n{{sources}}\n\nQuestion: {question}"
        remaining = budget_tokens - count_tokens(frame.format(sources=""))
        blocks: list[str] = []
        sources: list[Source] = []
        for hit in hits:
            if remaining < MIN_SOURCE_TOKENS:
                break
            n = len(sources) + 1
            label = f"[{n}] {hit.title}" + (f" — {hit.heading}" if hit.heading else "")
            block = f"{label}\n{hit.text}"
            cost = count_tokens(block) + 2
            if cost > remaining:
                # Shorten the last source to what fits (by characters, about 3 per token).
                block = block[: max(0, remaining * 3 - 8)].rstrip() + "…"
                cost = count_tokens(block) + 2
                if cost > remaining:
                    break
            blocks.append(block)
            remaining -= cost
            sources.append(
                Source(
                    n=n,
                    document_id=hit.document_id,
                    title=hit.title,
                    chunk_id=hit.chunk_id,
                    heading=hit.heading,
                    excerpt=_excerpt(hit.text),
                    score=round(hit.score, 6),
                )
            )
        if not sources:
            return None
        return Grounding(sources=tuple(sources), prompt_text=frame.format(sources="\n\n".join(blocks)))
