"""Where chunks are searched: a lexical (BM25) and a dense (cosine) index over the same chunks.

Two implementations of one protocol:

- `SqliteChunkIndex`, the embedded default: one SQLite file per app. FTS5 keeps the BM25
  inverted index; the vectors sit in the same rows, and a search multiplies the user's
  vectors (cached in memory as one float32 matrix) by the query. Exact search is the
  right tool below a few hundred thousand vectors per user: 10,000 x 384 is a 15 MB
  matrix and one BLAS call, where an approximate graph index would add build time,
  recall loss and a second file to keep consistent. Adding or removing a document's
  chunks is one SQLite transaction, so a failed upload leaves nothing behind.
- `QdrantChunkIndex`, for production: a Qdrant server (docker-compose) with a named dense
  vector and a sparse BM25 vector (IDF computed by Qdrant) per chunk. The same code runs
  on qdrant-client's in-process mode, which is how the tests check it.

Every row carries its user_id and every query filters on it: one user's search never
sees another's chunks. Search results carry the chunk text (as Qdrant payloads do), so a
search never has to read the chunks back from MongoDB.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    user_id: str
    document_id: str
    title: str
    heading: str
    position: int
    text: str
    terms: tuple[str, ...]
    vector: np.ndarray  # unit-length float32


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    title: str
    heading: str
    position: int
    text: str
    score: float


class ChunkIndex(Protocol):
    def chunks_add(self, records: list[ChunkRecord]) -> None:
        """Add all records or none."""
        ...

    def document_remove(self, *, user_id: str, document_id: str) -> int:
        """Remove a document's chunks; return how many there were."""
        ...

    def lexical_search(self, *, user_id: str, terms: list[str], k: int) -> list[Hit]: ...

    def dense_search(self, *, user_id: str, vector: np.ndarray, k: int) -> list[Hit]: ...

    def chunk_count(self, *, user_id: str | None = None) -> int: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    title TEXT NOT NULL,
    heading TEXT NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_user_document ON chunks (user_id, document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0');
"""

_HIT_COLUMNS = "c.chunk_id, c.document_id, c.title, c.heading, c.position, c.text"


class SqliteChunkIndex:
    """The embedded index: FTS5 BM25 + exact cosine search over a cached per-user matrix."""

    def __init__(self, path: Path, *, dim: int, cached_users: int = 64) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # one connection, used from request threads
        # user_id -> (rowids, matrix); dropped for a user whenever their chunks change.
        self._matrices: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached_users = cached_users

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def chunks_add(self, records: list[ChunkRecord]) -> None:
        for record in records:
            if record.vector.shape != (self.dim,):
                raise ValueError(f"chunk {record.chunk_id}: vector shape {record.vector.shape}, expected ({self.dim},)")
        with self._transaction() as db:
            for r in records:
                cursor = db.execute(
                    "INSERT INTO chunks (chunk_id, user_id, document_id, title, heading, position, text, vector)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.chunk_id,
                        r.user_id,
                        r.document_id,
                        r.title,
                        r.heading,
                        r.position,
                        r.text,
                        np.asarray(r.vector, dtype=np.float32).tobytes(),
                    ),
                )
                terms = " ".join(r.terms)
                db.execute("INSERT INTO chunk_terms (rowid, terms) VALUES (?, ?)", (cursor.lastrowid, terms))
            for user_id in {r.user_id for r in records}:
                self._matrices.pop(user_id, None)

    def document_remove(self, *, user_id: str, document_id: str) -> int:
        with self._transaction() as db:
            rowids = [
                row[0]
                for row in db.execute(
                    "SELECT rowid FROM chunks WHERE user_id = ? AND document_id = ?", (user_id, document_id)
                )
            ]
            db.executemany("DELETE FROM chunk_terms WHERE rowid = ?", [(rowid,) for rowid in rowids])
            db.executemany("DELETE FROM chunks WHERE rowid = ?", [(rowid,) for rowid in rowids])
            self._matrices.pop(user_id, None)
        return len(rowids)

    def lexical_search(self, *, user_id: str, terms: list[str], k: int) -> list[Hit]:
        unique = list(dict.fromkeys(t for t in terms if t))
        if not unique:
            return []
        # Each term quoted, so FTS5 reads it as a string and never as query syntax.
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_HIT_COLUMNS}, bm25(chunk_terms) AS rank FROM chunk_terms"  # noqa: S608 (constant columns)
                " JOIN chunks c ON c.rowid = chunk_terms.rowid"
                " WHERE chunk_terms MATCH ? AND c.user_id = ? ORDER BY rank LIMIT ?",
                (match, user_id, k),
            ).fetchall()
        # FTS5's bm25() is negative (lower is better); flip it so higher is better everywhere.
        return [Hit(*row[:6], score=-float(row[6])) for row in rows]

    def dense_search(self, *, user_id: str, vector: np.ndarray, k: int) -> list[Hit]:
        rowids, matrix = self._matrix(user_id)
        if not len(rowids):
            return []
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        top = min(k, len(scores))
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best])]
        wanted = [int(rowids[i]) for i in best]
        with self._lock:
            placeholders = ",".join("?" * len(wanted))
            rows = {
                row[0]: row[1:]
                for row in self._db.execute(
                    f"SELECT c.rowid, {_HIT_COLUMNS} FROM chunks c WHERE c.rowid IN ({placeholders})",  # noqa: S608
                    wanted,
                )
            }
        # A row deleted between the matrix read and now is simply left out.
        return [Hit(*rows[r], score=float(scores[i])) for r, i in zip(wanted, best, strict=True) if r in rows]

    def _matrix(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            cached = self._matrices.get(user_id)
            if cached is not None:
                self._matrices.move_to_end(user_id)
                return cached
            rows = self._db.execute("SELECT rowid, vector FROM chunks WHERE user_id = ?", (user_id,)).fetchall()
            rowids = np.array([row[0] for row in rows], dtype=np.int64)
            matrix = (
                np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), self.dim)
                if rows
                else np.zeros((0, self.dim), dtype=np.float32)
            )
            self._matrices[user_id] = (rowids, matrix)
            while len(self._matrices) > self._cached_users:
                self._matrices.popitem(last=False)
            return rowids, matrix

    def chunk_count(self, *, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is None:
                return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])
            return int(self._db.execute("SELECT count(*) FROM chunks WHERE user_id = ?", (user_id,)).fetchone()[0])


# BM25's term-frequency part, computed client-side for Qdrant's sparse vectors (Qdrant
# adds the IDF part). Qdrant cannot know each chunk's length relative to the corpus mean,
# so the mean is a constant near our chunks' term count, as fastembed's BM25 does.
_BM25_K1 = 1.2
_BM25_B = 0.75
_BM25_AVG_TERMS = 90.0
_POINT_NAMESPACE = uuid.UUID("8f5e6d2a-3c1b-4f7e-9a0d-5b2c1e4f6a7b")


def _term_index(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def _sparse_document(terms: tuple[str, ...] | list[str]) -> tuple[list[int], list[float]]:
    counts: dict[int, int] = {}
    for term in terms:
        index = _term_index(term)
        counts[index] = counts.get(index, 0) + 1
    length_norm = 1 - _BM25_B + _BM25_B * len(terms) / _BM25_AVG_TERMS
    values = [tf * (_BM25_K1 + 1) / (tf + _BM25_K1 * length_norm) for tf in counts.values()]
    return list(counts), values


class QdrantChunkIndex:
    """Chunks in a Qdrant collection: a dense vector and a BM25 sparse vector per point."""

    def __init__(self, client: object, *, collection: str, dim: int) -> None:
        from qdrant_client import models

        self._m = models
        self._client = client
        self._collection = collection
        self.dim = dim
        if not client.collection_exists(collection):  # type: ignore[attr-defined]
            client.create_collection(  # type: ignore[attr-defined]
                collection,
                vectors_config={"dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={"terms": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            for field in ("user_id", "document_id"):
                client.create_payload_index(collection, field, models.PayloadSchemaType.KEYWORD)  # type: ignore[attr-defined]

    def _user_filter(self, user_id: str, document_id: str | None = None) -> object:
        m = self._m
        must = [m.FieldCondition(key="user_id", match=m.MatchValue(value=user_id))]
        if document_id is not None:
            must.append(m.FieldCondition(key="document_id", match=m.MatchValue(value=document_id)))
        return m.Filter(must=must)

    def chunks_add(self, records: list[ChunkRecord]) -> None:
        m = self._m
        points = []
        for r in records:
            indices, values = _sparse_document(r.terms)
            points.append(
                m.PointStruct(
                    id=str(uuid.uuid5(_POINT_NAMESPACE, r.chunk_id)),
                    vector={
                        "dense": np.asarray(r.vector, dtype=np.float32).tolist(),
                        "terms": m.SparseVector(indices=indices, values=values),
                    },
                    payload={
                        "chunk_id": r.chunk_id,
                        "user_id": r.user_id,
                        "document_id": r.document_id,
                        "title": r.title,
                        "heading": r.heading,
                        "position": r.position,
                        "text": r.text,
                    },
                )
            )
        try:
            self._client.upsert(self._collection, points=points, wait=True)  # type: ignore[attr-defined]
        except Exception:
            # Qdrant has no multi-point transaction: undo what may have landed, then re-raise.
            for document in {(r.user_id, r.document_id) for r in records}:
                self.document_remove(user_id=document[0], document_id=document[1])
            raise

    def document_remove(self, *, user_id: str, document_id: str) -> int:
        selector = self._user_filter(user_id, document_id)
        count = self._client.count(self._collection, count_filter=selector, exact=True).count  # type: ignore[attr-defined]
        self._client.delete(  # type: ignore[attr-defined]
            self._collection, points_selector=self._m.FilterSelector(filter=selector), wait=True
        )
        return int(count)

    def _hits(self, points: list) -> list[Hit]:
        return [
            Hit(
                chunk_id=p.payload["chunk_id"],
                document_id=p.payload["document_id"],
                title=p.payload["title"],
                heading=p.payload["heading"],
                position=int(p.payload["position"]),
                text=p.payload["text"],
                score=float(p.score),
            )
            for p in points
        ]

    def lexical_search(self, *, user_id: str, terms: list[str], k: int) -> list[Hit]:
        unique = list(dict.fromkeys(t for t in terms if t))
        if not unique:
            return []
        query = self._m.SparseVector(indices=[_term_index(t) for t in unique], values=[1.0] * len(unique))
        result = self._client.query_points(  # type: ignore[attr-defined]
            self._collection, query=query, using="terms", query_filter=self._user_filter(user_id), limit=k
        )
        return self._hits(result.points)

    def dense_search(self, *, user_id: str, vector: np.ndarray, k: int) -> list[Hit]:
        result = self._client.query_points(  # type: ignore[attr-defined]
            self._collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            using="dense",
            query_filter=self._user_filter(user_id),
            limit=k,
        )
        return self._hits(result.points)

    def chunk_count(self, *, user_id: str | None = None) -> int:
        selector = self._user_filter(user_id) if user_id is not None else None
        return int(self._client.count(self._collection, count_filter=selector, exact=True).count)  # type: ignore[attr-defined]


def sqlite_index_owner_rename(path: Path, *, old: str, new: str) -> int:
    """Move the chunks stored under user_id `old` to `new` in the SQLite index file at `path`,
    with no app running on it (a management command adopting pre-account data)."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return int(db.execute("UPDATE chunks SET user_id = ? WHERE user_id = ?", (new, old)).rowcount)


def qdrant_owner_rename(client: Any, *, collection_prefix: str, old: str, new: str) -> int:
    """The same for Qdrant: every collection named `collection_prefix`… (one per embedding size)."""
    from qdrant_client import models as m

    moved = 0
    for collection in client.get_collections().collections:
        if not collection.name.startswith(collection_prefix):
            continue
        selector = m.Filter(must=[m.FieldCondition(key="user_id", match=m.MatchValue(value=old))])
        moved += int(client.count(collection.name, count_filter=selector, exact=True).count)
        client.set_payload(
            collection.name, payload={"user_id": new}, points=m.FilterSelector(filter=selector), wait=True
        )
    return moved


def sqlite_index_labels_prefix(path: Path, prefix: str) -> int:
    """Put `prefix` in front of every chunk's user_id that lacks it, in the SQLite index file
    at `path` (no app running on it); how many changed."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return int(
            db.execute(
                "UPDATE chunks SET user_id = ? || user_id WHERE substr(user_id, 1, ?) != ?",
                (prefix, len(prefix), prefix),
            ).rowcount
        )


def qdrant_labels_prefix(client: Any, *, collection_prefix: str, prefix: str) -> int:
    """The same for Qdrant, point by point (once, at an upgrade)."""
    changed = 0
    for collection in client.get_collections().collections:
        if not collection.name.startswith(collection_prefix):
            continue
        offset = None
        while True:
            points, offset = client.scroll(collection.name, limit=256, offset=offset, with_payload=["user_id"])
            for point in points:
                label = str(point.payload.get("user_id", ""))
                if not label.startswith(prefix):
                    client.set_payload(collection.name, payload={"user_id": prefix + label}, points=[point.id])
                    changed += 1
            if offset is None:
                break
    return changed
