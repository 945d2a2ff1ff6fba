"""The isolation matrix: two accounts over every endpoint and interface, through nginx and the
real apps. Account A owns a conversation per app, a document, a note, a waiting approval and
audit entries; account B (a personal key, a service key, a signed-in browser session) tries
each of them by id and by name. Every case asserts its status and that A's data is exactly
as it was (read back with A's key after each case).

Also here: without credentials every data endpoint is a 401; a revoked key is a 401 at once;
a session write without the CSRF token is a 403; a pending account gets 403 everywhere; a
demo account can't upload or use tools above LOW; a disabled account's open WebSocket is
closed at its next message.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import websockets

from tests.auth import account_create, bearer, key_create, signin
from tests.office.test_documents import POLICY_MD
from webapp.launcher.stack import Stack

pytestmark = pytest.mark.slow

APPS = ("office", "character")
CHARACTER = {"persona": "captain-rhea"}


@dataclass
class World:
    gateway: str
    a_name: str
    a_auth: dict[str, str]
    b_name: str
    b_auth: dict[str, str]  # B's personal key
    b_service: dict[str, str]  # B's service key
    db_ids: dict[str, str]  # A's conversation per app
    reply_ids: dict[str, str]  # A's reply in it, per app
    document_id: str
    approval_id: str
    group_id: str  # A's group chat (character app)


def ws_url(gateway: str, app: str) -> str:
    return gateway.replace("http://", "ws://") + f"/{app}/ws/chat/"


def turn(gateway: str, auth: dict[str, str], app: str, **body: Any) -> requests.Response:
    extra = CHARACTER if app == "character" else {}
    return requests.post(
        f"{gateway}/{app}/Llama", json={"input_data": "Hello.", **extra, **body}, headers=auth, timeout=120
    )


@pytest.fixture(scope="module")
def world(stack: Stack, gateway: str) -> World:
    a_name, b_name = account_create(stack, prefix="alice"), account_create(stack, prefix="bob")
    a_auth = bearer(key_create(stack, a_name))
    db_ids, reply_ids = {}, {}
    for app in APPS:
        response = turn(gateway, a_auth, app)
        assert response.status_code == 200, response.text
        db_ids[app] = response.headers["X-Conversation-Id"]
        reply_ids[app] = response.headers["X-Message-Id"]
    upload = requests.post(
        f"{gateway}/office/documents",
        files={"file": ("travel.md", POLICY_MD, "text/markdown")},
        headers=a_auth,
        timeout=120,
    )
    assert upload.status_code == 201, upload.text
    note = requests.post(
        f"{gateway}/office/tools/save_note/call",
        json={"arguments": {"title": "alice's secret", "text": "the vault code is quartz-zebra-2718"}},
        headers=a_auth,
        timeout=30,
    )
    assert note.status_code == 200, note.text
    waiting = requests.post(
        f"{gateway}/office/tools/delete_document/call",
        json={"arguments": {"document_id": upload.json()["id"]}},
        headers=a_auth,
        timeout=30,
    )
    assert waiting.status_code == 202, waiting.text
    group = requests.post(
        f"{gateway}/character/groups", json={"members": ["captain-rhea", "seoyeon"]}, headers=a_auth, timeout=30
    )
    assert group.status_code == 201, group.text
    return World(
        gateway=gateway,
        a_name=a_name,
        a_auth=a_auth,
        b_name=b_name,
        b_auth=bearer(key_create(stack, b_name)),
        b_service=bearer(key_create(stack, b_name, scope="service")),
        db_ids=db_ids,
        reply_ids=reply_ids,
        document_id=upload.json()["id"],
        approval_id=waiting.json()["approval_id"],
        group_id=group.json()["db_id"],
    )


def snapshot(w: World) -> dict[str, Any]:
    """Everything A has, read with A's key. (A's notes are read once at the end, by
    test_zz_the_owners_note_is_still_there_exactly_once: list_notes is rate-limited.)"""

    def get(path: str) -> Any:
        response = requests.get(w.gateway + path, headers=w.a_auth, timeout=30)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return {
        "conversations": {app: get(f"/{app}/conversations")["conversations"] for app in APPS},
        "messages": {app: get(f"/{app}/conversations/{w.db_ids[app]}/messages")["messages"] for app in APPS},
        "documents": get("/office/documents"),
        "group": get(f"/character/conversations/{w.group_id}/messages")["messages"],
        # A's own reads (list_notes) add audit entries; what matters is that nothing of B's lands here.
        "audit_tools": sorted({e["tool"] for e in get("/office/audit?limit=500")["entries"]}),
    }


async def ws_frames(gateway: str, app: str, auth: dict[str, str], frame: dict[str, Any]) -> dict[str, Any]:
    """Send one frame on a new socket; the first frame after the status one."""
    async with websockets.connect(ws_url(gateway, app), additional_headers=auth) as ws:
        assert json.loads(await ws.recv())["type"] == "status"
        await ws.send(json.dumps(frame))
        return json.loads(await asyncio.wait_for(ws.recv(), timeout=60))


def http(method: str, path: str, **kwargs: Any) -> Callable[[World, dict[str, str]], requests.Response]:
    """A request whose path, body or form may name A's ids: {db_office}, {db_character}, {doc},
    {approval}, {a_name}."""

    def run(w: World, auth: dict[str, str]) -> requests.Response:
        names = {
            "db_office": w.db_ids["office"],
            "db_character": w.db_ids["character"],
            "msg_office": w.reply_ids["office"],
            "msg_character": w.reply_ids["character"],
            "doc": w.document_id,
            "approval": w.approval_id,
            "a_name": w.a_name,
            "group": w.group_id,
        }

        def filled(value: Any) -> Any:
            text = json.dumps(value)
            for key, name in names.items():
                text = text.replace("{" + key + "}", name)
            return json.loads(text)

        return requests.request(
            method,
            w.gateway + path.format(**names),
            json=filled(kwargs["json"]) if "json" in kwargs else None,
            data=filled(kwargs["data"]) if "data" in kwargs else None,
            files=kwargs.get("files"),
            headers=auth,
            timeout=120,
        )

    return run


# (case, request, expected status) — B with its personal key aims at A's ids.
BY_ID = [
    ("office messages", http("GET", "/office/conversations/{db_office}/messages"), 404),
    ("character messages", http("GET", "/character/conversations/{db_character}/messages"), 404),
    ("office delete conversation", http("DELETE", "/office/conversations/{db_office}"), 404),
    ("character delete conversation", http("DELETE", "/character/conversations/{db_character}"), 404),
    (
        "office Llama into A's conversation",
        http("POST", "/office/Llama", json={"input_data": "hi", "db_id": "{db_office}"}),
        404,
    ),
    (
        "character Llama into A's conversation",
        http("POST", "/character/Llama", json={"input_data": "hi", "db_id": "{db_character}", **CHARACTER}),
        404,
    ),
    (
        "office edit A's message",
        http("PATCH", "/office/conversations/{db_office}/messages/{msg_office}", json={"content": "mine now"}),
        404,
    ),
    (
        "character choose A's swipe",
        http("PATCH", "/character/conversations/{db_character}/messages/{msg_character}", json={"swipe_id": 0}),
        404,
    ),
    ("office delete A's message", http("DELETE", "/office/conversations/{db_office}/messages/{msg_office}"), 404),
    (
        "character swipe A's reply",
        http("POST", "/character/conversations/{db_character}/messages/{msg_character}/swipes"),
        404,
    ),
    ("office export A's conversation", http("GET", "/office/conversations/{db_office}/export"), 404),
    (
        "character branch A's conversation",
        http("POST", "/character/conversations/{db_character}/branches", json={"from_message_id": "{msg_character}"}),
        404,
    ),
    ("A's group", http("GET", "/character/groups/{group}"), 404),
    ("change A's group", http("PATCH", "/character/groups/{group}", json={"muted": ["seoyeon"]}), 404),
    ("post in A's group", http("POST", "/character/groups/{group}/messages", json={"input_data": "hi"}), 404),
    ("speak in A's group", http("POST", "/character/groups/{group}/speak", json={"speaker": "seoyeon"}), 404),
    ("document", http("GET", "/office/documents/{doc}"), 404),
    ("delete document", http("DELETE", "/office/documents/{doc}"), 404),
    ("approve A's call", http("POST", "/office/approvals/{approval}", json={"decision": "approve"}), 404),
    ("deny A's call", http("POST", "/office/approvals/{approval}", json={"decision": "deny"}), 404),
    (
        "delete_document tool on A's doc",
        http("POST", "/office/tools/delete_document/call", json={"arguments": {"document_id": "{doc}"}}),
        202,
    ),
]

# B's personal key naming A by username: a 403 on every endpoint that takes user_id.
BY_NAME = [
    ("list conversations", http("GET", "/office/conversations?user_id={a_name}")),
    ("character conversations", http("GET", "/character/conversations?user_id={a_name}")),
    ("messages", http("GET", "/office/conversations/{db_office}/messages?user_id={a_name}")),
    ("delete conversation", http("DELETE", "/office/conversations/{db_office}?user_id={a_name}")),
    ("export", http("GET", "/character/conversations/{db_character}/export?user_id={a_name}")),
    ("conversation search", http("GET", "/character/search?q=hello&user_id={a_name}")),
    ("groups", http("GET", "/character/groups?user_id={a_name}")),
    (
        "new group",
        http("POST", "/character/groups", json={"members": ["seoyeon", "captain-rhea"], "user_id": "{a_name}"}),
    ),
    (
        "branch",
        http(
            "POST",
            "/office/conversations/{db_office}/branches?user_id={a_name}",
            json={"from_message_id": "{msg_office}"},
        ),
    ),
    (
        "edit message",
        http(
            "PATCH", "/office/conversations/{db_office}/messages/{msg_office}?user_id={a_name}", json={"content": "x"}
        ),
    ),
    ("delete message", http("DELETE", "/office/conversations/{db_office}/messages/{msg_office}?user_id={a_name}")),
    (
        "import",
        http(
            "POST",
            "/character/conversations/import",
            files={"file": ("chat.jsonl", b'{"user_name": "u", "character_name": "c"}\n')},
            data={"user_id": "{a_name}"},
        ),
    ),
    ("swipe", http("POST", "/office/conversations/{db_office}/messages/{msg_office}/swipes?user_id={a_name}")),
    ("office Llama", http("POST", "/office/Llama", json={"input_data": "hi", "user_id": "{a_name}"})),
    (
        "character Llama",
        http("POST", "/character/Llama", json={"input_data": "hi", "user_id": "{a_name}", **CHARACTER}),
    ),
    ("documents", http("GET", "/office/documents?user_id={a_name}")),
    ("document", http("GET", "/office/documents/{doc}?user_id={a_name}")),
    ("delete document", http("DELETE", "/office/documents/{doc}?user_id={a_name}")),
    (
        "upload",
        http(
            "POST", "/office/documents", files={"file": ("x.txt", b"hello", "text/plain")}, data={"user_id": "{a_name}"}
        ),
    ),
    ("search", http("POST", "/office/documents/search", json={"query": "hotel receipts", "user_id": "{a_name}"})),
    ("tool call", http("POST", "/office/tools/list_notes/call", json={"arguments": {}, "user_id": "{a_name}"})),
    ("tool rate limit", http("GET", "/office/tools/list_notes/rate-limit?user_id={a_name}")),
    ("approval", http("POST", "/office/approvals/{approval}", json={"decision": "approve", "user_id": "{a_name}"})),
    ("audit", http("GET", "/office/audit?user_id={a_name}")),
    (
        "OpenAI user",
        http(
            "POST",
            "/office/v1/chat/completions",
            json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}], "user": "{a_name}"},
        ),
    ),
    (
        "Anthropic user",
        http(
            "POST",
            "/office/v1/messages",
            json={
                "model": "assistant",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": {"user_id": "{a_name}"},
            },
        ),
    ),
    (
        "Responses user",
        http("POST", "/office/v1/responses", json={"model": "assistant", "input": "hi", "user": "{a_name}"}),
    ),
    (
        "embeddings user",
        http("POST", "/office/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "hi", "user": "{a_name}"}),
    ),
]

# Every data endpoint, for the 401 without credentials.
DATA_ENDPOINTS = [
    ("GET", "/office/conversations"),
    ("GET", "/character/conversations"),
    ("GET", f"/office/conversations/{uuid.uuid4()}/messages"),
    ("DELETE", f"/character/conversations/{uuid.uuid4()}"),
    ("GET", f"/office/conversations/{uuid.uuid4()}/export"),
    ("POST", f"/character/conversations/{uuid.uuid4()}/branches"),
    ("POST", "/office/conversations/import"),
    ("GET", "/office/search?q=hello"),
    ("GET", "/character/groups"),
    ("POST", "/character/groups"),
    ("GET", f"/character/groups/{uuid.uuid4()}"),
    ("PATCH", f"/character/groups/{uuid.uuid4()}"),
    ("POST", f"/character/groups/{uuid.uuid4()}/messages"),
    ("POST", f"/character/groups/{uuid.uuid4()}/speak"),
    ("GET", "/character/search?q=hello"),
    ("PATCH", f"/office/conversations/{uuid.uuid4()}/messages/{'a' * 24}"),
    ("DELETE", f"/character/conversations/{uuid.uuid4()}/messages/{'a' * 24}"),
    ("POST", f"/character/conversations/{uuid.uuid4()}/messages/{'a' * 24}/swipes"),
    ("POST", "/office/Llama"),
    ("POST", "/character/Llama"),
    ("GET", "/office/documents"),
    ("POST", "/office/documents"),
    ("GET", "/office/documents/d0"),
    ("DELETE", "/office/documents/d0"),
    ("POST", "/office/documents/search"),
    ("POST", "/office/tools/calculator/call"),
    ("GET", "/office/tools/calculator/rate-limit"),
    ("POST", "/office/approvals/a0"),
    ("GET", "/office/audit"),
    ("POST", "/office/v1/chat/completions"),
    ("POST", "/character/v1/chat/completions"),
    ("POST", "/office/v1/messages"),
    ("POST", "/character/v1/messages"),
    ("POST", "/office/v1/embeddings"),
    ("POST", "/office/v1/responses"),
    ("GET", "/office/mcp-servers"),
    ("DELETE", "/office/mcp-servers/ext"),
    ("POST", "/office/mcp"),
    ("POST", "/character/v1/responses"),
    ("GET", "/office/me"),
    ("GET", "/character/me"),
]


@pytest.mark.parametrize(("case", "request_", "status"), BY_ID, ids=[c[0] for c in BY_ID])
def test_another_accounts_ids_are_not_found_and_nothing_changes(world: World, case, request_, status) -> None:
    before = snapshot(world)
    response = request_(world, world.b_auth)
    assert response.status_code == status, response.text
    if status == 202:  # B's own approval, for a document B doesn't have: approving it runs as B
        approval = response.json()["approval_id"]
        ran = requests.post(
            f"{world.gateway}/office/approvals/{approval}",
            json={"decision": "approve"},
            headers=world.b_auth,
            timeout=30,
        )
        assert ran.status_code < 500 or ran.status_code == 502, ran.text
    assert snapshot(world) == before


@pytest.mark.parametrize(("case", "request_"), BY_NAME, ids=[c[0] for c in BY_NAME])
def test_a_personal_key_naming_another_account_is_403_and_nothing_changes(world: World, case, request_) -> None:
    before = snapshot(world)
    response = request_(world, world.b_auth)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "user_id_not_yours" and error["field"] == "user_id"
    assert snapshot(world) == before


@pytest.mark.parametrize(("case", "request_"), BY_NAME, ids=[c[0] for c in BY_NAME])
def test_a_service_key_naming_another_account_names_its_own_end_user(world: World, case, request_) -> None:
    """B's service key with user_id=A's username reaches B's end user of that name: an empty
    store, never A's data."""
    before = snapshot(world)
    response = request_(world, world.b_service)
    assert response.status_code in (200, 201, 202, 204, 404), response.text
    if response.status_code != 404:  # a 404's message repeats the id it was asked for
        assert world.db_ids["office"] not in response.text and world.document_id not in response.text
    assert "quartz-zebra" not in response.text  # A's note
    assert snapshot(world) == before


