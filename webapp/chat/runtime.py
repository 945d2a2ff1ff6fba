"""The process's long-lived collaborators, each built in exactly one cached getter.

The engine (this app's model), the chat store and the persona catalog. Tests replace
them with `engine_override()` or by clearing the caches; nothing else constructs them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from django.conf import settings

from webapp.chat import lifecycle
from webapp.chat.errors import ModelNotReadyError, ShuttingDownError
from webapp.chat.metrics import HttpMetrics, RequestStats
from webapp.chat.personas import PersonaCatalog, catalog_load
from webapp.engine.engine import Engine
from webapp.engine.registry import ModelSpec, registry_load
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, database_lock

log = logging.getLogger(__name__)

EngineState = Literal["idle", "loading", "ready", "failed"]

T = TypeVar("T")


def _built_once(build: Callable[[], T]) -> Callable[[], T]:
    """Cache `build()`'s result; concurrent first calls wait for one build.

    functools.lru_cache alone lets two threads build at once: two ChatStores would each
    have their own lock over one SQLite file, which montydb does not survive.
    """
    cached = functools.lru_cache(maxsize=1)(build)
    lock = threading.Lock()

    @functools.wraps(build)
    def get() -> T:
        with lock:
            return cached()

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


_lock = threading.Lock()
_engine: Engine | None = None
_state: EngineState = "idle"
_failure = ""


@_built_once
def model_spec_get() -> ModelSpec:
    return registry_load(settings.ENV.model_registry)[settings.APP_MODE]


@_built_once
def personas_get() -> PersonaCatalog:
    return catalog_load(settings.ENV.personas_dir, settings.APP_MODE)


@_built_once
def chat_store_get() -> ChatStore:
    config = StoreConfig(
        app=settings.APP_MODE,
        mongo_url=settings.ENV.mongo_url,
        embedded_dir=settings.ENV.var_dir / "mongo",
    )
    store = ChatStore(database_get(config), app=settings.APP_MODE, embedded=config.embedded, lock=database_lock(config))
    store.indexes_ensure()
    return store


@_built_once
def request_stats_get() -> RequestStats:
    return RequestStats()


@_built_once
def http_metrics_get() -> HttpMetrics:
    return HttpMetrics()


def engine_start_loading() -> None:
    """Check the model file now (raises RegistryError naming it), then load it on a thread."""
    global _state
    spec = model_spec_get()
    spec.check_file()
    personas_get()  # a broken persona file should stop start-up too, not the first request
    # Open the store (and create its tables) before the first request, and store the replies
    # the last process of this app left unfinished (it crashed or was killed mid-reply).
    recovered = chat_store_get().checkpoints_recover()
    if recovered:
        log.warning("stored %d reply(ies) cut short by the end of the last process, as interrupted", len(recovered))
    request_stats_get()  # uptime counts from start-up, not from the first /performance
    with _lock:
        if _state != "idle":
            return
        _state = "loading"
    threading.Thread(target=_load, args=(spec,), name="engine-loader", daemon=True).start()


def _load(spec: ModelSpec) -> None:
    global _engine, _state, _failure
    from webapp.engine.llama import LlamaEngine

    try:
        engine = LlamaEngine(spec)
    except Exception as exc:
        log.exception("model %s failed to load", spec.path)
        with _lock:
            _state, _failure = "failed", str(exc)
        return
    log.info("model %s ready (%s)", spec.alias, spec.path)
    with _lock:
        _engine, _state = engine, "ready"


def engine_status() -> tuple[EngineState, str]:
    with _lock:
        return _state, _failure


def engine_get() -> Engine:
    """This app's engine, for a new turn. Raises ModelNotReadyError while loading, and
    ShuttingDownError once the process drains (no new turns then; see webapp.chat.lifecycle)."""
    if lifecycle.draining():
        raise ShuttingDownError("this app is shutting down; retry in a few seconds", retry_after=5)
    with _lock:
        if _engine is not None:
            return _engine
        state, failure = _state, _failure
    if state == "failed":
        raise ModelNotReadyError(f"the model failed to load: {failure}", code="model_failed")
    raise ModelNotReadyError("the model is still loading; retry in a few seconds")


def engine_override(engine: Engine | None) -> None:
    """For tests: serve with `engine` (or go back to not loaded with None)."""
    global _engine, _state
    with _lock:
        _engine = engine
        _state = "ready" if engine is not None else "idle"


def grounder_get() -> Any:
    """The office app's grounder (sources from the user's documents); None in other apps."""
    if settings.APP_MODE != "office":
        return None
    from webapp.office.runtime import grounder_get as office_grounder_get

    return office_grounder_get()


def tool_runner_get() -> Any:
    """The office app's tools as its model calls them; None in other apps."""
    if settings.APP_MODE != "office":
        return None
    from webapp.office.runtime import chat_tool_runner_get

    return chat_tool_runner_get()
