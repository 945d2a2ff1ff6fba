"""Grounded office answers through nginx with the real model: the reply's prompt holds the
best chunks of the user's documents, and the stored reply names them as its sources."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.chat.test_websocket import stored_messages, ws_turn, ws_url
from tests.office.test_documents import POLICY_MD, upload

OTHER_MD = b"""# Cafeteria menu

## Monday
Kimchi stew, rice and seasonal vegetables are served from noon.
"""


def ask(http, gateway, *, user_id, db_id, text):
    body = {"input_data": text, "google_access": False, "db_id": db_id, "user_id": user_id}
    response = http.post(f"{gateway}/office/Llama", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response


def test_a_grounded_reply_stores_sources_that_name_the_right_document(http, gateway, user_id, db_id):
    policy = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    upload(http, gateway, user_id, "menu.md", OTHER_MD)

    question = "How many days do I have to submit hotel receipts?"
    response = ask(http, gateway, user_id=user_id, db_id=db_id, text=question)
    assert int(response.headers["X-Sources"]) >= 1

    user_message, reply = stored_messages(gateway, "office", db_id, user_id)
    assert user_message["content"] == question  # the sources are in the prompt, not in the history
    sources = reply["meta"]["sources"]
    assert sources[0]["n"] == 1
    assert sources[0]["document_id"] == policy["id"]
    assert sources[0]["title"] == "Travel policy"
    assert sources[0]["chunk_id"].startswith(policy["id"] + ":")
    assert "thirty days" in sources[0]["excerpt"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    # The grounded prompt is larger than the question alone could make it.
    plain = ask(http, gateway, user_id=f"{user_id}-nodocs", db_id=f"{db_id[:-4]}ffff", text=question)
    assert int(response.headers["X-Prompt-Tokens"]) > int(plain.headers["X-Prompt-Tokens"]) + 40
    assert plain.headers["X-Sources"] == "0"


def test_a_user_without_documents_gets_no_sources(http, gateway, user_id, db_id):
    ask(http, gateway, user_id=user_id, db_id=db_id, text="What is the capital of France?")
    reply = stored_messages(gateway, "office", db_id, user_id)[-1]
    assert "sources" not in reply["meta"]


def test_the_websocket_done_frame_carries_the_sources(http, gateway, user_id, db_id):
    policy = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()

    async def scenario() -> dict:
        async with websockets.connect(ws_url(gateway, "office")) as ws:
            await ws.recv()  # status
            frame = {"input_data": "Which class do I fly on short trips?", "db_id": db_id, "user_id": user_id}
            _, tokens, done, _ = await ws_turn(ws, frame)
            assert tokens
            return done

    done = asyncio.run(scenario())
    assert done["sources"][0]["document_id"] == policy["id"]
    assert "Economy" in done["sources"][0]["excerpt"]
    stored = stored_messages(gateway, "office", db_id, user_id)[-1]
    assert json.dumps(stored["meta"]["sources"], sort_keys=True) == json.dumps(done["sources"], sort_keys=True)


def test_a_long_question_is_never_cut_for_sources(http, gateway, user_id, db_id):
    upload(http, gateway, user_id, "travel.md", POLICY_MD)
    question = ("Please explain the travel booking rules for flights and the receipts deadline. " * 6)[:500]
    ask(http, gateway, user_id=user_id, db_id=db_id, text=question)
    user_message, reply = stored_messages(gateway, "office", db_id, user_id)
    assert user_message["content"] == question
    assert reply["meta"]["finish_reason"] in ("stop", "length")
