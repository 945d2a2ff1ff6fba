"""Who a request is, through nginx and both real apps: sessions from /accounts/ valid on both
apps, API keys on both, 401 without either. Accounts are made by the project's own code
(`manage.py account_create` / `key_create` through Stack.manage)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.auth import PASSWORD, account_create, form_post, hidden_fields, key_create
from webapp.launcher.stack import Stack

APPS = ("office", "character")


@pytest.fixture
def signed_in(stack: Stack, gateway: str) -> Iterator[tuple[requests.Session, str]]:
    username = account_create(stack)
    with requests.Session() as session:
        response = form_post(session, gateway, "/accounts/signin", {"username": username, "password": PASSWORD})
        assert response.status_code == 302, response.text[:300]
        yield session, username


@pytest.mark.parametrize("app", APPS)
def test_without_credentials_me_is_401(gateway: str, app: str) -> None:
    response = requests.get(f"{gateway}/{app}/me", timeout=30)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_works_on_both_apps(stack: Stack, gateway: str) -> None:
    username = account_create(stack)
    secret = key_create(stack, username)
    for app in APPS:
        response = requests.get(f"{gateway}/{app}/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        assert response.status_code == 200
        assert response.json() == {
            "username": username,
            "role": "user",
            "auth": "api_key",
            "key": {"name": "test", "scope": "personal"},
        }


def test_one_sign_in_is_a_session_on_both_apps(gateway: str, signed_in: tuple[requests.Session, str]) -> None:
    session, username = signed_in
    cookie = next(c for c in session.cookies if c.name == "sessionid")
    assert cookie.path == "/" and cookie.has_nonstandard_attr("HttpOnly")
    for app in APPS:
        assert session.get(f"{gateway}/{app}/me").json()["username"] == username
    page = session.get(f"{gateway}/accounts/", headers={"Accept": "text/html"})
    assert f">{username}<" in page.text
    signed_out = session.post(
        f"{gateway}/accounts/signout", data=hidden_fields(page.text), headers={"Origin": gateway}, allow_redirects=False
    )
    assert signed_out.status_code == 302
    for app in APPS:
        assert session.get(f"{gateway}/{app}/me").status_code == 401


def test_a_forged_session_cookie_is_401(gateway: str, signed_in: tuple[requests.Session, str]) -> None:
    session, _ = signed_in
    real = session.cookies.get("sessionid")
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    for value in (forged, "x" * 4000, "", "../../etc/passwd"):
        response = requests.get(f"{gateway}/office/me", cookies={"sessionid": value}, timeout=30)
        assert response.status_code == 401, value


def test_sign_in_without_the_csrf_token_is_refused(stack: Stack, gateway: str) -> None:
    username = account_create(stack)
    response = requests.post(
        f"{gateway}/accounts/signin",
        data={"username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "csrf_failed",
        "message": response.json()["error"]["message"],
        "field": "csrfmiddlewaretoken",
    }


def test_a_revoked_key_stops_at_once(gateway: str, signed_in: tuple[requests.Session, str]) -> None:
    session, _ = signed_in
    created = form_post(session, gateway, "/accounts/", {"name": "script", "scope": "personal"})
    secret = re.search(r'data-testid="new-key">([^<]+)<', created.text).group(1)
    assert (
        requests.get(f"{gateway}/character/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code
        == 200
    )
    key_id = re.search(r'name="revoke" value="(\d+)"', created.text).group(1)
    revoked = form_post(session, gateway, "/accounts/", {"revoke": key_id})
    assert revoked.status_code == 302
    for app in APPS:
        assert (
            requests.get(f"{gateway}/{app}/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code
            == 401
        )


def test_keys_at_rest_are_hashed(stack: Stack) -> None:
    """Read the accounts database file the apps use: the digest is there, the key is not."""
    secret = key_create(stack, account_create(stack))
    with sqlite3.connect(stack.config.var_dir / "accounts" / "accounts.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert hashlib.sha256(secret.encode()).hexdigest() in dump
    assert secret not in dump and secret[12:] not in dump


def test_the_setup_link_needs_its_token(stack: Stack, gateway: str) -> None:
    """The test stack starts with no admin, so its launcher holds a setup link; a wrong token is
    refused and creates nothing. (The right one is used in tests/ui/test_accounts_ui.py.)"""
    assert stack.setup_url() is not None
    with requests.Session() as session:
        response = form_post(
            session,
            gateway,
            "/accounts/setup?token=wrong",
            {"username": "intruder", "password1": PASSWORD, "password2": PASSWORD},
        )
    assert response.status_code == 403
    assert "intruder" not in stack.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from webapp.accounts.models import Account; print(list(Account.objects.values_list('username', flat=True)))",
    )


def test_the_audit_keeps_the_address_nginx_saw_not_one_the_client_wrote(stack: Stack, gateway: str) -> None:
    username = account_create(stack)
    with requests.Session() as session:
        # nginx replaces both with the address that connected to it
        session.headers.update({"X-Real-IP": "203.0.113.66", "X-Forwarded-For": "8.8.4.4, 203.0.113.67"})
        form_post(session, gateway, "/accounts/signin", {"username": username, "password": "wrong password!"})
        form_post(session, gateway, "/accounts/signin", {"username": username, "password": PASSWORD})
    shown = stack.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from webapp.accounts.models import AuthEvent; "
        f"print(*AuthEvent.objects.filter(username={username!r}).order_by('id').values_list('kind', 'ip'))",
    )
    assert shown.split() == ["('signin_failed',", "'127.0.0.1')", "('signin',", "'127.0.0.1')"]


def test_five_wrong_passwords_make_even_the_right_one_wait(stack: Stack, gateway: str) -> None:
    """SIGNIN_RATE_PER_USERNAME as shipped (5/5m), counted in the stack's Redis by both apps.

    django-ratelimit counts in fixed windows; six tries that straddle a window's end are
    counted in two, so a second round (another account, another window offset) decides."""

    def six_tries() -> requests.Response:
        username = account_create(stack)
        with requests.Session() as session:
            for _ in range(5):
                wrong = form_post(session, gateway, "/accounts/signin", {"username": username, "password": "wrong pw!"})
                assert wrong.status_code == 400
            last = form_post(session, gateway, "/accounts/signin", {"username": username, "password": PASSWORD})
            if last.status_code == 429:
                assert session.get(f"{gateway}/office/me", timeout=30).status_code == 401
            return last

    limited = six_tries()
    if limited.status_code != 429:
        limited = six_tries()
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 300
    assert 'data-code="too_many_tries"' in limited.text
    # The counts are in the stack's own redis-server, which both apps share.
    assert redis.Redis.from_url(stack.redis_url()).keys("personachat:*:rl:*")
    with requests.Session() as other:  # another account from the same address is not locked out
        bystander = account_create(stack)
        assert (
            form_post(other, gateway, "/accounts/signin", {"username": bystander, "password": PASSWORD}).status_code
            == 302
        )
