"""Tools the office assistant can call, for users and the model, under per-tool rules.

This package knows nothing of Django: `ToolRegistry` holds the tools and their rules
(argument schema, sensitivity, rate limit, concurrency cap); the web layer's service runs
its checks in the order documented in `webapp.tools.registry` and stores approvals and the
audit log itself. Built-in tools: `calculator`, `current_time` and `web_search` (SearxNG).
"""

from __future__ import annotations

from webapp.tools.calculator import calculator_handler, calculator_tool_spec
from webapp.tools.clock import current_time_handler, current_time_tool_spec
from webapp.tools.limits import LimitsBackend, MemoryLimits, RateLimit, RedisLimits
from webapp.tools.registry import (
    Decision,
    Handler,
    SecurityMode,
    Sensitivity,
    ToolArgumentError,
    ToolBusyError,
    ToolContext,
    ToolError,
    ToolFailedError,
    ToolForbiddenError,
    ToolNotConfiguredError,
    ToolRateLimitedError,
    ToolRegistry,
    ToolSpec,
    UnknownToolError,
)
from webapp.tools.web_search import SearxngClient, WebSearchError, web_search_handler_make, web_search_tool_spec

__all__ = [
    "Decision",
    "Handler",
    "LimitsBackend",
    "MemoryLimits",
    "RateLimit",
    "RedisLimits",
    "SearxngClient",
    "SecurityMode",
    "Sensitivity",
    "ToolArgumentError",
    "ToolBusyError",
    "ToolContext",
    "ToolError",
    "ToolFailedError",
    "ToolForbiddenError",
    "ToolNotConfiguredError",
    "ToolRateLimitedError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownToolError",
    "WebSearchError",
    "builtin_tools_register",
]


def builtin_tools_register(registry: ToolRegistry, *, searxng: SearxngClient | None) -> None:
    """Register calculator, current_time and web_search; web_search refuses calls when `searxng` is None.

    web_search is registered either way, so clients see it listed and get a clear
    not_configured error instead of an unknown tool.
    """
    registry.register(calculator_tool_spec(), calculator_handler)
    registry.register(current_time_tool_spec(), current_time_handler)
    registry.register(web_search_tool_spec(), web_search_handler_make(searxng))
