"""The accounts audit: one function writes an event; Django's auth signals feed it.

Sign-in success and failure, sign-out, sign-up, password change, keys created and
revoked, and sign-ins refused by the rate limit. A user reads their own events on the
account page; admins read all of them in Django admin. (The office's tool-call audit is
a separate log in the chat store.)
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import signals
from django.dispatch import receiver
from django.http import HttpRequest

from webapp.accounts.client_ip import client_ip
from webapp.accounts.models import Account, AuthEvent, AuthEventKind


def auth_event_record(
    *,
    kind: AuthEventKind,
    request: HttpRequest | None = None,
    account: Account | None = None,
    username: str = "",
    detail: str = "",
    ip: str | None = None,
) -> None:
    """One audit event; the client address is `ip`, or the one `request` came from."""
    ip = ip or (client_ip(request) if request is not None else None)
    AuthEvent.objects.create(
        account=account,
        username=(username or (account.username if account else ""))[:150],
        kind=kind,
        ip=ip or None,
        detail=detail[:200],
    )


def auth_events_of(account: Account, *, limit: int = 20) -> list[AuthEvent]:
    return list(AuthEvent.objects.filter(account=account)[:limit])


@receiver(signals.user_logged_in)
def _signed_in(sender: Any, request: HttpRequest | None, user: Account, **kwargs: Any) -> None:
    auth_event_record(kind=AuthEventKind.SIGNIN, request=request, account=user)


@receiver(signals.user_logged_out)
def _signed_out(sender: Any, request: HttpRequest | None, user: Account | None, **kwargs: Any) -> None:
    if user is not None:
        auth_event_record(kind=AuthEventKind.SIGNOUT, request=request, account=user)


@receiver(signals.user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))
    account = Account.objects.filter(username=username).first()
    auth_event_record(kind=AuthEventKind.SIGNIN_FAILED, request=request, account=account, username=username)
