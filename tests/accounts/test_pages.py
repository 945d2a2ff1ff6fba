"""The account pages and API keys, in process: Django's real auth, forms, CSRF and the ORM
(pytest-django's test database). The same flows through nginx are in test_identity.py,
and in a real browser in tests/ui/test_accounts_ui.py."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.conf import settings as django_settings
from django.test import Client

from webapp.accounts import keys, setup_token
from webapp.accounts.models import Account, ApiKey, AuthEvent, KeyScope, Role, SetupToken

PASSWORD = "a long enough passphrase 7"


@pytest.fixture(autouse=True)
def fresh_limits() -> None:
    """Sign-in counts live in the cache (here the test process's own): each test starts at zero."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def registration(settings: object):
    def set_mode(mode: str) -> None:
        settings.ENV = settings.ENV.model_copy(update={"registration": mode})  # type: ignore[attr-defined]

    return set_mode


def _csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def _form_post(client: Client, path: str, data: dict[str, str]) -> object:
    """GET the page, then POST its form with the page's hidden fields (the CSRF token, the
    setup token) and `data`, as a browser does."""
    page = client.get(path).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert "csrfmiddlewaretoken" in hidden, f"{path} has no CSRF token in its form"
    return client.post(path, {**hidden, **data})


def _admin(username: str = "root") -> Account:
    return Account.objects.create_superuser(username=username, password=PASSWORD)


@pytest.mark.django_db
def test_first_admin_needs_the_setup_token_and_only_once() -> None:
    stale = setup_token.token_issue()
    token = setup_token.token_issue()  # a new token replaces the old one
    client = _csrf_client()
    form = {"username": "boss", "password1": PASSWORD, "password2": PASSWORD}

    for guess, status in (("guess", 403), (stale, 403), ("", 400)):  # no token at all: the form's own error
        wrong = _form_post(client, f"/accounts/setup?token={guess}", form)
        assert wrong.status_code == status, guess
        assert not Account.objects.exists()
    assert stale not in str(SetupToken.objects.values_list("digest", flat=True).first())

    right = _form_post(client, f"/accounts/setup?token={token}", form)
    assert right.status_code == 302
    boss = Account.objects.get(username="boss")
    assert (boss.role, boss.is_staff, boss.is_superuser) == (Role.ADMIN, True, True)
    assert not SetupToken.objects.exists()
    assert client.get("/office/me").json()["username"] == "boss"

    # The token is gone and an admin exists: the page sends everyone to sign-in.
    again = Client().get(f"/accounts/setup?token={token}")
    assert again.status_code == 302 and again["Location"].startswith("/accounts/signin")
    assert Account.objects.count() == 1


@pytest.mark.django_db
def test_signup_waits_for_the_first_admin() -> None:
    response = Client().post("/accounts/signup", {"username": "early", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 409
    assert not Account.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "status", "role"), [("open", 302, Role.USER), ("approval", 302, Role.PENDING), ("closed", 403, None)]
)
def test_registration_follows_the_environment(registration, mode: str, status: int, role: Role | None) -> None:
    _admin()
    registration(mode)
    form = {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD}
    # Closed: the page itself is refused, so post without it (no CSRF enforcement).
    response = (
        Client().post("/accounts/signup", form)
        if mode == "closed"
        else _form_post(_csrf_client(), "/accounts/signup", form)
    )
    assert response.status_code == status
    account = Account.objects.filter(username="newbie").first()
    assert (account.role if account else None) == role


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short7", "too short"),
        ("password123", "too common"),
        ("83920174652", "entirely numeric"),
        ("newbie-newbie", "too similar"),
    ],
)
def test_signup_applies_the_password_validators(registration, password: str, rule: str) -> None:
    _admin()
    registration("open")
    response = _form_post(
        _csrf_client(), "/accounts/signup", {"username": "newbie-newbie", "password1": password, "password2": password}
    )
    assert response.status_code == 400
    assert rule in response.content.decode()
    assert not Account.objects.filter(username="newbie-newbie").exists()


