"""The account (Django's user with a role) and its personal API keys.

A key is 32 random bytes shown once; only its SHA-256 is stored. A fast hash is right
here, unlike for passwords: a key has 256 bits of entropy, so there is nothing to
brute-force, and every API request checks one (Django's password hashers take ~0.3 s
each by design). The first characters (`prefix`) are kept in clear so a user can tell
their keys apart in a list.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "admin"
    USER = "user", "user"
    # Registered under REGISTRATION=approval, waiting for an admin: may sign in, not chat.
    PENDING = "pending", "pending"
    # Seed 003: chat only; no documents, no tools above LOW.
    DEMO = "demo", "demo"


class Account(AbstractUser):
    """A person who signs in. `role` says what they may do; `is_staff`/`is_superuser` follow it
    for admins so Django admin works; `is_active` off disables the account everywhere."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    # This account's own chat limits (webapp.accounts.usage); empty: the deployment's default
    # (TURN_RATE_PER_ACCOUNT, GENERATIONS_PER_ACCOUNT, DAILY_TOKEN_QUOTA). Admins set them.
    turn_rate = models.CharField(
        max_length=16,
        blank=True,
        default="",
        validators=[RegexValidator(r"^[1-9][0-9]{0,6}/([1-9][0-9]{0,3})?[smhd]$", "a rate like 30/m")],
        help_text="chat turns per period, like 30/m; empty: the default",
    )
    max_generations = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="replies generated at once; empty: the default",
    )
    daily_token_quota = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="prompt + completion tokens per UTC day; 0: no quota; empty: the default"
    )

    class Meta:
        db_table = "accounts_account"

    def save(self, *args: object, **kwargs: object) -> None:
        # One source of truth: the role. `createsuperuser` sets is_superuser on a new account,
        # which makes it an admin; after that, Django's flags follow the role (so an admin
        # demoted in Django admin loses admin access, and a promoted one gets all of it).
        if self._state.adding and self.is_superuser:
            self.role = Role.ADMIN
        self.is_staff = self.is_superuser = self.role == Role.ADMIN
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class KeyScope(models.TextChoices):
    # Acts as its account only: a `user_id` in a request may name only the account itself.
    PERSONAL = "personal", "personal"
    # A backend's key: may pass any `user_id` to keep its own end users apart, inside its account.
    SERVICE = "service", "service"


class ApiKey(models.Model):
    account = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=64)
    scope = models.CharField(max_length=16, choices=KeyScope.choices, default=KeyScope.PERSONAL)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "accounts_api_key"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class SetupToken(models.Model):
    """The SHA-256 of the one-time token that creates the first admin (webapp.accounts.setup_token)."""

    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "accounts_setup_token"


class AuthEventKind(models.TextChoices):
    SIGNIN = "signin", "signed in"
    SIGNIN_FAILED = "signin_failed", "sign-in failed"
    SIGNIN_LIMITED = "signin_limited", "sign-in refused: too many tries"
    SIGNOUT = "signout", "signed out"
    PASSWORD_CHANGED = "password_changed", "password changed"
    ADMIN_CREATED = "admin_created", "first admin created"
    SIGNED_UP = "signed_up", "signed up"
    KEY_CREATED = "key_created", "API key created"
    KEY_REVOKED = "key_revoked", "API key revoked"
    ACCESS_CHANGED = "access_changed", "role, activation or limits changed by an admin"
    RATE_LIMITED = "rate_limited", "refused: a chat or upload limit"
    ACCOUNT_DELETED = "account_deleted", "account deleted, with its data"
    ACCESS_DENIED = "access_denied", "refused: not this account's to use"


class AuthEvent(models.Model):
    """The accounts audit: who signed in or failed to, from where; keys made and revoked.
    `username` is what was typed (a failed sign-in may name no account)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="auth_events"
    )
    username = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=32, choices=AuthEventKind.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "accounts_auth_event"
        ordering = ("-created_at", "-id")


class DataPurge(models.Model):
    """One app's share of deleting an account: the account row goes at once, and each app
    (office, character) removes what its stores hold for it (webapp.chat.purge) and records
    what it removed here. The account's id and name are kept as values: the account is gone."""

    account_id = models.BigIntegerField()
    username = models.CharField(max_length=150)
    app = models.CharField(max_length=16)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    removed = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "accounts_data_purge"
        ordering = ("-requested_at", "app")

    def __str__(self) -> str:
        return f"{self.username} ({self.app})"


class Upgrade(models.Model):
    """A one-time step of this deployment's data, done (webapp.accounts.legacy)."""

    name = models.CharField(max_length=64, unique=True)
    done_at = models.DateTimeField(auto_now_add=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "accounts_upgrade"

    def __str__(self) -> str:
        return self.name
