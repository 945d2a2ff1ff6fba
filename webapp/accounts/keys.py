"""Personal API keys: create (the secret is returned once), authenticate, revoke.

A key reads `pc_<43 url-safe characters>`; the database keeps its SHA-256 and its first
characters. Revocation takes effect at the next request: every check reads the database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from webapp.accounts.audit import auth_event_record
from webapp.accounts.models import Account, ApiKey, AuthEventKind, KeyScope

KEY_PREFIX = "pc_"
_SHOWN_CHARS = 10  # "pc_" and the first 7 characters of the secret: enough to tell keys apart
# Writing last_used_at on every request would make each API call a database write.
_LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown to the user once; never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_create(
    *, account: Account, name: str, scope: str = KeyScope.PERSONAL, request: HttpRequest | None = None
) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            account=account, name=name, scope=scope, prefix=secret[:_SHOWN_CHARS], digest=_digest(secret)
        )
        auth_event_record(
            kind=AuthEventKind.KEY_CREATED, request=request, account=account, detail=f"{key} scope={scope}"
        )
    return NewKey(key=key, secret=secret)


def key_authenticate(secret: str) -> ApiKey | None:
    """The live key with this secret whose account is active, or None. Constant work per call:
    the lookup is by digest, so a wrong key reveals nothing about right ones."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
        return None
    key = (
        ApiKey.objects.select_related("account")
        .filter(digest=_digest(secret), revoked_at__isnull=True, account__is_active=True)
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_S:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def key_revoke(*, account: Account, key_id: int, request: HttpRequest | None = None) -> bool:
    """Revoke one of this account's keys; False when it has no such live key."""
    with transaction.atomic():
        key = ApiKey.objects.filter(pk=key_id, account=account, revoked_at__isnull=True).first()
        if key is None:
            return False
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        auth_event_record(kind=AuthEventKind.KEY_REVOKED, request=request, account=account, detail=str(key))
    return True


def keys_list(*, account: Account) -> list[ApiKey]:
    return list(ApiKey.objects.filter(account=account))
