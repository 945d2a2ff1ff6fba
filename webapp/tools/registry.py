"""The tool registry: which tools exist, who may call them, how often, and running them.

A tool is a `ToolSpec` (name, JSON Schema for its arguments, sensitivity, limits) plus a
handler `(ToolContext, arguments) -> result`. Handlers are plain blocking functions: the
web layer runs `execute()` on a worker thread, never on the event loop.

The registry enforces nothing on its own initiative: each check is a separate method and
the caller (the web layer's service) runs them in this order for every call, whether the
user or the model asked for it:

1. `arguments_check(name, arguments)` - unknown tool (404) or invalid arguments (400);
2. `decide(name, ctx)` - not allowed (403) or needs approval;
3. `rate_check(name, user_id)` - takes one token or refuses (429, with Retry-After);
4. approval, when `decide` asked for it (stored and granted outside this package);
5. `execute(name, ctx, arguments)` - runs the handler under the tool's concurrency cap.

Rate limiting comes before approval so that a model looping on a tool is stopped without
flooding a person with approval requests; `execute` does not repeat steps 1-4, because an
approved call must run even if the user's bucket has emptied since.

Every failure is a `ToolError` with an HTTP status, a machine-readable `code`, a `field`
(dotted path into the request, or None) and a message safe to show to the user and the
model. Limits are in-process memory; see `webapp.tools.limits`.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from webapp.core.errors import ApplicationError
from webapp.tools.limits import GateFullError, GateLike, LimitsBackend, MemoryLimits, RateLimit, RateLimiterLike

log = logging.getLogger(__name__)

TOOL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
BUSY_RETRY_AFTER_S = 1.0

SecurityMode = Literal["development", "production"]


class Sensitivity(enum.IntEnum):
    """How much harm a wrongly made call can do. Serialized as its name ("LOW", ...)."""

    LOW = 1  # read-only, no user data: calculator, clock
    MEDIUM = 2  # reads the user's own data or the outside world
    HIGH = 3  # changes the user's data
    CRITICAL = 4  # changes shared data or acts outside the service


@dataclass(frozen=True)
class ToolContext:
    """Who is calling. Built by the web layer from the authenticated request."""

    user_id: str
    is_admin: bool = False
    max_sensitivity: Sensitivity = Sensitivity.CRITICAL  # the most sensitive tool this caller may use


Handler = Callable[[ToolContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ToolSpec:
    """What a tool is and the rules for calling it."""

    name: str  # ^[a-z][a-z0-9_]{1,63}$
    description: str
    parameters: dict[str, Any]  # JSON Schema (type object, additionalProperties false)
    sensitivity: Sensitivity
    rate_limit: RateLimit
    max_concurrent: int  # calls of this tool running at once, across all users
    needs_approval: bool = False

    def public(self) -> dict[str, Any]:
        """A JSON-ready description, for GET /office/tools and for the model's tool list."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "sensitivity": self.sensitivity.name,
            "rate_limit": {
                "requests": self.rate_limit.requests,
                "window_s": self.rate_limit.window_s,
                "burst": self.rate_limit.burst,
            },
            "max_concurrent": self.max_concurrent,
            "needs_approval": self.needs_approval,
        }


class ToolError(ApplicationError):
    """A failed tool call the client can act on (the project's one error type). The message is safe to show."""

    code = "tool_error"
    status = 500


class UnknownToolError(ToolError):
    code = "unknown_tool"
    status = 404


class ToolArgumentError(ToolError):
    code = "invalid_arguments"
    status = 400


class ToolForbiddenError(ToolError):
    code = "forbidden"
    status = 403


class _RetryLaterError(ToolError):
    """A refusal that will pass: carries how long to wait (`retry_after_s`, and Retry-After)."""

    status = 429

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field, retry_after=retry_after_s)
        self.retry_after_s = retry_after_s


class ToolRateLimitedError(_RetryLaterError):
    code = "rate_limited"


class ToolBusyError(_RetryLaterError):
    code = "tool_busy"


class ToolFailedError(ToolError):
    code = "tool_failed"
    status = 502


class ToolNotConfiguredError(ToolError):
    code = "not_configured"
    status = 503


@dataclass(frozen=True)
class Decision:
    """Whether a user may call a tool, and whether a person must approve the call first."""

    allowed: bool
    needs_approval: bool
    reason: str  # why not allowed / why approval is needed / why neither


