"""Accounts in a real browser: the first admin from the printed setup link, an API key, sign-out,
a wrong password, sign-in, and a second person's sign-up waiting for approval.

This module runs its own stack, so it starts with no admin and its launcher holds the link.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import stack_running
from tests.ui.conftest import SCREENSHOTS
from webapp.launcher.stack import Stack

pytestmark = pytest.mark.slow

PASSWORD = "a long enough passphrase 7"


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory, test_registry) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("accounts-ui-var"), test_registry) as running:
        yield running


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    uncaught: list[str] = []
    page.on("pageerror", lambda error: uncaught.append(str(error)))
    yield page
    context.close()
    assert uncaught == [], "the page threw"


def fill_and_submit(page, fields: dict[str, str], button: str) -> None:
    for name, value in fields.items():
        page.fill(f"input[name={name}]", value)
    with page.expect_navigation():
        page.click(f"button:has-text('{button}')")


def me(page, app: str) -> dict:
    """GET /<app>/me from the page, with the browser's own cookies."""
    return page.evaluate(
        "async (app) => { const r = await fetch(`/${app}/me`); return {status: r.status, body: await r.json()}; }", app
    )


def test_a_newcomer_creates_the_admin_and_a_key_then_signs_in_again(fresh_stack: Stack, page) -> None:
    setup_url = fresh_stack.setup_url()
    assert setup_url is not None, "a fresh stack must print a setup link"

    page.goto(setup_url)
    fill_and_submit(page, {"username": "boss", "password1": PASSWORD, "password2": PASSWORD}, "Create admin")
    assert page.url.endswith("/accounts/")
    assert page.text_content("[data-testid=role]") == "admin"
    assert me(page, "character") == {
        "status": 200,
        "body": {"username": "boss", "role": "admin", "auth": "session", "key": None},
    }

    fill_and_submit(page, {"name": "my script"}, "Create key")
    secret = page.text_content("[data-testid=new-key]")
    assert secret and secret.startswith("pc_")
    assert page.locator("[data-testid=key]").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "accounts-key.png"))

    with page.expect_navigation():
        page.click("[data-testid=signout]")
    assert "/accounts/signin" in page.url
    assert me(page, "office")["status"] == 401

    fill_and_submit(page, {"username": "boss", "password": "not the password"}, "Sign in")
    assert page.locator("[data-testid=form-error]").is_visible()
    assert me(page, "office")["status"] == 401

    fill_and_submit(page, {"username": "boss", "password": PASSWORD}, "Sign in")
    assert page.locator("[data-testid=app-card]").count() == 2  # the landing page
    assert page.text_content("[data-testid=account-link]") == "boss"
    assert me(page, "office")["body"]["username"] == "boss"

    # The setup link worked once.
    page.goto(setup_url)
    assert "/accounts/signin" in page.url or page.url.endswith("/")


def test_a_second_person_signs_up_and_waits_for_approval(fresh_stack: Stack, browser) -> None:
    if (
        fresh_stack.manage(
            "shell", "-v", "0", "-c", "from webapp.accounts.services import admin_exists; print(admin_exists())"
        ).strip()
        != "True"
    ):
        fresh_stack.manage("account_create", "first-admin", "--role", "admin")
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://localhost:{fresh_stack.config.gateway_port}/accounts/signup")
        fill_and_submit(page, {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD}, "Sign up")
        assert page.text_content("[data-testid=role]") == "pending"
        assert page.locator("[data-testid=pending]").is_visible()
        assert page.locator("[data-testid=key-form]").count() == 0  # no keys before approval
    finally:
        context.close()
