"""A client whose connection drops mid-reply resumes the same stream, through nginx: the model
writes the reply once, and the client ends up with all of it. In process (the consumer with
Channels' communicator), a drop that nobody resumes stops the turn after the grace period.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import websockets

from tests.chat.test_websocket import STORY, recv, stored_messages, ws_url

pytestmark = pytest.mark.slow


async def drop(ws: Any) -> None:
    """Lose the connection the way a network does: no close frame (the server sees 1006)."""
    ws.transport.abort()
    await asyncio.sleep(0.2)


def test_a_dropped_connection_resumes_the_same_reply_from_where_it_was(gateway, db_id, user_id, auth: dict[str, str]):
    async def scenario() -> tuple[dict, str, list[dict]]:
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=auth) as ws:
            await recv(ws)  # status
            frame = {"type": "message", "db_id": db_id, "user_id": user_id, "input_data": STORY}
            await ws.send(json.dumps({**frame, "persona": "captain-rhea"}))
            start = await recv(ws)
            assert start["type"] == "start"
            received = (await recv(ws))["text"]
            await drop(ws)
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=auth) as ws:
            await recv(ws)  # status
            stranger = {"type": "resume", "message_id": start["message_id"], "user_id": "someone-else", "offset": 0}
            await ws.send(json.dumps(stranger))
            assert (await recv(ws))["code"] == "not_found", "another user's reply does not exist for them"
            resume = {"type": "resume", "message_id": start["message_id"], "user_id": user_id}
            await ws.send(json.dumps({**resume, "offset": len(received)}))
            frames = [await recv(ws)]
            while frames[-1]["type"] not in ("done", "error"):
                frames.append(await recv(ws))
        return start, received, frames

    start, received, frames = asyncio.run(scenario())
    assert frames[0] == {"type": "resumed", "message_id": start["message_id"], "offset": len(received)}
    done = frames[-1]
    assert done["type"] == "done" and done["message_id"] == start["message_id"], frames
    rest = "".join(f["text"] for f in frames if f["type"] == "token")
    messages = stored_messages(gateway, "character", db_id, user_id, auth)
    assert [m["role"] for m in messages] == ["user", "assistant"], "the reply was generated once"
    reply = messages[1]
    assert reply["id"] == start["message_id"] and reply["content"] == received + rest
    assert reply["meta"]["finish_reason"] == "length", "it was never stopped: it ran to max_tokens"


def test_resume_is_refused_for_another_user_an_unknown_reply_or_a_bad_offset(gateway, user_id, auth: dict[str, str]):
    async def scenario() -> list[dict]:
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=auth) as ws:
            await recv(ws)
            answers = []
            for extra in (
                {"message_id": "nope", "user_id": user_id, "offset": 0},
                {"message_id": str(uuid.uuid4()), "user_id": user_id, "offset": -1},
                {"message_id": "nope", "user_id": user_id, "offset": "3"},
            ):
                await ws.send(json.dumps({"type": "resume", **extra}))
                answers.append(await recv(ws))
            return answers

    unknown, negative, text = asyncio.run(scenario())
    assert (unknown["code"], unknown["field"]) == ("not_found", "message_id")
    assert (negative["field"], text["field"]) == ("offset", "offset")
