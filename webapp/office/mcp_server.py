"""The office tools as an MCP server: streamable HTTP at /office/mcp, behind the gateway.

So that MCP clients (LibreChat, Open WebUI, IDEs, the `mcp` package) can use document
search, notes, the calculator, the clock, web search and document deletion. The protocol
is the `mcp` package's low-level server; what is ours is small and lives here:

- `McpEndpoint`, an ASGI app in front of it: it authenticates every request by API key
  (`Authorization: Bearer` or `X-Api-Key`, as the other APIs; 401/403 in the project's
  error shape otherwise), and starts the package's session manager once, on first use
  (daphne does not run ASGI lifespan events). Stateless JSON mode: no sessions to keep,
  every request stands alone, and nothing is streamed through nginx.
- the two handlers: tools/list lists the registry's tools as the caller may use them
  (sensitivity and approval in `_meta`, MCP's read-only/destructive hints); tools/call
  goes through the one tool path (webapp.office.tool_calls): schema, the account's tool
  call rate (as REST calls), the tool's rate limit and concurrency cap, approval and the
  audit log (source "mcp"). A tool that needs approval does not run: the result says so,
  with the approval's id and URL, and the user approves it like any other
  (POST /office/approvals/{id}, or the chat UI).

A tool's refusal (invalid arguments, forbidden, rate-limited, failed) is a tool result
with isError and the error's code, field and message, as MCP asks, so that a model using
the tool sees why; only an unknown tool is a protocol error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from webapp.accounts.identity import Principal, principal_from_headers
from webapp.accounts.usage import tool_call_admit
from webapp.core.errors import ApplicationError, error_body
from webapp.office import runtime, tool_calls
from webapp.tools import Sensitivity, UnknownToolError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _principal(ctx: ServerRequestContext[Any, Any]) -> Principal:
    request = ctx.request
    principal = getattr(getattr(request, "state", None), "principal", None)
    if principal is None:  # McpEndpoint authenticates every request before the server sees it
        raise MCPError(code=types.INTERNAL_ERROR, message="the request was not authenticated")
    return principal


def _tool(spec: Any) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.parameters,
        annotations=types.ToolAnnotations(
            read_only_hint=spec.sensitivity <= Sensitivity.MEDIUM,
            destructive_hint=spec.sensitivity >= Sensitivity.HIGH,
            open_world_hint=spec.name == "web_search",
        ),
        meta={"sensitivity": spec.sensitivity.name, "needs_approval": spec.needs_approval},
    )


async def _list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
    principal = _principal(ctx)
    tool_ctx = runtime.tool_context(principal.owner, principal.role)
    registry = runtime.tool_registry_get()
    allowed = [spec for spec in registry.specs() if registry.decide(spec.name, tool_ctx).allowed]
    return types.ListToolsResult(tools=[_tool(spec) for spec in allowed])


def _call(principal: Principal, ip: str | None, name: str, arguments: dict[str, Any]) -> tool_calls.ToolCallOutcome:
    tool_call_admit(principal, ip)
    return tool_calls.tool_call(
        registry=runtime.tool_registry_get(),
        store=runtime.office_store_get(),
        ctx=runtime.tool_context(principal.owner, principal.role),
        name=name,
        arguments=arguments,
        source="mcp",
    )


async def _call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    principal = _principal(ctx)
    ip = getattr(ctx.request.state, "client_ip", None)  # type: ignore[union-attr]
    try:
        outcome = await sync_to_async(_call, thread_sensitive=False)(
            principal, ip, params.name, dict(params.arguments or {})
        )
    except UnknownToolError as exc:
        raise MCPError(code=types.INVALID_PARAMS, message=exc.message) from exc
    except ApplicationError as exc:  # ToolError and the account's rate limit: the model should see why
        body = error_body(exc)["error"]
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{body['code']}: {body['message']}")],
            structured_content={"error": body},
            is_error=True,
        )
    if outcome.status == "approval_required":
        waiting = {
            "status": "approval_required",
            "approval_id": outcome.approval_id,
            "approve_url": f"/office/approvals/{outcome.approval_id}",
            "reason": outcome.reason,
        }
        text = (
            f"{outcome.tool} needs the user's approval before it runs ({outcome.reason}). "
            f"It was not run. Approve or deny it at POST {waiting['approve_url']}."
        )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=waiting)
    result = outcome.result or {}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(result, ensure_ascii=False))],
        structured_content={"status": "ok", "result": result},
    )


def _server() -> Server[Any]:
    return Server(
        "personachat-office",
        instructions="The office assistant's tools. Tools marked needs_approval run only after the user approves.",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )


class McpEndpoint:
    """The ASGI app at /office/mcp: API-key authentication, then the MCP server."""

    def __init__(self, *, path: str) -> None:
        self.path = path
        self._server = _server()
        # Behind the gateway every request comes from nginx with the public Host, and every
        # request carries an API key (no cookies are read): DNS-rebinding checks add nothing.
        self._app = self._server.streamable_http_app(
            streamable_http_path=path,
            json_response=True,
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._running: asyncio.Event | None = None

    async def _ensure_running(self) -> None:
        if self._running is None:
            self._running = asyncio.Event()
            asyncio.get_running_loop().create_task(self._run(self._running), name="mcp-session-manager")
        await self._running.wait()

    async def _run(self, running: asyncio.Event) -> None:
        async with self._server.session_manager.run():
            running.set()
            await asyncio.Event().wait()  # until the process stops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            principal = await sync_to_async(principal_from_headers)(
                authorization=headers.get("authorization", ""), api_key=headers.get("x-api-key", "")
            )
        except ApplicationError as exc:
            await _json(send, exc.status, error_body(exc), {"www-authenticate": 'Bearer realm="personachat"'})
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["client_ip"] = (scope.get("client") or (None,))[0]
        await self._ensure_running()
        await self._app(scope, receive, send)


async def _json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def mcp_routed(app: Callable[[Scope, Receive, Send], Awaitable[None]], *, path: str) -> Callable[..., Awaitable[None]]:
    """`app` (Django) with HTTP requests for `path` answered by the MCP endpoint instead."""
    endpoint = McpEndpoint(path=path)

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == path:
            await endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return routed
