"""Token buckets and concurrency gates, without the registry around them."""

from __future__ import annotations

import threading

import pytest

from webapp.tools.limits import ConcurrencyGate, GateFullError, RateLimit, RateLimiter


class FrozenClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("requests", "window_s", "burst"),
    [(0, 60.0, 1), (1, 0.0, 1), (1, -5.0, 1), (1, float("inf"), 1), (1, 60.0, 0)],
)
def test_rate_limit_rejects_nonsense(requests: int, window_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match="RateLimit"):
        RateLimit(requests=requests, window_s=window_s, burst=burst)


def test_token_take_returns_none_then_the_wait() -> None:
    clock = FrozenClock()
    limiter = RateLimiter(RateLimit(requests=2, window_s=1.0, burst=2), clock=clock)

    assert limiter.token_take("u") is None
    assert limiter.token_take("u") is None
    assert limiter.token_take("u") == pytest.approx(0.5)  # 2 tokens per second

    clock.now += 0.25
    assert limiter.token_take("u") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.token_take("u") is None


def test_status_does_not_create_buckets() -> None:
    limiter = RateLimiter(RateLimit(requests=5, window_s=10.0, burst=5), clock=FrozenClock())
    status = limiter.status_get("nobody")
    assert (status.count, status.remaining, status.reset_in_s) == (0, 5, 0.0)
    assert len(limiter) == 0


def test_full_idle_buckets_are_swept_when_there_are_too_many() -> None:
    clock = FrozenClock()
    limiter = RateLimiter(RateLimit(requests=1, window_s=10.0, burst=1), clock=clock, max_keys=3)
    for user in ("a", "b", "c"):
        assert limiter.token_take(user) is None
    assert len(limiter) == 3

    clock.now += 11.0  # a, b, c are full again and their calls have left the window
    assert limiter.token_take("d") is None
    assert len(limiter) == 1

    assert limiter.token_take("e") is None
    assert limiter.token_take("f") is None
    clock.now += 1.0
    assert limiter.token_take("g") is None  # d, e, f are busy: the sweep keeps them
    assert len(limiter) == 4
    assert limiter.token_take("d") == pytest.approx(9.0)  # d's state survived the sweep


def test_concurrent_takes_never_exceed_the_burst() -> None:
    limiter = RateLimiter(RateLimit(requests=100, window_s=1000.0, burst=100), clock=FrozenClock())
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = sum(1 for _ in range(25) if limiter.token_take("shared") is None)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sum(granted) == 100
    assert limiter.status_get("shared").count == 100


def test_gate_counts_in_flight_and_refuses_past_the_limit() -> None:
    gate = ConcurrencyGate(2)
    with gate.slot():
        with gate.slot():
            assert gate.in_flight == 2
            with pytest.raises(GateFullError), gate.slot():
                pass  # never entered
            assert gate.in_flight == 2
        assert gate.in_flight == 1
    assert gate.in_flight == 0


def test_gate_releases_the_slot_when_the_block_raises() -> None:
    gate = ConcurrencyGate(1)
    with pytest.raises(KeyError), gate.slot():
        raise KeyError("boom")
    assert gate.in_flight == 0
    with gate.slot():
        assert gate.in_flight == 1


def test_gate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyGate(0)
