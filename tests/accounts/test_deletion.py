"""Deleting an account through the real stack: by its owner on /accounts/delete and by an
admin in Django admin. The account, its keys and sessions go at once; each app removes what
it stores (read back through the API, the retrieval index file and the purge records), and
the page says what was removed. Another account's data stays exactly as it was."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.auth import PASSWORD, account_create, bearer, form_post, key_create, signin
from tests.characters import cardgen
from tests.office.test_documents import POLICY_MD
from webapp.launcher.stack import Stack

pytestmark = pytest.mark.slow


def account_id(stack: Stack, username: str) -> int:
    out = stack.manage(
        "shell", "-v", "0", "-c",
        f"from webapp.accounts.models import Account; print(Account.objects.get(username={username!r}).pk)",
    )  # fmt: skip
    return int(out.strip())


def fill(gateway: str, auth: dict[str, str], *, user_id: str | None = None) -> dict[str, Any]:
    """A conversation per app, a document and a note for `auth` (and `user_id`, for a service key)."""
    who = {"user_id": user_id} if user_id else {}
    made: dict[str, Any] = {}
    for app, extra in (("office", {}), ("character", {"persona": "captain-rhea"})):
        response = requests.post(
            f"{gateway}/{app}/Llama", json={"input_data": "Hello.", **extra, **who}, headers=auth, timeout=120
        )
        assert response.status_code == 200, response.text
        made[app] = response.headers["X-Conversation-Id"]
    upload = requests.post(
        f"{gateway}/office/documents",
        files={"file": ("travel.md", POLICY_MD, "text/markdown")},
        data=who,
        headers=auth,
        timeout=120,
    )
    assert upload.status_code == 201, upload.text
    made["document"] = upload.json()["id"]
    card = requests.post(
        f"{gateway}/character/characters/import",
        files={"file": ("card.png", cardgen.png_with(chara=None, ccv3=cardgen.card_v3()))},
        data=who,
        headers=auth,
        timeout=60,
    )
    assert card.status_code == 201, card.text
    made["card"] = card.json()["id"]
    book = requests.post(
        f"{gateway}/character/lorebooks",
        files={"file": ("world.json", json.dumps(cardgen.world_info()).encode())},
        data=who,
        headers=auth,
        timeout=60,
    )
    assert book.status_code == 201, book.text
    persona = requests.put(f"{gateway}/character/user-persona", json={"name": "Ari", **who}, headers=auth, timeout=30)
    assert persona.status_code == 200, persona.text
    note = requests.post(
        f"{gateway}/office/tools/save_note/call",
        json={"arguments": {"title": "t", "text": "keep me"}, **who},
        headers=auth,
        timeout=30,
    )
    assert note.status_code == 200, note.text
    return made


def index_rows(stack: Stack, owner: str) -> int:
    """Passages of `owner` and its end users in the office's search index file."""
    with sqlite3.connect(stack.config.var_dir / "retrieval" / "office.sqlite3") as db:
        return db.execute(
            "SELECT count(*) FROM chunks WHERE user_id = ? OR user_id LIKE ?", (owner, owner + "/%")
        ).fetchone()[0]


def everything_of(gateway: str, auth: dict[str, str], made: dict[str, Any]) -> dict[str, Any]:
    def get(path: str) -> Any:
        response = requests.get(gateway + path, headers=auth, timeout=30)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return {
        "office": get(f"/office/conversations/{made['office']}/messages"),
        "character": get(f"/character/conversations/{made['character']}/messages"),
        "documents": get("/office/documents"),
        "characters": get("/character/characters"),
        "lorebooks": get("/character/lorebooks"),
        "user_persona": get("/character/user-persona"),
    }


def avatars(stack: Stack) -> set[str]:
    return {path.name for path in (stack.config.var_dir / "avatars" / "character").glob("*.png")}


