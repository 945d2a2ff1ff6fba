"""The office app's tool registry: the built-in tools plus the ones that work on the user's data.

search_documents (LOW), save_note and list_notes (MEDIUM), delete_document (HIGH, always
asks the user first). Handlers are plain functions of (context, arguments); the service in
`tool_calls.py` runs the registry's checks, approvals and the audit log around them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webapp.core.errors import NotFoundError
from webapp.office import documents
from webapp.retrieval.search import Retriever
from webapp.store.office_store import OfficeStore
from webapp.tools import (
    LimitsBackend,
    RateLimit,
    SearxngClient,
    SecurityMode,
    Sensitivity,
    ToolArgumentError,
    ToolContext,
    ToolRegistry,
    ToolSpec,
    builtin_tools_register,
)

EXCERPT_CHARS = 300


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SEARCH_DOCUMENTS = ToolSpec(
    name="search_documents",
    description="Search the user's uploaded documents; returns the best passages with their titles.",
    parameters=_schema(
        {
            "query": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "what to look for"},
            "k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
        },
        ["query"],
    ),
    sensitivity=Sensitivity.LOW,
    rate_limit=RateLimit(requests=60, window_s=60, burst=10),
    max_concurrent=4,
)
SAVE_NOTE = ToolSpec(
    name="save_note",
    description="Save a short note for the user (kept in their notes).",
    parameters=_schema(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "text": {"type": "string", "minLength": 1, "maxLength": 4000},
        },
        ["title", "text"],
    ),
    sensitivity=Sensitivity.MEDIUM,
    rate_limit=RateLimit(requests=20, window_s=60, burst=5),
    max_concurrent=4,
)
LIST_NOTES = ToolSpec(
    name="list_notes",
    description="List the user's saved notes, newest first.",
    parameters=_schema({"limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}}, []),
    sensitivity=Sensitivity.MEDIUM,
    rate_limit=RateLimit(requests=30, window_s=60, burst=10),
    max_concurrent=4,
)
DELETE_DOCUMENT = ToolSpec(
    name="delete_document",
    description="Delete one of the user's documents with its passages. Asks the user to approve first.",
    parameters=_schema({"document_id": {"type": "string", "minLength": 1, "maxLength": 64}}, ["document_id"]),
    sensitivity=Sensitivity.HIGH,
    rate_limit=RateLimit(requests=10, window_s=60, burst=3),
    max_concurrent=2,
    needs_approval=True,
)


def _search_documents(retriever: Callable[[], Retriever]) -> Callable[[ToolContext, dict[str, Any]], dict[str, Any]]:
    def handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        outcome = retriever().search(user_id=ctx.user_id, query=args["query"], k=args.get("k", 5))
        return {
            "query": args["query"],
            "results": [
                {
                    "document_id": hit.document_id,
                    "title": hit.title,
                    "chunk_id": hit.chunk_id,
                    "excerpt": hit.text[:EXCERPT_CHARS],
                    "score": round(hit.score, 6),
                }
                for hit in outcome.hits
            ],
        }

    return handler


def office_registry_build(
    *,
    security_mode: SecurityMode,
    searxng: SearxngClient | None,
    store: Callable[[], OfficeStore],
    retriever: Callable[[], Retriever],
    limits: LimitsBackend | None = None,
) -> ToolRegistry:
    """All office tools. `store` and `retriever` are getters, so building the registry loads nothing.
    `limits`: where rate limits and caps live (this process by default; Redis for replicas)."""
    registry = ToolRegistry(security_mode=security_mode, limits=limits)
    builtin_tools_register(registry, searxng=searxng)
    registry.register(SEARCH_DOCUMENTS, _search_documents(retriever))

    def save_note(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"note": store().note_create(user_id=ctx.user_id, title=args["title"], text=args["text"])}

    def list_notes(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"notes": store().notes_for_user(ctx.user_id, limit=args.get("limit", 10))}

    def delete_document(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        try:
            removed = documents.document_delete(
                store=store(), retriever=retriever(), user_id=ctx.user_id, document_id=args["document_id"]
            )
        except NotFoundError as exc:
            raise ToolArgumentError(str(exc), field="arguments.document_id") from exc
        return {"deleted": {"id": removed.id, "title": removed.title}}

    registry.register(SAVE_NOTE, save_note)
    registry.register(LIST_NOTES, list_notes)
    registry.register(DELETE_DOCUMENT, delete_document)
    return registry
