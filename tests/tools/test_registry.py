"""ToolRegistry: registration, argument checks, permission decisions, rate limits, concurrency, failures."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webapp.core.errors import error_body
from webapp.tools.registry import (
    Decision,
    RateLimit,
    Sensitivity,
    ToolArgumentError,
    ToolBusyError,
    ToolContext,
    ToolFailedError,
    ToolRateLimitedError,
    ToolRegistry,
    ToolSpec,
    UnknownToolError,
)

WALL_START = 1_700_000_000.0
ALICE = ToolContext(user_id="alice")


class FakeClock:
    """Monotonic and wall clocks that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = WALL_START

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall


def echo_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"user": ctx.user_id, "args": args}


OPEN_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}

NOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 200},
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "items": {"type": "array", "items": {"type": "string"}},
        "options": {
            "type": "object",
            "properties": {"pinned": {"type": "boolean"}},
            "additionalProperties": False,
        },
    },
    "required": ["text"],
    "additionalProperties": False,
}


def spec_make(
    name: str = "echo",
    *,
    parameters: dict[str, Any] | None = None,
    sensitivity: Sensitivity = Sensitivity.LOW,
    rate_limit: RateLimit | None = None,
    max_concurrent: int = 4,
    needs_approval: bool = False,
) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=f"the {name} tool",
        parameters=OPEN_SCHEMA if parameters is None else parameters,
        sensitivity=sensitivity,
        rate_limit=rate_limit or RateLimit(requests=100, window_s=60.0, burst=100),
        max_concurrent=max_concurrent,
        needs_approval=needs_approval,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> ToolRegistry:
    return ToolRegistry(clock=clock.monotonic, wall_clock=clock.time)


# --- registration ---------------------------------------------------------------------


def test_registered_tools_are_listed_sorted_by_name(registry: ToolRegistry) -> None:
    registry.register(spec_make("zeta"), echo_handler)
    registry.register(spec_make("alpha"), echo_handler)
    registry.register(spec_make("mid_tool"), echo_handler)

    assert [spec.name for spec in registry.specs()] == ["alpha", "mid_tool", "zeta"]
    assert registry.get("mid_tool").description == "the mid_tool tool"


def test_duplicate_name_is_refused(registry: ToolRegistry) -> None:
    registry.register(spec_make("echo"), echo_handler)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec_make("echo"), echo_handler)


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": {"x": {"type": "strng"}}, "additionalProperties": False},
        {"type": "object", "properties": {"x": {"maxLength": -1}}, "additionalProperties": False},
        {"type": "object", "required": "x", "additionalProperties": False},
    ],
)
def test_invalid_json_schema_is_refused(registry: ToolRegistry, parameters: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        registry.register(spec_make(parameters=parameters), echo_handler)
    assert registry.specs() == []


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {}, "additionalProperties": True},
        {"type": "string"},
    ],
)
def test_schema_must_be_a_closed_object(registry: ToolRegistry, parameters: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="additionalProperties"):
        registry.register(spec_make(parameters=parameters), echo_handler)


@pytest.mark.parametrize("name", ["Echo", "e", "1tool", "has-dash", "x" * 65, ""])
def test_bad_tool_names_are_refused(registry: ToolRegistry, name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        registry.register(spec_make(name), echo_handler)


def test_unknown_tool_error_names_the_tool_and_the_known_ones(registry: ToolRegistry) -> None:
    registry.register(spec_make("calculator"), echo_handler)
    registry.register(spec_make("current_time"), echo_handler)

    with pytest.raises(UnknownToolError) as caught:
        registry.get("nope")

    error = caught.value
    assert (error.status, error.code) == (404, "unknown_tool")
    assert str(error) == "unknown tool 'nope'; known tools: calculator, current_time"
    for method in (registry.decide, lambda name, _ctx: registry.execute(name, ALICE, {})):
        with pytest.raises(UnknownToolError):
            method("nope", ALICE)


def test_public_description_is_json_ready(registry: ToolRegistry) -> None:
    spec = spec_make(
        "notes_delete",
        parameters=NOTE_SCHEMA,
        sensitivity=Sensitivity.HIGH,
        rate_limit=RateLimit(requests=10, window_s=60.0, burst=3),
        max_concurrent=2,
        needs_approval=True,
    )
    assert spec.public() == {
        "name": "notes_delete",
        "description": "the notes_delete tool",
        "parameters": NOTE_SCHEMA,
        "sensitivity": "HIGH",
        "rate_limit": {"requests": 10, "window_s": 60.0, "burst": 3},
        "max_concurrent": 2,
        "needs_approval": True,
    }


def test_unknown_security_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="security_mode"):
        ToolRegistry(security_mode="staging")  # type: ignore[arg-type]


