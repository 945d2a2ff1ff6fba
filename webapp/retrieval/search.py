"""Hybrid search: BM25 and dense rankings of a user's chunks, fused by reciprocal rank.

Reciprocal-rank fusion (Cormack et al., 2009) adds 1 / (60 + rank) over the rankings a
chunk appears in. It needs no score calibration between BM25 (unbounded) and cosine
(-1..1), which is why it is the usual default for hybrid search.

A ranking that is known to be meaningless is not fused: when the embedding model does not
cover the query's language (the default MiniLM is English-only), a Korean query is ranked
by BM25 alone instead of being diluted by near-random neighbours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from webapp.retrieval.embedding import Embedder
from webapp.retrieval.index import ChunkIndex, Hit
from webapp.retrieval.lexical import TermExtractor

SearchMode = Literal["hybrid", "lexical", "dense"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "lexical", "dense")

_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LETTER = re.compile(r"[^\W\d_]")


def text_language(text: str) -> str:
    """'ko' when at least a third of the letters are Hangul, else 'en' (all we tell apart)."""
    letters = len(_LETTER.findall(text))
    if letters and len(_HANGUL.findall(text)) * 3 >= letters:
        return "ko"
    return "en"


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    mode: SearchMode  # the mode actually used (hybrid may fall back to lexical)


class Retriever:
    """Search one index with one embedding model and one term extractor."""

    def __init__(
        self,
        *,
        index: ChunkIndex,
        embedder: Embedder,
        terms: TermExtractor,
        languages: tuple[str, ...] = ("*",),
        min_similarity: float = 0.0,
        candidates: int = 40,
        rrf_k: int = 60,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.terms = terms
        self._languages = languages
        self._min_similarity = min_similarity
        self._candidates = candidates
        self._rrf_k = rrf_k

    def embeds(self, text: str) -> bool:
        """Whether the embedding model covers this text's language."""
        return "*" in self._languages or text_language(text) in self._languages

    def search(
        self, *, user_id: str, query: str, k: int, mode: SearchMode = "hybrid", relevant_only: bool = False
    ) -> SearchOutcome:
        """The best `k` chunks. With `relevant_only` (grounding), a chunk must share a term
        with the query or be at least `min_similarity` close to it: a ranking always has a
        first place, even for a question no document is about."""
        if mode == "hybrid" and not self.embeds(query):
            mode = "lexical"
        depth = max(k, self._candidates) if mode == "hybrid" else k
        lexical = (
            self.index.lexical_search(user_id=user_id, terms=self.terms.terms(query), k=depth)
            if mode in ("hybrid", "lexical")
            else []
        )
        dense = (
            self.index.dense_search(user_id=user_id, vector=self.embedder.embed([query])[0], k=depth)
            if mode in ("hybrid", "dense")
            else []
        )
        if relevant_only:
            dense = [hit for hit in dense if hit.score >= self._min_similarity]
        if mode == "lexical":
            return SearchOutcome(lexical[:k], mode)
        if mode == "dense":
            return SearchOutcome(dense[:k], mode)
        return SearchOutcome(rrf_fuse([lexical, dense], k=k, rrf_k=self._rrf_k), mode)


def rrf_fuse(rankings: list[list[Hit]], *, k: int, rrf_k: int = 60) -> list[Hit]:
    """Fuse best-first rankings; the result's scores are the fused scores, best first."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (rrf_k + rank)
            hits.setdefault(hit.chunk_id, hit)
    # Ties (same fused score) keep a stable order: by chunk id.
    best = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[:k]
    return [replace(hits[chunk_id], score=round(scores[chunk_id], 6)) for chunk_id in best]