def test_lists_searches_and_grounding_show_only_the_accounts_own_data(world: World) -> None:
    g, b = world.gateway, world.b_auth
    for app in APPS:
        listed = requests.get(f"{g}/{app}/conversations", headers=b, timeout=30).json()["conversations"]
        assert world.db_ids[app] not in {c["db_id"] for c in listed}
        for auth, sees in ((world.a_auth, True), (b, False), (world.b_service, False)):
            found = requests.get(f"{g}/{app}/search", params={"q": "hello"}, headers=auth, timeout=30)
            assert found.status_code == 200, found.text
            assert (world.db_ids[app] in {r["db_id"] for r in found.json()["results"]}) is sees, (app, found.text)
    assert requests.get(f"{g}/office/documents", headers=b, timeout=30).json()["documents"] == []
    search = requests.post(f"{g}/office/documents/search", json={"query": "hotel receipts"}, headers=b, timeout=30)
    assert search.status_code == 200 and search.json()["results"] == []
    notes = requests.post(f"{g}/office/tools/list_notes/call", json={"arguments": {}}, headers=b, timeout=30)
    assert "quartz-zebra" not in notes.text
    audit = requests.get(f"{g}/office/audit?limit=500", headers=b, timeout=30).json()["entries"]
    assert all(e.get("approval_id") != world.approval_id for e in audit)
    question = {"model": "assistant", "messages": [{"role": "user", "content": "How many days for hotel receipts?"}]}
    grounded_a = requests.post(f"{g}/office/v1/chat/completions", json=question, headers=world.a_auth, timeout=120)
    grounded_b = requests.post(f"{g}/office/v1/chat/completions", json=question, headers=b, timeout=120)
    assert grounded_a.json()["sources"][0]["document_id"] == world.document_id  # the check can fail
    assert "sources" not in grounded_b.json()