def test_deleting_your_account_removes_its_data_in_both_apps_and_says_what(stack: Stack, gateway: str) -> None:
    name, other = account_create(stack), account_create(stack)
    personal, service = bearer(key_create(stack, name)), bearer(key_create(stack, name, scope="service"))
    other_auth = bearer(key_create(stack, other))
    cards = [fill(gateway, personal)["card"], fill(gateway, service, user_id="end-user-1")["card"]]
    kept = fill(gateway, other_auth)
    other_before = everything_of(gateway, other_auth, kept)
    other_avatar = {name for name in avatars(stack) if name.startswith(kept["card"])}
    assert len(other_avatar) == 1
    owner = f"a{account_id(stack, name)}"
    assert index_rows(stack, owner) >= 2

    browser = signin(gateway, name)
    wrong = form_post(browser, gateway, "/accounts/delete", {"password": "not it at all"})
    assert wrong.status_code == 400 and "not your password" in wrong.text
    assert requests.get(f"{gateway}/office/me", headers=personal, timeout=30).status_code == 200

    page = form_post(browser, gateway, "/accounts/delete", {"password": PASSWORD})
    assert page.status_code == 200, page.text
    rows = dict(re.findall(r'data-testid="purge" data-app="(\w+)" data-done="(\w+)"', page.text))
    assert rows == {"office": "true", "character": "true"}, page.text
    removed = {
        app: dict(re.findall(r'<span data-what="(\w+)">(\d+) ', section))
        for app, section in re.findall(r'data-app="(\w+)"(.*?)</tr>', page.text, re.S)
    }
    assert removed["office"]["conversations"] == "2" and int(removed["office"]["messages"]) == 4
    assert removed["office"]["documents"] == "2" and int(removed["office"]["passages"]) >= 2
    assert removed["office"]["notes"] == "2"
    assert removed["character"] == {
        "conversations": "2",
        "messages": "4",
        "characters": "2",
        "lorebooks": "2",
        "user_personas": "2",
    }

    for auth in (personal, service):
        assert requests.get(f"{gateway}/office/me", headers=auth, timeout=30).status_code == 401
    assert browser.get(f"{gateway}/character/me", timeout=30).status_code == 401
    assert index_rows(stack, owner) == 0
    assert everything_of(gateway, other_auth, kept) == other_before
    left = avatars(stack)
    assert other_avatar <= left
    assert not [avatar for avatar in left if avatar.startswith(tuple(cards))], "the account's avatars are gone"
    events = stack.manage(
        "shell", "-v", "0", "-c",
        "from webapp.accounts.models import AuthEvent; "
        f"print(*AuthEvent.objects.filter(username={name!r}, kind='account_deleted').values_list('detail', flat=True))",
    )  # fmt: skip
    assert f"by {name}" in events


@pytest.fixture
def admin(stack: Stack) -> Iterator[str]:
    """An admin of the shared stack, for one test: removed after it, since other tests count on
    the stack having no admin yet (its first-admin setup link; tests/accounts/test_identity.py)."""
    name = account_create(stack, role="admin")
    yield name
    stack.manage(
        "shell", "-v", "0", "-c",
        f"from webapp.accounts.models import Account; Account.objects.filter(username={name!r}).delete()",
    )  # fmt: skip


def test_an_admin_deletes_an_account_in_django_admin_and_its_data_goes(stack: Stack, gateway: str, admin: str) -> None:
    name = account_create(stack)
    auth = bearer(key_create(stack, name))
    made = fill(gateway, auth)
    pk = account_id(stack, name)
    browser = signin(gateway, admin)
    deleted = form_post(browser, gateway, f"/accounts/admin/accounts/account/{pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302, deleted.text[:500]
    assert requests.get(f"{gateway}/office/conversations", headers=auth, timeout=30).status_code == 401

    for _ in range(100):  # each app does its share within a few seconds
        out = stack.manage(
            "shell", "-v", "0", "-c",
            "import json; from webapp.accounts.models import DataPurge; "
            "print(json.dumps([[p.app, bool(p.done_at), p.removed, p.requested_by] "
            f"for p in DataPurge.objects.filter(account_id={pk})]))",
        )  # fmt: skip
        purges = {app: (done, removed, by) for app, done, removed, by in json.loads(out)}
        if all(done for done, _, _ in purges.values()):
            break
    assert set(purges) == {"office", "character"}
    assert purges["office"][1]["conversations"] == 1 and purges["office"][1]["documents"] == 1
    assert purges["character"][1]["conversations"] == 1 and purges["office"][2] == admin
    assert index_rows(stack, f"a{pk}") == 0
    assert made["office"] not in browser.get(f"{gateway}/office/conversations", timeout=30).text
    assert uuid.UUID(made["office"])  # (the id was real)
