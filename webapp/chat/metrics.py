"""What this process measures: chat request counters (GET /<app>/performance) and HTTP
metrics, and the Prometheus text of both plus the engine's counters (GET /<app>/metrics)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


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
        self._durations: dict[str, list[float]] = {}  # route -> [bucket counts..., sum, count]

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

    def prometheus_lines(self, app: str) -> list[str]:
        with self._lock:
            counts = dict(self._counts)
            durations = {route: list(row) for route, row in self._durations.items()}
        lines = [
            "# HELP personachat_http_requests_total HTTP requests answered, by route, method and status.",
            "# TYPE personachat_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(counts.items()):
            labels = _labels(app=app, route=route, method=method, status=status)
            lines.append(f"personachat_http_requests_total{labels} {n}")
        lines += [
            "# HELP personachat_http_request_duration_seconds Time until the response headers, by route.",
            "# TYPE personachat_http_request_duration_seconds histogram",
        ]
        for route, row in sorted(durations.items()):
            for bound, n in zip(HTTP_BUCKETS, row, strict=False):
                labels = _labels(app=app, route=route, le=f"{bound:g}")
                lines.append(f"personachat_http_request_duration_seconds_bucket{labels} {n:g}")
            labels = _labels(app=app, route=route, le="+Inf")
            lines.append(f"personachat_http_request_duration_seconds_bucket{labels} {row[-1]:g}")
            lines.append(f"personachat_http_request_duration_seconds_sum{_labels(app=app, route=route)} {row[-2]:.6f}")
            lines.append(f"personachat_http_request_duration_seconds_count{_labels(app=app, route=route)} {row[-1]:g}")
        return lines


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def prometheus_text(*, app: str, model: str, stats: StatsSnapshot, engine: Any | None, http: HttpMetrics) -> str:
    """The whole /metrics page in Prometheus' text format (version 0.0.4)."""
    base = {"app": app}
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float, **labels: str) -> None:
        lines.extend(
            [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{_labels(**base, **labels)} {value:g}"]
        )

    metric(
        "personachat_chat_requests_total",
        "counter",
        "Chat turns started (REST, WebSocket, OpenAI).",
        stats.total_requests,
    )
    metric("personachat_chat_requests_failed_total", "counter", "Chat turns that failed.", stats.failed_requests)
    metric("personachat_chat_requests_active", "gauge", "Chat turns in progress.", stats.active_requests)
    metric("personachat_model_ready", "gauge", "1 once the model is loaded.", 1 if engine else 0, model=model)
    if engine is not None:
        s = engine.stats()
        metric("personachat_engine_slots", "gauge", "Slots (sequences decoded together).", s.slots)
        metric("personachat_engine_busy_slots", "gauge", "Slots generating now.", s.busy_slots)
        metric("personachat_engine_queue_depth", "gauge", "Requests waiting for a slot.", s.queue_depth)
        metric("personachat_engine_estimated_wait_seconds", "gauge", "Estimated wait for a slot.", s.estimated_wait_s)
        metric("personachat_engine_tokens_per_second", "gauge", "Measured decode rate of the batch.", s.tokens_per_s)
        metric("personachat_engine_ttft_p50_seconds", "gauge", "Median time to first token.", s.ttft_p50_ms / 1000)
        metric(
            "personachat_engine_ttft_p95_seconds", "gauge", "95th percentile time to first token.", s.ttft_p95_ms / 1000
        )
        metric(
            "personachat_engine_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", s.prompt_tokens
        )
        metric(
            "personachat_engine_prompt_tokens_reused_total",
            "counter",
            "Prompt tokens found in a slot's KV cache (not evaluated).",
            s.prompt_tokens_reused,
        )
        metric("personachat_engine_completion_tokens_total", "counter", "Tokens generated.", s.completion_tokens)
        metric("personachat_engine_requests_refused_total", "counter", "Requests refused with 429.", s.requests_refused)
        metric("personachat_engine_decode_steps_total", "counter", "llama_decode calls.", s.decode_steps)
    lines += http.prometheus_lines(app)
    return "\n".join(lines) + "\n"