def test_over_websocket_another_accounts_conversation_is_not_found(world: World) -> None:
    before = snapshot(world)
    for app in APPS:
        for kind in ("message", "regenerate"):
            frame = {"type": kind, "db_id": world.db_ids[app], **(CHARACTER if app == "character" else {})}
            if kind == "message":
                frame["input_data"] = "hi"
            answer = asyncio.run(ws_frames(world.gateway, app, world.b_auth, frame))
            assert (answer["type"], answer["code"], answer["field"]) == ("error", "not_found", "db_id"), answer
        named = asyncio.run(
            ws_frames(
                world.gateway, app, world.b_auth, {"type": "message", "input_data": "hi", "user_id": world.a_name}
            )
        )
        assert (named["type"], named["code"]) == ("error", "user_id_not_yours"), named
    speak = {"type": "speak", "db_id": world.group_id, "speaker": "seoyeon"}
    answer = asyncio.run(ws_frames(world.gateway, "character", world.b_auth, speak))
    assert (answer["type"], answer["code"], answer["field"]) == ("error", "not_found", "db_id"), answer
    assert snapshot(world) == before


def test_a_browser_session_of_another_account_sees_none_of_it(world: World) -> None:
    with signin(world.gateway, world.b_name) as session:
        for app in APPS:
            listed = session.get(f"{world.gateway}/{app}/conversations", timeout=30)
            assert listed.status_code == 200 and world.db_ids[app] not in listed.text
            messages = session.get(f"{world.gateway}/{app}/conversations/{world.db_ids[app]}/messages", timeout=30)
            assert messages.status_code == 404
        # A session write needs the CSRF token: without it, 403 and nothing happens.
        before = snapshot(world)
        deleted = session.delete(
            f"{world.gateway}/office/documents/{world.document_id}", headers={"Origin": world.gateway}, timeout=30
        )
        assert deleted.status_code == 403 and deleted.json()["error"]["code"] in ("csrf_failed", "permission_denied")
        assert snapshot(world) == before


