"""Django admin for accounts (at /accounts/admin/): roles, activation, keys, the audit.

A change of role, activation or limits (turn rate, replies at once, daily token quota)
made here is written to the accounts audit with the admin
who made it; "Approve" gives pending accounts (REGISTRATION=approval) the role user."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from webapp.accounts import deletion
from webapp.accounts.audit import auth_event_record
from webapp.accounts.models import Account, ApiKey, AuthEvent, AuthEventKind, DataPurge, Role


def _signin_instead(request: HttpRequest, extra_context: object = None) -> HttpResponse:
    """Django admin's own login form would be a second, unlimited way to try passwords:
    admins sign in on /accounts/signin (rate-limited, audited) like everyone else."""
    return redirect(f"/accounts/signin?{urlencode({'next': request.GET.get('next', '/accounts/admin/')})}")


admin.site.login = _signin_instead  # type: ignore[method-assign]
admin.site.site_header = "Persona chat accounts"


@admin.register(Account)
class AccountAdmin(UserAdmin):
    list_display = ("username", "role", "is_active", "last_login", "date_joined")
    list_filter = ("role", "is_active")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Access", {"fields": ("role", "is_active")}),
        ("Limits (empty: the deployment's default)", {"fields": ("turn_rate", "max_generations", "daily_token_quota")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    readonly_fields = ("last_login", "date_joined")
    actions = ("approve",)

    def delete_model(self, request: HttpRequest, obj: Account) -> None:
        """Deleting an account here deletes its data too (webapp.accounts.deletion): the apps
        remove it within seconds; "Account data purges" lists what each removed."""
        _deleted(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: object) -> None:
        _deleted(request, list(queryset))  # type: ignore[call-overload]

    def save_model(self, request: HttpRequest, obj: Account, form: object, change: bool) -> None:
        before = Account.objects.filter(pk=obj.pk).values(*_AUDITED).first() if change else None
        super().save_model(request, obj, form, change)  # type: ignore[arg-type]
        if before is not None:
            _access_changes_record(request, obj, before)

    @admin.action(description="Approve the selected pending accounts (role: user)")
    def approve(self, request: HttpRequest, queryset: object) -> None:
        approved = 0
        for account in queryset.filter(role=Role.PENDING):  # type: ignore[attr-defined]
            before = {name: getattr(account, name) for name in _AUDITED}
            account.role = Role.USER
            account.save()
            _access_changes_record(request, account, before)
            approved += 1
        self.message_user(request, f"Approved {approved} account(s).")


def _deleted(request: HttpRequest, accounts: list[Account]) -> None:
    admin_name = getattr(request.user, "username", "?")
    for account in accounts:
        deletion.account_delete(account, by=admin_name, request=request)


_AUDITED = ("role", "is_active", "turn_rate", "max_generations", "daily_token_quota")


def _access_changes_record(request: HttpRequest, account: Account, before: dict[str, object]) -> None:
    changes = []
    if before["role"] != account.role:
        changes.append(f"role {before['role']}→{account.role}")
    if before["is_active"] != account.is_active:
        changes.append("disabled" if not account.is_active else "enabled")
    for name in ("turn_rate", "max_generations", "daily_token_quota"):
        old, new = before[name], getattr(account, name)
        if (old or None) != (new or None) or (old == 0) != (new == 0):
            changes.append(
                f"{name} {old if old not in (None, '') else 'default'}→{new if new not in (None, '') else 'default'}"
            )
    if changes:
        admin_name = getattr(request.user, "username", "?")
        auth_event_record(
            kind=AuthEventKind.ACCESS_CHANGED,
            request=request,
            account=account,
            detail=f"by {admin_name}: " + ", ".join(changes),
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "scope", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    # The digest is the only thing stored of the secret; nobody edits it. Keys are made on
    # the account page (the secret is shown there once), not here.
    readonly_fields = ("account", "prefix", "digest", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(AuthEvent)
class AuthEventAdmin(admin.ModelAdmin):
    """The accounts audit, read-only: nobody edits or deletes what happened."""

    list_display = ("created_at", "kind", "username", "account", "ip", "detail")
    list_filter = ("kind",)
    search_fields = ("username", "ip")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(DataPurge)
class DataPurgeAdmin(admin.ModelAdmin):
    """What each app removed for each deleted account (read-only)."""

    list_display = ("requested_at", "username", "app", "requested_by", "done_at", "removed", "error")
    list_filter = ("app",)
    search_fields = ("username",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
