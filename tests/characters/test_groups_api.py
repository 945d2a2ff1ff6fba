"""Group chats through nginx, daphne and the real model: making a group, posting, each
member speaking in its own voice (its card and lore), muting, speak now, swipes, and the
refusals. No test asserts what the model writes: only who spoke and what shaped the prompt."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import requests
import websockets

from tests.characters import cardgen

pytestmark = pytest.mark.slow

RHEA, SEOYEON = "captain-rhea", "seoyeon"


def url(gateway: str, path: str) -> str:
    return f"{gateway}/character/{path}"


def group_new(http: requests.Session, gateway: str, user_id: str, **body: Any) -> dict[str, Any]:
    made = http.post(url(gateway, "groups"), json={"user_id": user_id, **body}, timeout=30)
    assert made.status_code == 201, made.text
    return made.json()


def post(http: requests.Session, gateway: str, db_id: str, user_id: str, text: str, **extra: Any) -> dict[str, Any]:
    posted = http.post(
        url(gateway, f"groups/{db_id}/messages"), json={"user_id": user_id, "input_data": text, **extra}, timeout=30
    )
    assert posted.status_code == 201, posted.text
    return posted.json()


def speak(http: requests.Session, gateway: str, db_id: str, user_id: str, speaker: str, **extra: Any):
    return http.post(
        url(gateway, f"groups/{db_id}/speak"), json={"user_id": user_id, "speaker": speaker, **extra}, timeout=300
    )


def history(http: requests.Session, gateway: str, db_id: str, user_id: str) -> list[dict[str, Any]]:
    got = http.get(url(gateway, f"conversations/{db_id}/messages"), params={"user_id": user_id}, timeout=30)
    assert got.status_code == 200, got.text
    return got.json()["messages"]


def test_a_group_of_two_characters_each_speaking_with_its_own_card_and_lore(http, gateway, user_id):
    imported = http.post(
        url(gateway, "characters/import"),
        files={"file": ("card.json", cardgen.card_json(cardgen.card_v3()))},
        data={"user_id": user_id},
        timeout=60,
    )
    assert imported.status_code == 201, imported.text
    librarian = imported.json()["id"]

    group = group_new(http, gateway, user_id, members=[librarian, RHEA], activation="list")
    assert group["members"] == [librarian, RHEA] and group["activation"] == "list" and group["muted"] == []
    db_id = group["db_id"]
    posted = post(http, gateway, db_id, user_id, "Good evening, both of you.")
    assert posted["speakers"] == [librarian, RHEA], "list: every member, in the group's order"
    assert posted["message"]["role"] == "user"

    for speaker in posted["speakers"]:
        reply = speak(http, gateway, db_id, user_id, speaker)
        assert reply.status_code == 200, reply.text
        assert reply.json()["speaker"] == speaker

    user, first, second = history(http, gateway, db_id, user_id)
    assert [m["meta"]["speaker"] for m in (first, second)] == [librarian, RHEA]
    assert [m["meta"]["prompt"]["persona"] for m in (first, second)] == [librarian, RHEA]
    # The librarian's own book fires for its turn (its constant entry); the captain has none.
    assert "0" in {entry["uid"] for entry in first["meta"]["lore"]}
    assert "lore" not in second["meta"]
    assert first["meta"]["prompt"]["budget"]["character"] != second["meta"]["prompt"]["budget"]["character"]
    # The captain's prompt saw the user's message and the librarian's reply.
    assert second["meta"]["prompt"]["history_message_ids"] == [user["id"], first["id"]]

    listed = http.get(url(gateway, "groups"), params={"user_id": user_id}, timeout=30).json()["groups"]
    assert [g["db_id"] for g in listed] == [db_id]
    chats = http.get(url(gateway, "conversations"), params={"user_id": user_id}, timeout=30).json()
    assert next(c for c in chats["conversations"] if c["db_id"] == db_id)["members"] == [librarian, RHEA]


def test_muting_speak_now_swipes_and_the_refusals(http, gateway, user_id):
    group = group_new(http, gateway, user_id, members=[RHEA, SEOYEON], title="Crew")
    db_id = group["db_id"]
    assert group["activation"] == "natural" and group["title"] == "Crew"

    changed = http.patch(
        url(gateway, f"groups/{db_id}"), params={"user_id": user_id}, json={"muted": [SEOYEON]}, timeout=30
    )
    assert changed.status_code == 200 and changed.json()["muted"] == [SEOYEON], changed.text
    for seed in range(5):  # named or not, a muted member is never picked
        said = post(http, gateway, db_id, user_id, "Seoyeon, are you there?", seed=seed)
        assert said["speakers"] == [RHEA], said
    manual = http.patch(
        url(gateway, f"groups/{db_id}"), params={"user_id": user_id}, json={"activation": "manual"}, timeout=30
    )
    assert manual.json()["activation"] == "manual"
    assert post(http, gateway, db_id, user_id, "Anyone?")["speakers"] == []

    now = speak(http, gateway, db_id, user_id, SEOYEON)  # speak now: even a muted member
    assert now.status_code == 200, now.text
    last = now.json()["message"]
    again = speak(http, gateway, db_id, user_id, SEOYEON, message_id=last["id"])
    assert again.status_code == 200, again.text
    shown = history(http, gateway, db_id, user_id)
    assert shown[-1]["id"] == last["id"] and len(shown[-1]["meta"]["swipes"]) == 2, "a new swipe, in place"
    assert shown[-1]["meta"]["speaker"] == SEOYEON

    user_message = shown[-2]["id"]
    not_last = speak(http, gateway, db_id, user_id, SEOYEON, message_id=user_message)
    assert not_last.status_code == 409 and not_last.json()["error"]["code"] == "not_the_last_reply"
    before = history(http, gateway, db_id, user_id)
    for body, field in (
        ({"members": [RHEA]}, "members"),
        ({"members": [RHEA, "nobody-here"]}, "members"),
        ({"members": [RHEA, RHEA]}, "members"),
        ({"members": [RHEA, SEOYEON], "activation": "loud"}, "activation"),
        ({"members": [RHEA, SEOYEON], "volume": 3}, "volume"),
    ):
        refused = http.post(url(gateway, "groups"), json={"user_id": user_id, **body}, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == field, (body, refused.text)
    bad_mute = http.patch(url(gateway, f"groups/{db_id}"), params={"user_id": user_id}, json={"muted": ["x"]})
    assert bad_mute.status_code == 400 and bad_mute.json()["error"]["field"] == "muted"
    stranger = speak(http, gateway, db_id, user_id, "assistant")
    assert stranger.status_code == 400 and stranger.json()["error"]["field"] == "speaker"
    as_one_to_one = http.post(
        url(gateway, "Llama"), json={"user_id": user_id, "db_id": db_id, "persona": RHEA, "input_data": "hi"}
    )
    assert as_one_to_one.status_code == 400 and as_one_to_one.json()["error"]["code"] == "group_chat"
    other = f"other-{user_id}"
    assert speak(http, gateway, db_id, other, RHEA).status_code == 404, "another user's group is not found"
    assert (
        http.post(url(gateway, f"groups/{db_id}/messages"), json={"user_id": other, "input_data": "x"}).status_code
        == 404
    )
    assert history(http, gateway, db_id, user_id) == before, "nothing refused was stored"
    assert http.get(f"{gateway}/office/groups", timeout=30).status_code == 404, "group chats are the character app's"


def test_a_member_speaks_over_the_websocket(gateway, auth, user_id, http):
    group = group_new(http, gateway, user_id, members=[RHEA, SEOYEON], activation="list")
    db_id = group["db_id"]
    post(http, gateway, db_id, user_id, "Hello!")

    async def run() -> list[dict[str, Any]]:
        ws_url = gateway.replace("http://", "ws://") + "/character/ws/chat/"
        async with websockets.connect(ws_url, additional_headers=auth) as ws:
            assert json.loads(await ws.recv())["type"] == "status"
            await ws.send(json.dumps({"type": "speak", "db_id": db_id, "user_id": user_id, "speaker": SEOYEON}))
            frames = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=120)))
            await ws.send(json.dumps({"type": "speak", "db_id": str(uuid.uuid4()), "speaker": SEOYEON}))
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
            return frames

    frames = asyncio.run(run())
    start = next(f for f in frames if f["type"] == "start")
    done = next(f for f in frames if f["type"] == "done")
    assert start["speaker"] == SEOYEON and done["speaker"] == SEOYEON and start["message_id"] == done["message_id"]
    assert frames[-1]["type"] == "error" and frames[-1]["field"] == "db_id"
    stored = history(http, gateway, db_id, user_id)[-1]
    assert stored["id"] == done["message_id"] and stored["meta"]["speaker"] == SEOYEON