# --- arguments ------------------------------------------------------------------------


@pytest.fixture
def notes(registry: ToolRegistry) -> ToolRegistry:
    registry.register(spec_make("notes", parameters=NOTE_SCHEMA), echo_handler)
    return registry


def test_valid_arguments_are_returned(notes: ToolRegistry) -> None:
    arguments = {"text": "hi", "count": 3, "items": ["a", "b"], "options": {"pinned": True}}
    assert notes.arguments_check("notes", arguments) == arguments


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ({}, "arguments.text", "arguments.text is required (missing property)"),
        ({"text": 5}, "arguments.text", "arguments.text must be a string"),
        ({"text": ""}, "arguments.text", "arguments.text must not be empty"),
        ({"text": "x" * 201}, "arguments.text", "arguments.text must be at most 200 characters"),
        ({"text": "ok", "count": "3"}, "arguments.count", "arguments.count must be an integer"),
        ({"text": "ok", "count": True}, "arguments.count", "arguments.count must be an integer"),
        ({"text": "ok", "count": 11}, "arguments.count", "arguments.count must be at most 10"),
        ({"text": "ok", "bogus": 1}, "arguments.bogus", "unexpected property 'bogus' in arguments"),
        ({"text": "ok", "items": ["a", "b", 3]}, "arguments.items.2", "arguments.items.2 must be a string"),
        ({"text": "ok", "options": {"pinned": "yes"}}, "arguments.options.pinned", "must be a boolean"),
        ({"text": "ok", "options": {"color": "red"}}, "arguments.options.color", "unexpected property 'color'"),
    ],
)
def test_invalid_arguments_name_the_field_and_the_problem(
    notes: ToolRegistry, arguments: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ToolArgumentError) as caught:
        notes.arguments_check("notes", arguments)

    error = caught.value
    assert (error.status, error.code, error.field) == (400, "invalid_arguments", field)
    assert message in str(error)
    assert error_body(error) == {"error": {"code": "invalid_arguments", "message": str(error), "field": field}}


@pytest.mark.parametrize("arguments", [None, [], "text", 3, [{"text": "hi"}]])
def test_arguments_that_are_not_an_object_are_refused(notes: ToolRegistry, arguments: object) -> None:
    with pytest.raises(ToolArgumentError) as caught:
        notes.arguments_check("notes", arguments)
    assert caught.value.field == "arguments"
    assert "must be an object" in str(caught.value)


# --- decisions ------------------------------------------------------------------------

LOW, MEDIUM, HIGH, CRITICAL = Sensitivity.LOW, Sensitivity.MEDIUM, Sensitivity.HIGH, Sensitivity.CRITICAL

# (sensitivity, is_admin, spec.needs_approval) -> (allowed, needs_approval), production mode.
PRODUCTION_TABLE = [
    (LOW, False, False, True, False),
    (LOW, False, True, True, True),
    (LOW, True, False, True, False),
    (LOW, True, True, True, True),
    (MEDIUM, False, False, True, False),
    (MEDIUM, False, True, True, True),
    (MEDIUM, True, False, True, False),
    (MEDIUM, True, True, True, True),
    (HIGH, False, False, True, True),
    (HIGH, False, True, True, True),
    (HIGH, True, False, True, True),
    (HIGH, True, True, True, True),
    (CRITICAL, False, False, False, True),
    (CRITICAL, False, True, False, True),
    (CRITICAL, True, False, True, True),
    (CRITICAL, True, True, True, True),
]