@pytest.mark.django_db
def test_a_form_without_its_csrf_token_is_refused() -> None:
    _admin()
    response = _csrf_client().post("/accounts/signin", {"username": "root", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert response.json()["error"]["field"] == "csrfmiddlewaretoken"
    assert Account.objects.get(username="root").last_login is None


@pytest.mark.django_db
def test_a_wrong_password_and_an_unknown_user_get_the_same_answer() -> None:
    _admin()
    wrong = _form_post(_csrf_client(), "/accounts/signin", {"username": "root", "password": "not it at all"})
    unknown = _form_post(_csrf_client(), "/accounts/signin", {"username": "nobody", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 400

    def error(response: object) -> str:
        found = re.search(r'data-testid="form-error">(.*?)</div>', response.content.decode(), re.S)  # type: ignore[attr-defined]
        assert found
        return found.group(1)

    assert error(wrong) == error(unknown)


@pytest.mark.django_db
def test_sign_in_and_out() -> None:
    _admin()
    client = _csrf_client()
    assert client.get("/office/me").status_code == 401
    signed_in = _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert client.get("/office/me").json() == {"username": "root", "role": "admin", "auth": "session", "key": None}
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == 8 * 3600
    page = client.get("/accounts/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    assert client.post("/accounts/signout", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/office/me").status_code == 401


@pytest.mark.django_db
def test_session_cookie_is_secure_over_tls() -> None:
    _admin()
    client = _csrf_client()
    page = client.get("/accounts/signin", secure=True)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post(
        "/accounts/signin",
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": token},
        secure=True,
        headers={"Referer": "https://testserver/accounts/signin"},
    )
    assert response.status_code == 302
    assert response.cookies[django_settings.SESSION_COOKIE_NAME]["secure"] is True
    plain = _csrf_client()
    _form_post(plain, "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert not plain.cookies[django_settings.SESSION_COOKIE_NAME]["secure"]


@pytest.mark.django_db
def test_a_password_change_signs_out_the_other_sessions() -> None:
    _admin()
    here, elsewhere = _csrf_client(), _csrf_client()
    for client in (here, elsewhere):
        _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
        assert client.get("/office/me").status_code == 200
    new = "another long passphrase 8"
    changed = _form_post(
        here, "/accounts/password", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert changed.status_code == 302
    assert here.get("/office/me").status_code == 200
    assert elsewhere.get("/office/me").status_code == 401


@pytest.mark.django_db
def test_api_key_is_shown_once_and_stored_hashed() -> None:
    _admin()
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    created = _form_post(client, "/accounts/", {"name": "script", "scope": "personal"})
    secret = re.search(r'data-testid="new-key">([^<]+)<', created.content.decode()).group(1)
    assert secret.startswith("pc_") and len(secret) > 40
    assert secret not in client.get("/accounts/").content.decode()  # shown once

    key = ApiKey.objects.get(name="script")
    assert key.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {key.digest, key.prefix} and secret.startswith(key.prefix)
    bearer = Client(headers={"Authorization": f"Bearer {secret}"})
    assert bearer.get("/office/me").json() == {
        "username": "root",
        "role": "admin",
        "auth": "api_key",
        "key": {"name": "script", "scope": "personal"},
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["Bearer pc_not-a-real-key", "Bearer ", "Basic cm9vdDpwdw==", "Bearer " + "x" * 5000, "pc_no-scheme"],
)
def test_a_bad_key_is_401_naming_authorization(header: str) -> None:
    response = Client(headers={"Authorization": header}).get("/office/me")
    assert response.status_code == 401
    assert response.json()["error"]["field"] == "Authorization"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_a_revoked_key_or_a_disabled_account_stops_at_once() -> None:
    admin = _admin()
    other = Account.objects.create_user(username="other", password=PASSWORD)
    first = keys.key_create(account=admin, name="one")
    second = keys.key_create(account=admin, name="two", scope=KeyScope.SERVICE)

    assert not keys.key_revoke(account=other, key_id=first.key.pk)  # not theirs
    assert keys.key_authenticate(first.secret) is not None
    assert keys.key_revoke(account=admin, key_id=first.key.pk)
    assert keys.key_authenticate(first.secret) is None
    assert Client(headers={"Authorization": f"Bearer {first.secret}"}).get("/office/me").status_code == 401

    assert keys.key_authenticate(second.secret) is not None
    admin.is_active = False
    admin.save()
    assert keys.key_authenticate(second.secret) is None


@pytest.mark.django_db
def test_the_audit_records_sign_ins_keys_and_sign_outs() -> None:
    admin = _admin()
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": "wrong wrong wrong"})
    _form_post(client, "/accounts/signin", {"username": "ghost", "password": "wrong wrong wrong"})
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    created = _form_post(client, "/accounts/", {"name": "audited", "scope": "personal"})
    key_id = re.search(r'name="revoke" value="(\d+)"', created.content.decode()).group(1)
    _form_post(client, "/accounts/", {"revoke": key_id})
    page = client.get("/accounts/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post("/accounts/signout", {"csrfmiddlewaretoken": token})

    events = list(AuthEvent.objects.order_by("id").values_list("kind", "username", "account_id"))
    assert events == [
        ("signin_failed", "root", admin.pk),
        ("signin_failed", "ghost", None),
        ("signin", "root", admin.pk),
        ("key_created", "root", admin.pk),
        ("key_revoked", "root", admin.pk),
        ("signout", "root", admin.pk),
    ]
    assert set(AuthEvent.objects.values_list("ip", flat=True)) == {"127.0.0.1"}
    # The account page lists the user's own events, newest first ("ghost" was no account).
    kinds = re.findall(r'data-testid="event" data-kind="([a-z_]+)"', page)
    assert kinds == ["key_revoked", "key_created", "signin", "signin_failed"]
    assert "ghost" not in page


def test_client_ip_is_the_address_daphne_was_given_not_a_header() -> None:
    """nginx writes X-Forwarded-For, daphne --proxy-headers makes it REMOTE_ADDR; X-Real-IP
    (or anything else a client writes) is not read."""
    from django.test import RequestFactory

    from webapp.accounts.client_ip import client_ip

    assert client_ip(RequestFactory().get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_REAL_IP="8.8.4.4")) == "203.0.113.9"


@pytest.mark.django_db
def test_sign_in_tries_are_limited_per_address(settings: object) -> None:
    # A long window: the four tries can't straddle one of its (fixed) boundaries.
    settings.ENV = django_settings.ENV.model_copy(update={"signin_rate_ip": "3/1000d"})  # type: ignore[attr-defined]
    _admin()
    for name in ("a", "b", "c"):
        assert (
            _form_post(_csrf_client(), "/accounts/signin", {"username": name, "password": "x" * 12}).status_code == 400
        )
    limited = _form_post(_csrf_client(), "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 1000 * 86400
    assert 'data-code="too_many_tries"' in limited.content.decode()
    assert Account.objects.get(username="root").last_login is None  # the right password waits too
    assert AuthEvent.objects.filter(kind="signin_limited", username="root").count() == 1


HOSTILE_FORMS = [
    # (page, fields, field the error names)
    ("/accounts/signin", {"username": "root\x00", "password": PASSWORD}, "username"),
    ("/accounts/signin", {"username": "r" * 10_000, "password": PASSWORD}, None),  # the generic "wrong" answer
    ("/accounts/signin", {"username": "root", "password": "p" * 100_000}, None),
    ("/accounts/signin", {"username": "", "password": ""}, "username"),
    ("/accounts/signup", {"username": "new\x00", "password1": PASSWORD, "password2": PASSWORD}, "username"),
    ("/accounts/signup", {"username": "a/b<script>", "password1": PASSWORD, "password2": PASSWORD}, "username"),
    ("/accounts/signup", {"username": "u" * 151, "password1": PASSWORD, "password2": PASSWORD}, "username"),
    ("/accounts/signup", {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD + "x"}, "password2"),
    ("/accounts/signup", {"username": "root", "password1": PASSWORD, "password2": PASSWORD}, "username"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("page", "fields", "field"), HOSTILE_FORMS)
def test_hostile_form_input_is_a_400_naming_the_field_and_changes_nothing(
    registration, page: str, fields: dict[str, str], field: str | None
) -> None:
    _admin()
    registration("open")
    accounts_before = list(Account.objects.values_list("username", "password", "last_login"))
    response = _form_post(_csrf_client(), page, fields)
    assert response.status_code == 400
    body = response.content.decode()
    if field:
        assert f'data-field="{field}"' in body
    else:
        assert 'data-testid="form-error"' in body
    assert "<script>" not in body  # what was typed comes back as text
    assert list(Account.objects.values_list("username", "password", "last_login")) == accounts_before


@pytest.mark.django_db
@pytest.mark.parametrize("revoke", ["²", "9" * 40, "-1", "1 OR 1=1", ""])
def test_hostile_key_ids_revoke_nothing(revoke: str) -> None:
    admin = _admin()
    key = keys.key_create(account=admin, name="kept")
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert _form_post(client, "/accounts/", {"revoke": revoke}).status_code == 302
    assert keys.key_authenticate(key.secret) is not None


@pytest.mark.django_db
def test_a_pending_account_gets_no_keys() -> None:
    Account.objects.create_user(username="waiting", password=PASSWORD, role=Role.PENDING)
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "waiting", "password": PASSWORD})
    page = client.get("/accounts/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    refused = client.post("/accounts/", {"csrfmiddlewaretoken": token, "name": "sneaky", "scope": "service"})
    assert refused.status_code == 403
    assert not ApiKey.objects.exists()


def _limit(settings: object, **rates: str) -> None:
    settings.ENV = settings.ENV.model_copy(update=rates)  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_a_look_alike_username_counts_as_the_same_one(settings: object) -> None:
    """The form signs "ｒoot" (fullwidth) in as root (NFKC), so the limit counts it as root."""
    _limit(settings, signin_rate_user="2/1000d")
    _admin()
    for typed in ("root", "ROOT"):
        assert (
            _form_post(_csrf_client(), "/accounts/signin", {"username": typed, "password": "wrong 1234"}).status_code
            == 400
        )
    limited = _form_post(_csrf_client(), "/accounts/signin", {"username": "ｒoot", "password": PASSWORD})
    assert limited.status_code == 429


@pytest.mark.django_db
def test_a_guesser_elsewhere_does_not_lock_the_user_out(settings: object) -> None:
    _limit(settings, signin_rate_user="2/1000d")
    _admin()
    guesser = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.50")
    for _ in range(2):
        _form_post(guesser, "/accounts/signin", {"username": "root", "password": "wrong 1234"})
    assert _form_post(guesser, "/accounts/signin", {"username": "root", "password": PASSWORD}).status_code == 429
    owner = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.18.0.7")
    assert _form_post(owner, "/accounts/signin", {"username": "root", "password": PASSWORD}).status_code == 302
    # ... up to ten times the per-address rate from everywhere together.
    for n in range(17):
        elsewhere = Client(enforce_csrf_checks=True, REMOTE_ADDR=f"203.0.113.{100 + n}")
        _form_post(elsewhere, "/accounts/signin", {"username": "root", "password": "wrong 1234"})
    owner_again = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.18.0.7")
    assert _form_post(owner_again, "/accounts/signin", {"username": "root", "password": PASSWORD}).status_code == 429


@pytest.mark.django_db
def test_sign_ups_are_limited_per_address(settings: object, registration) -> None:
    _limit(settings, signup_rate_ip="2/1000d")
    registration("open")
    _admin()
    statuses = [
        _form_post(
            _csrf_client(), "/accounts/signup", {"username": f"n{n}", "password1": PASSWORD, "password2": PASSWORD}
        ).status_code
        for n in range(3)
    ]
    assert statuses == [302, 302, 429]
    assert not Account.objects.filter(username="n2").exists()


@pytest.mark.django_db
def test_sign_in_waits_while_the_limits_store_is_down(settings: object) -> None:
    settings.CACHES = {  # type: ignore[attr-defined]
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "unix:///nonexistent/redis.sock",
        }
    }
    _admin()
    response = _form_post(_csrf_client(), "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert Account.objects.get(username="root").last_login is None


@pytest.mark.django_db
def test_the_setup_token_is_used_up_by_exactly_one_caller() -> None:
    token = setup_token.token_issue()
    assert setup_token.token_consume(token) is True
    assert setup_token.token_consume(token) is False


@pytest.mark.django_db
def test_a_signed_in_user_sent_back_to_sign_in_goes_home() -> None:
    _admin()
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    response = client.get("/accounts/signin?next=/accounts/signin")
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_django_admin_signs_in_through_the_limited_page_and_follows_the_role() -> None:
    response = Client().get("/accounts/admin/login/?next=/accounts/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/signin?next=%2Faccounts%2Fadmin%2F"
    admin = _admin()
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    assert client.get("/accounts/admin/").status_code == 200
    assert client.get("/accounts/admin/accounts/apikey/add/").status_code == 403  # keys are made on /accounts/
    admin.role = Role.USER
    admin.save()
    assert (admin.is_staff, admin.is_superuser) == (False, False)
    assert client.get("/accounts/admin/").status_code == 302


@pytest.mark.django_db
def test_an_admin_approves_pending_accounts_and_the_audit_says_who() -> None:
    _admin()
    waiting = Account.objects.create_user(username="waiting", password=PASSWORD, role=Role.PENDING)
    user = Account.objects.create_user(username="already", password=PASSWORD, role=Role.USER)
    client = _csrf_client()
    _form_post(client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    response = _form_post(
        client,
        "/accounts/admin/accounts/account/",
        {"action": "approve", "_selected_action": [str(waiting.pk), str(user.pk)]},  # type: ignore[dict-item]
    )
    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.role == Role.USER
    events = list(AuthEvent.objects.filter(kind="access_changed").values_list("account__username", "detail"))
    assert events == [("waiting", "by root: role pending→user")]  # "already" was not pending: unchanged


@pytest.mark.django_db
def test_disabling_an_account_in_admin_signs_it_out_and_is_audited() -> None:
    _admin()
    target = Account.objects.create_user(username="target", password=PASSWORD)
    theirs = _csrf_client()
    _form_post(theirs, "/accounts/signin", {"username": "target", "password": PASSWORD})
    assert theirs.get("/office/me").status_code == 200
    admin_client = _csrf_client()
    _form_post(admin_client, "/accounts/signin", {"username": "root", "password": PASSWORD})
    changed = _form_post(
        admin_client,
        f"/accounts/admin/accounts/account/{target.pk}/change/",
        {"username": "target", "role": "user", "is_active": "", "last_login_0": "", "last_login_1": ""},
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert theirs.get("/office/me").status_code == 401
    assert AuthEvent.objects.get(kind="access_changed").detail == "by root: disabled"
