"""The office model calls tools in the chat, through nginx with the real model: the call is
grammar-constrained, runs under the registry's rules, is audited, and a call that needs
approval pauses the WebSocket turn until the user decides."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.chat.test_websocket import recv, stored_messages, ws_url
from tests.office.test_documents import POLICY_MD, documents_of, upload


async def turn_frames(ws: Any, frame: dict[str, Any], *, on_approval: str | None = None) -> list[dict[str, Any]]:
    """Send a message; collect every frame up to done (answering an approval request if asked)."""
    await ws.send(json.dumps({"type": "message", **frame}))
    frames = []
    while True:
        frame_in = await recv(ws)
        frames.append(frame_in)
        if frame_in["type"] == "tool_call" and frame_in["status"] == "approval_required" and on_approval:
            if on_approval == "stop":
                await ws.send(json.dumps({"type": "stop"}))
            else:
                decision = {"type": "approval", "approval_id": frame_in["approval_id"], "decision": on_approval}
                await ws.send(json.dumps(decision))
        if frame_in["type"] in ("done", "error"):
            return frames


def delete_request(*, db_id: str, user_id: str, document_id: str) -> dict[str, Any]:
    """A message that makes the model call delete_document (and so ask for approval)."""
    return {
        "db_id": db_id,
        "user_id": user_id,
        "input_data": f"Delete the document {document_id}.",
        "tools": "required",
        "tool_names": ["delete_document"],
    }


def run(frame: dict[str, Any], gateway: str, auth: dict[str, str], **kwargs: Any) -> list[dict[str, Any]]:
    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=auth) as ws:
            await recv(ws)  # status
            return await turn_frames(ws, frame, **kwargs)

    return asyncio.run(scenario())


def test_a_required_tool_call_runs_and_the_model_answers_after_it(http, gateway, user_id, db_id, auth: dict[str, str]):
    frame = {
        "db_id": db_id,
        "user_id": user_id,
        "input_data": "What is 17 times 23? Use the calculator.",
        "tools": "required",
        "tool_names": ["calculator"],
    }
    frames = run(frame, gateway, auth)
    calls = [f for f in frames if f["type"] == "tool_call"]
    assert calls and calls[0]["status"] == "running", frames
    assert calls[-1]["tool"] == "calculator" and calls[-1]["status"] in ("ok", "error")
    assert isinstance(calls[-1]["arguments"]["expression"], str)  # the grammar made it a string
    tokens = "".join(f["text"] for f in frames if f["type"] == "token")
    kinds = [f["type"] for f in frames]
    last_step = max(i for i, kind in enumerate(kinds) if kind == "tool_call")
    assert "token" not in kinds[:last_step], "the call is announced as steps, never streamed as text"
    done = frames[-1]
    assert done["type"] == "done", done
    assert [c["tool"] for c in done["tool_calls"]] == ["calculator"]
    reply = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    assert reply["content"] == tokens
    assert reply["meta"]["tool_calls"] == done["tool_calls"]
    audit = http.get(f"{gateway}/office/audit", params={"user_id": user_id}, timeout=30).json()["entries"]
    assert (audit[0]["tool"], audit[0]["source"]) == ("calculator", "chat")
    assert audit[0]["arguments"] == calls[-1]["arguments"]


def test_a_call_that_needs_approval_waits_and_a_denial_keeps_the_document(
    http, gateway, user_id, db_id, auth: dict[str, str]
):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    frame = delete_request(db_id=db_id, user_id=user_id, document_id=document["id"])
    frames = run(frame, gateway, auth, on_approval="deny")
    statuses = [f["status"] for f in frames if f["type"] == "tool_call"]
    assert statuses == ["running", "approval_required", "denied"], frames
    assert frames[-1]["type"] == "done"
    assert frames[-1]["tool_calls"][0]["status"] == "denied"
    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]
    audit = http.get(f"{gateway}/office/audit", params={"user_id": user_id}, timeout=30).json()["entries"]
    assert [(e["tool"], e["outcome"]) for e in audit[:2]] == [
        ("delete_document", "denied"),
        ("delete_document", "approval_requested"),
    ]


def test_an_approved_call_runs(http, gateway, user_id, db_id, auth: dict[str, str]):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    frame = delete_request(db_id=db_id, user_id=user_id, document_id=document["id"])
    frames = run(frame, gateway, auth, on_approval="approve")
    final = [f for f in frames if f["type"] == "tool_call"][-1]
    assert final["status"] in ("ok", "error")  # error: the model named an id that isn't the user's
    if final["status"] == "ok":
        assert documents_of(http, gateway, user_id) == []
    else:
        assert "document" in final["error"]
    assert frames[-1]["type"] == "done"


def test_stop_while_waiting_for_approval_denies_the_call(http, gateway, user_id, db_id, auth: dict[str, str]):
    frame = {
        "db_id": db_id,
        "user_id": user_id,
        "input_data": "Delete the document abc.",
        "tools": "required",
        "tool_names": ["delete_document"],
    }
    frames = run(frame, gateway, auth, on_approval="stop")
    assert [f["status"] for f in frames if f["type"] == "tool_call"][-1] == "denied"
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "stopped"
    reply = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    assert reply["meta"]["stopped_by"] == "user" and reply["content"] == ""


def test_rest_ends_a_turn_that_needs_approval_with_how_to_approve(http, gateway, user_id, db_id, auth: dict[str, str]):
    body = {
        "input_data": "Delete the document xyz.",
        "google_access": False,
        "db_id": db_id,
        "user_id": user_id,
        "tools": "required",
        "tool_names": ["delete_document"],
    }
    response = http.post(f"{gateway}/office/Llama", json=body, timeout=300)
    assert response.status_code == 200, response.text
    reply = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    (call,) = reply["meta"]["tool_calls"]
    assert call["status"] == "approval_required"
    assert f"POST /office/approvals/{call['approval_id']}" in response.json()
    decided = http.post(
        f"{gateway}/office/approvals/{call['approval_id']}", json={"user_id": user_id, "decision": "deny"}, timeout=30
    )
    assert decided.json()["status"] == "denied"


def test_bad_tool_options_are_refused_naming_the_field(http, gateway, user_id, db_id, auth: dict[str, str]):
    base = {"input_data": "hi", "google_access": False, "db_id": db_id, "user_id": user_id}
    for extra, field in (
        ({"tools": "sometimes"}, "tools"),
        ({"tools": "auto", "tool_names": ["teleport"]}, "tool_names"),
        ({"tools": "auto", "tool_names": []}, "tool_names"),
    ):
        response = http.post(f"{gateway}/office/Llama", json={**base, **extra}, timeout=60)
        assert response.status_code == 400, (extra, response.text)
        assert response.json()["error"]["field"] == field
    frames = run({**base, "tools": "auto", "tool_names": ["teleport"]}, gateway, auth)
    assert frames[-1]["type"] == "error" and frames[-1]["field"] == "tool_names"


def test_an_approval_frame_with_nothing_pending_is_an_error_and_the_socket_stays(gateway, auth: dict[str, str]):
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=auth) as ws:
            await recv(ws)
            await ws.send(json.dumps({"type": "approval", "approval_id": "nope", "decision": "approve"}))
            return await recv(ws)

    error = asyncio.run(scenario())
    assert error["type"] == "error" and error["code"] == "no_pending_approval"