@pytest.mark.parametrize(("method", "path"), DATA_ENDPOINTS)
def test_without_credentials_every_data_endpoint_is_401(gateway: str, method: str, path: str) -> None:
    response = requests.request(method, gateway + path, json={}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("app", APPS)
def test_without_credentials_the_websocket_is_closed_with_4401_and_the_page_redirects(gateway: str, app: str) -> None:
    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with websockets.connect(ws_url(gateway, app)) as ws:
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return frame, ws.close_code

    frame, code = asyncio.run(scenario())
    assert frame["type"] == "error" and frame["code"] == "not_authenticated"
    assert code == 4401
    page = requests.get(f"{gateway}/{app}/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
    assert page.status_code == 302 and page.headers["Location"].startswith(f"/accounts/signin?next=/{app}/")


def test_a_revoked_key_stops_at_once_on_rest_websocket_and_openai(stack: Stack, gateway: str) -> None:
    name = account_create(stack)
    key = key_create(stack, name)
    auth = bearer(key)
    assert requests.get(f"{gateway}/office/conversations", headers=auth, timeout=30).status_code == 200

    async def open_socket_then_revoke() -> tuple[dict[str, Any], int | None]:
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=auth) as ws:
            assert json.loads(await ws.recv())["type"] == "status"
            stack.manage(
                "shell", "-v", "0", "-c",
                "from django.utils import timezone; from webapp.accounts.models import ApiKey; "
                f"ApiKey.objects.filter(account__username={name!r}).update(revoked_at=timezone.now())",
            )  # fmt: skip
            await ws.send(json.dumps({"type": "message", "input_data": "hi"}))
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return frame, ws.close_code

    frame, code = asyncio.run(open_socket_then_revoke())
    assert frame["code"] == "invalid_api_key" and code == 4401
    for path in ("/office/conversations", "/character/conversations"):
        assert requests.get(gateway + path, headers=auth, timeout=30).status_code == 401
    completion = requests.post(
        f"{gateway}/office/v1/chat/completions",
        json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth,
        timeout=30,
    )
    assert completion.status_code == 401 and completion.json()["error"]["type"] == "authentication_error"
    listed = stack.manage(
        "shell", "-v", "0", "-c",
        f"from webapp.accounts.models import Account; print(Account.objects.get(username={name!r}).api_keys.count())",
    )  # fmt: skip
    assert listed.strip() == "1", "revoked, not deleted"


def test_a_disabled_accounts_open_socket_is_closed_at_its_next_message(stack: Stack, gateway: str) -> None:
    name = account_create(stack)
    with signin(gateway, name) as session:
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        headers = {"Cookie": cookie, "Origin": gateway}
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "status"
            stack.manage(
                "shell", "-v", "0", "-c",
                "from webapp.accounts.models import Account; "
                f"Account.objects.filter(username={name!r}).update(is_active=False)",
            )  # fmt: skip
            await ws.send(json.dumps({"type": "message", "input_data": "hi", **CHARACTER}))
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return frame, ws.close_code

    frame, code = asyncio.run(scenario())
    assert frame["code"] == "not_authenticated" and code == 4401


def test_a_pending_account_signs_in_but_gets_403_on_data_and_its_socket_4403(stack: Stack, gateway: str) -> None:
    name = account_create(stack, role="pending")
    with signin(gateway, name) as session:
        me = session.get(f"{gateway}/office/me", timeout=30)
        assert me.status_code == 200 and me.json()["role"] == "pending"
        for app in APPS:
            listed = session.get(f"{gateway}/{app}/conversations", timeout=30)
            assert listed.status_code == 403 and listed.json()["error"]["code"] == "account_pending"
        page = session.get(f"{gateway}/office/", allow_redirects=False, timeout=30)
        assert page.status_code == 302 and page.headers["Location"] == "/accounts/"
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        headers = {"Cookie": cookie, "Origin": gateway}
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=headers) as ws:
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return frame, ws.close_code

    frame, code = asyncio.run(scenario())
    assert frame["code"] == "account_pending" and code == 4403


