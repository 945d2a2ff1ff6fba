"""Hostile input through nginx: the cases that once crashed an app, answered 5xx or poisoned a
user's stored data. Each is a clear 4xx in its interface's error shape, the app stays up, and
nothing stored changes; data stored before reads back.

The table follows the reliability review (issue 12); keep adding to it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import pytest
import requests
import websockets

from tests.chat.test_websocket import recv, ws_url

pytestmark = pytest.mark.slow

DEEP = 5_000


def deep_json(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


def raw_post(http: requests.Session, url: str, body: bytes) -> requests.Response:
    return http.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)


def app_pid(stack: Any, app: str) -> int:
    pid = stack.pid(app)
    assert pid > 0
    return pid


@pytest.fixture(scope="module")
def owner(gateway: str, auth: dict[str, str]) -> dict[str, Any]:
    """A user with one stored turn per app, which no hostile request may change."""
    user_id = f"owner-{uuid.uuid4().hex[:8]}"
    db_ids = {}
    with requests.Session() as http:
        http.headers.update(auth)
        for app, extra in (("office", {}), ("character", {"persona": "captain-rhea"})):
            db_id = str(uuid.uuid4())
            body = {"input_data": "Hello there.", "db_id": db_id, "user_id": user_id, **extra}
            assert http.post(f"{gateway}/{app}/Llama", json=body, timeout=120).status_code == 200
            db_ids[app] = db_id
    return {"user_id": user_id, "db_ids": db_ids}


def stored(http: requests.Session, gateway: str, owner: dict[str, Any]) -> dict[str, Any]:
    """Everything of the owner's that a hostile request could reach."""
    user = {"user_id": owner["user_id"]}
    snapshot: dict[str, Any] = {}
    for app, db_id in owner["db_ids"].items():
        for path in (f"/{app}/conversations", f"/{app}/conversations/{db_id}/messages"):
            response = http.get(f"{gateway}{path}", params=user, timeout=30)
            assert response.status_code == 200, response.text
            snapshot[path] = response.json()
    for path in ("/office/audit", "/office/documents"):
        response = http.get(f"{gateway}{path}", params=user, timeout=30)
        assert response.status_code == 200, response.text
        snapshot[path] = response.json()
    return snapshot


# (name, path, body, expected status, expected code, expected field)
CRASH_TOOL = {
    "type": "function",
    "function": {
        "name": "lots",
        "parameters": {
            "type": "object",
            "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 20000}},
        },
    },
}


def openai_body(**extra: Any) -> dict[str, Any]:
    return {"model": "assistant", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


JSON_CASES = [
    ("rest-deep", "/office/Llama", deep_json(DEEP), 400, "json_too_deep", None),
    ("rest-deep-character", "/character/Llama", deep_json(DEEP), 400, "json_too_deep", None),
    (
        "rest-big-number",
        "/office/Llama",
        b'{"input_data": "hi", "db_id": ' + b"9" * 5000 + b"}",
        400,
        "number_too_large",
        None,
    ),
    ("rest-nan", "/office/Llama", b'{"input_data": NaN}', 400, "malformed_json", None),
    (
        "rest-surrogate",
        "/office/Llama",
        b'{"input_data": "\\ud800", "db_id": "x", "user_id": "u"}',
        400,
        "invalid_unicode",
        "input_data",
    ),
    ("rest-surrogate-key", "/character/Llama", b'{"\\udc00": 1}', 400, "invalid_unicode", "\\udc00"),
    ("openai-deep", "/office/v1/chat/completions", deep_json(DEEP), 400, "json_too_deep", None),
    (
        "openai-big-number",
        "/office/v1/chat/completions",
        b'{"model": "assistant", "seed": ' + b"1" * 5000 + b"}",
        400,
        "number_too_large",
        None,
    ),
    (
        "openai-surrogate",
        "/character/v1/chat/completions",
        json.dumps(openai_body(messages=[{"role": "user", "content": "\ud800"}])).encode(),
        400,
        "invalid_unicode",
        "messages.0.content",
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "status", "code", "field"), JSON_CASES, ids=[c[0] for c in JSON_CASES]
)
def test_hostile_json_is_a_400_naming_the_rule(http, gateway, owner, name, path, body, status, code, field):
    before = stored(http, gateway, owner)
    response = raw_post(http, f"{gateway}{path}", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert stored(http, gateway, owner) == before


OPENAI_CASES = [
    ("crash-request-maxitems", {"tools": [CRASH_TOOL], "tool_choice": "required"}, "tools"),
    (
        "min-items-past-the-bound",
        {
            "tools": [
                {
                    **CRASH_TOOL,
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"xs": {"type": "array", "minItems": 5000}}},
                    },
                }
            ]
        },
        "tools",
    ),
    (
        "pattern-repeats",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"s": {"type": "string", "pattern": "^a{0,20000}$"}},
                        },
                    },
                }
            ],
            "tool_choice": "required",
        },
        "tools",
    ),
    (
        "schema-nested-300",
        {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": nested_schema(300)}}],
            "tool_choice": "required",
        },
        "tools",
    ),
    (
        "tool-call-function-as-string",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": "f"}]},
                {"role": "tool", "tool_call_id": "c", "content": "1"},
            ]
        },
        "messages",
    ),
    (
        "tool-call-arguments-as-object",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
                },
                {"role": "tool", "tool_call_id": "c", "content": "1"},
            ]
        },
        "messages",
    ),
]


