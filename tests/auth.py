"""How tests become accounts: through the project's own code (`manage.py account_create` and
`key_create`, run by Stack.manage) and the real sign-in form, never by switching checks off.

Most tests act through one service key of the shared stack (`service_key` in conftest): a
`service` key may name any `user_id` inside its own account, so each test's fresh `user_id`
is still a user of its own, as before accounts existed. Tests about accounts themselves make
accounts and keys of their own.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from webapp.launcher.stack import Stack

PASSWORD = "a long enough passphrase 7"


def account_create(stack: Stack, *, role: str = "user", prefix: str = "acct") -> str:
    username = f"{prefix}-{uuid.uuid4().hex[:8]}"
    stack.manage("account_create", username, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
    return username


def key_create(stack: Stack, username: str, *, scope: str = "personal") -> str:
    return stack.manage("key_create", username, "--name", "test", "--scope", scope).strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))


def form_post(session: requests.Session, gateway: str, path: str, data: dict[str, str]) -> requests.Response:
    """GET the page, then POST its form with its hidden fields, as a browser does (Origin too)."""
    page = session.get(gateway + path, headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text[:300]
    return session.post(
        gateway + path, data={**hidden_fields(page.text), **data}, headers={"Origin": gateway}, allow_redirects=False
    )


def signin(gateway: str, username: str) -> requests.Session:
    """A requests session signed in through /accounts/signin (cookie `sessionid`)."""
    session = requests.Session()
    response = form_post(session, gateway, "/accounts/signin", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.text[:300]
    return session


@dataclass(frozen=True)
class Visitor:
    """A person at a browser: a fresh account of their own (as a fresh browser was a new user
    when the UI kept a user id in localStorage), its session cookies and a personal key, so a
    test can read through the API what the page wrote, as that same account."""

    username: str
    key: str
    cookies: tuple[dict[str, Any], ...]

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.key)


def visitor_create(stack: Stack, gateway: str) -> Visitor:
    username = account_create(stack, prefix="ui")
    with signin(gateway, username) as session:
        cookies = tuple(
            {"name": c.name, "value": c.value or "", "url": gateway, "httpOnly": c.name == "sessionid"}
            for c in session.cookies
        )
    return Visitor(username=username, key=key_create(stack, username), cookies=cookies)


def visitor_context(browser: Any, visitor: Visitor, **options: Any) -> Any:
    """A new browser context signed in as `visitor`."""
    context = browser.new_context(**options)
    context.add_cookies(list(visitor.cookies))
    return context
