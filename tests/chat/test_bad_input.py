"""The table of bad inputs, sent through nginx: a clear JSON error naming the field and
the rule, never a 500, and nothing stored is changed."""

from __future__ import annotations

import uuid

import pytest
import requests

GOOD_OFFICE = {"input_data": "hello", "google_access": False, "db_id": "", "user_id": "bad-input-user"}
GOOD_CHARACTER = {
    "input_data": "hello",
    "character_name": "Rhea",
    "greeting": "Hi.",
    "context": "A captain.",
    "db_id": "",
    "user_id": "bad-input-user",
}


def without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


# (app, body or raw bytes, content type, expected status, expected error code, expected field)
CASES = [
    ("office", without(GOOD_OFFICE, "input_data"), "json", 400, "required", "input_data"),
    ("office", {**GOOD_OFFICE, "user_id": ""}, "json", 400, "blank", "user_id"),
    ("office", {**GOOD_OFFICE, "input_data": ""}, "json", 400, "blank", "input_data"),
    ("office", {**GOOD_OFFICE, "input_data": "x" * 501}, "json", 400, "max_length", "input_data"),
    ("office", {**GOOD_OFFICE, "db_id": "not-a-uuid"}, "json", 400, "invalid", "db_id"),
    ("office", {**GOOD_OFFICE, "input_data": 42}, "json", 400, "invalid", "input_data"),
    ("office", {**GOOD_OFFICE, "user_id": ["u"]}, "json", 400, "invalid", "user_id"),
    ("office", {**GOOD_OFFICE, "google_access": "yes"}, "json", 400, "invalid", "google_access"),
    ("office", {**GOOD_OFFICE, "user_id": "u" * 129}, "json", 400, "max_length", "user_id"),
    ("office", {**GOOD_OFFICE, "persona": "nobody"}, "json", 400, "invalid", "persona"),
    ("office", b'{"input_data": "hi", ', "json", 400, "malformed_json", None),
    ("office", b"[1, 2, 3]", "json", 400, "invalid", None),
    ("office", b"input_data=hi", "form", 415, "unsupported_media_type", "Content-Type"),
    ("character", without(GOOD_CHARACTER, "character_name"), "json", 400, "required", "character_name"),
    ("character", without(GOOD_CHARACTER, "context"), "json", 400, "required", "context"),
    ("character", {**GOOD_CHARACTER, "persona": "seoyeon"}, "json", 400, "invalid", "persona"),
    ("character", {**without(GOOD_CHARACTER, "character_name"), "persona": "ghost"}, "json", 400, "invalid", "persona"),
    ("character", {**GOOD_CHARACTER, "character_name": "n" * 101}, "json", 400, "max_length", "character_name"),
    ("character", {**GOOD_CHARACTER, "input_data": "가" * 501}, "json", 400, "max_length", "input_data"),
]


def send(http: requests.Session, url: str, body: dict | bytes, kind: str) -> requests.Response:
    if isinstance(body, bytes):
        content_type = "application/json" if kind == "json" else "application/x-www-form-urlencoded"
        return http.post(url, data=body, headers={"Content-Type": content_type}, timeout=30)
    return http.post(url, json=body, timeout=30)


@pytest.fixture(scope="module")
def existing(gateway: str, auth: dict[str, str]) -> dict:
    """One real conversation per app whose stored history must survive every bad request."""
    owner = f"owner-{uuid.uuid4().hex[:6]}"
    conversations = {}
    with requests.Session() as http:
        http.headers.update(auth)
        for app, body in (("office", GOOD_OFFICE), ("character", GOOD_CHARACTER)):
            db_id = str(uuid.uuid4())
            response = http.post(f"{gateway}/{app}/Llama", json={**body, "db_id": db_id, "user_id": owner}, timeout=120)
            assert response.status_code == 200, response.text
            conversations[app] = db_id
    return {"owner": owner, "db_ids": conversations}


def history(http: requests.Session, gateway: str, app: str, existing: dict) -> list[dict]:
    db_id = existing["db_ids"][app]
    response = http.get(
        f"{gateway}/{app}/conversations/{db_id}/messages", params={"user_id": existing["owner"]}, timeout=10
    )
    assert response.status_code == 200
    return response.json()["messages"]


@pytest.mark.parametrize(("app", "body", "kind", "status", "code", "field"), CASES)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    http, gateway, existing, app, body, kind, status, code, field
):
    before = history(http, gateway, app, existing)
    if isinstance(body, dict):
        # Aim at the existing conversation so a wrongly accepted request would show up in it.
        body = dict(body)
        if body.get("db_id") == "":
            body["db_id"] = existing["db_ids"][app]
        if body.get("user_id") == "bad-input-user":
            body["user_id"] = existing["owner"]
    response = send(http, f"{gateway}/{app}/Llama", body, kind)

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    if field:
        assert field in error["message"], "the message names the field"
    assert history(http, gateway, app, existing) == before


def test_body_over_the_limit_is_413_json_from_nginx(http, gateway, existing):
    before = history(http, gateway, "office", existing)
    body = {**GOOD_OFFICE, "db_id": existing["db_ids"]["office"], "input_data": "x" * 70_000}
    response = http.post(f"{gateway}/office/Llama", json=body, timeout=30)
    assert response.status_code == 413
    assert response.headers["Server"].startswith("nginx")
    assert response.json()["error"]["code"] == "body_too_large"
    assert history(http, gateway, "office", existing) == before


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/office/conversations", {"user_id": "u" * 129}, "user_id"),
        ("/office/conversations", {"user_id": "u", "limit": "0"}, "limit"),
        ("/office/conversations", {"user_id": "u", "limit": "lots"}, "limit"),
        ("/character/conversations/not-a-uuid/messages", {"user_id": "u"}, None),
        (f"/character/conversations/{uuid.uuid4()}/messages", {"user_id": "x" * 200}, "user_id"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "limit": "0"}, "limit"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "limit": "501"}, "limit"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "limit": ""}, "limit"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "before": "-1"}, "before"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "before": "9" * 30}, "before"),
        (f"/office/conversations/{uuid.uuid4()}/messages", {"user_id": "u", "before": "soon"}, "before"),
        ("/office/search", {"user_id": "u"}, "q"),
        ("/office/search", {"user_id": "u", "q": ""}, "q"),
        ("/office/search", {"user_id": "u", "q": "x" * 201}, "q"),
        ("/office/search", {"user_id": "u", "q": "a\x00b"}, "q"),
        ("/character/search", {"user_id": "u", "q": "?! … the"}, "q"),
        ("/character/search", {"user_id": "u", "q": "budget", "limit": "101"}, "limit"),
    ],
)
def test_bad_history_queries(http, gateway, path, params, field):
    response = http.get(f"{gateway}{path}", params=params, timeout=10)
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert response.status_code == (404 if field is None else 400)
