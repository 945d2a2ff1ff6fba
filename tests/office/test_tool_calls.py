"""The tool-call service under SECURITY_MODE=production: who may call what, approvals, audit.

The service runs on a real registry and the embedded store; the tool is a plain function
(the one thing that is not the product's), since no built-in tool is CRITICAL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.core.errors import ApplicationError
from webapp.office.tool_calls import approval_decide, tool_call
from webapp.store.client import StoreConfig, database_get, database_lock
from webapp.store.office_store import OfficeStore
from webapp.tools import RateLimit, Sensitivity, ToolContext, ToolError, ToolRegistry, ToolSpec


def spec(name: str, sensitivity: Sensitivity) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=f"a {sensitivity.name} tool",
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False},
        sensitivity=sensitivity,
        rate_limit=RateLimit(requests=100, window_s=60, burst=100),
        max_concurrent=2,
    )


@pytest.fixture
def store(tmp_path: Path) -> OfficeStore:
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path / "mongo")
    return OfficeStore(database_get(config), app="office", lock=database_lock(config))


@pytest.fixture
def registry() -> ToolRegistry:
    built = ToolRegistry(security_mode="production")
    for name, level in (("wipe", Sensitivity.CRITICAL), ("send", Sensitivity.HIGH), ("echo", Sensitivity.LOW)):
        built.register(spec(name, level), lambda ctx, args, name=name: {"tool": name, "n": args.get("n")})
    return built


def call(registry, store, who: ToolContext, name: str, arguments: dict | None = None):
    return tool_call(registry=registry, store=store, ctx=who, name=name, arguments=arguments or {"n": 1}, source="api")


def test_critical_tools_are_for_admins_only(registry, store):
    with pytest.raises(ToolError) as refused:
        call(registry, store, ToolContext("alice"), "wipe")
    assert refused.value.status_code == 403 and refused.value.code == "forbidden"
    assert store.audit_for_user("alice")[0].outcome == "forbidden"
    admin = call(registry, store, ToolContext("root", is_admin=True), "wipe")
    assert admin.status == "approval_required"  # even an admin approves CRITICAL calls


def test_high_tools_always_need_approval_in_production(registry, store):
    asked = call(registry, store, ToolContext("alice"), "send", {"n": 7})
    assert asked.status == "approval_required" and asked.result is None
    assert call(registry, store, ToolContext("alice"), "echo").status == "ok"

    with pytest.raises(ApplicationError) as other:
        approval_decide(
            registry=registry, store=store, ctx=ToolContext("mallory"), approval_id=asked.approval_id, approve=True
        )
    assert other.value.status_code == 404 and other.value.field == "approval_id"

    approval, outcome = approval_decide(
        registry=registry, store=store, ctx=ToolContext("alice"), approval_id=asked.approval_id, approve=True
    )
    assert approval.status == "approved" and outcome.result == {"tool": "send", "n": 7}
    with pytest.raises(ApplicationError) as twice:
        approval_decide(
            registry=registry, store=store, ctx=ToolContext("alice"), approval_id=asked.approval_id, approve=True
        )
    assert twice.value.status_code == 409
    outcomes = [(e.tool, e.outcome) for e in store.audit_for_user("alice")]
    assert outcomes[:3] == [("send", "ok"), ("echo", "ok"), ("send", "approval_requested")]
    assert store.audit_for_user("mallory") == []


def test_bad_arguments_are_refused_before_any_rule_and_audited(registry, store):
    with pytest.raises(ToolError) as bad:
        call(registry, store, ToolContext("alice"), "echo", {"n": "seven"})
    assert bad.value.status_code == 400 and bad.value.field == "arguments.n"
    entry = store.audit_for_user("alice")[0]
    assert (entry.tool, entry.outcome, entry.arguments) == ("echo", "invalid_arguments", {"n": "seven"})
