"""The office app's long-lived collaborators, each built once: its store, search index and retriever.

Built in one place like `webapp.chat.runtime`; tests clear the caches to rebuild them.
The retriever loads the embedding model and Kiwi's Korean model (about two seconds), so
`retrieval_start_loading()` builds it on a thread at start-up.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from webapp.chat.runtime import _built_once, store_config, term_extractor_get
from webapp.core.errors import ApplicationError
from webapp.engine.registry import embedding_spec_load
from webapp.office import documents, mcp_servers, tool_calls
from webapp.office.grounding import Grounder, WebHit, WebSearchUnavailable
from webapp.office.tools import office_registry_build
from webapp.retrieval.embedding import embedder_load
from webapp.retrieval.index import ChunkIndex, QdrantChunkIndex, SqliteChunkIndex
from webapp.retrieval.search import Retriever
from webapp.store.client import database_get, database_lock
from webapp.store.office_store import OfficeStore
from webapp.tools import LimitsBackend, RedisLimits, SearxngClient, Sensitivity, ToolContext, ToolRegistry

log = logging.getLogger(__name__)

WEB_QUERY_MAX = 300
WEB_RESULTS = 3


@_built_once
def office_store_get() -> OfficeStore:
    config = store_config()
    store = OfficeStore(database_get(config), app=settings.APP_MODE, lock=database_lock(config))
    store.indexes_ensure()
    return store


def _index_build(dim: int) -> ChunkIndex:
    if settings.ENV.qdrant_url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=settings.ENV.qdrant_url, timeout=10)
        return QdrantChunkIndex(client, collection=f"{settings.APP_MODE}_chunks_{dim}", dim=dim)
    return SqliteChunkIndex(settings.ENV.var_dir / "retrieval" / f"{settings.APP_MODE}.sqlite3", dim=dim)


@_built_once
def retriever_get() -> Retriever:
    spec = embedding_spec_load(settings.ENV.model_registry)
    embedder = embedder_load(spec)
    return Retriever(
        index=_index_build(embedder.dim),
        embedder=embedder,
        terms=term_extractor_get(),
        languages=spec.languages,
        min_similarity=spec.min_similarity,
    )


def models_extra() -> tuple[str, ...]:
    """The embedding model's alias, for /v1/models (read from the registry: nothing loads)."""
    return (embedding_spec_load(settings.ENV.model_registry).alias,)


def retrieval_start_loading() -> None:
    """Check the embedding model's files now (raises naming them), then load it on a thread."""
    embedding_spec_load(settings.ENV.model_registry).check_file()
    office_store_get()

    def load() -> None:
        from webapp.office.documents import documents_interrupted_fail

        try:
            retriever = retriever_get()
            retriever.terms.terms("warm up 준비")  # Kiwi builds its model on first use
            failed = documents_interrupted_fail(store=office_store_get(), retriever=retriever)
            if failed:
                log.warning("%d document(s) were being indexed when the app stopped; marked failed", failed)
        except Exception:
            log.exception("the retrieval models failed to load")

    threading.Thread(target=load, name="retrieval-loader", daemon=True).start()


@_built_once
def indexer_get() -> ThreadPoolExecutor:
    """One background thread indexes large uploads, one at a time (embedding is CPU-bound)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer")


def _web_search_for_chat(user_id: str, query: str) -> list[WebHit]:
    """web_search as a tool call of the chat (rate-limited and audited like any other)."""
    try:
        outcome = tool_calls.tool_call(
            registry=tool_registry_get(),
            store=office_store_get(),
            ctx=tool_context(user_id, "user"),  # web_search is LOW: the same for every role
            name="web_search",
            arguments={"query": query[:WEB_QUERY_MAX], "k": WEB_RESULTS},
            source="chat",
        )
    except ApplicationError as exc:
        raise WebSearchUnavailable(exc.message) from exc
    if outcome.status != "ok" or outcome.result is None:
        raise WebSearchUnavailable("web search needs your approval in this security mode")
    return [WebHit(r["title"], r["url"], r["snippet"]) for r in outcome.result["results"]]


@_built_once
def grounder_get() -> Grounder:
    return Grounder(retriever=retriever_get(), web_search=_web_search_for_chat)


@_built_once
def tool_registry_get() -> ToolRegistry:
    searxng = SearxngClient(settings.ENV.searxng_url) if settings.ENV.searxng_url else None
    registry = office_registry_build(
        security_mode=settings.ENV.security_mode,  # type: ignore[arg-type]
        searxng=searxng,
        store=office_store_get,
        retriever=retriever_get,
        limits=_limits(),
    )
    mcp_servers.servers_register(registry, office_store_get())  # the admin's external MCP servers
    return registry


def _limits() -> LimitsBackend | None:
    """Tool limits shared by every replica (Redis, with REDIS_URL), else this process's own."""
    url = settings.ENV.redis_url
    if not url:
        return None
    import redis

    return RedisLimits(redis.Redis.from_url(url, decode_responses=True), prefix=f"personachat:{settings.APP_MODE}")


def tool_context(user_id: str, role: str) -> ToolContext:
    """What a caller may do with tools, from its account's role: admins may call CRITICAL tools
    (an admin account's service key acts for its end users, who are not admins: their owner
    keys are "a<id>/<end user>"); demo accounts (seed 003: chat only) none above LOW."""
    return ToolContext(
        user_id=user_id,
        is_admin=role == "admin" and "/" not in user_id,
        max_sensitivity=Sensitivity.LOW if role == "demo" else Sensitivity.CRITICAL,
    )


@_built_once
def chat_tool_runner_get() -> tool_calls.ChatToolRunner:
    return tool_calls.ChatToolRunner(registry=tool_registry_get, store=office_store_get, context=tool_context)


def owner_data_purge(owner: str) -> dict[str, int]:
    """The office's share of deleting an account (AppWiring.owner_purge)."""
    return documents.owner_data_purge(store=office_store_get(), retriever=retriever_get(), owner=owner)
