"""Who a WebSocket speaks for: an API key in its handshake's `Authorization` header (scripts),
else the session cookie (browsers, which can't set that header; the origin check in
webapp.chat.routing keeps other sites' pages from riding the cookie).

`socket_principal` reads the handshake's headers again each time it is called, so a
consumer that calls it before every message notices a revoked key, an expired or
signed-out session, a changed password or a disabled account at the next message.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.http.cookie import parse_cookie

from webapp.accounts.identity import Principal, chat_allowed, key_from_header, principal_of
from webapp.core.errors import NotAuthenticatedError

# The close codes of a socket refused for who it is (4000-4999 are the application's).
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def socket_principal(scope: dict[str, Any]) -> Principal:
    """The principal of a WebSocket's handshake; NotAuthenticatedError or ForbiddenError
    (pending account) otherwise. Sync: it reads the accounts database."""
    authorization = _header(scope, b"authorization")
    if authorization:
        key = key_from_header(authorization)
        principal = principal_of(key.account, key)
    else:
        session_key = parse_cookie(_header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME)
        user = None
        if session_key:
            store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
            # Django's own check: the session's user, still active, with the password hash it
            # signed in with (a password change signs out every other session).
            user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        if user is None or not user.is_authenticated:
            raise NotAuthenticatedError(
                "sign in first (/accounts/signin), or send 'Authorization: Bearer <API key>' with the handshake",
                code="not_authenticated",
                field="Authorization",
            )
        principal = principal_of(user, None)
    chat_allowed(principal)
    return principal
