"""From chunks to index records: embed each chunk (framed by its title and heading) and
extract its BM25 terms. Shared by the office upload service and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from webapp.retrieval.chunking import Chunk
from webapp.retrieval.embedding import Embedder
from webapp.retrieval.index import ChunkRecord
from webapp.retrieval.lexical import TermExtractor

EMBED_BATCH = 32


def chunk_framed(*, title: str, chunk: Chunk) -> str:
    """What is embedded and counted for a chunk: a passage about "deadlines" under
    "Vacation policy" should match a vacation question."""
    return f"{title}\n{chunk.heading}\n{chunk.text}".strip()


def chunk_records_build(
    *,
    document_id: str,
    user_id: str,
    title: str,
    chunks: Sequence[Chunk],
    embedder: Embedder,
    terms: TermExtractor,
) -> list[ChunkRecord]:
    records: list[ChunkRecord] = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        framed = [chunk_framed(title=title, chunk=c) for c in batch]
        vectors = embedder.embed(framed)
        for chunk, text, vector in zip(batch, framed, vectors, strict=True):
            records.append(
                ChunkRecord(
                    chunk_id=f"{document_id}:{chunk.position}",
                    user_id=user_id,
                    document_id=document_id,
                    title=title,
                    heading=chunk.heading,
                    position=chunk.position,
                    text=chunk.text,
                    terms=tuple(terms.terms(text)),
                    vector=vector,
                )
            )
    return records
