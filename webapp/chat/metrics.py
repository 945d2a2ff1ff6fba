"""Request counters behind GET /<app>/performance, measured in this process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


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
