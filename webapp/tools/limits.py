"""Per-user rate limits and per-tool concurrency caps for tool calls.

`RateLimiter` keeps one token bucket per user for one tool: the bucket holds at most
`burst` tokens and refills at `requests / window_s` tokens per second, so a user can make
`burst` calls at once and about `requests` calls per window over time. Next to each bucket
a sliding log of call times answers "how many calls in the current window" for status
displays; the bucket alone decides whether a call may go ahead.

`ConcurrencyGate` caps how many calls of one tool run at the same time across all users.
It never waits: a call that finds the gate full is refused at once, so a slow tool cannot
pile up worker threads.

Two backends, one behaviour: `MemoryLimits` keeps the buckets and gates in this process
(one process per app: the embedded default), `RedisLimits` keeps them in Redis, so that
every replica of the app draws from the same bucket and counts against the same cap
(REDIS_URL; docker-compose runs one). The Redis versions do each check-and-take in one Lua
script, timed by the Redis server's own clock, so replicas never race or disagree on the
time. A gate's slot in Redis is a lease: a process that dies holding one frees it after
GATE_LEASE_S instead of never. Restarting the app forgets in-memory buckets.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

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


def _status(limit: RateLimit, *, tokens: float, count: int, wall_now: float) -> RateStatus:
    """A bucket's standing, whichever backend keeps it."""
    reset_in_s = (limit.burst - tokens) / limit.refill_per_s
    return RateStatus(
        count=count,
        limit=limit.requests,
        window_s=limit.window_s,
        burst=limit.burst,
        # A tiny epsilon keeps float drift (2.9999999) from hiding a whole token.
        remaining=math.floor(tokens + 1e-9),
        reset_in_s=reset_in_s,
        reset_at=datetime.fromtimestamp(wall_now + reset_in_s, tz=UTC),
    )


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
        return _status(self.limit, tokens=tokens, count=count, wall_now=wall_now)

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


class RateLimiterLike(Protocol):
    limit: RateLimit

    def token_take(self, key: str) -> float | None: ...

    def status_get(self, key: str) -> RateStatus: ...


class GateLike(Protocol):
    limit: int

    @property
    def in_flight(self) -> int: ...

    def slot(self) -> AbstractContextManager[None]: ...


class LimitsBackend(Protocol):
    """Where the tools' rate limits and concurrency caps live (see the module docstring)."""

    def rate_limiter(self, tool: str, limit: RateLimit) -> RateLimiterLike: ...

    def gate(self, tool: str, limit: int) -> GateLike: ...


class MemoryLimits:
    """In this process: right for one process per app."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock

    def rate_limiter(self, tool: str, limit: RateLimit) -> RateLimiter:
        return RateLimiter(limit, clock=self._clock, wall_clock=self._wall_clock)

    def gate(self, tool: str, limit: int) -> ConcurrencyGate:
        return ConcurrencyGate(limit)


# --- Redis ------------------------------------------------------------------------------

GATE_LEASE_S = 300.0  # a slot held longer than this by a dead process is free again

# KEYS: bucket hash, calls zset. ARGV: burst, refill/s, window_s, take (1|0), call id.
# Returns tokens left, seconds until a token (0 when taken), calls in the window, server time.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local burst, rate, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated') or now)
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local wait = 0
if ARGV[4] == '1' then
  if tokens >= 1 then
    tokens = tokens - 1
    redis.call('ZADD', KEYS[2], now, ARGV[5])
  else
    wait = (1 - tokens) / rate
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
local ttl = math.ceil(math.max(window, burst / rate)) + 1
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {tostring(tokens), tostring(wait), redis.call('ZCARD', KEYS[2]), tostring(now)}
"""

# KEYS: the gate's zset (member: slot id, score: lease end). ARGV: limit, lease_s, slot id.
_GATE_ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return -held end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
return held + 1
"""


class RedisRateLimiter:
    """RateLimiter's token bucket in Redis: one bucket per (tool, user) for every replica."""

    def __init__(self, limit: RateLimit, *, client: Any, key: str, wall_clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._client = client
        self._key = key
        self._wall_clock = wall_clock
        self._script = client.register_script(_BUCKET)

    def _run(self, user: str, *, take: bool) -> tuple[float, float, int]:
        keys = [f"{self._key}:{user}:bucket", f"{self._key}:{user}:calls"]
        args = [self.limit.burst, self.limit.refill_per_s, self.limit.window_s, 1 if take else 0, uuid.uuid4().hex]
        tokens, wait, calls, _ = self._script(keys=keys, args=args)
        return float(tokens), float(wait), int(calls)

    def token_take(self, key: str) -> float | None:
        _, wait, _ = self._run(key, take=True)
        return wait or None

    def status_get(self, key: str) -> RateStatus:
        tokens, _, count = self._run(key, take=False)
        return _status(self.limit, tokens=tokens, count=count, wall_now=self._wall_clock())


class RedisConcurrencyGate:
    """ConcurrencyGate in Redis: at most `limit` calls of one tool at once across every replica."""

    def __init__(self, limit: int, *, client: Any, key: str, lease_s: float = GATE_LEASE_S) -> None:
        if limit < 1:
            raise ValueError(f"concurrency limit must be at least 1, got {limit}")
        self.limit = limit
        self._client = client
        self._key = key
        self._lease_s = lease_s
        self._enter = client.register_script(_GATE_ENTER)

    @property
    def in_flight(self) -> int:
        return int(self._client.zcount(self._key, f"({self._client.time()[0]}", "+inf"))

    @contextmanager
    def slot(self) -> Iterator[None]:
        token = uuid.uuid4().hex
        held = int(self._enter(keys=[self._key], args=[self.limit, self._lease_s, token]))
        if held < 0:
            raise GateFullError(f"{-held} of {self.limit} slots in use")
        try:
            yield
        finally:
            self._client.zrem(self._key, token)


class RedisLimits:
    """In Redis (REDIS_URL): shared by every replica of the app. Keys start with `prefix`."""

    def __init__(self, client: Any, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def rate_limiter(self, tool: str, limit: RateLimit) -> RedisRateLimiter:
        return RedisRateLimiter(limit, client=self._client, key=f"{self._prefix}:rate:{tool}")

    def gate(self, tool: str, limit: int) -> RedisConcurrencyGate:
        return RedisConcurrencyGate(limit, client=self._client, key=f"{self._prefix}:gate:{tool}")
