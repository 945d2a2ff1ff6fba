"""The account pages under /accounts/: sign-in, sign-up, sign-out, first-admin setup, and the
account page with its API keys. Django's auth views and forms do the work (CSRF on);
these views only choose templates and apply the registration policy.

A form that comes back with errors is answered 400 (Django's default is 200), so a client
or a script sees the refusal in the status, as everywhere else in the service; the page
shows each error next to its field."""

from __future__ import annotations

import logging
from typing import Any, cast

import redis
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webapp.accounts import audit, deletion, keys, limits, services
from webapp.accounts.forms import AccountDeleteForm, KeyCreateForm, SetupForm, SignupForm
from webapp.accounts.limits import Refusal
from webapp.accounts.models import Account, AuthEventKind, Role
from webapp.accounts.usage import usage_of
from webapp.core.errors import ApplicationError

log = logging.getLogger(__name__)


def _form_status(request: HttpRequest, form: Any) -> int:
    return 400 if request.method == "POST" and form.is_bound and form.errors else 200


class _InvalidIs400:
    """For Django's class-based auth views: a form with errors is a 400."""

    def form_invalid(self, form: Any) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form), status=400)  # type: ignore[attr-defined]


def _limited(request: HttpRequest, count: Any) -> Refusal | HttpResponse | None:
    """Count a try; the Refusal when over a limit, a 503 page while the counter is down."""
    try:
        return count(request)
    except limits.LimitsUnavailable:
        log.exception("sign-in limits: Redis can't be reached")
        text = "Signing in is paused for a moment (the service's limits store is restarting). Try again shortly."
        response = render(request, "accounts/message.html", {"title": "Try again shortly", "text": text}, status=503)
        response["Retry-After"] = "5"
        return response


class SigninView(_InvalidIs400, auth_views.LoginView):
    template_name = "accounts/signin.html"
    redirect_authenticated_user = True

    def get_redirect_url(self) -> str:
        # Django raises (a 500) when a signed-in user's `next` is this page itself.
        url = super().get_redirect_url()
        return "" if url and url.split("?")[0] == self.request.path else url

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = _limited(request, limits.signin_count)
        if isinstance(refusal, HttpResponse):
            return refusal
        if refusal is None:
            return super().post(request, *args, **kwargs)
        username = request.POST.get("username", "")[:150]
        if refusal.first:  # one audit row per window, not one per refused try
            audit.auth_event_record(kind=AuthEventKind.SIGNIN_LIMITED, request=request, username=username)
        form = self.get_form_class()(request, initial={"username": username})
        context = self.get_context_data(form=form, limited_for=refusal.retry_after)
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(refusal.retry_after)
        return response


class SignoutView(auth_views.LogoutView):
    next_page = "accounts:signin"


class PasswordChangeView(_InvalidIs400, auth_views.PasswordChangeView):
    template_name = "accounts/password.html"
    success_url = "/accounts/?password=changed"

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit.auth_event_record(kind=AuthEventKind.PASSWORD_CHANGED, request=self.request, account=form.user)
        return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not services.admin_exists():
        return render(request, "accounts/message.html", {"title": "Not set up yet", "text": _NOT_SET_UP}, status=409)
    try:
        role = services.registration_role()
    except ApplicationError as exc:
        return render(
            request, "accounts/message.html", {"title": "Registration closed", "text": exc.message}, status=403
        )
    if request.method == "POST":
        refusal = _limited(request, limits.signup_count)
        if isinstance(refusal, HttpResponse):
            return refusal
        if refusal is not None:
            text = f"Too many sign-ups from your address. Try again in {refusal.retry_after} seconds."
            response = render(
                request, "accounts/message.html", {"title": "Too many sign-ups", "text": text}, status=429
            )
            response["Retry-After"] = str(refusal.retry_after)
            return response
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = form.save(commit=False)
        account.role = role
        account.save()
        audit.auth_event_record(kind=AuthEventKind.SIGNED_UP, request=request, account=account, detail=role)
        auth.login(request, account, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("accounts:account")
    return render(
        request,
        "accounts/signup.html",
        {"form": form, "approval": role == Role.PENDING},
        status=_form_status(request, form),
    )


_NOT_SET_UP = (
    "No admin account exists yet. Open the setup link that `make run` printed (or run `manage.py createsuperuser`)."
)


@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    if services.admin_exists():
        return redirect("accounts:signin")
    form = SetupForm(request.POST or None, initial={"token": request.GET.get("token", "")})
    if request.method == "POST" and form.is_valid():
        try:
            account = services.first_admin_create(
                token=form.cleaned_data["token"],
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ApplicationError as exc:
            return render(
                request, "accounts/message.html", {"title": "Setup refused", "text": exc.message}, status=exc.status
            )
        audit.auth_event_record(kind=AuthEventKind.ADMIN_CREATED, request=request, account=account)
        auth.login(request, account, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("accounts:account")
    return render(request, "accounts/setup.html", {"form": form}, status=_form_status(request, form))


@login_required
@require_http_methods(["GET", "POST"])
def account_page(request: HttpRequest) -> HttpResponse:
    """The account: role, password, and API keys (a new key's secret is shown on this response only)."""
    account = cast(Account, request.user)
    new_key = None
    form = KeyCreateForm()
    may_have_keys = account.role in (Role.ADMIN, Role.USER)
    if request.method == "POST" and not may_have_keys:
        text = f"API keys are for accounts with the role user or admin; yours is {account.role}."
        return render(request, "accounts/message.html", {"title": "No API keys", "text": text}, status=403)
    if request.method == "POST":
        if "revoke" in request.POST:
            key_id = request.POST["revoke"]
            # Another account's key, or no key: nothing happens, and nothing says which.
            if key_id.isascii() and key_id.isdigit() and len(key_id) <= 18:
                keys.key_revoke(account=account, key_id=int(key_id), request=request)
            return redirect("accounts:account")
        form = KeyCreateForm(request.POST)
        if form.is_valid():
            new_key = keys.key_create(
                account=account, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"], request=request
            )
            form = KeyCreateForm()
    return render(
        request,
        "accounts/account.html",
        {
            "account": account,
            "form": form,
            "new_key": new_key,
            "keys": keys.keys_list(account=account) if may_have_keys else [],
            "may_have_keys": may_have_keys,
            "password_changed": request.GET.get("password") == "changed",
            "registration": settings.ENV.registration,
            "events": audit.auth_events_of(account),
            "usage": _usage_or_none(account),
        },
        status=_form_status(request, form),
    )


def _usage_or_none(account: Account) -> Any:
    """Today's usage for the page; None (not shown) for a pending account or while the
    counters (Redis) can't be read: the page still works."""
    if account.role == Role.PENDING:
        return None
    try:
        return usage_of(account)
    except redis.RedisError:
        log.warning("usage counters unreadable", exc_info=True)
        return None


# How long the page that deleted an account waits for both apps to say what they removed.
PURGE_WAIT_S = 15.0


@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete your own account and everything stored for it; the answer says what was removed."""
    account = cast(Account, request.user)
    form = AccountDeleteForm(account, request.POST or None)
    if request.method == "POST" and form.is_valid():
        auth.logout(request)  # first: signing out is audited against the account
        purges = deletion.account_delete(account, by=account.username, request=request)
        purges = deletion.purges_wait(purges, timeout_s=PURGE_WAIT_S)
        return render(request, "accounts/deleted.html", {"username": purges[0].username, "purges": purges})
    return render(request, "accounts/delete.html", {"form": form}, status=_form_status(request, form))