@dataclass
class _Entry:
    spec: ToolSpec
    handler: Handler
    validator: Draft202012Validator
    limiter: RateLimiterLike
    gate: GateLike


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _field_join(path: list[str | int]) -> str:
    return ".".join(["arguments", *(str(part) for part in path)])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _argument_error_from(error: ValidationError) -> ToolArgumentError:
    """Turn jsonschema's error into a short message and a dotted field path.

    jsonschema's own messages quote the whole offending value, which can be long and is
    no help to a model deciding what to fix; these say what is wrong in a few words.
    """
    path = list(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance

    if keyword == "required" and isinstance(instance, dict):
        missing = [name for name in value if name not in instance]
        # jsonschema reports one error per missing property; find the one it reported.
        named = [name for name in missing if error.message == f"{name!r} is a required property"]
        name = (named or missing or ["?"])[0]
        field = _field_join([*path, name])
        return ToolArgumentError(f"{field} is required (missing property)", field=field)
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(str(name) for name in instance if name not in known)
        field = _field_join([*path, extra[0]]) if extra else _field_join(path)
        listed = ", ".join(repr(name) for name in extra)
        return ToolArgumentError(f"unexpected property {listed} in {_field_join(path)}", field=field)

    field = _field_join(path)
    if keyword == "type":
        types = [value] if isinstance(value, str) else list(value)
        words = " or ".join(_TYPE_WORDS.get(name, name) for name in types)
        detail = f"must be {words}"
    elif keyword == "maxLength":
        detail = f"must be at most {_plural(value, 'character')}"
    elif keyword == "minLength":
        detail = "must not be empty" if value == 1 else f"must be at least {_plural(value, 'character')}"
    elif keyword == "maximum":
        detail = f"must be at most {value}"
    elif keyword == "minimum":
        detail = f"must be at least {value}"
    elif keyword == "exclusiveMaximum":
        detail = f"must be less than {value}"
    elif keyword == "exclusiveMinimum":
        detail = f"must be greater than {value}"
    elif keyword == "maxItems":
        detail = f"must have at most {_plural(value, 'item')}"
    elif keyword == "minItems":
        detail = f"must have at least {_plural(value, 'item')}"
    elif keyword == "enum":
        detail = "must be one of " + ", ".join(repr(option) for option in value)
    elif keyword == "const":
        detail = f"must be {value!r}"
    elif keyword == "pattern":
        detail = f"must match the pattern {value!r}"
    else:
        message = error.message
        detail = message if len(message) <= 200 else message[:197] + "..."
    return ToolArgumentError(f"{field} {detail}", field=field)


class ToolRegistry:
    """The tools one app offers. Register at startup (an external MCP server's tools also
    when an admin adds it); the other methods are thread-safe."""

    def __init__(
        self,
        *,
        security_mode: SecurityMode = "development",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        limits: LimitsBackend | None = None,
    ) -> None:
        """`limits`: where rate limits and concurrency caps live (default: this process, on `clock`)."""
        if security_mode not in ("development", "production"):
            raise ValueError(f"security_mode must be 'development' or 'production', got {security_mode!r}")
        self.security_mode: SecurityMode = security_mode
        self._limits = limits or MemoryLimits(clock=clock, wall_clock=wall_clock)
        self._entries: dict[str, _Entry] = {}

    def register(self, spec: ToolSpec, handler: Handler) -> None:
        """Add a tool. Raise ValueError for a duplicate name, a bad name or a bad schema."""
        if spec.name in self._entries:
            raise ValueError(f"tool {spec.name!r} is already registered")
        if not TOOL_NAME_PATTERN.match(spec.name):
            raise ValueError(f"tool name {spec.name!r} must match {TOOL_NAME_PATTERN.pattern}")
        if spec.max_concurrent < 1:
            raise ValueError(f"tool {spec.name!r}: max_concurrent must be at least 1, got {spec.max_concurrent}")
        try:
            Draft202012Validator.check_schema(spec.parameters)
        except SchemaError as exc:
            raise ValueError(f"tool {spec.name!r}: parameters is not a valid JSON Schema: {exc.message}") from exc
        # Models invent arguments; a closed object schema turns a typo into a 400 instead of
        # a silently ignored option.
        if spec.parameters.get("type") != "object" or spec.parameters.get("additionalProperties") is not False:
            raise ValueError(
                f'tool {spec.name!r}: parameters must be an object schema with "additionalProperties": false'
            )
        self._entries[spec.name] = _Entry(
            spec=spec,
            handler=handler,
            validator=Draft202012Validator(spec.parameters),
            limiter=self._limits.rate_limiter(spec.name, spec.rate_limit),
            gate=self._limits.gate(spec.name, spec.max_concurrent),
        )

    def unregister(self, name: str) -> None:
        """Remove a tool (an external MCP server's, when the admin removes the server).
        Calls already running finish; new ones get UnknownToolError."""
        self._entries.pop(name, None)

    def get(self, name: str) -> ToolSpec:
        """The spec of tool `name`; UnknownToolError when there is none."""
        return self._entry_get(name).spec

    def specs(self) -> list[ToolSpec]:
        """Every registered tool, sorted by name."""
        return [self._entries[name].spec for name in sorted(self._entries)]

    def arguments_check(self, name: str, arguments: object) -> dict[str, Any]:
        """Return `arguments` if they fit the tool's schema, else raise ToolArgumentError.

        Only the most relevant problem is reported (jsonschema's best_match), with its
        dotted path as the field, e.g. "arguments.items.2".
        """
        entry = self._entry_get(name)
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"arguments must be an object, got {type(arguments).__name__}", field="arguments")
        error = best_match(entry.validator.iter_errors(arguments))
        if error is not None:
            raise _argument_error_from(error)
        return arguments

    def decide(self, name: str, ctx: ToolContext) -> Decision:
        """Whether `ctx`'s user may call tool `name`, and whether the call needs approval.

        In production, CRITICAL tools are for admins only, and HIGH and CRITICAL calls always
        need approval (also for admins; a refused call reports needs_approval=True too, since
        it would need it). In development everything is allowed and only tools that ask
        for approval (spec.needs_approval) need it.
        """
        spec = self.get(name)
        level = spec.sensitivity.name
        if spec.sensitivity > ctx.max_sensitivity:
            return Decision(
                allowed=False,
                needs_approval=False,
                reason=f"{name!r} is {level}: this account may call tools up to {ctx.max_sensitivity.name}",
            )
        if self.security_mode == "production" and spec.sensitivity >= Sensitivity.HIGH:
            if spec.sensitivity == Sensitivity.CRITICAL and not ctx.is_admin:
                return Decision(
                    allowed=False, needs_approval=True, reason=f"{name!r} is CRITICAL: only admins may call it"
                )
            return Decision(
                allowed=True,
                needs_approval=True,
                reason=f"{name!r} is {level}: every call needs approval in production",
            )
        if spec.needs_approval:
            return Decision(allowed=True, needs_approval=True, reason=f"{name!r} asks for approval of every call")
        return Decision(
            allowed=True,
            needs_approval=False,
            reason=f"{name!r} is {level} in {self.security_mode}: no approval needed",
        )

    def rate_check(self, name: str, user_id: str) -> None:
        """Take one call from `user_id`'s allowance for tool `name`, or raise ToolRateLimitedError."""
        entry = self._entry_get(name)
        retry_after_s = entry.limiter.token_take(user_id)
        if retry_after_s is not None:
            limit = entry.spec.rate_limit
            raise ToolRateLimitedError(
                f"rate limit for {name!r} reached ({limit.requests} calls per {limit.window_s:g} s, "
                f"at most {limit.burst} at once); retry in {retry_after_s:.1f} s",
                retry_after_s=retry_after_s,
            )

    def rate_status(self, name: str, user_id: str) -> dict[str, Any]:
        """`user_id`'s standing against tool `name`'s limit, JSON-ready. Takes nothing."""
        status = self._entry_get(name).limiter.status_get(user_id)
        return {
            "count": status.count,
            "limit": status.limit,
            "window_s": status.window_s,
            "burst": status.burst,
            "remaining": status.remaining,
            "reset_at": status.reset_at.isoformat(timespec="milliseconds"),
            "reset_in_s": round(status.reset_in_s, 3),
        }

    def in_flight(self, name: str) -> int:
        """Calls of tool `name` running right now."""
        return self._entry_get(name).gate.in_flight

    def execute(self, name: str, ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run tool `name`'s handler under its concurrency cap. Blocking: call from a worker thread.

        Does not check arguments, permission, rate or approval: see the module docstring for
        the order the caller runs those in. A handler's ToolError passes through; any other
        exception is logged with its traceback and becomes a ToolFailedError whose message
        does not repeat the exception's text (it may hold paths, URLs or secrets).
        """
        entry = self._entry_get(name)
        try:
            with entry.gate.slot():
                return self._handler_run(entry, ctx, arguments)
        except GateFullError:
            raise ToolBusyError(
                f"tool {name!r} is busy ({entry.gate.limit} calls already running); retry shortly",
                retry_after_s=BUSY_RETRY_AFTER_S,
            ) from None

    def _handler_run(self, entry: _Entry, ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        name = entry.spec.name
        try:
            result = entry.handler(ctx, arguments)
        except ToolError:
            raise
        except Exception:
            log.exception("tool %r failed for user %r", name, ctx.user_id)
            raise ToolFailedError(f"tool {name!r} failed with an internal error; it has been logged") from None
        if not isinstance(result, dict):
            log.error("tool %r returned %s instead of a dict", name, type(result).__name__)
            raise ToolFailedError(f"tool {name!r} returned an invalid result; it has been logged")
        return result

    def _entry_get(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            shown = name if len(name) <= 64 else name[:61] + "..."
            raise UnknownToolError(f"unknown tool {shown!r}; known tools: {known}")
        return entry
