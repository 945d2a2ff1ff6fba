"""The tool registry over REST through nginx: listing, calls checked against their schemas,
rate limits and the concurrency cap (429 + Retry-After), approvals, and the audit log."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.office.test_documents import POLICY_MD, documents_of, upload


def call(http, gateway, name, user_id, arguments, **extra):
    return http.post(
        f"{gateway}/office/tools/{name}/call", json={"user_id": user_id, "arguments": arguments, **extra}, timeout=60
    )


def audit_of(http, gateway, user_id):
    response = http.get(f"{gateway}/office/audit", params={"user_id": user_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def test_the_tools_are_listed_with_their_rules(http, gateway):
    body = http.get(f"{gateway}/office/tools", timeout=30).json()
    tools = {t["name"]: t for t in body["tools"]}
    assert body["security_mode"] == "development"
    expected = {
        "search_documents": "LOW",
        "web_search": "LOW",
        "calculator": "LOW",
        "current_time": "LOW",
        "save_note": "MEDIUM",
        "list_notes": "MEDIUM",
        "delete_document": "HIGH",
    }
    assert {name: tools[name]["sensitivity"] for name in expected} == expected
    assert tools["delete_document"]["needs_approval"] is True
    assert tools["calculator"]["parameters"]["properties"]["expression"]["type"] == "string"
    one = http.get(f"{gateway}/office/tools/calculator", timeout=30).json()
    assert one == tools["calculator"]
    unknown = http.get(f"{gateway}/office/tools/teleport", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_tool"


def test_the_calculator_runs_and_is_audited(http, gateway, user_id):
    response = call(http, gateway, "calculator", user_id, {"expression": "(2 + 3) * 4 ^ 2 / 8"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["result"] == (2 + 3) * 4**2 / 8
    entry = audit_of(http, gateway, user_id)[0]
    assert entry["tool"] == "calculator" and entry["outcome"] == "ok"
    assert entry["arguments"] == {"expression": "(2 + 3) * 4 ^ 2 / 8"}
    assert entry["duration_ms"] >= 0 and entry["source"] == "api"


BAD_CALLS = [
    ("calculator", {"expression": 42}, 400, "arguments.expression"),
    ("calculator", {}, 400, "arguments.expression"),
    ("calculator", {"expression": "1+1", "mode": "fast"}, 400, "arguments.mode"),
    ("calculator", {"expression": "__import__('os')"}, 400, "arguments.expression"),
    ("calculator", "1+1", 400, "arguments"),
    ("search_documents", {"query": "x", "k": "five"}, 400, "arguments.k"),
    ("save_note", {"title": "t" * 201, "text": "x"}, 400, "arguments.title"),
    ("teleport", {}, 404, None),
]


@pytest.mark.parametrize(("name", "arguments", "status", "field"), BAD_CALLS)
def test_a_bad_call_is_refused_naming_the_field(http, gateway, user_id, name, arguments, status, field):
    response = call(http, gateway, name, user_id, arguments)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_over_the_rate_limit_is_429_with_retry_after(http, gateway, user_id):
    limit = http.get(f"{gateway}/office/tools/current_time", timeout=30).json()["rate_limit"]
    statuses = [call(http, gateway, "current_time", user_id, {}).status_code for _ in range(limit["burst"])]
    assert statuses == [200] * limit["burst"]
    refused = call(http, gateway, "current_time", user_id, {"timezone": "Asia/Seoul"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    state = http.get(f"{gateway}/office/tools/current_time/rate-limit", params={"user_id": user_id}, timeout=30).json()
    assert state["remaining"] == 0 and state["count"] == limit["burst"] and state["burst"] == limit["burst"]
    assert state["limit"] == limit["requests"] and state["reset_in_s"] > 0
    # Limits are per user.
    assert call(http, gateway, "current_time", f"{user_id}-2", {}).status_code == 200
    assert audit_of(http, gateway, user_id)[0]["outcome"] == "rate_limited"


def test_over_the_concurrency_cap_is_429_tool_busy(http, gateway, user_id, searxng):
    cap = http.get(f"{gateway}/office/tools/web_search", timeout=30).json()["max_concurrent"]
    with ThreadPoolExecutor(cap) as pool:
        # Different users, so that no one's rate limit is what refuses the extra call.
        held = [
            pool.submit(call, http, gateway, "web_search", f"{user_id}-{n}", {"query": f"slow {n}"}) for n in range(cap)
        ]
        deadline = time.monotonic() + 10
        while sum("slow" in q.get("q", [""])[0] for q in searxng.queries[-cap:]) < cap:
            assert time.monotonic() < deadline, "the held calls never reached the search server"
            time.sleep(0.05)
        refused = call(http, gateway, "web_search", f"{user_id}-extra", {"query": "fast"})
        assert [f.result().status_code for f in held] == [200] * cap
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "tool_busy"
    assert int(refused.headers["Retry-After"]) >= 1


def test_web_search_goes_to_the_configured_searxng(http, gateway, user_id, searxng):
    response = call(http, gateway, "web_search", user_id, {"query": "seoul weather", "k": 2})
    assert response.status_code == 200, response.text
    results = response.json()["result"]["results"]
    assert [r["title"] for r in results] == ["Result 1 for seoul weather", "Result 2 for seoul weather"]
    assert searxng.queries[-1]["q"] == ["seoul weather"] and searxng.queries[-1]["format"] == ["json"]


def test_notes_are_saved_and_listed_per_user(http, gateway, user_id):
    saved = call(http, gateway, "save_note", user_id, {"title": "회의", "text": "금요일 3시 예산 회의"})
    assert saved.status_code == 200, saved.text
    listed = call(http, gateway, "list_notes", user_id, {}).json()["result"]["notes"]
    assert [(n["title"], n["text"]) for n in listed] == [("회의", "금요일 3시 예산 회의")]
    assert call(http, gateway, "list_notes", f"{user_id}-other", {}).json()["result"]["notes"] == []


def test_delete_document_waits_for_the_users_approval(http, gateway, user_id):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()

    asked = call(http, gateway, "delete_document", user_id, {"document_id": document["id"]})
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval_id"]
    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]

    def decide(who, decision, approval=approval_id):
        return http.post(
            f"{gateway}/office/approvals/{approval}", json={"user_id": who, "decision": decision}, timeout=60
        )

    assert decide(f"{user_id}-intruder", "approve").status_code == 404
    bad = decide(user_id, "maybe")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "decision"
    denied = decide(user_id, "deny")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert decide(user_id, "approve").status_code == 409  # decided already
    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]

    again = call(http, gateway, "delete_document", user_id, {"document_id": document["id"]}).json()["approval_id"]
    approved = decide(user_id, "approve", again)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["result"]["deleted"]["id"] == document["id"]
    assert documents_of(http, gateway, user_id) == []

    outcomes = [(e["tool"], e["outcome"], e["approval_id"]) for e in audit_of(http, gateway, user_id)]
    assert outcomes[:4] == [
        ("delete_document", "ok", again),
        ("delete_document", "approval_requested", again),
        ("delete_document", "denied", approval_id),
        ("delete_document", "approval_requested", approval_id),
    ]
    assert audit_of(http, gateway, f"{user_id}-intruder") == []