def test_a_demo_account_chats_but_cannot_upload_or_use_tools_above_low(stack: Stack, gateway: str) -> None:
    name = account_create(stack, role="demo")
    with signin(gateway, name) as session:
        token = session.cookies["csrftoken"]
        headers = {"X-CSRFToken": token, "Origin": gateway}
        chat = session.post(f"{gateway}/office/Llama", json={"input_data": "Hello."}, headers=headers, timeout=120)
        assert chat.status_code == 200, chat.text
        upload = session.post(
            f"{gateway}/office/documents",
            files={"file": ("x.txt", b"hello", "text/plain")},
            headers=headers,
            timeout=30,
        )
        assert upload.status_code == 403 and upload.json()["error"]["code"] == "role_forbidden"
        note = session.post(
            f"{gateway}/office/tools/save_note/call",
            json={"arguments": {"title": "t", "text": "x"}},
            headers=headers,
            timeout=30,
        )
        assert note.status_code == 403 and "up to LOW" in note.json()["error"]["message"]
        clock = session.post(
            f"{gateway}/office/tools/current_time/call", json={"arguments": {}}, headers=headers, timeout=30
        )
        assert clock.status_code == 200, clock.text
        documents = session.get(f"{gateway}/office/documents", timeout=30).json()["documents"]
        assert documents == []


def test_zz_the_owners_note_is_still_there_exactly_once(world: World) -> None:
    """Last in the module: after every case above, A's note is as A saved it."""
    notes = requests.post(
        f"{world.gateway}/office/tools/list_notes/call", json={"arguments": {}}, headers=world.a_auth, timeout=30
    )
    assert notes.status_code == 200, notes.text
    texts = [note["text"] for note in notes.json()["result"]["notes"]]
    assert texts == ["the vault code is quartz-zebra-2718"]
