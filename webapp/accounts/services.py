"""Account writes: sign-up under the registration policy, the first admin from the setup token."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from webapp.accounts import setup_token
from webapp.accounts.models import Account, Role
from webapp.core.errors import ForbiddenError, NotFoundError


def registration_role() -> Role:
    """The role a newly registered account gets; ForbiddenError when registration is closed."""
    mode = settings.ENV.registration
    if mode == "closed":
        raise ForbiddenError("registration is closed: ask an admin for an account", code="registration_closed")
    return Role.USER if mode == "open" else Role.PENDING


def admin_exists() -> bool:
    return Account.objects.filter(role=Role.ADMIN, is_active=True).exists()


def first_admin_create(*, token: str, username: str, password: str) -> Account:
    """Create the first admin. Only with the setup token, and only while no admin exists."""
    with transaction.atomic():
        if admin_exists():
            raise NotFoundError("the first admin exists already: sign in", code="setup_done")
        # Consumed before the account is made: of two requests racing with the right token,
        # one deletes it and the other is refused.
        if not setup_token.token_consume(token):
            raise ForbiddenError("token: not the setup token this service printed", field="token", code="bad_token")
        return Account.objects.create_superuser(username=username, password=password)


def account_create(*, username: str, password: str, role: Role = Role.USER) -> Account:
    """An account made by the project's own code (tests, benchmarks, load users, scripts)."""
    return Account.objects.create_user(username=username, password=password, role=role)
