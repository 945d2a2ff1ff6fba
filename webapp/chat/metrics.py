"""What this process measures: chat request counters (GET /<app>/performance) and HTTP
metrics, and the Prometheus exposition of both plus the engine's counters (GET /<app>/metrics).

The counters live here and in the engine; /metrics reads them through a prometheus-client
collector (`ChatCollector`) registered in a registry of its own (never the process-wide
default one) and rendered by prometheus-client's `generate_latest`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from webapp.engine.llama import EngineStats


@dataclass(frozen=True)
class StatsSnapshot:
    total_requests: int
    successful_requests: int
    failed_requests: int
    active_requests: int
    avg_response_time: float
    success_rate: float
    uptime_seconds: float


class RequestStats:
    """Thread-safe counters for chat requests (the Llama endpoint and, later, WebSocket turns)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started_at = time.monotonic()
        self._total = 0
        self._ok = 0
        self._failed = 0
        self._active = 0
        self._ok_seconds = 0.0

    def request_started(self) -> None:
        with self._lock:
            self._total += 1
            self._active += 1

    def request_finished(self, *, ok: bool, seconds: float) -> None:
        with self._lock:
            self._active -= 1
            if ok:
                self._ok += 1
                self._ok_seconds += seconds
            else:
                self._failed += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            finished = self._ok + self._failed
            return StatsSnapshot(
                total_requests=self._total,
                successful_requests=self._ok,
                failed_requests=self._failed,
                active_requests=self._active,
                avg_response_time=round(self._ok_seconds / self._ok, 4) if self._ok else 0.0,
                success_rate=round(self._ok / finished, 4) if finished else 0.0,
                uptime_seconds=round(time.monotonic() - self._started_at, 1),
            )


