"""The one-time token that creates the first admin account.

On an exposed host the first visitor must not become admin, so the setup page asks for a
token that only the person who started the service has: `make run` prints a link with it
(docker-compose: the `accounts` service's log). `manage.py accounts_prepare` issues a new
token each time it runs while no admin exists; the database keeps only its SHA-256, so
every app process and replica can check it, and the setup page consumes it.
`manage.py createsuperuser` works too and makes it moot.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from webapp.accounts.models import SetupToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_issue() -> str:
    """A new token; any earlier one stops working."""
    token = secrets.token_urlsafe(24)
    SetupToken.objects.all().delete()
    SetupToken.objects.create(digest=_digest(token))
    return token


def token_matches(candidate: str) -> bool:
    stored = SetupToken.objects.values_list("digest", flat=True).first()
    return stored is not None and hmac.compare_digest(stored, _digest(candidate))


def token_consume(candidate: str) -> bool:
    """Use the token up: True for exactly one caller, even when two race (the row is deleted
    once; PostgreSQL's row lock and SQLite's write lock make the second delete find nothing)."""
    if not token_matches(candidate):
        return False
    deleted, _ = SetupToken.objects.filter(digest=_digest(candidate)).delete()
    return deleted == 1


def token_discard() -> None:
    SetupToken.objects.all().delete()
