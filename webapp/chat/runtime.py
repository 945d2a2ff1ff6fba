"""The process's long-lived collaborators, each built in exactly one cached getter.

The engine (this app's model), the chat store and the persona catalog. Tests replace
them with `engine_override()` or by clearing the caches; nothing else constructs them.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from django.conf import settings

from webapp.chat import lifecycle
from webapp.chat.errors import ModelNotReadyError, ShuttingDownError
from webapp.chat.metrics import HttpMetrics, RequestStats
from webapp.chat.personas import Persona, PersonaCatalog, catalog_load
from webapp.chat.search import MessageIndexer
from webapp.chat.turns import Grounder, ToolRunner, TurnDeps
from webapp.engine.cpu_share import CpuShare
from webapp.engine.engine import Engine
from webapp.engine.registry import APPS, ModelSpec, registry_load
from webapp.retrieval.lexical import TermExtractor
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, database_lock, embedded_claim, message_log_get

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


def store_config() -> StoreConfig:
    return StoreConfig(
        app=settings.APP_MODE, mongo_url=settings.ENV.mongo_url, embedded_dir=settings.ENV.var_dir / "mongo"
    )


@_built_once
def chat_store_get() -> ChatStore:
    config = store_config()
    store = ChatStore(
        database_get(config),
        app=settings.APP_MODE,
        embedded=config.embedded,
        messages=message_log_get(config),
        lock=database_lock(config),
    )
    store.indexes_ensure()
    return store


@_built_once
def term_extractor_get() -> TermExtractor:
    """The process's one Kiwi (about 500 MB, a second or two to build): conversation search
    and, in the office app, document retrieval share it."""
    return TermExtractor()


@_built_once
def message_indexer_get() -> MessageIndexer:
    return MessageIndexer(chat_store_get(), lambda: term_extractor_get().terms)


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
    # This process serves the app: an embedded store must not be served by another one too.
    embedded_claim(store_config())
    # Open the store (and create its tables) before the first request, and store the replies
    # the last process of this app left unfinished (it crashed or was killed mid-reply).
    store = chat_store_get()
    moved = store.messages_adopt()
    if moved:
        log.warning("moved %d stored message(s) from montydb into the indexed message log", moved)
    recovered = store.checkpoints_recover()
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
        engine = LlamaEngine(spec, cpu_share=_cpu_share(spec))
    except Exception as exc:
        log.exception("model %s failed to load", spec.path)
        with _lock:
            _state, _failure = "failed", str(exc)
        return
    log.info("model %s ready (%s)", spec.alias, spec.path)
    with _lock:
        _engine, _state = engine, "ready"


def _cpu_share(spec: ModelSpec) -> CpuShare | None:
    """This app's place in the CPU budget the launcher set up for models on one CPU, if any."""
    path = settings.ENV.cpu_share_file
    if path is None or spec.n_gpu_layers != 0:
        return None
    return CpuShare(path, member=APPS.index(spec.app), members=len(APPS), cores=spec.cpu_threads)


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


@dataclass(frozen=True)
class AppWiring:
    """What this process's app adds to the chat, decided in one place: webapp.config.wiring.

    The chat app never imports the office app; the office app hands its grounder and tool
    runner (and its own routes and start-up) in through this record.
    """

    ui: str  # which chat page: "office" (documents, sources, tools) or "character"
    llama_view: Any  # the DRF view of POST /<app>/Llama
    turn_serializer: Any  # validates a turn (REST and WebSocket alike)
    regenerate_serializer: Any
    grounder_get: Callable[[], Grounder | None] = lambda: None
    tools_get: Callable[[], ToolRunner | None] = lambda: None
    # What else the app removes when an account is deleted (the office: documents, notes…),
    # given the account's owner key; how many of each it removed.
    owner_purge: Callable[[str], dict[str, int]] | None = None
    # A persona by (owner key, id) when the app keeps characters per account (the character
    # app: the built-in personas and the owner's own characters); None: personas/ only.
    persona_get: Callable[[str, str], Persona | None] | None = None
    # Model names /v1/models lists besides the chat model and personas (the office's
    # embedding model, which its /v1/embeddings serves).
    models_extra: Callable[[], tuple[str, ...]] = lambda: ()


_wiring: AppWiring | None = None


def wiring_install(wiring: AppWiring) -> None:
    global _wiring
    _wiring = wiring


def wiring_get() -> AppWiring:
    if _wiring is None:
        raise RuntimeError("no app wiring installed: settings.APP_WIRING runs at start-up (webapp.chat.apps)")
    return _wiring


def turn_deps() -> TurnDeps:
    """The collaborators of a stored turn in this process. Raises ModelNotReadyError while loading."""
    wiring = wiring_get()
    return TurnDeps(
        engine=engine_get(), store=chat_store_get(), grounder=wiring.grounder_get(), tools=wiring.tools_get()
    )


_sockets_lock = threading.Lock()
_sockets_open = 0


def websocket_opened(delta: int) -> None:
    """A chat WebSocket opened (+1) or closed (-1); /performance reports active_connections."""
    global _sockets_open
    with _sockets_lock:
        _sockets_open += delta


def websockets_open() -> int:
    with _sockets_lock:
        return _sockets_open


class CountedRequest:
    """One chat request counted for /performance, whatever its outcome: the one place that counts.

    Start it before parsing the request; `succeeded()` once the reply is out; the request
    ends at `finish` (or when the `with` block is left). A request that fails or raises is
    counted as failed and never stays active. Used by every chat interface (REST, WebSocket,
    the OpenAI API).
    """

    def __init__(self) -> None:
        self._stats = request_stats_get()
        self._stats.request_started()
        self._began = time.perf_counter()
        self._ok = False
        self._finished = False

    def succeeded(self) -> None:
        self._ok = True

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._stats.request_finished(ok=self._ok, seconds=time.perf_counter() - self._began)

    def __enter__(self) -> CountedRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