@pytest.mark.parametrize(("sensitivity", "is_admin", "flag", "allowed", "needs_approval"), PRODUCTION_TABLE)
def test_decide_in_production(
    clock: FakeClock, sensitivity: Sensitivity, is_admin: bool, flag: bool, allowed: bool, needs_approval: bool
) -> None:
    registry = ToolRegistry(security_mode="production", clock=clock.monotonic)
    registry.register(spec_make("tool", sensitivity=sensitivity, needs_approval=flag), echo_handler)

    decision = registry.decide("tool", ToolContext(user_id="u", is_admin=is_admin))

    assert (decision.allowed, decision.needs_approval) == (allowed, needs_approval)
    assert decision.reason
    if not allowed:
        assert "only admins" in decision.reason


@pytest.mark.parametrize("sensitivity", list(Sensitivity))
@pytest.mark.parametrize("is_admin", [False, True])
@pytest.mark.parametrize("flag", [False, True])
def test_decide_in_development_allows_all_and_asks_approval_only_when_the_tool_does(
    clock: FakeClock, sensitivity: Sensitivity, is_admin: bool, flag: bool
) -> None:
    registry = ToolRegistry(security_mode="development", clock=clock.monotonic)
    registry.register(spec_make("tool", sensitivity=sensitivity, needs_approval=flag), echo_handler)

    decision = registry.decide("tool", ToolContext(user_id="u", is_admin=is_admin))

    assert isinstance(decision, Decision)
    assert (decision.allowed, decision.needs_approval) == (True, flag)


# --- rate limits ----------------------------------------------------------------------


@pytest.fixture
def limited(registry: ToolRegistry) -> ToolRegistry:
    # 6 per minute = one token every 10 s; 3 at once.
    registry.register(spec_make("search", rate_limit=RateLimit(requests=6, window_s=60.0, burst=3)), echo_handler)
    return registry


def test_burst_then_refusal_with_retry_after(limited: ToolRegistry, clock: FakeClock) -> None:
    for _ in range(3):
        limited.rate_check("search", "alice")

    with pytest.raises(ToolRateLimitedError) as caught:
        limited.rate_check("search", "alice")

    error = caught.value
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.retry_after_s == pytest.approx(10.0)
    assert error.headers() == {"Retry-After": "10"}
    assert "6 calls per 60 s" in str(error)

    clock.advance(4.0)
    with pytest.raises(ToolRateLimitedError) as caught:
        limited.rate_check("search", "alice")
    assert caught.value.retry_after_s == pytest.approx(6.0)


def test_tokens_refill_over_time_up_to_the_burst(limited: ToolRegistry, clock: FakeClock) -> None:
    for _ in range(3):
        limited.rate_check("search", "alice")

    clock.advance(10.0)
    limited.rate_check("search", "alice")  # one token back after 10 s
    with pytest.raises(ToolRateLimitedError):
        limited.rate_check("search", "alice")

    clock.advance(3600.0)  # a long idle refills only up to the burst
    for _ in range(3):
        limited.rate_check("search", "alice")
    with pytest.raises(ToolRateLimitedError):
        limited.rate_check("search", "alice")


def test_rate_status_reports_count_remaining_and_reset(limited: ToolRegistry, clock: FakeClock) -> None:
    fresh = limited.rate_status("search", "alice")
    assert fresh == {
        "count": 0,
        "limit": 6,
        "window_s": 60.0,
        "burst": 3,
        "remaining": 3,
        "reset_at": datetime.fromtimestamp(WALL_START, tz=UTC).isoformat(timespec="milliseconds"),
        "reset_in_s": 0.0,
    }

    limited.rate_check("search", "alice")
    limited.rate_check("search", "alice")
    clock.advance(5.0)
    status = limited.rate_status("search", "alice")

    # 3 - 2 + 0.5 refilled = 1.5 tokens: one whole call left, full again in (3 - 1.5) * 10 s.
    assert (status["count"], status["remaining"], status["reset_in_s"]) == (2, 1, 15.0)
    expected_reset = datetime.fromtimestamp(WALL_START, tz=UTC) + timedelta(seconds=20)
    assert datetime.fromisoformat(status["reset_at"]) == expected_reset
    assert status["reset_at"].endswith("+00:00")

    clock.advance(56.0)  # both calls have left the 60 s window
    assert limited.rate_status("search", "alice")["count"] == 0
    assert limited.rate_status("search", "alice")["remaining"] == 3


