"""Per-user rate limits and per-tool concurrency caps for tool calls.

`RateLimiter` keeps one token bucket per user for one tool: the bucket holds at most
`burst` tokens and refills at `requests / window_s` tokens per second, so a user can make
`burst` calls at once and about `requests` calls per window over time. Next to each bucket
a sliding log of call times answers "how many calls in the current window" for status
displays; the bucket alone decides whether a call may go ahead.

`ConcurrencyGate` caps how many calls of one tool run at the same time across all users.
It never waits: a call that finds the gate full is refused at once, so a slow tool cannot
pile up worker threads.

All of this state is in-process memory. That is correct only because each app runs as a
single daphne worker (see README): with several workers, each would keep its own buckets
and a user would get the limits once per worker. Restarting the app forgets every bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Above this many buckets, the next new key triggers a sweep of buckets that are full and
# idle; such a bucket is indistinguishable from a fresh one, so dropping it loses nothing.
MAX_KEYS_BEFORE_SWEEP = 10_000


@dataclass(frozen=True)
class RateLimit:
    """A tool's per-user rate limit."""

    requests: int  # calls allowed per window, per user
    window_s: float
    burst: int  # most calls at once: the token bucket's capacity

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"RateLimit.requests must be at least 1, got {self.requests}")
        if not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise ValueError(f"RateLimit.window_s must be a positive number of seconds, got {self.window_s}")
        if self.burst < 1:
            raise ValueError(f"RateLimit.burst must be at least 1, got {self.burst}")

    @property
    def refill_per_s(self) -> float:
        return self.requests / self.window_s


@dataclass(frozen=True)
class RateStatus:
    """One user's standing against one tool's limit, as of `RateLimiter.status_get()`."""

    count: int  # calls in the current (sliding) window
    limit: int  # RateLimit.requests
    window_s: float
    burst: int
    remaining: int  # whole tokens left: calls that would be allowed right now
    reset_in_s: float  # seconds until the bucket is full again
    reset_at: datetime  # wall-clock time (UTC) when the bucket is full again


@dataclass
class _Bucket:
    tokens: float
    updated: float  # monotonic time of the last refill
    calls: deque[float] = field(default_factory=deque)  # monotonic times of calls in the window


class RateLimiter:
    """Token buckets keyed by user id, for one tool. Thread-safe.

    `clock` must be monotonic (it measures refill); `wall_clock` only turns "full again in
    N seconds" into a timestamp for clients.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_keys: int = MAX_KEYS_BEFORE_SWEEP,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_keys = max_keys
        self._sweep_above = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def token_take(self, key: str) -> float | None:
        """Take one token from `key`'s bucket.

        Return None when the call may go ahead, else the seconds until a token will be
        available (nothing is taken then).
        """
        with self._lock:
            now = self._clock()
            bucket = self._bucket_get(key, now)
            self._bucket_refill(bucket, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.calls.append(now)
                return None
            return (1.0 - bucket.tokens) / self.limit.refill_per_s

    def status_get(self, key: str) -> RateStatus:
        """Report `key`'s standing without taking a token (and without creating a bucket)."""
        with self._lock:
            now = self._clock()
            wall_now = self._wall_clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                tokens, count = float(self.limit.burst), 0
            else:
                self._bucket_refill(bucket, now)
                tokens, count = bucket.tokens, len(bucket.calls)
        reset_in_s = (self.limit.burst - tokens) / self.limit.refill_per_s
        return RateStatus(
            count=count,
            limit=self.limit.requests,
            window_s=self.limit.window_s,
            burst=self.limit.burst,
            # A tiny epsilon keeps float drift (2.9999999) from hiding a whole token.
            remaining=math.floor(tokens + 1e-9),
            reset_in_s=reset_in_s,
            reset_at=datetime.fromtimestamp(wall_now + reset_in_s, tz=UTC),
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def _bucket_get(self, key: str, now: float) -> _Bucket:
        """Call with the lock held."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_above:
                self._buckets_sweep(now)
            bucket = _Bucket(tokens=float(self.limit.burst), updated=now)
            self._buckets[key] = bucket
        return bucket

    def _bucket_refill(self, bucket: _Bucket, now: float) -> None:
        """Call with the lock held. Also forgets calls that have left the window."""
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.limit.burst), bucket.tokens + elapsed * self.limit.refill_per_s)
        bucket.updated = now
        window_start = now - self.limit.window_s
        while bucket.calls and bucket.calls[0] <= window_start:
            bucket.calls.popleft()

    def _buckets_sweep(self, now: float) -> None:
        """Call with the lock held. Drop full, idle buckets.

        If most buckets are busy the sweep frees little; raising the next threshold to twice
        what is left keeps sweeps amortised O(1) per new key instead of O(n) every time.
        """
        for key in list(self._buckets):
            bucket = self._buckets[key]
            self._bucket_refill(bucket, now)
            if bucket.tokens >= self.limit.burst and not bucket.calls:
                del self._buckets[key]
        self._sweep_above = max(self._max_keys, 2 * len(self._buckets))


class GateFullError(Exception):
    """The concurrency gate has no free slot."""


class ConcurrencyGate:
    """At most `limit` calls inside at once; never blocks. Thread-safe."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"concurrency limit must be at least 1, got {limit}")
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls holding a slot right now."""
        with self._lock:
            return self._in_flight

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the `with` block; raise GateFullError at once when none is free."""
        with self._lock:
            if self._in_flight >= self.limit:
                raise GateFullError(f"{self._in_flight} of {self.limit} slots in use")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
