"""The accounts audit: one function writes an event; Django's auth signals feed it.

Sign-in success and failure, sign-out, sign-up, password change, keys created and
revoked, sign-ins refused by the rate limit, access denied (another account's user_id, a
role's limits, a pending account) and chat turns or uploads refused by a limit. A user reads their own events on the
account page; admins read all of them in Django admin. (The office's tool-call audit is
a separate log in the chat store.)
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django import db
from django.contrib.auth import signals
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest

from webapp.accounts.client_ip import client_ip
from webapp.accounts.models import Account, AuthEvent, AuthEventKind

log = logging.getLogger(__name__)


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


# Refusals are audited off the caller's thread: they happen in async code too (a WebSocket
# message naming another account), where Django refuses database calls.
_refusals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
_recent: dict[str, float] = {}  # dedupe key -> until when (monotonic) this process skips it


def refusal_record(
    *, kind: AuthEventKind, account_id: int, username: str, detail: str, ip: str | None = None, once_per_s: int = 60
) -> None:
    """Audit a refused request (access denied, a limit), at most once per `once_per_s` for the
    same account and reason (0: every time): a client retrying in a loop writes one line."""

    dedupe = f"{account_id}:{kind}:{detail}"
    if once_per_s:  # this process first (no I/O on the caller's thread), then every process (the cache)
        now = time.monotonic()
        if _recent.get(dedupe, 0.0) > now:
            return
        if len(_recent) > 10_000:
            _recent.clear()
        _recent[dedupe] = now + once_per_s

    def write() -> None:
        try:
            if once_per_s and not cache.add(f"audit:refused:{dedupe}"[:240], 1, timeout=once_per_s):
                return
            auth_event_record(kind=kind, account=Account(pk=account_id, username=username), detail=detail, ip=ip)
        except Exception:  # the audit must never turn a 403 or a 429 into a 500
            log.exception("refusal not audited: %s %s", kind, detail)
        finally:
            db.close_old_connections()

    _refusals.submit(write)
