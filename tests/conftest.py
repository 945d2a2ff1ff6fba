"""Shared fixtures: the real stack (nginx + both daphne apps + the default model) on free ports.

Tests talk to it over HTTP exactly as users do. A test registry points at the same GGUF
file as models/registry.toml but caps replies at a few dozen tokens, so the suite stays
fast on two cores without replacing the model.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.auth import account_create, bearer, key_create
from tests.searxng_stub import SearxngStub
from webapp.config.env import REPO_ROOT
from webapp.launcher.ports import free_port
from webapp.launcher.stack import Stack, StackConfig, registry_derive

TEST_MAX_TOKENS = 48
# The limits profile of the shared test stack: every test signs in from 127.0.0.1, so the
# per-address sign-in limit is a test-sized one. Per-username limits stay as shipped; tests
# that check a limit set their own.
TEST_LIMITS = {
    "SIGNIN_RATE_PER_IP": "1000/m",
    # Chat and uploads: most tests act through one service key's account (service_key below),
    # from 127.0.0.1; tests of these limits (tests/accounts/test_limits.py) run a stack with
    # small ones.
    "TURN_RATE_PER_ACCOUNT": "100000/m",
    "TURN_RATE_PER_IP": "100000/m",
    "GENERATIONS_PER_ACCOUNT": "1000",
    "DAILY_TOKEN_QUOTA": "0",
    "UPLOAD_RATE_PER_ACCOUNT": "100000/h",
    "TOOL_CALL_RATE_PER_ACCOUNT": "100000/m",
    "GATEWAY_SIGNIN_RATE": "10000r/s",
    "GATEWAY_CHAT_RATE": "10000r/s",
    "GATEWAY_CHAT_BURST": "10000",
}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI installs everything tests need."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; skips are failures in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def test_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("models") / "registry.toml",
        max_tokens=TEST_MAX_TOKENS,
        ignore_eos=True,  # every reply is TEST_MAX_TOKENS long: there is always something to stop
    )


@contextmanager
def stack_running(var_dir: Path, registry: Path, **config: Any) -> Iterator[Stack]:
    """Start nginx + office + character on free ports, with the tests' limits profile
    (TEST_LIMITS, under what `extra_env` sets); stop them all afterwards."""
    extra_env = {**TEST_LIMITS, **config.pop("extra_env", {})}
    running = Stack(
        StackConfig(
            gateway_port=free_port(),
            office_port=free_port(),
            character_port=free_port(),
            var_dir=var_dir,
            registry=registry,
            extra_env=extra_env,
            **config,
        )
    )
    try:
        running.start(timeout=120)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def searxng() -> Iterator[SearxngStub]:
    stub = SearxngStub()
    yield stub
    stub.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, test_registry: Path, searxng: SearxngStub) -> Iterator[Stack]:
    """nginx + office + character, each a real process, with the embedded store in a temp dir.

    Web search goes to a local SearxNG stand-in.
    """
    extra_env = {"SEARXNG_URL": searxng.url}
    with stack_running(tmp_path_factory.mktemp("var"), test_registry, extra_env=extra_env) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.gateway_port}"


@pytest.fixture(scope="session")
def service_key(stack: Stack) -> str:
    """The API key most tests act through: a `service` key of an account of their own, so that
    each test's `user_id` is one of its end users, kept apart from every other (tests.auth)."""
    return key_create(stack, account_create(stack, prefix="tests"), scope="service")


@pytest.fixture(scope="session")
def auth(service_key: str) -> dict[str, str]:
    """The Authorization header of `service_key`, for WebSocket handshakes and plain requests."""
    return bearer(service_key)


@pytest.fixture
def http(auth: dict[str, str]) -> Iterator[requests.Session]:
    """A requests session that sends the service key."""
    with requests.Session() as session:
        session.headers.update(auth)
        yield session


@pytest.fixture
def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def db_id() -> str:
    return str(uuid.uuid4())