@pytest.mark.parametrize(("name", "extra", "field"), OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES])
def test_openai_requests_that_would_crash_or_500_are_400s_and_the_app_lives(
    http, gateway, stack, owner, name, extra, field
):
    pid = app_pid(stack, "office")
    before = stored(http, gateway, owner)
    response = http.post(f"{gateway}/office/v1/chat/completions", json=openai_body(**extra), timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["field"].split(".")[0] == field and error["param"] == error["field"], error
    assert app_pid(stack, "office") == pid, "the office process is the same one: it did not crash"
    assert http.get(f"{gateway}/office/health", timeout=10).json()["status"] == "ready"
    assert stored(http, gateway, owner) == before


def test_a_deep_websocket_frame_is_an_error_frame_and_the_socket_stays_usable(gateway, auth: dict[str, str]):
    async def scenario() -> tuple[dict, dict, dict]:
        async with websockets.connect(ws_url(gateway, "office"), max_size=2**20, additional_headers=auth) as ws:
            await recv(ws)  # status
            await ws.send('{"type": "message", "x": ' + "[" * 3000 + "]" * 3000 + "}")
            deep = await recv(ws)
            await ws.send('{"type": "message", "input_data": "\\ud800"}')
            surrogate = await recv(ws)
            await ws.send(json.dumps({"type": "nonsense"}))
            after = await recv(ws)
            return deep, surrogate, after

    deep, surrogate, after = asyncio.run(scenario())
    assert (deep["type"], deep["code"]) == ("error", "json_too_deep")
    assert (surrogate["code"], surrogate["field"]) == ("invalid_unicode", "input_data")
    assert after["code"] == "unknown_type", "the socket still answers"


def test_tool_arguments_cannot_poison_the_audit_or_the_notes(http, gateway, user_id):
    def call(tool: str, body: bytes) -> requests.Response:
        return raw_post(http, f"{gateway}/office/tools/{tool}/call", body)

    # A lone surrogate in a note: refused at the parser, nothing stored.
    note = call("save_note", json.dumps({"user_id": user_id, "arguments": {"title": "t", "text": "\ud800"}}).encode())
    assert note.status_code == 400 and note.json()["error"]["code"] == "invalid_unicode", note.text
    # Keys MongoDB can't hold: refused by the tool's schema, and the audit of the refusal is stored escaped.
    for key in ("$where", "a.b", "\ud800"):
        body = json.dumps({"user_id": user_id, "arguments": {"expression": "1+1", key: 1}}).encode()
        response = call("calculator", body)
        assert response.status_code == 400, response.text
    notes = call("list_notes", json.dumps({"user_id": user_id, "arguments": {}}).encode())
    assert notes.status_code == 200 and notes.json()["result"]["notes"] == []
    audit = http.get(f"{gateway}/office/audit", params={"user_id": user_id}, timeout=30)
    assert audit.status_code == 200, audit.text
    keys = [key for entry in audit.json()["entries"] for key in entry["arguments"]]
    assert "＄where" in keys and "a．b" in keys, keys
    assert all(not key.startswith("$") and "." not in key for key in keys)


def test_gateway_edge_cases_are_clean_4xx(http, gateway, auth: dict[str, str]):
    # A WebSocket handshake on a REST path: refused, not a 500.
    async def upgrade_rest() -> int:
        try:
            async with websockets.connect(
                gateway.replace("http://", "ws://") + "/office/Llama", additional_headers=auth
            ):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(upgrade_rest()) == 403
    # A huge X-Request-ID is replaced, not echoed past nginx's header buffer (502).
    response = http.get(f"{gateway}/office/health", headers={"X-Request-ID": "r" * 6000}, timeout=10)
    assert response.status_code == 200 and len(response.headers["X-Request-ID"]) == 32
    # An unknown Host: JSON, not Django's HTML page.
    response = http.get(f"{gateway}/office/health", headers={"Host": "evil.example"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["field"] == "Host", response.text
    # An HTTP/1.0 "upgrade" is not switched to a WebSocket.
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /office/ws/chat/ HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        status_line = sock.recv(64).split(b"\r\n")[0]
    assert b" 101 " not in status_line and b" 4" in status_line, status_line


def test_a_multipart_upload_without_a_file_or_boundary_names_what_is_missing(http, gateway, user_id):
    no_file = http.post(f"{gateway}/office/documents", data={"user_id": user_id}, timeout=30)
    assert no_file.status_code == 400 and no_file.json()["error"]["field"] == "file", no_file.text
    no_boundary = http.post(
        f"{gateway}/office/documents",
        data=b"--x\r\n",
        headers={"Content-Type": "multipart/form-data"},
        timeout=30,
    )
    assert no_boundary.status_code == 400, no_boundary.text
    assert no_boundary.json()["error"]["code"], "a JSON error body, not an empty one"


def test_a_prompt_too_long_for_the_context_is_a_400_on_every_interface(
    http, gateway, user_id, owner, auth: dict[str, str]
):
    """The client's mistake, not the server's: 400 context_length_exceeded (the OpenAI SDK does not retry it)."""
    before = stored(http, gateway, owner)
    huge = "가나다라마바사아자차" * 400  # 4,000 Hangul characters: far more tokens than the context holds
    rest = http.post(
        f"{gateway}/character/Llama",
        json={"input_data": "Hi", "character_name": "Big", "context": huge, "user_id": user_id},
        timeout=60,
    )
    assert rest.status_code == 400, rest.text
    assert (rest.json()["error"]["code"], rest.json()["error"]["field"]) == ("context_length_exceeded", "input_data")

    async def over_the_socket() -> dict:
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=auth) as ws:
            await recv(ws)  # status
            frame = {"type": "message", "input_data": "Hi", "character_name": "Big", "context": huge}
            await ws.send(json.dumps({**frame, "user_id": user_id, "db_id": str(uuid.uuid4())}, ensure_ascii=False))
            return await recv(ws)

    frame = asyncio.run(over_the_socket())
    assert (frame["type"], frame["code"], frame["field"]) == ("error", "context_length_exceeded", "input_data")

    openai = http.post(
        f"{gateway}/character/v1/chat/completions",
        json=openai_body(model="captain-rhea", messages=[{"role": "user", "content": huge}]),
        timeout=60,
    )
    assert openai.status_code == 400, openai.text
    error = openai.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    assert http.get(f"{gateway}/character/conversations", params={"user_id": user_id}, timeout=30).json() == {
        "conversations": []
    }, "a refused turn stores nothing"
    assert stored(http, gateway, owner) == before
