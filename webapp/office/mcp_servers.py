"""External MCP servers an admin registers, whose tools the office assistant may call.

An admin names a server, its URL (and a bearer token, if the server wants one), the
tools it may lend and how sensitive they are. Registering connects once to list the
server's tools (the `mcp` client package), checks each chosen tool's input schema like a
client's function schema (it will be offered to the model under a grammar), and adds
each as `<server>_<tool>` to the office tool registry. From then on such a tool is like
any other: its schema, rate limit, concurrency cap, approval (the admin's sensitivity;
`needs_approval` for every call) and audit apply, whoever calls it (REST, the chat's
model, /office/mcp).

Nothing is reachable that the admin did not allow (no SSRF): a call goes only to its
registered URL, which arguments can't change; the client follows no redirect that
leaves that origin; tools the admin did not list are never registered; the proxy
settings of the environment are not read. Replies are cut to RESULT_MAX_CHARS.

Registrations live in the office store and are registered again at start-up.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from webapp.core.errors import ApplicationError, ConflictError, NotFoundError
from webapp.engine.grammar import GrammarBoundsError, schema_check
from webapp.store.office_store import OfficeStore
from webapp.tools import RateLimit, Sensitivity, ToolContext, ToolFailedError, ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

SERVER_NAME = re.compile(r"^[a-z][a-z0-9]{1,19}$")
URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
REMOTE_TIMEOUT_S = 30.0
RESULT_MAX_CHARS = 16_000
TOOLS_MAX = 32
RATE_LIMIT = RateLimit(requests=30, window_s=60, burst=5)
MAX_CONCURRENT = 2

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict[str, Any]


def _remote(url: str, token: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` against the MCP server at `url` (blocking: from a worker thread)."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> T:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=REMOTE_TIMEOUT_S, trust_env=False) as http,
            streamable_http_client(url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return await work(session)

    async def bounded() -> T:
        return await asyncio.wait_for(main(), REMOTE_TIMEOUT_S)

    return asyncio.run(bounded())


def remote_tools(url: str, token: str) -> list[RemoteTool]:
    async def work(session: Any) -> list[RemoteTool]:
        listed = await session.list_tools()
        return [RemoteTool(t.name, t.description or "", dict(t.input_schema or {})) for t in listed.tools]

    return _remote(url, token, work)


def tool_name(server: str, remote: str) -> str:
    """`<server>_<tool>` in the registry's alphabet (lowercase letters, digits, _)."""
    return f"{server}_{re.sub(r'[^a-z0-9_]', '_', remote.lower())}"[:64]


def _parameters(schema: dict[str, Any], where: str) -> dict[str, Any]:
    """The remote tool's input schema as the registry takes it: bounded like a client's
    function schema, an object, closed to unknown arguments."""
    try:
        schema_check(schema, path=where)
        Draft202012Validator.check_schema(schema)
    except GrammarBoundsError as exc:
        raise ApplicationError(f"{exc.path}: can't be enforced: {exc.message}", field=where) from exc
    except SchemaError as exc:
        raise ApplicationError(f"{where}: not a valid JSON Schema: {exc.message}", field=where) from exc
    if schema.get("type", "object") != "object":
        raise ApplicationError(f"{where}: a tool's input must be an object", field=where)
    closed = copy.deepcopy(schema)
    closed["type"] = "object"
    closed.setdefault("properties", {})
    closed["additionalProperties"] = False
    return closed


