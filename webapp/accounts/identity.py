"""Who is asking: the signed-in session or a personal API key, never a request body.

`ApiKeyAuthentication` reads `Authorization: Bearer pc_…` for DRF views; with Django's
session it makes the pair every authenticated view lists (`AUTHENTICATORS`). A malformed,
unknown or revoked key is a 401 at once, even when a session cookie came along: a client
that sends a key means that key.
"""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from webapp.accounts.keys import key_authenticate
from webapp.accounts.models import Account, ApiKey


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when the scheme is another."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Account, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if not token:
            raise AuthenticationFailed("Authorization: send 'Bearer <API key>'", code="invalid_api_key")
        key = key_authenticate(token)
        if key is None:
            raise AuthenticationFailed(
                "Authorization: this API key is not valid (unknown or revoked)", code="invalid_api_key"
            )
        return key.account, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="persona-chat"'


# Keys first: their header is what a 401 asks for. Session auth checks CSRF on unsafe methods.
AUTHENTICATORS = (ApiKeyAuthentication, SessionAuthentication)
