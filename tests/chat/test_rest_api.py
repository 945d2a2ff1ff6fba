"""The REST API through real nginx, real daphne and the real default model."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import requests
import websockets
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow


def ask(http: requests.Session, gateway: str, app: str, **body: object) -> requests.Response:
    return http.post(f"{gateway}/{app}/Llama", json=body, timeout=120)


def messages(http: requests.Session, gateway: str, app: str, db_id: str, user_id: str) -> list[dict]:
    response = http.get(f"{gateway}/{app}/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_office_reply_is_stored_and_second_turn_sees_the_first(http, gateway, db_id, user_id):
    first = ask(
        http, gateway, "office", input_data="My name is Minji. Please remember it.", db_id=db_id, user_id=user_id
    )
    assert first.status_code == 200, first.text
    reply = first.json()
    assert isinstance(reply, str) and reply.strip(), "the seed contract: the body is the reply text"
    assert first.headers["X-Conversation-Id"] == db_id

    stored = messages(http, gateway, "office", db_id, user_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "My name is Minji. Please remember it."),
        ("assistant", reply),
    ]
    assert stored[1]["id"] == first.headers["X-Message-Id"]
    assert stored[1]["meta"]["prompt"]["history_message_ids"] == []

    second = ask(http, gateway, "office", input_data="What is my name?", db_id=db_id, user_id=user_id)
    assert second.status_code == 200, second.text
    stored = messages(http, gateway, "office", db_id, user_id)
    assert [m["seq"] for m in stored] == [0, 1, 2, 3]
    prompt = stored[3]["meta"]["prompt"]
    # The engine's prompt for turn 2 carried turn 1, user message and reply, in order.
    assert prompt["history_message_ids"] == [stored[0]["id"], stored[1]["id"]]
    assert prompt["tokens"] > int(first.headers["X-Prompt-Tokens"])
    assert int(second.headers["X-Prompt-Tokens"]) == prompt["tokens"]


@pytest.mark.parametrize("app", ["office", "character"])
def test_llama_without_a_db_id_starts_a_new_conversation(http, gateway, app, user_id):
    """The seed design's quick start sends no db_id: a new conversation, whose id comes back."""
    extra = {"persona": "captain-rhea"} if app == "character" else {}
    first = ask(http, gateway, app, input_data="Hello!", user_id=user_id, **extra)
    assert first.status_code == 200, first.text
    db_id = first.headers["X-Conversation-Id"]
    assert str(uuid.UUID(db_id)) == db_id
    stored = messages(http, gateway, app, db_id, user_id)
    assert [(m["role"], m["id"]) for m in stored][1] == ("assistant", first.headers["X-Message-Id"])
    again = ask(http, gateway, app, input_data="Hello again!", user_id=user_id, **extra)
    assert again.headers["X-Conversation-Id"] != db_id, "each call without db_id is a new conversation"


def test_messages_read_by_pages_cover_the_chat_once_in_order(http, gateway, db_id, user_id):
    for text in ("one", "two", "three"):
        assert ask(http, gateway, "office", input_data=text, db_id=db_id, user_id=user_id).status_code == 200
    url = f"{gateway}/office/conversations/{db_id}/messages"
    whole = http.get(url, params={"user_id": user_id, "limit": 500}, timeout=10).json()
    assert [m["seq"] for m in whole["messages"]] == list(range(6)) and whole["before"] is None

    pages, before = [], None
    while True:
        params = {"user_id": user_id, "limit": 4 if before is None else 1}
        if before is not None:
            params["before"] = before
        body = http.get(url, params=params, timeout=10).json()
        pages.append(body["messages"])
        before = body["before"]
        if before is None:
            break
        assert before == body["messages"][0]["seq"], "the next page ends where this one starts"

    assert [len(page) for page in pages] == [4, 1, 1]
    assert [m for page in reversed(pages) for m in page] == whole["messages"]


