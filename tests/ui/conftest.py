"""The browser every UI test drives: Debian's chromium through Playwright (never a downloaded one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.auth import Visitor, visitor_create
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: `make test-deps` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def visitor(stack: Stack, gateway: str) -> Visitor:
    """The person at the browser in the office UI tests: an account of their own."""
    return visitor_create(stack, gateway)


@pytest.fixture
def user_id(visitor: Visitor) -> str:
    """The user the UI tests read and write through the API: the visitor's own account
    (a personal key may name only itself)."""
    return visitor.username


@pytest.fixture
def http(visitor: Visitor) -> Iterator[requests.Session]:
    """A requests session acting as the visitor (their personal key)."""
    with requests.Session() as session:
        session.headers.update(visitor.auth)
        yield session