def test_rate_status_takes_no_token(limited: ToolRegistry) -> None:
    for _ in range(5):
        limited.rate_status("search", "alice")
    for _ in range(3):
        limited.rate_check("search", "alice")


def test_rate_limits_are_per_user_and_per_tool(limited: ToolRegistry) -> None:
    limited.register(spec_make("other", rate_limit=RateLimit(requests=6, window_s=60.0, burst=1)), echo_handler)
    for _ in range(3):
        limited.rate_check("search", "alice")
    with pytest.raises(ToolRateLimitedError):
        limited.rate_check("search", "alice")

    for _ in range(3):
        limited.rate_check("search", "bob")
    limited.rate_check("other", "alice")
    assert limited.rate_status("search", "bob")["remaining"] == 0
    assert limited.rate_status("search", "carol")["remaining"] == 3


# --- execution ------------------------------------------------------------------------


def test_execute_runs_the_handler_with_context_and_arguments(notes: ToolRegistry) -> None:
    assert notes.execute("notes", ALICE, {"text": "hi"}) == {"user": "alice", "args": {"text": "hi"}}


def test_concurrency_cap_refuses_a_second_call_while_the_first_runs(registry: ToolRegistry) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        assert release.wait(10), "test never released the handler"
        return {"done": args["n"]}

    registry.register(spec_make("slow", max_concurrent=1), slow_handler)
    results: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: results.append(registry.execute("slow", ALICE, {"n": 1})))
    first.start()
    try:
        assert entered.wait(5)
        assert registry.in_flight("slow") == 1

        with pytest.raises(ToolBusyError) as caught:
            registry.execute("slow", ToolContext(user_id="bob"), {"n": 2})
        error = caught.value
        assert (error.status, error.code, error.retry_after_s) == (429, "tool_busy", 1.0)
        assert error.headers() == {"Retry-After": "1"}
    finally:
        release.set()
        first.join(5)

    assert results == [{"done": 1}]
    assert registry.in_flight("slow") == 0
    assert registry.execute("slow", ALICE, {"n": 3}) == {"done": 3}


def test_handler_exception_becomes_a_safe_tool_failed_error(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("db password is hunter2")

    registry.register(spec_make("broken"), broken_handler)

    with caplog.at_level(logging.ERROR, logger="webapp.tools.registry"), pytest.raises(ToolFailedError) as caught:
        registry.execute("broken", ALICE, {})

    error = caught.value
    assert (error.status, error.code, error.field) == (502, "tool_failed", None)
    assert "hunter2" not in str(error)
    assert "Traceback" not in str(error)
    assert "RuntimeError" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    # The details are in the server log, with the traceback.
    [record] = [r for r in caplog.records if r.name == "webapp.tools.registry"]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])
    assert registry.in_flight("broken") == 0


def test_handler_tool_errors_pass_through(registry: ToolRegistry) -> None:
    def picky_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        raise ToolArgumentError("arguments.x is odd", field="arguments.x")

    registry.register(spec_make("picky"), picky_handler)
    with pytest.raises(ToolArgumentError) as caught:
        registry.execute("picky", ALICE, {})
    assert (caught.value.field, str(caught.value)) == ("arguments.x", "arguments.x is odd")


def test_handler_returning_a_non_dict_fails(registry: ToolRegistry) -> None:
    registry.register(spec_make("listy"), lambda ctx, args: ["not", "a", "dict"])  # type: ignore[arg-type,return-value]
    with pytest.raises(ToolFailedError, match="invalid result"):
        registry.execute("listy", ALICE, {})
