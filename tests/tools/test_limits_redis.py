"""Rate limits and concurrency caps in Redis, shared by replicas: a real redis-server (Debian's,
installed by `make test-deps`) on a free port, and two limiters standing for two processes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import free_port
from webapp.tools.limits import GateFullError, RateLimit, RedisConcurrencyGate, RedisLimits, RedisRateLimiter

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    if not shutil.which(REDIS_SERVER):
        pytest.skip("Debian's redis-server is missing: `make test-deps` installs it")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connection = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            connection.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield connection
    server.terminate()
    server.wait(timeout=10)


def two_replicas(client: redis.Redis, limit: RateLimit, name: str) -> tuple[RedisRateLimiter, RedisRateLimiter]:
    return (
        RedisLimits(client, prefix=f"test-{name}").rate_limiter("notes", limit),
        RedisLimits(redis.Redis(connection_pool=client.connection_pool), prefix=f"test-{name}").rate_limiter(
            "notes", limit
        ),
    )


def test_replicas_draw_from_one_bucket(client):
    first, second = two_replicas(client, RateLimit(requests=10, window_s=10, burst=3), "bucket")
    assert first.token_take("alice") is None
    assert second.token_take("alice") is None
    assert first.token_take("alice") is None
    wait = second.token_take("alice")  # the burst of 3 is used up, whichever replica took it
    assert wait is not None and 0 < wait <= 1.0  # one token per second refills
    assert first.token_take("bob") is None, "another user has a bucket of their own"
    status = second.status_get("alice")
    assert (status.count, status.remaining, status.burst, status.limit) == (3, 0, 3, 10)
    time.sleep(wait + 0.05)
    assert first.token_take("alice") is None, "refilled"


def test_status_does_not_take_and_an_unknown_user_is_full(client):
    first, _ = two_replicas(client, RateLimit(requests=5, window_s=5, burst=2), "status")
    for _ in range(3):
        assert first.status_get("carol").remaining == 2
    assert first.status_get("carol").count == 0


def test_replicas_share_one_concurrency_cap_and_a_dead_holders_slot_expires(client):
    first = RedisConcurrencyGate(1, client=client, key="test-gate")
    second = RedisConcurrencyGate(1, client=client, key="test-gate")
    with first.slot():
        assert second.in_flight == 1
        with pytest.raises(GateFullError), second.slot():
            pass
    with second.slot():
        assert first.in_flight == 1
    assert first.in_flight == 0
    # A process that died holding a slot never releases it: its lease ends instead.
    dying = RedisConcurrencyGate(1, client=client, key="test-lease", lease_s=0.5)
    holder = dying.slot()
    holder.__enter__()  # never exited, like a killed process (the reference keeps it from being closed)
    survivor = RedisConcurrencyGate(1, client=client, key="test-lease")
    with pytest.raises(GateFullError), survivor.slot():
        pass
    time.sleep(0.6)
    with survivor.slot():
        assert survivor.in_flight == 1