def test_a_conversation_exports_as_sillytavern_jsonl_json_and_markdown(http, gateway, db_id, user_id):
    reply = ask(http, gateway, "character", input_data="Hello!", persona="captain-rhea", db_id=db_id, user_id=user_id)
    assert reply.status_code == 200, reply.text
    stored = messages(http, gateway, "character", db_id, user_id)
    url = f"{gateway}/character/conversations/{db_id}/export"

    jsonl = http.get(url, params={"user_id": user_id, "format": "jsonl"}, timeout=10)
    assert jsonl.status_code == 200, jsonl.text
    assert jsonl.headers["Content-Type"].startswith("application/jsonl")
    assert "attachment" in jsonl.headers["Content-Disposition"] and ".jsonl" in jsonl.headers["Content-Disposition"]
    header, *lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {"user_name", "character_name", "create_date", "chat_metadata"} <= set(header)
    assert [(line["is_user"], line["mes"]) for line in lines] == [(m["role"] == "user", m["content"]) for m in stored]

    whole = http.get(url, params={"user_id": user_id, "format": "json"}, timeout=10).json()
    assert [m["id"] for m in whole["messages"]] == [m["id"] for m in stored]
    markdown = http.get(url, params={"user_id": user_id, "format": "md"}, timeout=10)
    assert markdown.headers["Content-Type"].startswith("text/markdown") and "Hello!" in markdown.text

    refused = http.get(url, params={"user_id": user_id, "format": "docx"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "format"
    missing = http.get(f"{gateway}/character/conversations/{uuid.uuid4()}/export", params={"user_id": user_id})
    assert missing.status_code == 404
    someone_else = http.get(url, params={"user_id": f"{user_id}-other"}, timeout=10)
    assert someone_else.status_code == 404, "another user's chat is exported like a missing one"


def test_swipes_edits_and_deletion_through_rest(http, gateway, db_id, user_id):
    assert ask(http, gateway, "office", input_data="Hello there", db_id=db_id, user_id=user_id).status_code == 200
    user, reply = messages(http, gateway, "office", db_id, user_id)
    base = f"{gateway}/office/conversations/{db_id}/messages"
    who = {"user_id": user_id}

    swiped = http.post(f"{base}/{reply['id']}/swipes", params=who, timeout=120)
    assert swiped.status_code == 200, swiped.text
    body = swiped.json()
    assert body["id"] == reply["id"] and body["seq"] == reply["seq"] and body["meta"]["swipe_id"] == 1
    assert [s["content"] for s in body["meta"]["swipes"]][:1] == [reply["content"]]
    assert messages(http, gateway, "office", db_id, user_id)[1] == body

    not_a_reply = http.post(f"{base}/{user['id']}/swipes", params=who, timeout=30)
    assert not_a_reply.status_code == 400 and not_a_reply.json()["error"]["code"] == "not_a_reply"

    chosen = http.patch(f"{base}/{reply['id']}", params=who, json={"swipe_id": 0}, timeout=10)
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["content"] == reply["content"] and chosen.json()["meta"]["swipe_id"] == 0
    assert messages(http, gateway, "office", db_id, user_id)[1]["content"] == reply["content"]

    edited = http.patch(f"{base}/{user['id']}", params=who, json={"content": "Hello, edited"}, timeout=10)
    assert edited.status_code == 200, edited.text
    assert edited.json()["content"] == "Hello, edited"
    assert [e["content"] for e in edited.json()["meta"]["edits"]] == ["Hello there"]

    before = messages(http, gateway, "office", db_id, user_id)
    for body, field in (
        ({"swipe_id": 2}, "swipe_id"),
        ({"swipe_id": -1}, "swipe_id"),
        ({"swipe_id": "one"}, "swipe_id"),
        ({}, "content"),
        ({"content": "x", "swipe_id": 0}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 20_001}, "content"),
        ({"content": "x", "role": "system"}, "role"),
    ):
        refused = http.patch(f"{base}/{reply['id']}", params=who, json=body, timeout=10)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["field"] == field, body
    assert messages(http, gateway, "office", db_id, user_id) == before, "a refused change changes nothing"

    elsewhere = {"user_id": f"{user_id}-other"}
    assert http.patch(f"{base}/{reply['id']}", params=elsewhere, json={"swipe_id": 1}).status_code == 404
    assert http.delete(f"{base}/{reply['id']}", params=elsewhere).status_code == 404
    assert http.delete(f"{base}/{user['id']}", params=who).status_code == 204
    assert [m["id"] for m in messages(http, gateway, "office", db_id, user_id)] == [reply["id"]]
    gone = http.delete(f"{base}/{user['id']}", params=who)
    assert gone.status_code == 404 and gone.json()["error"]["field"] == "message_id"


def test_a_branch_forks_a_chat_at_a_message(http, gateway, db_id, user_id):
    for text in ("one", "two"):
        assert ask(http, gateway, "office", input_data=text, db_id=db_id, user_id=user_id).status_code == 200
    original = messages(http, gateway, "office", db_id, user_id)
    url = f"{gateway}/office/conversations/{db_id}/branches"
    who = {"user_id": user_id}

    made = http.post(url, params=who, json={"from_message_id": original[1]["id"]}, timeout=30)

    assert made.status_code == 201, made.text
    branch = made.json()
    assert (branch["parent_id"], branch["parent_message_id"]) == (db_id, original[1]["id"])
    assert branch["db_id"] != db_id and branch["message_count"] == 2
    copied = messages(http, gateway, "office", branch["db_id"], user_id)
    assert [(m["role"], m["content"]) for m in copied] == [(m["role"], m["content"]) for m in original[:2]]
    listed = http.get(f"{gateway}/office/conversations", params=who, timeout=10).json()["conversations"]
    assert {c["db_id"]: c["parent_id"] for c in listed} == {db_id: "", branch["db_id"]: db_id}
    assert ask(http, gateway, "office", input_data="three", db_id=branch["db_id"], user_id=user_id).status_code == 200
    assert messages(http, gateway, "office", db_id, user_id) == original, "the parent did not change"

    for body, status, field in (
        ({"from_message_id": "0" * 24}, 404, "from_message_id"),
        ({"from_message_id": "not-an-id"}, 400, "from_message_id"),
        ({}, 400, "from_message_id"),
        ({"from_message_id": original[0]["id"], "title": "x"}, 400, "title"),
        ({"from_message_id": original[1]["id"], "content": "a reply is not resent"}, 400, "content"),
        ({"from_message_id": original[0]["id"], "content": ""}, 400, "content"),
        ({"from_message_id": original[0]["id"], "content": "x" * 501}, 400, "content"),
    ):
        refused = http.post(url, params=who, json=body, timeout=10)
        assert refused.status_code == status and refused.json()["error"]["field"] == field, (body, refused.text)
    someone_else = http.post(url, params={"user_id": f"{user_id}-x"}, json={"from_message_id": original[1]["id"]})
    assert someone_else.status_code == 404

    # Edit and send again: a branch that ends on the edited message, the original untouched.
    resent = http.post(url, params=who, json={"from_message_id": original[2]["id"], "content": "TWO"}, timeout=30)
    assert resent.status_code == 201, resent.text
    again = messages(http, gateway, "office", resent.json()["db_id"], user_id)
    assert [(m["role"], m["content"]) for m in again] == [
        ("user", "one"),
        ("assistant", original[1]["content"]),
        ("user", "TWO"),
    ]
    assert again[2]["meta"]["edits"][0]["content"] == "two"
    assert messages(http, gateway, "office", db_id, user_id) == original


def test_a_chat_round_trips_through_sillytavern_jsonl_and_a_bad_file_leaves_nothing(http, gateway, db_id, user_id):
    assert ask(http, gateway, "character", input_data="Hi!", persona="captain-rhea", db_id=db_id, user_id=user_id)
    reply = messages(http, gateway, "character", db_id, user_id)[1]
    swiped = http.post(
        f"{gateway}/character/conversations/{db_id}/messages/{reply['id']}/swipes", params={"user_id": user_id}
    )
    assert swiped.status_code == 200, swiped.text
    original = messages(http, gateway, "character", db_id, user_id)
    exported = http.get(f"{gateway}/character/conversations/{db_id}/export", params={"user_id": user_id}).content
    url = f"{gateway}/character/conversations/import"

    made = http.post(url, data={"user_id": user_id}, files={"file": ("chat.jsonl", exported)}, timeout=60)

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["imported"] == 2 and body["skipped"] == 0
    assert body["conversation"]["persona"] == "captain-rhea", "the character named in the file"
    again = messages(http, gateway, "character", body["conversation"]["db_id"], user_id)
    keep = ("role", "content", "created_at")
    assert [{k: m[k] for k in keep} for m in again] == [{k: m[k] for k in keep} for m in original]
    assert [s["content"] for s in again[1]["meta"]["swipes"]] == [s["content"] for s in original[1]["meta"]["swipes"]]
    assert again[1]["meta"]["swipe_id"] == original[1]["meta"]["swipe_id"]

    listed = http.get(f"{gateway}/character/conversations", params={"user_id": user_id}).json()["conversations"]
    for bad, status in ((b'{"user_name": "u"}\n{"is_user": "no", "mes": 1}', 400), (b"\x00\xff", 400)):
        refused = http.post(url, data={"user_id": user_id}, files={"file": ("x.jsonl", bad)}, timeout=30)
        assert refused.status_code == status and refused.json()["error"]["field"] == "file", refused.text
    no_file = http.post(url, data={"user_id": user_id}, timeout=30)
    assert no_file.status_code == 400 and no_file.json()["error"]["field"] == "file"
    after = http.get(f"{gateway}/character/conversations", params={"user_id": user_id}).json()["conversations"]
    assert after == listed, "a refused file leaves nothing behind"


def test_a_50000_line_sillytavern_chat_imports_through_nginx(http, gateway, user_id):
    header = {"user_name": "You", "character_name": "Bench", "create_date": "2026-1-1@10h00m00s", "chat_metadata": {}}
    lines = [json.dumps(header)]
    for i in range(50_000):
        line = {"name": "You" if i % 2 == 0 else "Bench", "is_user": i % 2 == 0, "is_system": False}
        lines.append(json.dumps({**line, "send_date": 1767261600000 + i * 1000, "mes": f"message {i} " + "x" * 100}))
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 5_000_000

    made = http.post(
        f"{gateway}/office/conversations/import",
        data={"user_id": user_id},
        files={"file": ("big.jsonl", data)},
        timeout=300,
    )

    assert made.status_code == 201, made.text[:500]
    conversation = made.json()["conversation"]
    assert made.json()["imported"] == 50_000 and conversation["message_count"] == 50_000
    newest = http.get(
        f"{gateway}/office/conversations/{conversation['db_id']}/messages", params={"user_id": user_id, "limit": 2}
    ).json()
    assert [m["content"].split()[1] for m in newest["messages"]] == ["49998", "49999"] and newest["before"] == 49998


def test_search_finds_the_users_own_messages_by_morpheme_and_follows_edits(http, gateway, user_id):
    lines = [{"user_name": "You", "character_name": "Bench", "create_date": "2026-1-1@10h00m00s", "chat_metadata": {}}]
    texts = ["회의록에서 예산 항목을 찾아주세요", "The quarterly reports are ready", "Nothing to see here"]
    for i, text in enumerate(texts):
        line = {"name": "You", "is_user": True, "is_system": False, "send_date": 1767261600000 + i * 1000}
        lines.append({**line, "mes": text})
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    made = http.post(
        f"{gateway}/office/conversations/import", data={"user_id": user_id}, files={"file": ("c.jsonl", data)}
    )
    assert made.status_code == 201, made.text
    db_id = made.json()["conversation"]["db_id"]
    stored = messages(http, gateway, "office", db_id, user_id)

    def search(q: str, who: str = user_id) -> requests.Response:
        return http.get(f"{gateway}/office/search", params={"q": q, "user_id": who}, timeout=30)

    for q, index in (("회의록을", 0), ("예산은", 0), ("report", 1), ("QUARTERLY reports", 1)):
        found = search(q)
        assert found.status_code == 200, found.text
        hits = found.json()["results"]
        assert [(h["db_id"], h["message_id"], h["seq"]) for h in hits] == [(db_id, stored[index]["id"], index)], q
        assert hits[0]["snippet"] == texts[index] and hits[0]["role"] == "user"
    assert search("회의록", who=f"other-{user_id}").json()["results"] == [], "another user finds none of it"
    assert search("quarterly budget").json()["results"] == [], "a hit has every term"

    edited = http.patch(
        f"{gateway}/office/conversations/{db_id}/messages/{stored[2]['id']}",
        params={"user_id": user_id},
        json={"content": "Lunch menu changed"},
    )
    assert edited.status_code == 200, edited.text
    assert search("nothing").json()["results"] == [], "an edited message is found by its new text only"
    assert [h["message_id"] for h in search("lunch").json()["results"]] == [stored[2]["id"]]

    for params, field in (
        ({}, "q"),
        ({"q": "the of"}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "a", "limit": 0}, "limit"),
    ):
        refused = http.get(f"{gateway}/office/search", params={"user_id": user_id, **params}, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == field, (params, refused.text)


def test_office_persona_can_be_chosen(http, gateway, db_id, user_id):
    response = ask(
        http, gateway, "office", input_data="Polish: we will late.", db_id=db_id, user_id=user_id, persona="writer"
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Persona"] == "writer"
    listed = http.get(f"{gateway}/office/conversations", params={"user_id": user_id}, timeout=10).json()
    assert [(c["db_id"], c["persona"]) for c in listed["conversations"]] == [(db_id, "writer")]


def test_character_inline_fields(http, gateway, db_id, user_id):
    response = ask(
        http,
        gateway,
        "character",
        input_data="Who are you?",
        character_name="Doctor Vale",
        greeting="Ah, a visitor.",
        context="A retired ship's doctor who loves riddles.",
        db_id=db_id,
        user_id=user_id,
    )
    assert response.status_code == 200, response.text
    assert response.json().strip()
    assert response.headers["X-Persona"] == "custom"
    assert len(messages(http, gateway, "character", db_id, user_id)) == 2


def test_character_persona_id_in_korean(http, gateway, db_id, user_id):
    response = ask(
        http,
        gateway,
        "character",
        input_data="안녕하세요, 커피 한 잔 주세요.",
        persona="seoyeon",
        db_id=db_id,
        user_id=user_id,
    )
    assert response.status_code == 200, response.text
    stored = messages(http, gateway, "character", db_id, user_id)
    assert stored[0]["content"] == "안녕하세요, 커피 한 잔 주세요."
    assert stored[1]["content"] == response.json()


def test_conversations_belong_to_their_user(http, gateway, db_id, user_id):
    assert ask(http, gateway, "office", input_data="Private note: budget is 3M.", db_id=db_id, user_id=user_id).ok
    intruder = f"other-{uuid.uuid4().hex[:6]}"

    peek = http.get(f"{gateway}/office/conversations/{db_id}/messages", params={"user_id": intruder}, timeout=10)
    assert peek.status_code == 404
    assert "budget" not in peek.text
    assert peek.json()["error"]["code"] == "not_found"

    hijack = ask(http, gateway, "office", input_data="Show me the note.", db_id=db_id, user_id=intruder)
    assert hijack.status_code == 404
    delete = http.delete(f"{gateway}/office/conversations/{db_id}", params={"user_id": intruder}, timeout=10)
    assert delete.status_code == 404
    assert http.get(f"{gateway}/office/conversations", params={"user_id": intruder}, timeout=10).json() == {
        "conversations": []
    }
    # ...and the owner's history is untouched by all of that.
    assert len(messages(http, gateway, "office", db_id, user_id)) == 2


def test_conversation_ids_are_per_app(http, gateway, db_id, user_id):
    assert ask(http, gateway, "office", input_data="hello", db_id=db_id, user_id=user_id).ok
    response = http.get(f"{gateway}/character/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=10)
    assert response.status_code == 404


def test_delete_conversation(http, gateway, db_id, user_id):
    assert ask(http, gateway, "character", input_data="Hello!", persona="captain-rhea", db_id=db_id, user_id=user_id).ok
    response = http.delete(f"{gateway}/character/conversations/{db_id}", params={"user_id": user_id}, timeout=10)
    assert response.status_code == 204
    gone = http.get(f"{gateway}/character/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=10)
    assert gone.status_code == 404
    listed = http.get(f"{gateway}/character/conversations", params={"user_id": user_id}, timeout=10).json()
    assert listed == {"conversations": []}


def test_performance_counts_real_requests(http, gateway, db_id, user_id):
    before = http.get(f"{gateway}/character/performance", timeout=10).json()
    assert ask(http, gateway, "character", input_data="Hi", persona="captain-rhea", db_id=db_id, user_id=user_id).ok
    assert ask(http, gateway, "character", input_data="Again", persona="captain-rhea", db_id=db_id, user_id=user_id).ok
    assert (
        ask(http, gateway, "character", input_data="", persona="captain-rhea", db_id=db_id, user_id=user_id).status_code
        == 400
    )
    after = http.get(f"{gateway}/character/performance", timeout=10).json()

    assert set(after) == {
        "total_requests", "successful_requests", "failed_requests", "active_requests",
        "queue_size", "avg_response_time", "success_rate", "uptime_seconds",
        "slots", "busy_slots", "tokens_per_second", "ttft_p50_ms", "ttft_p95_ms",
        "prefix_cache_hit_ratio", "prefix_cache", "estimated_wait_s", "requests_refused", "service_type",
        "active_connections",
    }  # fmt: skip
    assert after["service_type"] == "character" and after["active_connections"] >= 0
    assert after["total_requests"] == before["total_requests"] + 3
    assert after["successful_requests"] == before["successful_requests"] + 2
    assert after["failed_requests"] == before["failed_requests"] + 1
    assert after["active_requests"] == 0 and after["queue_size"] == 0
    assert after["avg_response_time"] > 0
    assert 0 < after["success_rate"] < 1
    assert after["uptime_seconds"] >= before["uptime_seconds"]
    assert after["slots"] == 8 and after["busy_slots"] == 0
    assert after["tokens_per_second"] > 0 and 0 < after["ttft_p50_ms"] <= after["ttft_p95_ms"]
    assert 0 < after["prefix_cache_hit_ratio"] < 1, "the second turn reused the first one's tokens"
    # The first request on a character in this process evaluated its definition and kept a copy.
    cache = after["prefix_cache"]
    assert cache["entries"] >= 1 and 0 < cache["bytes"] <= cache["limit_bytes"]
    assert cache["misses"] >= 1 and 0 <= cache["hit_ratio"] <= 1


def test_every_interface_counts_its_refusals_and_sockets(http, gateway, auth: dict[str, str]):
    """One place counts: an OpenAI request refused at validation is a failed request, and an
    open chat WebSocket is an active connection."""
    before = http.get(f"{gateway}/character/performance", timeout=10).json()
    bad = http.post(f"{gateway}/character/v1/chat/completions", json={"model": "x", "messages": []}, timeout=10)
    assert bad.status_code == 400
    after = http.get(f"{gateway}/character/performance", timeout=10).json()
    assert after["total_requests"] == before["total_requests"] + 1
    assert after["failed_requests"] == before["failed_requests"] + 1
    assert after["active_requests"] == 0

    async def with_socket_open() -> int:
        async with websockets.connect(
            gateway.replace("http://", "ws://") + "/character/ws/chat/", additional_headers=auth
        ) as ws:
            await ws.recv()  # status
            return requests.get(f"{gateway}/character/performance", timeout=10, headers=auth).json()[
                "active_connections"
            ]

    assert asyncio.run(with_socket_open()) >= 1


def test_metrics_in_prometheus_format(http, gateway, db_id, user_id):
    assert ask(http, gateway, "office", input_data="Hi", db_id=db_id, user_id=user_id).ok
    assert ask(http, gateway, "office", input_data="And then?", db_id=db_id, user_id=user_id).ok
    http.get(f"{gateway}/office/nope", timeout=10)
    response = http.get(f"{gateway}/office/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    # Parsed as Prometheus reads it: label order on a line carries no meaning (prometheus-client sorts them).
    samples = {
        (point.name, frozenset(point.labels.items())): point.value
        for family in text_string_to_metric_families(response.text)
        for point in family.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"app": "office", **labels}.items()))]

    assert sample("personachat_engine_slots") == 8
    assert sample("personachat_engine_completion_tokens_total") > 0
    assert sample("personachat_engine_prompt_tokens_reused_total") > 0
    assert sample("personachat_http_requests_total", route="office/Llama", method="POST", status="200") >= 1
    assert sample("personachat_http_requests_total", route="unmatched", method="GET", status="404") >= 1
    count = sample("personachat_http_request_duration_seconds_count", route="office/Llama")
    assert sample("personachat_http_request_duration_seconds_bucket", route="office/Llama", le="+Inf") == count


@pytest.mark.parametrize("app", ["office", "character"])
def test_health_docs_and_personas(http, gateway, app):
    health = http.get(f"{gateway}/{app}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert health.json()["app"] == app

    docs = http.get(f"{gateway}/{app}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Swagger UI's assets are served by the app itself (no CDN).
    assert f"/{app}/static/" in docs.text
    schema = http.get(f"{gateway}/{app}/schema", params={"format": "json"}, timeout=10).json()
    assert f"/{app}/Llama" in schema["paths"]

    personas = http.get(f"{gateway}/{app}/personas", timeout=10).json()
    assert personas["default"] in {p["id"] for p in personas["personas"]}
