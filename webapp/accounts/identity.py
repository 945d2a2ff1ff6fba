"""Who is asking: the signed-in session or an API key, never a request body.

`ApiKeyAuthentication` reads `Authorization: Bearer pc_…` for DRF views; with Django's
session it makes the pair every authenticated view lists (`AUTHENTICATORS`). A malformed,
unknown or revoked key is a 401 at once, even when a session cookie came along: a client
that sends a key means that key.

`Principal` is what the interfaces hand on: the account, its role, and how it
authenticated. Its `owner_for` turns the seed's optional `user_id` field into the key the
chat data is stored under (`owner_key`):

- a session or a personal key acts as its account: `user_id` may be left out or name the
  account itself (its username); anything else is a 403;
- a `service` key is a backend's: each `user_id` it passes is one of its own end users,
  stored apart from each other and from every other account (`a<id>/<user_id>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from webapp.accounts.audit import refusal_record
from webapp.accounts.keys import key_authenticate
from webapp.accounts.models import Account, ApiKey, AuthEventKind, KeyScope, Role
from webapp.core.errors import ForbiddenError, NotAuthenticatedError


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when the scheme is another."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def key_from_header(authorization: str) -> ApiKey:
    """The live key an Authorization header carries; NotAuthenticatedError naming what is wrong."""
    token = bearer_token(authorization)
    if not token:
        raise NotAuthenticatedError(
            "Authorization: send 'Bearer <API key>'", code="invalid_api_key", field="Authorization"
        )
    key = key_authenticate(token)
    if key is None:
        raise NotAuthenticatedError(
            "Authorization: this API key is not valid (unknown or revoked)",
            code="invalid_api_key",
            field="Authorization",
        )
    return key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Account, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        try:
            key = key_from_header(header)
        except NotAuthenticatedError as exc:
            raise AuthenticationFailed(exc.message, code=exc.code) from exc
        return key.account, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="persona-chat"'


# Keys first: their header is what a 401 asks for. Session auth checks CSRF on unsafe methods.
AUTHENTICATORS = (ApiKeyAuthentication, SessionAuthentication)


def owner_key(account_id: int) -> str:
    """The key an account's own chat data is stored under (conversations, documents, notes…)."""
    return f"a{account_id}"


@dataclass(frozen=True)
class Principal:
    account_id: int
    username: str
    role: str
    via: str  # "session" | "personal" | "service"
    key_id: int | None = None

    @property
    def owner(self) -> str:
        return owner_key(self.account_id)

    def owner_for(self, user_id: str | None) -> str:
        """The owner key a request's optional `user_id` (or OpenAI's `user`) stands for."""
        if user_id is None or user_id == "":
            return self.owner
        if self.via == KeyScope.SERVICE:
            return f"{self.owner}/{user_id}"
        if user_id == self.username:
            return self.owner
        self.denied("a user_id naming another account")
        raise ForbiddenError(
            f"user_id: a {'session' if self.via == 'session' else 'personal API key'} acts as its own account "
            f"({self.username!r}); leave user_id out or name that account. Only a key with the 'service' "
            "scope may name other (end) users.",
            field="user_id",
            code="user_id_not_yours",
        )

    def denied(self, what: str) -> None:
        """Audit a refusal of this principal (once a minute per reason)."""
        refusal_record(
            kind=AuthEventKind.ACCESS_DENIED,
            account_id=self.account_id,
            username=self.username,
            detail=f"denied: {what}",
        )

    def require_role(self, *, allowed: tuple[str, ...], what: str) -> None:
        if self.role not in allowed:
            self.denied(f"{what} for a {self.role} account")
            raise ForbiddenError(
                f"{what}: not for a {self.role} account (allowed: {', '.join(allowed)})", code="role_forbidden"
            )


def principal_of(account: Any, key: ApiKey | None) -> Principal:
    via = "session" if key is None else key.scope
    return Principal(
        account_id=account.pk, username=account.username, role=account.role, via=via, key_id=key.pk if key else None
    )


def chat_allowed(principal: Principal) -> None:
    """A pending account may sign in and wait; everything with chat data needs approval first."""
    if principal.role == Role.PENDING:
        principal.denied("chat data for a pending account")
        raise ForbiddenError(
            "this account waits for an administrator's approval; chats and documents open once approved",
            code="account_pending",
        )


class CanChat(BasePermission):
    """Signed in (session or key), active, and not pending. Unauthenticated: 401 (DRF asks the
    first authenticator for the WWW-Authenticate header); pending: 403 `account_pending`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        chat_allowed(request_principal_drf(request))
        return True


def request_principal_drf(request: Request) -> Principal:
    """The principal of a DRF request that passed CanChat."""
    key = request.auth if isinstance(request.auth, ApiKey) else None
    return principal_of(request.user, key)


def request_principal(request: HttpRequest) -> Principal:
    """The principal of a plain Django request (the OpenAI and Anthropic views): an API key
    only, as their own APIs (these views take no CSRF token, so a session cookie must not
    count). The key comes as `Authorization: Bearer <key>` or, as the `anthropic` package
    sends it, `X-Api-Key: <key>`. Runs database queries: call it from sync code (or through
    sync_to_async)."""
    return principal_from_headers(
        authorization=request.META.get("HTTP_AUTHORIZATION", ""), api_key=request.META.get("HTTP_X_API_KEY", "")
    )


def principal_from_headers(*, authorization: str, api_key: str) -> Principal:
    """The principal of an API key sent as `Authorization: Bearer <key>` or `X-Api-Key`
    (what request_principal reads; the MCP endpoint, which is not a Django view, calls it
    with its headers). Runs database queries."""
    if authorization or api_key:
        key = key_from_header(authorization or f"Bearer {api_key}")
        principal = principal_of(key.account, key)
    else:
        raise NotAuthenticatedError(
            "Authorization: send 'Bearer <API key>' or X-Api-Key (create one on /accounts/)",
            code="not_authenticated",
            field="Authorization",
        )
    chat_allowed(principal)
    return principal
