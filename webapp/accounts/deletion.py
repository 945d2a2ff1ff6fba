"""Deleting an account, with everything stored for it.

The account row, its keys and its sessions go at once, in one transaction (from then on
nothing authenticates as it), and a DataPurge row per app asks that app to remove what its
stores hold: conversations and messages (both apps); documents with their passages and
vectors, notes, approvals and tool audit (office); characters with their avatars and the
user personas (character). Each app's process does its share
(webapp.chat.purge) within seconds, or when it next starts, and records what it removed;
`purges_wait` lets the page that asked say what went. The accounts audit keeps one line
(`account_deleted`, with the name and who asked); the account's earlier audit lines stay,
detached from it (they are the deployment's record, not the user's data).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from webapp.accounts.audit import auth_event_record
from webapp.accounts.models import Account, AuthEventKind, DataPurge

APPS = ("office", "character")


def _sessions_of(account: Account) -> list[str]:
    keys = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(account.pk):
            keys.append(session.session_key)
    return keys


def account_delete(account: Account, *, by: str, request: HttpRequest | None = None) -> list[DataPurge]:
    """Delete `account` now and ask both apps to remove its data; the purge rows, one per app."""
    with transaction.atomic():
        purges = [
            DataPurge.objects.create(account_id=account.pk, username=account.username, app=app, requested_by=by)
            for app in APPS
        ]
        Session.objects.filter(session_key__in=_sessions_of(account)).delete()
        username = account.username
        account.delete()  # its keys with it (CASCADE); its audit lines stay, detached
        auth_event_record(
            kind=AuthEventKind.ACCOUNT_DELETED,
            request=request,
            username=username,
            detail=f"by {by}; data removal asked of {', '.join(APPS)}",
        )
    return purges


def purges_wait(purges: Sequence[DataPurge], *, timeout_s: float) -> list[DataPurge]:
    """The purges as they stand once all are done, or after `timeout_s`."""
    ids = [p.pk for p in purges]
    deadline = time.monotonic() + timeout_s
    while True:
        current = list(DataPurge.objects.filter(pk__in=ids).order_by("app"))
        if all(p.done_at for p in current) or time.monotonic() >= deadline:
            return current
        time.sleep(0.2)


def purges_pending(app: str) -> list[DataPurge]:
    return list(DataPurge.objects.filter(app=app, done_at__isnull=True).order_by("requested_at"))


def purge_finish(purge: DataPurge, *, removed: dict[str, int], error: str = "") -> None:
    DataPurge.objects.filter(pk=purge.pk).update(done_at=timezone.now(), removed=removed, error=error[:500])
