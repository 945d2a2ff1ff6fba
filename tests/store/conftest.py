"""Fixtures of the store's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webapp.store.client import database_get, message_log_get


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """The process-wide database handles and message logs built anew for the test (each
    test's store lives in its own tmp_path), and dropped after it."""
    database_get.cache_clear()
    message_log_get.cache_clear()
    yield
    database_get.cache_clear()
    message_log_get.cache_clear()
