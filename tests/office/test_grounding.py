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


def test_a_grounded_reply_stores_sources_that_name_the_right_document(
    http, gateway, user_id, db_id, auth: dict[str, str]
):
    policy = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    upload(http, gateway, user_id, "menu.md", OTHER_MD)

    question = "How many days do I have to submit hotel receipts?"
    response = ask(http, gateway, user_id=user_id, db_id=db_id, text=question)
    assert int(response.headers["X-Sources"]) >= 1

    user_message, reply = stored_messages(gateway, "office", db_id, user_id, auth)
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


def test_a_user_without_documents_gets_no_sources(http, gateway, user_id, db_id, auth: dict[str, str]):
    ask(http, gateway, user_id=user_id, db_id=db_id, text="What is the capital of France?")
    reply = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    assert "sources" not in reply["meta"]


def test_the_websocket_done_frame_carries_the_sources(http, gateway, user_id, db_id, auth: dict[str, str]):
    policy = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()

    async def scenario() -> dict:
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=auth) as ws:
            await ws.recv()  # status
            frame = {"input_data": "Which class do I fly on short trips?", "db_id": db_id, "user_id": user_id}
            _, tokens, done, _ = await ws_turn(ws, frame)
            assert tokens
            return done

    done = asyncio.run(scenario())
    assert done["sources"][0]["document_id"] == policy["id"]
    assert "Economy" in done["sources"][0]["excerpt"]
    stored = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    assert json.dumps(stored["meta"]["sources"], sort_keys=True) == json.dumps(done["sources"], sort_keys=True)


def test_a_long_question_is_never_cut_for_sources(http, gateway, user_id, db_id, auth: dict[str, str]):
    upload(http, gateway, user_id, "travel.md", POLICY_MD)
    question = ("Please explain the travel booking rules for flights and the receipts deadline. " * 6)[:500]
    ask(http, gateway, user_id=user_id, db_id=db_id, text=question)
    user_message, reply = stored_messages(gateway, "office", db_id, user_id, auth)
    assert user_message["content"] == question
    assert reply["meta"]["finish_reason"] in ("stop", "length")


def test_google_access_grounds_on_web_search_results(http, gateway, user_id, db_id, searxng, auth: dict[str, str]):
    body = {"input_data": "Who won the Seoul marathon?", "google_access": True, "db_id": db_id, "user_id": user_id}
    response = http.post(f"{gateway}/office/Llama", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert searxng.queries[-1]["q"] == ["Who won the Seoul marathon?"]
    sources = stored_messages(gateway, "office", db_id, user_id, auth)[-1]["meta"]["sources"]
    assert [s["kind"] for s in sources] == ["web"] * 3
    assert sources[0]["title"] == "Result 1 for Who won the Seoul marathon?"
    assert sources[0]["url"].startswith("https://example.org/1")
    audit = http.get(f"{gateway}/office/audit", params={"user_id": user_id}, timeout=30).json()["entries"]
    assert (audit[0]["tool"], audit[0]["outcome"], audit[0]["source"]) == ("web_search", "ok", "chat")


def test_when_web_search_cannot_run_the_reply_says_why(http, gateway, user_id, db_id, auth: dict[str, str]):
    burst = http.get(f"{gateway}/office/tools/web_search", timeout=30).json()["rate_limit"]["burst"]
    for _ in range(burst):  # use up the user's web searches
        assert http.post(
            f"{gateway}/office/tools/web_search/call",
            json={"user_id": user_id, "arguments": {"query": "x"}},
            timeout=30,
        ).ok
    body = {"input_data": "Any news today?", "google_access": True, "db_id": db_id, "user_id": user_id}
    response = http.post(f"{gateway}/office/Llama", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json().startswith("Web search was not used: ")
    assert "rate limit" in response.json().split("\n\n")[0]
    reply = stored_messages(gateway, "office", db_id, user_id, auth)[-1]
    assert reply["content"] == response.json()
    assert "sources" not in reply["meta"]


def test_the_openai_endpoint_grounds_on_the_documents_of_its_user(http, gateway, user_id):
    policy = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    body = {
        "model": "assistant",
        "messages": [{"role": "user", "content": "How many days do I have to submit hotel receipts?"}],
        "user": user_id,
        "max_tokens": 16,
    }
    grounded = http.post(f"{gateway}/office/v1/chat/completions", json=body, timeout=300)
    assert grounded.status_code == 200, grounded.text
    assert grounded.json()["sources"][0]["document_id"] == policy["id"]
    plain = http.post(f"{gateway}/office/v1/chat/completions", json={**body, "user": "nobody-here"}, timeout=300)
    assert "sources" not in plain.json()
    assert grounded.json()["usage"]["prompt_tokens"] > plain.json()["usage"]["prompt_tokens"] + 40


def test_a_question_no_document_is_about_gets_no_sources(http, gateway, user_id, db_id, auth: dict[str, str]):
    upload(http, gateway, user_id, "travel.md", POLICY_MD)
    response = ask(http, gateway, user_id=user_id, db_id=db_id, text="Where is the kimchi stew served on Mondays?")
    assert response.headers["X-Sources"] == "0"
    assert "sources" not in stored_messages(gateway, "office", db_id, user_id, auth)[-1]["meta"]
