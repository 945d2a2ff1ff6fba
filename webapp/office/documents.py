"""Writes and reads of the user's documents: upload (extract → chunk → embed → index), delete, search.

An upload is indexed in the request when it is small (at most SYNC_CHUNKS chunks: the
answer is 201 with status "ready"), otherwise on the indexer thread (202 with status
"indexing", then "ready" or "failed" with a reason). Either way a document is all or
nothing: its chunks go to MongoDB and the search index only once every chunk has been
embedded, and a failure removes whatever landed, so no half-indexed document is searchable.
Blocking work: call from a worker thread, never from an event loop.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath

from webapp.core.errors import NotFoundError
from webapp.office.errors import FileTooLargeError, IndexingFailedError, UnreadableFileError, UnsupportedFileError
from webapp.retrieval.chunking import Chunk, chunks_split
from webapp.retrieval.extract import SUPPORTED_EXTENSIONS, ExtractionError, document_extract
from webapp.retrieval.index import Hit
from webapp.retrieval.pipeline import chunk_records_build
from webapp.retrieval.search import Retriever, SearchMode
from webapp.store.office_store import ChunkDoc, DocumentRecord, OfficeStore, new_id

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_TEXT_CHARS = 1_000_000
SYNC_CHUNKS = 48
TITLE_MAX = 200


@dataclass(frozen=True)
class UploadOutcome:
    document: DocumentRecord
    indexed_now: bool  # False: indexing continues in the background (HTTP 202)


def _file_checked(filename: str, size: int) -> str:
    extension = PurePath(filename).suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        shown = extension or "no extension"
        raise UnsupportedFileError(f"file type {shown} is not supported; upload one of: {supported}", field="file")
    if size > MAX_UPLOAD_BYTES:
        raise FileTooLargeError(
            f"file is {size:,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes (10 MiB)", field="file"
        )
    return SUPPORTED_EXTENSIONS[extension]


def document_upload(
    *,
    store: OfficeStore,
    retriever: Retriever,
    indexer: ThreadPoolExecutor,
    user_id: str,
    filename: str,
    data: bytes,
    title: str | None,
) -> UploadOutcome:
    kind = _file_checked(filename, len(data))
    try:
        extracted = document_extract(filename=filename, data=data)
    except ExtractionError as exc:
        error = UnsupportedFileError if exc.code == "unsupported_type" else UnreadableFileError
        raise error(str(exc), field="file", code=exc.code) from exc
    if len(extracted.text) > MAX_TEXT_CHARS:
        raise FileTooLargeError(
            f"the file holds {len(extracted.text):,} characters of text; the limit is {MAX_TEXT_CHARS:,}",
            field="file",
            code="text_too_long",
        )
    chunks = chunks_split(extracted)
    if not chunks:
        raise UnreadableFileError("the file has no text to index", field="file", code="no_text")

    document = store.document_create(
        document_id=new_id(),
        user_id=user_id,
        title=(title or extracted.title or PurePath(filename).stem)[:TITLE_MAX],
        filename=PurePath(filename).name[:TITLE_MAX],
        kind=kind,
        size=len(data),
        status="indexing",
    )
    if len(chunks) > SYNC_CHUNKS:
        indexer.submit(_index_in_background, store=store, retriever=retriever, document=document, chunks=chunks)
        return UploadOutcome(document, indexed_now=False)
    try:
        _index(store=store, retriever=retriever, document=document, chunks=chunks)
    except Exception as exc:
        log.exception("indexing document %s failed", document.id)
        store.document_delete(user_id=user_id, document_id=document.id)
        raise IndexingFailedError(f"indexing failed: {exc}; nothing was stored, retry the upload") from exc
    return UploadOutcome(store.document_get(user_id=user_id, document_id=document.id) or document, indexed_now=True)


def _index(*, store: OfficeStore, retriever: Retriever, document: DocumentRecord, chunks: list[Chunk]) -> None:
    """Embed and index every chunk, then mark the document ready; on failure remove what landed."""
    try:
        records = chunk_records_build(
            document_id=document.id,
            user_id=document.user_id,
            title=document.title,
            chunks=chunks,
            embedder=retriever.embedder,
            terms=retriever.terms,
        )
        store.chunks_insert(
            user_id=document.user_id,
            document_id=document.id,
            chunks=[ChunkDoc(r.chunk_id, document.id, r.position, r.heading, r.text) for r in records],
        )
        retriever.index.chunks_add(records)
    except BaseException:
        retriever.index.document_remove(user_id=document.user_id, document_id=document.id)
        store.chunks_delete(user_id=document.user_id, document_id=document.id)
        raise
    store.document_update(document.id, status="ready", chunks=len(records))


def _index_in_background(
    *, store: OfficeStore, retriever: Retriever, document: DocumentRecord, chunks: list[Chunk]
) -> None:
    try:
        _index(store=store, retriever=retriever, document=document, chunks=chunks)
    except Exception as exc:
        log.exception("indexing document %s failed", document.id)
        store.document_update(
            document.id, status="failed", error=f"indexing failed: {exc}", error_code="indexing_failed"
        )
        return
    if store.document_get(user_id=document.user_id, document_id=document.id) is None:
        # Deleted while it was being indexed: take its chunks back out.
        retriever.index.document_remove(user_id=document.user_id, document_id=document.id)
        store.chunks_delete(user_id=document.user_id, document_id=document.id)


def document_owned(*, store: OfficeStore, user_id: str, document_id: str) -> DocumentRecord:
    document = store.document_get(user_id=user_id, document_id=document_id)
    if document is None:
        raise NotFoundError(f"no document {document_id} for this user_id", field="document_id")
    return document


def document_delete(*, store: OfficeStore, retriever: Retriever, user_id: str, document_id: str) -> DocumentRecord:
    """Remove the document, its chunks and its vectors. Another user's id is a 404."""
    document = document_owned(store=store, user_id=user_id, document_id=document_id)
    retriever.index.document_remove(user_id=user_id, document_id=document_id)
    store.document_delete(user_id=user_id, document_id=document_id)
    return document


def documents_search(*, retriever: Retriever, user_id: str, query: str, k: int, mode: SearchMode) -> list[Hit]:
    return retriever.search(user_id=user_id, query=query, k=k, mode=mode).hits


def documents_interrupted_fail(*, store: OfficeStore, retriever: Retriever) -> int:
    """At start-up: a document still "indexing" was cut off by a restart. Take back what
    landed of it and mark it failed, so that it does not stay "indexing" forever."""
    interrupted = store.documents_indexing()
    for document in interrupted:
        retriever.index.document_remove(user_id=document.user_id, document_id=document.id)
        store.chunks_delete(user_id=document.user_id, document_id=document.id)
        store.document_update(
            document.id,
            status="failed",
            error="indexing was interrupted by a server restart; upload the file again",
            error_code="indexing_interrupted",
        )
    return len(interrupted)


def owner_data_purge(*, store: OfficeStore, retriever: Retriever, owner: str) -> dict[str, int]:
    """Everything the office keeps for `owner` and its end users: documents with their
    passages and vectors, notes, approvals and tool audit; how many of each went."""
    documents = store.document_owners(owner)
    passages = 0
    for user_id, document_id in documents:
        passages += retriever.index.document_remove(user_id=user_id, document_id=document_id)
        store.document_delete(user_id=user_id, document_id=document_id)
    return {"documents": len(documents), "passages": passages, **store.owner_purge(owner)}
