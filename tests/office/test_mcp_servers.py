"""External MCP servers an admin registers: their allowed tools join the office tool
registry and run under its rules. The external server is a real MCP server (the `mcp`
package's MCPServer under uvicorn) on a local port; its tools are deterministic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
import uvicorn
from mcp.server.mcpserver import MCPServer

from tests.auth import account_create, bearer, key_create
from webapp.launcher.ports import free_port

pytestmark = pytest.mark.slow


@dataclass
class External:
    url: str
    calls: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def external() -> Iterator[External]:
    port = free_port()
    served = External(url=f"http://127.0.0.1:{port}/mcp")
    server = MCPServer("external")

    @server.tool(description="Return the text unchanged.")
    def echo(text: str) -> str:
        served.calls.append("echo")
        return text

    @server.tool(description="Return the text in capitals.")
    def shout(text: str) -> str:
        served.calls.append("shout")
        return text.upper()

    @server.tool(description="Never lent to the assistant.")
    def secret() -> str:
        served.calls.append("secret")
        return "the secret"

    @server.tool(description="Always fails.")
    def broken() -> str:
        served.calls.append("broken")
        raise RuntimeError("broken on purpose")

    app = server.streamable_http_app(stateless_http=True, json_response=True)
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not web.started:
        assert time.monotonic() < deadline, "the external MCP server did not start"
        time.sleep(0.05)
    yield served
    web.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def admin(stack) -> dict[str, str]:
    return bearer(key_create(stack, account_create(stack, role="admin", prefix="mcpadmin")))


@pytest.fixture(scope="module")
def user(stack) -> dict[str, str]:
    return bearer(key_create(stack, account_create(stack, prefix="mcpuser")))


@pytest.fixture
def registered(gateway, admin, external) -> Iterator[list[str]]:
    """Registrations a test made, removed after it (other tests' tool lists stay as they were)."""
    names: list[str] = []
    yield names
    for name in names:
        requests.delete(f"{gateway}/office/mcp-servers/{name}", headers=admin, timeout=30)


def register(gateway: str, admin: dict[str, str], registered: list[str], **body: object) -> requests.Response:
    response = requests.post(f"{gateway}/office/mcp-servers", json=body, headers=admin, timeout=60)
    if response.status_code == 201:
        registered.append(str(body["name"]))
    return response


def call(gateway: str, who: dict[str, str], tool: str, arguments: dict[str, object]) -> requests.Response:
    return requests.post(f"{gateway}/office/tools/{tool}/call", json={"arguments": arguments}, headers=who, timeout=60)


def test_only_the_allowed_tools_are_lent_and_they_run_under_the_rules(gateway, admin, user, external, registered):
    created = register(gateway, admin, registered, name="ext", url=external.url, tools=["echo"], sensitivity="LOW")
    assert created.status_code == 201, created.text
    assert [t["name"] for t in created.json()["tools"]] == ["ext_echo"] and not created.json()["has_token"]

    listed = {t["name"]: t for t in requests.get(f"{gateway}/office/tools", headers=user, timeout=30).json()["tools"]}
    assert "ext_echo" in listed and "ext_secret" not in listed
    assert listed["ext_echo"]["sensitivity"] == "LOW"
    assert listed["ext_echo"]["parameters"]["additionalProperties"] is False

    ran = call(gateway, user, "ext_echo", {"text": "quartz zebra"})
    assert ran.status_code == 200, ran.text
    assert ran.json()["result"]["text"] == "quartz zebra"
    assert call(gateway, user, "ext_echo", {"text": "x", "extra": 1}).status_code == 400
    assert call(gateway, user, "ext_secret", {}).status_code == 404
    assert "secret" not in external.calls

    audit = requests.get(f"{gateway}/office/audit", headers=user, timeout=30).json()["entries"]
    assert any(e["tool"] == "ext_echo" and e["outcome"] == "ok" for e in audit)


def test_an_approval_gated_tool_runs_only_once_approved(gateway, admin, user, external, registered):
    created = register(
        gateway,
        admin,
        registered,
        name="gated",
        url=external.url,
        tools=["shout"],
        sensitivity="MEDIUM",
        needs_approval=True,
    )
    assert created.status_code == 201, created.text
    before = external.calls.count("shout")
    waiting = call(gateway, user, "gated_shout", {"text": "hello"})
    assert waiting.status_code == 202 and external.calls.count("shout") == before
    approved = requests.post(
        f"{gateway}/office/approvals/{waiting.json()['approval_id']}",
        json={"decision": "approve"},
        headers=user,
        timeout=60,
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["result"]["text"] == "HELLO" and external.calls.count("shout") == before + 1


def test_a_failing_remote_tool_is_a_502(gateway, admin, user, external, registered):
    assert register(gateway, admin, registered, name="flaky", url=external.url, tools=["broken"]).status_code == 201
    failed = call(gateway, user, "flaky_broken", {})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "tool_failed"


def test_removing_a_server_removes_its_tools(gateway, admin, user, external, registered):
    assert register(gateway, admin, registered, name="gone", url=external.url, tools=["echo"]).status_code == 201
    assert requests.delete(f"{gateway}/office/mcp-servers/gone", headers=admin, timeout=30).status_code == 204
    assert call(gateway, user, "gone_echo", {"text": "x"}).status_code == 404
    assert requests.delete(f"{gateway}/office/mcp-servers/gone", headers=admin, timeout=30).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "bad name", "tools": ["echo"]}, 400, "name"),
        ({"name": "ok", "url": "file:///etc/passwd", "tools": ["echo"]}, 400, "url"),
        ({"name": "ok", "url": "http://127.0.0.1:9/mcp", "tools": ["echo"]}, 400, "url"),
        ({"name": "ok", "tools": ["secretz"]}, 400, "tools.0"),
        ({"name": "ok", "tools": []}, 400, "tools"),
        ({"name": "ok", "tools": ["echo"], "sensitivity": "HUGE"}, 400, "sensitivity"),
    ],
)
def test_bad_registrations_are_named(gateway, admin, external, registered, body, status, field):
    response = register(gateway, admin, registered, **{"url": external.url, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_only_admins_register(gateway, user, external, registered):
    response = register(gateway, user, registered, name="mine", url=external.url, tools=["echo"])
    assert response.status_code == 403
    assert requests.get(f"{gateway}/office/mcp-servers", headers=user, timeout=30).status_code == 403


def test_a_name_is_registered_once(gateway, admin, external, registered):
    assert register(gateway, admin, registered, name="twice", url=external.url, tools=["echo"]).status_code == 201
    again = register(gateway, admin, registered, name="twice", url=external.url, tools=["shout"])
    assert again.status_code == 409
    servers = requests.get(f"{gateway}/office/mcp-servers", headers=admin, timeout=30).json()["servers"]
    assert [s["name"] for s in servers if s["name"] == "twice"] == ["twice"]
    assert all("token" not in s for s in servers)


def test_registrations_are_registered_again_at_start_up(tmp_path):
    """What a restarted office app does with the stored registrations (no network: the
    handlers only connect when called). A schema with "$defs" keys reads back whole."""
    from webapp.office.mcp_servers import servers_register
    from webapp.store.client import StoreConfig, database_get, database_lock
    from webapp.store.office_store import OfficeStore
    from webapp.tools import ToolRegistry

    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path / "mongo")
    store = OfficeStore(database_get(config), app="office", lock=database_lock(config))
    schema = {
        "type": "object",
        "$defs": {"t": {"type": "string"}},
        "properties": {"text": {"$ref": "#/$defs/t"}},
        "additionalProperties": False,
    }
    assert store.mcp_server_create(
        {
            "name": "ext",
            "url": "http://127.0.0.1:9/mcp",
            "token": "",
            "sensitivity": "HIGH",
            "needs_approval": True,
            "tools": [
                {"name": "ext_echo", "remote": "echo", "description": "d", "parameters_json": json.dumps(schema)}
            ],
            "created_by": "a1",
        }
    )
    assert not store.mcp_server_create({"name": "ext", "tools": []}), "a name is taken once"
    registry = ToolRegistry()
    assert servers_register(registry, store) == 1
    spec = registry.get("ext_echo")
    assert spec.parameters == schema and spec.needs_approval and spec.sensitivity.name == "HIGH"
