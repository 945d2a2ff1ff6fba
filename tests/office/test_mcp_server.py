"""/office/mcp: the office tools over MCP, driven by the official `mcp` client package
through nginx and daphne. Each call goes through the tool registry's rules, and the audit
log records it with source "mcp"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import pytest
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.auth import account_create, bearer, key_create

pytestmark = pytest.mark.slow

T = TypeVar("T")


def run(gateway: str, key: str, work: Callable[[ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
            streamable_http_client(f"{gateway}/office/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return await work(session)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def personal_key(stack) -> str:
    return key_create(stack, account_create(stack, prefix="mcp"), scope="personal")


def test_the_tools_are_listed_with_their_rules(gateway, personal_key):
    listed = run(gateway, personal_key, lambda s: s.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert {"calculator", "current_time", "web_search", "search_documents", "delete_document"} <= set(tools)
    calculator = tools["calculator"]
    assert calculator.input_schema["type"] == "object" and calculator.annotations.read_only_hint
    assert tools["delete_document"].annotations.destructive_hint
    assert tools["delete_document"].meta["sensitivity"] in ("HIGH", "CRITICAL")


def test_a_call_runs_through_the_registry_and_is_audited(gateway, personal_key):
    result = run(gateway, personal_key, lambda s: s.call_tool("calculator", {"expression": "6*7"}))
    assert not result.is_error
    assert result.structured_content["status"] == "ok"
    assert json.loads(result.content[0].text) == result.structured_content["result"]
    assert "42" in json.dumps(result.structured_content["result"])
    audit = requests.get(f"{gateway}/office/audit", headers=bearer(personal_key), timeout=30).json()
    entry = audit["entries"][0]
    assert entry["tool"] == "calculator" and entry["source"] == "mcp" and entry["outcome"] == "ok"


def test_invalid_arguments_are_a_tool_error_naming_the_field(gateway, personal_key):
    result = run(gateway, personal_key, lambda s: s.call_tool("calculator", {"expression": 7}))
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "invalid_arguments" and error["field"].startswith("arguments")


def test_an_unknown_tool_is_a_protocol_error(gateway, personal_key):
    async def call(session: ClientSession) -> Any:
        try:
            return await session.call_tool("no_such_tool", {})
        except Exception as exc:  # the client raises the server's JSON-RPC error
            return exc

    outcome = run(gateway, personal_key, call)
    assert isinstance(outcome, Exception) and "no_such_tool" in str(outcome)


def test_a_tool_that_needs_approval_waits_for_it(gateway, personal_key):
    result = run(gateway, personal_key, lambda s: s.call_tool("delete_document", {"document_id": "d-none"}))
    assert not result.is_error
    waiting = result.structured_content
    assert waiting["status"] == "approval_required" and waiting["approve_url"].endswith(waiting["approval_id"])
    denied = requests.post(
        f"{gateway}{waiting['approve_url']}", json={"decision": "deny"}, headers=bearer(personal_key), timeout=30
    )
    assert denied.status_code == 200 and denied.json()["status"] == "denied"


def test_no_key_no_tools(gateway):
    response = requests.post(
        f"{gateway}/office/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.json()["error"]["field"] == "Authorization"
    wrong = requests.post(
        f"{gateway}/office/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": "Bearer pc_wrong", "Accept": "application/json, text/event-stream"},
        timeout=30,
    )
    assert wrong.status_code == 401


def test_the_character_app_has_no_mcp_endpoint(gateway, personal_key):
    response = requests.post(f"{gateway}/character/mcp", json={}, headers=bearer(personal_key), timeout=30)
    assert response.status_code == 404