# Seconds; the buckets of the HTTP duration histogram (time until the response headers).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HttpMetrics:
    """Thread-safe counters and a duration histogram per (route, method, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._durations: dict[str, list[float]] = {}  # route -> [cumulative bucket counts..., sum, count]

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            row = self._durations.setdefault(route, [0.0] * (len(HTTP_BUCKETS) + 2))
            for i, bound in enumerate(HTTP_BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += seconds
            row[-1] += 1

    def metric_families(self, app: str) -> list[Metric]:
        """The request counter and the duration histogram as they are now, labelled with `app`."""
        with self._lock:
            counts = dict(self._counts)
            durations = {route: list(row) for route, row in self._durations.items()}
        requests = CounterMetricFamily(
            "personachat_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            labels=("app", "route", "method", "status"),
        )
        for (route, method, status), n in sorted(counts.items()):
            requests.add_metric((app, route, method, status), n)
        duration = HistogramMetricFamily(
            "personachat_http_request_duration_seconds",
            "Time until the response headers, by route.",
            labels=("app", "route"),
        )
        for route, row in sorted(durations.items()):
            buckets = [(f"{bound:g}", n) for bound, n in zip(HTTP_BUCKETS, row, strict=False)]
            duration.add_metric((app, route), [*buckets, ("+Inf", row[-1])], sum_value=row[-2])
        return [requests, duration]


class EngineStatsSource(Protocol):
    """What /metrics needs of the engine (webapp.engine.llama.LlamaEngine)."""

    def stats(self) -> EngineStats: ...


GAUGE, COUNTER = GaugeMetricFamily, CounterMetricFamily
Kind = type[GaugeMetricFamily | CounterMetricFamily]

# (name, kind, HELP text, StatsSnapshot field)
CHAT_METRICS: tuple[tuple[str, Kind, str, str], ...] = (
    ("personachat_chat_requests_total", COUNTER, "Chat turns started (REST, WebSocket, OpenAI).", "total_requests"),
    ("personachat_chat_requests_failed_total", COUNTER, "Chat turns that failed.", "failed_requests"),
    ("personachat_chat_requests_active", GAUGE, "Chat turns in progress.", "active_requests"),
)
# (name, kind, HELP text, EngineStats field, divisor to the metric's unit)
ENGINE_METRICS: tuple[tuple[str, Kind, str, str, int], ...] = (
    ("personachat_engine_slots", GAUGE, "Slots (sequences decoded together).", "slots", 1),
    ("personachat_engine_busy_slots", GAUGE, "Slots generating now.", "busy_slots", 1),
    ("personachat_engine_queue_depth", GAUGE, "Requests waiting for a slot.", "queue_depth", 1),
    ("personachat_engine_estimated_wait_seconds", GAUGE, "Estimated wait for a slot.", "estimated_wait_s", 1),
    ("personachat_engine_tokens_per_second", GAUGE, "Measured decode rate of the batch.", "tokens_per_s", 1),
    ("personachat_engine_ttft_p50_seconds", GAUGE, "Median time to first token.", "ttft_p50_ms", 1000),
    ("personachat_engine_ttft_p95_seconds", GAUGE, "95th percentile time to first token.", "ttft_p95_ms", 1000),
    ("personachat_engine_prompt_tokens_total", COUNTER, "Prompt tokens of admitted requests.", "prompt_tokens", 1),
    (
        "personachat_engine_prompt_tokens_reused_total",
        COUNTER,
        "Prompt tokens found in a slot's KV cache (not evaluated).",
        "prompt_tokens_reused",
        1,
    ),
    ("personachat_engine_completion_tokens_total", COUNTER, "Tokens generated.", "completion_tokens", 1),
    ("personachat_engine_requests_refused_total", COUNTER, "Requests refused with 429.", "requests_refused", 1),
    ("personachat_engine_decode_steps_total", COUNTER, "llama_decode calls.", "decode_steps", 1),
)


# (name, kind, HELP text, prefix-cache summary field, divisor to the metric's unit)
PREFIX_CACHE_METRICS: tuple[tuple[str, Kind, str, str, int], ...] = (
    ("personachat_engine_prefix_cache_entries", GAUGE, "Persona prefixes whose KV state is kept.", "entries", 1),
    ("personachat_engine_prefix_cache_bytes", GAUGE, "Host memory the kept prefixes take.", "bytes", 1),
    ("personachat_engine_prefix_cache_limit_bytes", GAUGE, "The prefix cache's memory limit.", "limit_bytes", 1),
    ("personachat_engine_prefix_cache_hits_total", COUNTER, "Requests started from a kept prefix.", "hits", 1),
    ("personachat_engine_prefix_cache_misses_total", COUNTER, "Requests that evaluated a prefix.", "misses", 1),
    ("personachat_engine_prefix_cache_evictions_total", COUNTER, "Prefixes evicted for room.", "evictions", 1),
    (
        "personachat_engine_prefix_tokens_restored_total",
        COUNTER,
        "Prompt tokens copied from the prefix cache instead of evaluated.",
        "tokens_restored",
        1,
    ),
    (
        "personachat_engine_prefix_restore_seconds_total",
        COUNTER,
        "Time spent copying prefixes into slots.",
        "restore_ms",
        1000,
    ),
    (
        "personachat_engine_prefix_save_seconds_total",
        COUNTER,
        "Time spent copying prefixes out of slots.",
        "save_ms",
        1000,
    ),
)


def prefix_cache_summary(engine: EngineStats) -> dict[str, float] | None:
    """The prefix cache as /performance shows it (and /metrics exports it); None when it is off."""
    cache = engine.prefix_cache
    if cache is None:
        return None
    lookups = cache.hits + cache.misses
    restored = engine.prefix_tokens_restored
    return {
        **cache.__dict__,
        "hit_ratio": round(cache.hits / lookups, 4) if lookups else 0.0,
        "tokens_restored": restored,
        "restore_ms": engine.prefix_restore_ms,
        "restore_ms_per_token": round(engine.prefix_restore_ms / restored, 4) if restored else 0.0,
        "save_ms": engine.prefix_save_ms,
    }


class ChatCollector(Collector):
    """One app's measurements for prometheus-client: chat requests, the engine, HTTP.

    Every `collect()` reads the current values: the request counters' snapshot it was
    given, `engine.stats()` (engine None while the model loads: personachat_model_ready 0
    and no engine metrics) and the HTTP counters.
    """

    def __init__(
        self, *, app: str, model: str, stats: StatsSnapshot, engine: EngineStatsSource | None, http: HttpMetrics
    ) -> None:
        self._app = app
        self._model = model
        self._stats = stats
        self._engine = engine
        self._http = http

    def collect(self) -> Iterator[Metric]:
        app = self._app
        for name, kind, help_text, field in CHAT_METRICS:
            yield _family(kind, name, help_text, getattr(self._stats, field), app=app)
        ready = 0 if self._engine is None else 1
        yield _family(
            GAUGE, "personachat_model_ready", "1 once the model is loaded.", ready, app=app, model=self._model
        )
        if self._engine is not None:
            engine_stats = self._engine.stats()
            for name, kind, help_text, field, divisor in ENGINE_METRICS:
                yield _family(kind, name, help_text, getattr(engine_stats, field) / divisor, app=app)
            prefix_cache = prefix_cache_summary(engine_stats)
            for name, kind, help_text, field, divisor in PREFIX_CACHE_METRICS if prefix_cache else ():
                yield _family(kind, name, help_text, prefix_cache[field] / divisor, app=app)
        yield from self._http.metric_families(app)


def _family(kind: Kind, name: str, help_text: str, value: float, **labels: str) -> Metric:
    family = kind(name, help_text, labels=tuple(labels))
    family.add_metric(tuple(labels.values()), value)
    return family


def prometheus_text(
    *, app: str, model: str, stats: StatsSnapshot, engine: EngineStatsSource | None, http: HttpMetrics
) -> str:
    """The whole /metrics page in Prometheus' text format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)  # ours alone: never prometheus-client's global REGISTRY
    registry.register(ChatCollector(app=app, model=model, stats=stats, engine=engine, http=http))
    return generate_latest(registry).decode("utf-8")
