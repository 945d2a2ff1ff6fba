"""A document cut off mid-indexing by a restart is marked failed and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from webapp.office.documents import documents_interrupted_fail
from webapp.retrieval.index import ChunkRecord, SqliteChunkIndex
from webapp.store.client import StoreConfig, database_get, database_lock
from webapp.store.office_store import ChunkDoc, OfficeStore


def test_documents_left_indexing_are_failed_and_cleaned_up(tmp_path: Path) -> None:
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path / "mongo")
    store = OfficeStore(database_get(config), app="office", lock=database_lock(config))
    index = SqliteChunkIndex(tmp_path / "index.sqlite3", dim=2)
    for document_id, status in (("half", "indexing"), ("done", "ready")):
        store.document_create(
            document_id=document_id, user_id="u", title=document_id, filename="f.md", kind="md", size=1, status=status
        )
        chunk = ChunkDoc(f"{document_id}:0", document_id, 0, "", "x")
        store.chunks_insert(user_id="u", document_id=document_id, chunks=[chunk])
        vector = np.ones(2, np.float32) / np.sqrt(2)
        index.chunks_add([ChunkRecord(chunk.id, "u", document_id, document_id, "", 0, "x", ("x",), vector)])

    assert documents_interrupted_fail(store=store, retriever=SimpleNamespace(index=index)) == 1

    half = store.document_get(user_id="u", document_id="half")
    assert (half.status, half.error_code) == ("failed", "indexing_interrupted")
    assert "upload the file again" in half.error
    assert store.chunks_for_document(user_id="u", document_id="half") == []
    assert [h.document_id for h in index.lexical_search(user_id="u", terms=["x"], k=5)] == ["done"]
    assert store.document_get(user_id="u", document_id="done").status == "ready"
    assert documents_interrupted_fail(store=store, retriever=SimpleNamespace(index=index)) == 0