def _handler(url: str, token: str, remote: str) -> Callable[[ToolContext, dict[str, Any]], dict[str, Any]]:
    def call(ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        async def work(session: Any) -> Any:
            return await session.call_tool(remote, arguments)

        try:
            result = _remote(url, token, work)
        except Exception as exc:
            log.warning("MCP tool %s at %s failed: %r", remote, url, exc)
            raise ToolFailedError(f"the MCP server of {remote!r} could not be reached or failed") from exc
        texts = [getattr(part, "text", "") for part in result.content if getattr(part, "type", "") == "text"]
        text = "\n".join(texts)[:RESULT_MAX_CHARS]
        if result.is_error:
            raise ToolFailedError(f"{remote}: {text[:500] or 'the tool reported an error'}")
        reply: dict[str, Any] = {"text": text}
        structured = result.structured_content
        if structured is not None and len(json.dumps(structured, default=str)) <= RESULT_MAX_CHARS:
            reply["structured"] = structured
        return reply

    return call


def _register(registry: ToolRegistry, record: dict[str, Any]) -> None:
    for tool in record["tools"]:
        spec = ToolSpec(
            name=tool["name"],
            description=f"[{record['name']}] {tool['description']}"[:2000],
            parameters=json.loads(tool["parameters_json"]),
            sensitivity=Sensitivity[record["sensitivity"]],
            rate_limit=RATE_LIMIT,
            max_concurrent=MAX_CONCURRENT,
            needs_approval=bool(record["needs_approval"]),
        )
        registry.unregister(spec.name)
        registry.register(spec, _handler(record["url"], record.get("token", ""), tool["remote"]))


def servers_register(registry: ToolRegistry, store: OfficeStore) -> int:
    """At start-up: every stored registration's tools into the registry; how many tools."""
    count = 0
    for record in store.mcp_servers():
        try:
            _register(registry, record)
            count += len(record["tools"])
        except Exception:
            log.exception("the tools of MCP server %r could not be registered", record.get("name"))
    return count


def server_add(
    registry: ToolRegistry,
    store: OfficeStore,
    *,
    name: str,
    url: str,
    token: str,
    tools: list[str],
    sensitivity: str,
    needs_approval: bool,
    created_by: str,
) -> dict[str, Any]:
    """Register a server and the tools of it that the admin allowed. Blocking (it lists the
    server's tools over the network)."""
    if not SERVER_NAME.match(name):
        raise ApplicationError("name: 2-20 of a-z and 0-9, starting with a letter", field="name")
    if not URL.match(url):
        raise ApplicationError("url: an http:// or https:// URL", field="url")
    if any(spec.name.startswith(f"{name}_") for spec in registry.specs()) or any(
        s["name"] == name for s in store.mcp_servers()
    ):
        raise ConflictError(f"name: an MCP server or tools named {name!r} exist", field="name", code="name_taken")
    try:
        offered = {tool.name: tool for tool in remote_tools(url, token)}
    except Exception as exc:
        log.warning("listing the tools of MCP server %s failed: %r", url, exc)
        raise ApplicationError(
            f"url: no MCP server answered tools/list at {url}", field="url", code="mcp_unreachable"
        ) from exc
    chosen = []
    for i, remote in enumerate(tools):
        if remote not in offered:
            raise ApplicationError(
                f"tools.{i}: the server has no tool {remote!r} (it offers: {', '.join(sorted(offered)) or 'none'})",
                field=f"tools.{i}",
            )
        tool = offered[remote]
        parameters = _parameters(tool.input_schema, f"tools.{i}")
        chosen.append(
            {
                "name": tool_name(name, remote),
                "remote": remote,
                "description": tool.description[:1500],
                "parameters_json": json.dumps(parameters),
            }
        )
    names = [t["name"] for t in chosen]
    if len(set(names)) != len(names):
        raise ApplicationError("tools: two tools map to the same name", field="tools")
    record = {
        "name": name,
        "url": url,
        "token": token,
        "sensitivity": sensitivity,
        "needs_approval": needs_approval,
        "tools": chosen,
        "created_by": created_by,
    }
    if not store.mcp_server_create(record):
        raise ConflictError(f"name: an MCP server named {name!r} exists", field="name", code="name_taken")
    _register(registry, record)
    return server_public(record)


def server_remove(registry: ToolRegistry, store: OfficeStore, name: str) -> None:
    record = next((s for s in store.mcp_servers() if s["name"] == name), None)
    if record is None or not store.mcp_server_delete(name):
        raise NotFoundError(f"no MCP server named {name!r}", field="name")
    for tool in record["tools"]:
        registry.unregister(tool["name"])


def server_public(record: dict[str, Any]) -> dict[str, Any]:
    """A registration as the admin API shows it (never the token)."""
    return {
        "name": record["name"],
        "url": record["url"],
        "has_token": bool(record.get("token")),
        "sensitivity": record["sensitivity"],
        "needs_approval": record["needs_approval"],
        "tools": [{"name": t["name"], "remote": t["remote"], "description": t["description"]} for t in record["tools"]],
    }
