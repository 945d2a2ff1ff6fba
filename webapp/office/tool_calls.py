"""Calling a tool under the registry's rules, with approvals and an audit log in MongoDB.

One path for every caller (the REST endpoint, a slash command in the UI, the model in the
chat): check the arguments against the schema → is this user allowed → rate limit →
ask for approval (HIGH/CRITICAL, or tools marked so) or run it under the concurrency cap.
Every call and every approval decision is written to the audit log with its outcome and
duration, including refusals. Blocking: call from a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from webapp.chat.turns import ToolStep
from webapp.core.errors import ApplicationError, NotFoundError
from webapp.office.errors import ApprovalClosedError
from webapp.store.office_store import Approval, OfficeStore
from webapp.tools import ToolContext, ToolError, ToolForbiddenError, ToolRegistry

APPROVAL_TTL = timedelta(minutes=15)
CallSource = Literal["api", "chat", "slash", "mcp"]


@dataclass(frozen=True)
class ToolCallOutcome:
    tool: str
    status: Literal["ok", "approval_required"]
    result: dict[str, Any] | None = None
    approval_id: str | None = None
    reason: str = ""
    duration_ms: float = 0.0


def tool_call(
    *,
    registry: ToolRegistry,
    store: OfficeStore,
    ctx: ToolContext,
    name: str,
    arguments: object,
    source: CallSource,
) -> ToolCallOutcome:
    started = time.perf_counter()
    shown = arguments if isinstance(arguments, dict) else {"_raw": repr(arguments)[:200]}

    def audit(outcome: str, *, error: str | None = None, approval_id: str | None = None) -> None:
        store.audit_append(
            user_id=ctx.user_id,
            tool=name,
            arguments=shown,
            outcome=outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            source=source,
            approval_id=approval_id,
            error=error,
        )

    try:
        registry.get(name)
    except ToolError:
        raise  # no audit entry for a tool that does not exist
    try:
        checked = registry.arguments_check(name, arguments)
        decision = registry.decide(name, ctx)
        if not decision.allowed:
            raise _forbidden(name, decision.reason)
        registry.rate_check(name, ctx.user_id)
    except ToolError as exc:
        audit(exc.code, error=exc.message)
        raise

    if decision.needs_approval:
        approval = store.approval_create(user_id=ctx.user_id, tool=name, arguments=checked, source=source)
        audit("approval_requested", approval_id=approval.id)
        return ToolCallOutcome(tool=name, status="approval_required", approval_id=approval.id, reason=decision.reason)
    return _execute(registry=registry, ctx=ctx, name=name, arguments=checked, audit=audit, started=started)


def _forbidden(name: str, reason: str) -> ToolError:
    return ToolForbiddenError(f"tool '{name}' is not allowed: {reason}")


def _execute(
    *,
    registry: ToolRegistry,
    ctx: ToolContext,
    name: str,
    arguments: dict[str, Any],
    audit: Callable[..., None],
    started: float,
    approval_id: str | None = None,
) -> ToolCallOutcome:
    try:
        result = registry.execute(name, ctx, arguments)
    except ToolError as exc:
        audit(exc.code, error=exc.message, approval_id=approval_id)
        raise
    audit("ok", approval_id=approval_id)
    return ToolCallOutcome(
        tool=name,
        status="ok",
        result=result,
        approval_id=approval_id,
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def approval_decide(
    *,
    registry: ToolRegistry,
    store: OfficeStore,
    ctx: ToolContext,
    approval_id: str,
    approve: bool,
) -> tuple[Approval, ToolCallOutcome | None]:
    """Run (approve) or drop (deny) a pending call. Only its own user may decide; another
    user's approval id is a 404, a decided or expired one a 409."""
    approval = store.approval_get(user_id=ctx.user_id, approval_id=approval_id)
    if approval is None:
        raise NotFoundError(f"no approval {approval_id} for this user_id", field="approval_id")
    if approval.status != "pending":
        raise ApprovalClosedError(f"approval {approval_id} was already {approval.status}", field="approval_id")
    started = time.perf_counter()

    def audit(outcome: str, *, error: str | None = None, approval_id: str | None = approval.id) -> None:
        store.audit_append(
            user_id=ctx.user_id,
            tool=approval.tool,
            arguments=approval.arguments,
            outcome=outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            source=approval.source,
            approval_id=approval_id,
            error=error,
        )

    if datetime.now(UTC) - approval.created_at > APPROVAL_TTL:
        store.approval_decide(approval.id, status="expired", result=None, reason="not decided within 15 minutes")
        audit("approval_expired")
        raise ApprovalClosedError(f"approval {approval_id} expired after 15 minutes; call the tool again")
    if not approve:
        if not store.approval_decide(approval.id, status="denied", result=None, reason="denied by the user"):
            raise ApprovalClosedError(f"approval {approval_id} was already decided", field="approval_id")
        audit("denied")
        return store.approval_get(user_id=ctx.user_id, approval_id=approval.id) or approval, None
    # Claim it before running, so two concurrent approvals can't run the call twice.
    if not store.approval_decide(approval.id, status="approved", result=None, reason=None):
        raise ApprovalClosedError(f"approval {approval_id} was already decided", field="approval_id")
    outcome = _execute(
        registry=registry,
        ctx=ctx,
        name=approval.tool,
        arguments=approval.arguments,
        audit=audit,
        started=started,
        approval_id=approval.id,
    )
    return store.approval_get(user_id=ctx.user_id, approval_id=approval.id) or approval, outcome


