"""The character library through nginx: import, export, edit, isolation, and chatting with a card.

Cards come from tests.characters.cardgen (independent of the app's own writer). No test
asserts what the model writes: chats are checked by what was stored (persona, greeting,
the lore trace, the prompt budget).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any

import pytest
import requests
from PIL import Image

from tests.characters import cardgen

pytestmark = pytest.mark.slow


def _url(gateway: str, path: str) -> str:
    return f"{gateway}/character/{path}"


def _import(http: requests.Session, gateway: str, content: bytes, *, user_id: str, name: str = "card") -> Any:
    return http.post(
        _url(gateway, "characters/import"), files={"file": (name, content)}, data={"user_id": user_id}, timeout=60
    )


def _mine(http: requests.Session, gateway: str, user_id: str) -> list[dict[str, Any]]:
    response = http.get(_url(gateway, "characters"), params={"user_id": user_id}, timeout=30)
    assert response.status_code == 200, response.text
    return [c for c in response.json()["characters"] if not c["builtin"]]


FORMATS = {
    "v1-json": lambda: cardgen.card_json(cardgen.card_v1()),
    "v2-json": lambda: cardgen.card_json(cardgen.card_v2()),
    "v3-json": lambda: cardgen.card_json(cardgen.card_v3()),
    "v3-json-bom": lambda: cardgen.card_json(cardgen.card_v3(), bom=True),
    "png-chara": lambda: cardgen.png_with(chara=cardgen.card_v2(), ccv3=None),
    "png-ccv3": lambda: cardgen.png_with(chara=None, ccv3=cardgen.card_v3()),
    "charx": lambda: cardgen.charx_with(cardgen.card_v3(), avatar=cardgen.solid_png()),
    "korean-v3": lambda: cardgen.card_json(cardgen.card_v3(korean=True)),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_import_each_format(http: requests.Session, gateway: str, user_id: str, kind: str) -> None:
    response = _import(http, gateway, FORMATS[kind](), user_id=user_id)
    assert response.status_code == 201, response.text
    character = response.json()
    expected = cardgen.card_v3(korean=kind.startswith("korean"))["data"]
    assert character["data"]["name"] == expected["name"]
    assert character["data"]["first_mes"] == expected["first_mes"]
    assert character["builtin"] is False
    assert [c["id"] for c in _mine(http, gateway, user_id)] == [character["id"]]
    if kind.startswith(("png", "charx")):
        assert character["avatar_url"]
        avatar = http.get(_url(gateway, character["avatar_url"]), params={"user_id": user_id}, timeout=30)
        assert avatar.status_code == 200
        assert avatar.headers["Content-Type"] == "image/png"
        assert avatar.headers["X-Content-Type-Options"] == "nosniff"
        Image.open(io.BytesIO(avatar.content)).verify()
    else:
        assert character["avatar_url"] is None


def test_png_with_both_chunks_reads_ccv3(http: requests.Session, gateway: str, user_id: str) -> None:
    v2, v3 = cardgen.card_v2(), cardgen.card_v3()
    v3["data"]["name"] = "The V3 one"
    response = _import(http, gateway, cardgen.png_with(chara=v2, ccv3=v3), user_id=user_id)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["name"] == "The V3 one"


def test_export_round_trip_keeps_unknown_fields(http: requests.Session, gateway: str, user_id: str) -> None:
    card = cardgen.card_v3()
    # Keys MongoDB would refuse or escape as field names: the card is stored as JSON text.
    card["data"]["extensions"]["$ref"] = {"a.b": ["$x", {"c.d": None}]}
    created = _import(http, gateway, cardgen.card_json(card), user_id=user_id).json()
    exported = http.get(
        _url(gateway, f"characters/{created['id']}/export"), params={"user_id": user_id, "format": "json"}, timeout=30
    )
    assert exported.status_code == 200
    assert "attachment" in exported.headers["Content-Disposition"]
    assert exported.json() == card

    png = http.get(
        _url(gateway, f"characters/{created['id']}/export"), params={"user_id": user_id, "format": "png"}, timeout=30
    )
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png", png.text[:300]
    texts = cardgen.png_texts(png.content)
    assert json.loads(base64.b64decode(texts["ccv3"])) == card
    v2 = json.loads(base64.b64decode(texts["chara"]))
    assert v2["spec"] == "chara_card_v2"
    assert v2["data"]["character_book"] == card["data"]["character_book"]
    assert v2["data"]["extensions"] == card["data"]["extensions"]
    again = _import(http, gateway, png.content, user_id=user_id)
    assert again.status_code == 201
    assert again.json()["data"] == created["data"]

    charx = http.get(
        _url(gateway, f"characters/{created['id']}/export"), params={"user_id": user_id, "format": "charx"}, timeout=30
    )
    assert charx.status_code == 200 and charx.content[:4] == b"PK\x03\x04"
    assert (
        _import(http, gateway, charx.content, user_id=user_id).json()["data"]["extensions"]
        == card["data"]["extensions"]
    )


HOSTILE = {
    "empty": (b"", 400, "file"),
    "not-a-card": (b"hello, world", 400, "file"),
    "deep-json": (cardgen.deep_json(), 400, None),
    "png-without-card": (cardgen.png_no_card(), 400, None),
    "png-bad-base64": (cardgen.png_bad_base64(), 400, None),
    "png-decompression-bomb": (cardgen.decompression_bomb_png(card=cardgen.card_v3()), 400, "avatar"),
    "zip-bomb": (cardgen.zip_bomb(), 400, None),
    "charx-traversal": (cardgen.charx_traversal(), 400, None),
    "charx-encrypted": (cardgen.charx_encrypted(), 400, None),
    "charx-many-entries": (cardgen.charx_many_entries(), 400, None),
    "no-name": (cardgen.card_json({"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": " "}}), 400, None),
    "tags-not-strings": (
        cardgen.card_json({"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x", "tags": [1]}}),
        400,
        None,
    ),
    "too-large": (b"{" + b" " * (8 * 1024 * 1024 + 10) + b"}", 413, "file"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_cards_are_refused_and_nothing_is_stored(
    http: requests.Session, gateway: str, user_id: str, kind: str
) -> None:
    content, status, field = HOSTILE[kind]
    response = _import(http, gateway, content, user_id=user_id)
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["error"]["code"] in ("invalid_card", "card_too_large")
    assert body["error"]["field"]
    if field is not None:
        assert body["error"]["field"] == field
    assert _mine(http, gateway, user_id) == []


def test_editor_create_edit_duplicate_delete(http: requests.Session, gateway: str, user_id: str) -> None:
    created = http.post(
        _url(gateway, "characters"),
        json={"user_id": user_id, "data": {"name": "Quill", "first_mes": "Hello, {{user}}.", "tags": ["cat"]}},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    character = created.json()
    assert character["source"] == "editor"
    assert character["data"]["alternate_greetings"] == []  # every V3 field is there
    changed = http.patch(
        _url(gateway, f"characters/{character['id']}"),
        json={"user_id": user_id, "data": {"tags": ["cat", "library"], "x_custom": {"kept": True}}},
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["tags"] == ["cat", "library"]
    assert changed.json()["data"]["first_mes"] == "Hello, {{user}}."
    assert changed.json()["data"]["x_custom"] == {"kept": True}
    bad = http.patch(
        _url(gateway, f"characters/{character['id']}"), json={"user_id": user_id, "data": {"name": 5}}, timeout=30
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "data.name"
    copy = http.post(_url(gateway, f"characters/{character['id']}/duplicate"), json={"user_id": user_id}, timeout=30)
    assert copy.status_code == 201
    assert copy.json()["id"] != character["id"] and copy.json()["data"]["tags"] == ["cat", "library"]
    gone = http.delete(_url(gateway, f"characters/{character['id']}"), params={"user_id": user_id}, timeout=30)
    assert gone.status_code == 204
    missing = http.get(_url(gateway, f"characters/{character['id']}"), params={"user_id": user_id}, timeout=30)
    assert missing.status_code == 404
    assert [c["id"] for c in _mine(http, gateway, user_id)] == [copy.json()["id"]]


def test_builtin_characters_are_listed_read_only_and_can_be_copied(
    http: requests.Session, gateway: str, user_id: str
) -> None:
    listed = http.get(_url(gateway, "characters"), params={"user_id": user_id}, timeout=30).json()["characters"]
    builtin = next(c for c in listed if c["builtin"])
    refused = http.patch(
        _url(gateway, f"characters/{builtin['id']}"), json={"user_id": user_id, "data": {"tags": []}}, timeout=30
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "read_only"
    copy = http.post(_url(gateway, f"characters/{builtin['id']}/duplicate"), json={"user_id": user_id}, timeout=30)
    assert copy.status_code == 201 and copy.json()["builtin"] is False


def test_another_users_characters_read_as_missing(http: requests.Session, gateway: str, user_id: str) -> None:
    created = _import(http, gateway, cardgen.png_with(chara=None, ccv3=cardgen.card_v3()), user_id=user_id).json()
    other = f"other-{uuid.uuid4().hex[:8]}"
    cid = created["id"]
    assert _mine(http, gateway, other) == []
    for method, path, kwargs in [
        ("get", f"characters/{cid}", {"params": {"user_id": other}}),
        ("patch", f"characters/{cid}", {"json": {"user_id": other, "data": {"tags": []}}}),
        ("delete", f"characters/{cid}", {"params": {"user_id": other}}),
        ("get", f"characters/{cid}/export", {"params": {"user_id": other}}),
        ("get", f"characters/{cid}/avatar", {"params": {"user_id": other}}),
        ("post", f"characters/{cid}/duplicate", {"json": {"user_id": other}}),
    ]:
        response = http.request(method, _url(gateway, path), timeout=30, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    turn = http.post(_url(gateway, "Llama"), json={"input_data": "Hi", "user_id": other, "persona": cid}, timeout=120)
    assert turn.status_code == 400 and turn.json()["error"]["field"] == "persona"
    assert http.get(_url(gateway, f"characters/{cid}"), params={"user_id": user_id}, timeout=30).status_code == 200


def test_chat_with_an_imported_card_uses_its_greeting_lore_and_budget(
    http: requests.Session, gateway: str, user_id: str
) -> None:
    character = _import(http, gateway, cardgen.png_with(chara=None, ccv3=cardgen.card_v3()), user_id=user_id).json()
    too_far = http.post(
        _url(gateway, "Llama"),
        json={"input_data": "Hi", "user_id": user_id, "persona": character["id"], "greeting_index": 3},
        timeout=120,
    )
    assert too_far.status_code == 400 and too_far.json()["error"]["field"] == "greeting_index"
    db_id = str(uuid.uuid4())
    # "cats" is a key of one lore entry; the constant entry always fires.
    reply = http.post(
        _url(gateway, "Llama"),
        json={
            "input_data": "Are there cats here?",
            "user_id": user_id,
            "persona": character["id"],
            "db_id": db_id,
            "greeting_index": 2,
        },
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Persona"] == character["id"]
    conversations = http.get(_url(gateway, "conversations"), params={"user_id": user_id}, timeout=30).json()
    conversation = next(c for c in conversations["conversations"] if c["db_id"] == db_id)
    assert conversation["greeting"] == 2
    messages = http.get(
        _url(gateway, f"conversations/{db_id}/messages"), params={"user_id": user_id}, timeout=30
    ).json()["messages"]
    meta = messages[-1]["meta"]
    fired = {entry["uid"]: entry for entry in meta["lore"]}
    # The constant entry, the one "cats" sets off, and the one the constant entry's own text
    # sets off (the book scans recursively).
    assert set(fired) == {"0", "3", "c0ffee-5"}
    assert fired["0"]["reason"] == "constant"
    assert all(entry["tokens"] > 0 for entry in fired.values())
    budget = meta["prompt"]["budget"]
    assert set(budget) == {"character", "lore", "examples", "history", "reply"}
    assert budget["character"] > 500  # the long description is in, whole
    assert budget["lore"] == sum(entry["tokens"] for entry in fired.values())
    assert budget["reply"] == meta["tokens"]


def test_user_persona_is_stored_per_user(http: requests.Session, gateway: str, user_id: str) -> None:
    default = http.get(_url(gateway, "user-persona"), params={"user_id": user_id}, timeout=30)
    assert default.status_code == 200 and default.json() == {"name": user_id, "description": ""}
    saved = http.put(
        _url(gateway, "user-persona"),
        json={"user_id": user_id, "name": "Ari", "description": "A courier who loves old maps."},
        timeout=30,
    )
    assert saved.status_code == 200
    assert http.get(_url(gateway, "user-persona"), params={"user_id": user_id}, timeout=30).json()["name"] == "Ari"
    other = http.get(_url(gateway, "user-persona"), params={"user_id": user_id + "x"}, timeout=30).json()
    assert other["name"] == user_id + "x"
    blank = http.put(_url(gateway, "user-persona"), json={"user_id": user_id, "name": "  "}, timeout=30)
    assert blank.status_code == 400 and blank.json()["error"]["field"] == "name"


def lorebook_v3() -> dict[str, Any]:
    return {"spec": "lorebook_v3", "data": {**cardgen.character_book(), "name": "Library lore (v3)"}}


def test_lorebooks_import_export_attach_and_fire_in_a_chat(http: requests.Session, gateway: str, user_id: str) -> None:
    imported = {}
    for kind, content in (("world-info", cardgen.world_info()), ("lorebook-v3", lorebook_v3())):
        response = http.post(
            _url(gateway, "lorebooks"),
            files={"file": (f"{kind}.json", json.dumps(content).encode())},
            data={"user_id": user_id},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        imported[kind] = response.json()
    assert imported["world-info"]["name"] == "Harbour lore" and imported["world-info"]["entries"] == 2
    assert imported["lorebook-v3"]["entries"] == len(cardgen.character_book()["entries"])
    listed = http.get(_url(gateway, "lorebooks"), params={"user_id": user_id}, timeout=30).json()["lorebooks"]
    assert {b["id"] for b in listed} == {b["id"] for b in imported.values()}
    book_id = imported["world-info"]["id"]
    exported = http.get(_url(gateway, f"lorebooks/{book_id}/export"), params={"user_id": user_id}, timeout=30)
    assert exported.status_code == 200 and exported.json() == cardgen.world_info()

    character = http.post(
        _url(gateway, "characters"),
        json={"user_id": user_id, "data": {"name": "Keeper", "first_mes": "Hi."}},
        timeout=30,
    ).json()
    other = f"other-{uuid.uuid4().hex[:8]}"
    stolen = http.patch(
        _url(gateway, f"characters/{character['id']}"), json={"user_id": user_id, "lorebooks": ["l-nope"]}, timeout=30
    )
    assert stolen.status_code == 404 and stolen.json()["error"]["field"] == "lorebooks"
    assert http.get(_url(gateway, f"lorebooks/{book_id}"), params={"user_id": other}, timeout=30).status_code == 404
    attached = http.patch(
        _url(gateway, f"characters/{character['id']}"), json={"user_id": user_id, "lorebooks": [book_id]}, timeout=30
    )
    assert attached.status_code == 200 and attached.json()["lorebooks"] == [book_id]

    db_id = str(uuid.uuid4())
    reply = http.post(
        _url(gateway, "Llama"),
        json={
            "input_data": "Who keeps the lighthouse?",
            "user_id": user_id,
            "persona": character["id"],
            "db_id": db_id,
        },
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    meta = http.get(_url(gateway, f"conversations/{db_id}/messages"), params={"user_id": user_id}, timeout=30).json()[
        "messages"
    ][-1]["meta"]
    assert {(e["book"], e["uid"]) for e in meta["lore"]} == {("Harbour lore", "0"), ("Harbour lore", "1")}

    assert (
        http.delete(_url(gateway, f"lorebooks/{book_id}"), params={"user_id": user_id}, timeout=30).status_code == 204
    )
    again = http.post(
        _url(gateway, "Llama"),
        json={"input_data": "And the lighthouse?", "user_id": user_id, "persona": character["id"], "db_id": db_id},
        timeout=300,
    )
    assert again.status_code == 200, again.text
    last = http.get(_url(gateway, f"conversations/{db_id}/messages"), params={"user_id": user_id}, timeout=30).json()[
        "messages"
    ][-1]["meta"]
    assert "lore" not in last, "a deleted lorebook no longer fires"


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1, 2]", json.dumps({"entries": {"0": {"key": "not a list"}}}).encode(), cardgen.deep_json()],
    ids=["empty", "not-json", "not-an-object", "bad-entry", "deep"],
)
def test_hostile_lorebooks_are_refused(http: requests.Session, gateway: str, user_id: str, content: bytes) -> None:
    response = http.post(
        _url(gateway, "lorebooks"), files={"file": ("book.json", content)}, data={"user_id": user_id}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_lorebook" and response.json()["error"]["field"]
    assert http.get(_url(gateway, "lorebooks"), params={"user_id": user_id}, timeout=30).json() == {"lorebooks": []}


def test_a_lorebook_attached_to_a_chat_fires_in_that_chat_only(
    http: requests.Session, gateway: str, user_id: str
) -> None:
    book = http.post(
        _url(gateway, "lorebooks"),
        files={"file": ("world.json", json.dumps(cardgen.world_info()).encode())},
        data={"user_id": user_id},
        timeout=30,
    ).json()
    chats = [str(uuid.uuid4()), str(uuid.uuid4())]
    for db_id in chats:  # a built-in character, without lore of its own
        first = http.post(
            _url(gateway, "Llama"),
            json={"input_data": "Hello.", "user_id": user_id, "persona": "captain-rhea", "db_id": db_id},
            timeout=300,
        )
        assert first.status_code == 200, first.text
    other = f"other-{uuid.uuid4().hex[:8]}"
    refused = http.put(
        _url(gateway, f"conversations/{chats[0]}/lorebooks"), json={"user_id": other, "lorebooks": []}, timeout=30
    )
    assert refused.status_code == 404 and refused.json()["error"]["field"] == "db_id"
    attached = http.put(
        _url(gateway, f"conversations/{chats[0]}/lorebooks"),
        json={"user_id": user_id, "lorebooks": [book["id"]]},
        timeout=30,
    )
    assert attached.status_code == 200 and attached.json() == {"lorebooks": [book["id"]]}
    listed = http.get(_url(gateway, "conversations"), params={"user_id": user_id}, timeout=30).json()["conversations"]
    assert {c["db_id"]: c["lorebooks"] for c in listed} == {chats[0]: [book["id"]], chats[1]: []}

    lore = {}
    for db_id in chats:
        reply = http.post(
            _url(gateway, "Llama"),
            json={"input_data": "Any news?", "user_id": user_id, "persona": "captain-rhea", "db_id": db_id},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        messages = http.get(
            _url(gateway, f"conversations/{db_id}/messages"), params={"user_id": user_id}, timeout=30
        ).json()["messages"]
        lore[db_id] = [(e["book"], e["uid"]) for e in messages[-1]["meta"].get("lore", [])]
    assert lore == {chats[0]: [("Harbour lore", "0")], chats[1]: []}
