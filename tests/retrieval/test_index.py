"""Both chunk indexes (embedded SQLite, and Qdrant through qdrant-client's in-process mode)
obey one contract: per-user isolation, BM25 and cosine ranking, atomic adds, removal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from webapp.retrieval.index import ChunkIndex, ChunkRecord, QdrantChunkIndex, SqliteChunkIndex
from webapp.retrieval.search import rrf_fuse, text_language

DIM = 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def record(user: str, document: str, position: int, terms: str, vector: np.ndarray) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=f"{document}:{position}",
        user_id=user,
        document_id=document,
        title=f"title of {document}",
        heading="",
        position=position,
        text=f"text {terms}",
        terms=tuple(terms.split()),
        vector=vector,
    )


@pytest.fixture(params=["sqlite", "qdrant"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkIndex]:
    if request.param == "sqlite":
        built = SqliteChunkIndex(tmp_path / "index.sqlite3", dim=DIM)
        yield built
        built.close()
    else:
        from qdrant_client import QdrantClient

        client = QdrantClient(location=":memory:")
        yield QdrantChunkIndex(client, collection="test_chunks", dim=DIM)
        client.close()


@pytest.fixture
def filled(index: ChunkIndex) -> ChunkIndex:
    index.chunks_add(
        [
            record("alice", "d1", 0, "budget quarter plan plan", unit(1, 0)),
            record("alice", "d1", 1, "holiday leave policy", unit(0, 1)),
            record("alice", "d2", 0, "예산 분기 계획", unit(1, 1)),
            record("bob", "d3", 0, "budget secret bob", unit(1, 0)),
        ]
    )
    return index


def test_lexical_search_ranks_by_bm25_within_the_user(filled: ChunkIndex) -> None:
    hits = filled.lexical_search(user_id="alice", terms=["plan", "budget"], k=5)
    assert [h.chunk_id for h in hits] == ["d1:0"]
    assert hits[0].title == "title of d1" and hits[0].text == "text budget quarter plan plan"
    korean = filled.lexical_search(user_id="alice", terms=["예산"], k=5)
    assert [h.chunk_id for h in korean] == ["d2:0"]


def test_dense_search_ranks_by_cosine(filled: ChunkIndex) -> None:
    hits = filled.dense_search(user_id="alice", vector=unit(1, 0.1), k=3)
    assert [h.chunk_id for h in hits] == ["d1:0", "d2:0", "d1:1"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(float(unit(1, 0.1) @ unit(1, 0)), abs=1e-5)


def test_another_users_chunks_are_never_returned(filled: ChunkIndex) -> None:
    assert filled.lexical_search(user_id="alice", terms=["secret", "bob"], k=5) == []
    assert {h.document_id for h in filled.dense_search(user_id="alice", vector=unit(1, 0), k=10)} == {"d1", "d2"}
    assert [h.chunk_id for h in filled.dense_search(user_id="bob", vector=unit(0, 1), k=10)] == ["d3:0"]
    assert filled.lexical_search(user_id="carol", terms=["budget"], k=5) == []
    assert filled.dense_search(user_id="carol", vector=unit(1, 0), k=5) == []


def test_removing_a_document_removes_it_from_both_rankings(filled: ChunkIndex) -> None:
    assert filled.document_remove(user_id="alice", document_id="d1") == 2
    assert filled.lexical_search(user_id="alice", terms=["budget", "holiday"], k=5) == []
    assert [h.chunk_id for h in filled.dense_search(user_id="alice", vector=unit(1, 0), k=5)] == ["d2:0"]
    assert filled.chunk_count(user_id="alice") == 1
    assert filled.chunk_count(user_id="bob") == 1
    # Another user's document id removes nothing.
    assert filled.document_remove(user_id="alice", document_id="d3") == 0
    assert filled.chunk_count() == 2


def test_query_syntax_in_terms_is_searched_as_text(filled: ChunkIndex) -> None:
    for terms in (['"'], ["budget OR"], ["NEAR(budget"], ["*"], ["budget", ""]):
        filled.lexical_search(user_id="alice", terms=terms, k=5)  # must not raise


def test_a_failed_add_leaves_nothing_behind(tmp_path: Path) -> None:
    index = SqliteChunkIndex(tmp_path / "index.sqlite3", dim=DIM)
    good = record("alice", "d1", 0, "budget", unit(1, 0))
    duplicate = record("alice", "d1", 0, "budget again", unit(0, 1))  # same chunk id: the insert fails
    with pytest.raises(Exception, match="UNIQUE"):
        index.chunks_add([good, duplicate])
    assert index.chunk_count() == 0
    assert index.lexical_search(user_id="alice", terms=["budget"], k=5) == []


def test_the_sqlite_index_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    first = SqliteChunkIndex(path, dim=DIM)
    first.chunks_add([record("alice", "d1", 0, "budget", unit(1, 0))])
    first.close()
    again = SqliteChunkIndex(path, dim=DIM)
    assert [h.chunk_id for h in again.dense_search(user_id="alice", vector=unit(1, 0), k=1)] == ["d1:0"]
    assert [h.chunk_id for h in again.lexical_search(user_id="alice", terms=["budget"], k=1)] == ["d1:0"]


def test_a_vector_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    index = SqliteChunkIndex(tmp_path / "index.sqlite3", dim=DIM)
    with pytest.raises(ValueError, match="shape"):
        index.chunks_add([record("alice", "d1", 0, "budget", np.ones(DIM + 1, dtype=np.float32))])


def test_rrf_prefers_chunks_ranked_well_by_both(filled: ChunkIndex) -> None:
    lexical = filled.lexical_search(user_id="alice", terms=["예산", "budget"], k=5)
    dense = filled.dense_search(user_id="alice", vector=unit(1, 1), k=5)
    fused = rrf_fuse([lexical, dense], k=3)
    assert fused[0].chunk_id == "d2:0"  # first in dense, in lexical too
    assert fused[0].score == pytest.approx(
        1 / (60 + 1 + [h.chunk_id for h in lexical].index("d2:0")) + 1 / (60 + 1), abs=1e-6
    )
    assert len({h.chunk_id for h in fused}) == len(fused)


def test_text_language_tells_korean_from_english() -> None:
    assert text_language("휴가 신청은 어떻게 하나요?") == "ko"
    assert text_language("How do I apply for leave?") == "en"
    assert text_language("PDF 파일의 page 3 내용") == "ko"
    assert text_language("12345") == "en"