def tool_spec_public(*, registry: ToolRegistry, name: str) -> dict[str, Any]:
    try:
        return registry.get(name).public()
    except ToolError:
        raise


def tool_rate_status(*, registry: ToolRegistry, name: str, user_id: str) -> dict[str, Any]:
    try:
        return {"tool": name, "user_id": user_id, **registry.rate_status(name, user_id)}
    except ToolError:
        raise


class ChatToolRunner:
    """The tool service as the chat's model uses it (webapp.chat.turns.ToolRunner).

    Same rules and audit as the REST endpoint, with source "chat"; refusals and failures
    become steps the model hears about instead of errors that end the turn.
    """

    def __init__(
        self,
        *,
        registry: Callable[[], ToolRegistry],
        store: Callable[[], OfficeStore],
        context: Callable[[str, str], ToolContext],
    ) -> None:
        self._registry = registry
        self._store = store
        self._context = context

    def offered(self, names: Sequence[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
        specs = self._registry().specs()
        if names:
            known = {spec.name for spec in specs}
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ApplicationError(
                    f"tool_names: unknown tools {unknown} (known: {', '.join(sorted(known))})", field="tool_names"
                )
            specs = [spec for spec in specs if spec.name in names]
        return [(spec.name, spec.description, spec.parameters) for spec in specs]

    def call(self, *, user_id: str, role: str, name: str, arguments: dict[str, Any]) -> ToolStep:
        try:
            outcome = tool_call(
                registry=self._registry(),
                store=self._store(),
                ctx=self._context(user_id, role),
                name=name,
                arguments=arguments,
                source="chat",
            )
        except ApplicationError as exc:
            return ToolStep(name=name, arguments=arguments, status="error", error=exc.message)
        if outcome.status == "approval_required":
            return ToolStep(name=name, arguments=arguments, status="approval_required", approval_id=outcome.approval_id)
        return ToolStep(name=name, arguments=arguments, status="ok", result=outcome.result)

    def decide(self, *, user_id: str, role: str, step: ToolStep, approve: bool) -> ToolStep:
        try:
            _, outcome = approval_decide(
                registry=self._registry(),
                store=self._store(),
                ctx=self._context(user_id, role),
                approval_id=step.approval_id or "",
                approve=approve,
            )
        except ApplicationError as exc:
            return replace(step, status="error", error=exc.message)
        if outcome is None:
            return replace(step, status="denied")
        return replace(step, status="ok", result=outcome.result)
