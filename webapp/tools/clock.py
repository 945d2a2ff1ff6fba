"""The current date and time in any IANA time zone, so the model need not guess "today".

Zones come from the system's tz database (Debian/Ubuntu package `tzdata`) or the `tzdata`
Python package. "UTC" works without either; any other zone on a machine that has no tz
database is reported as not configured rather than as a bad argument.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webapp.tools.limits import RateLimit
from webapp.tools.registry import (
    Sensitivity,
    ToolArgumentError,
    ToolContext,
    ToolNotConfiguredError,
    ToolSpec,
)

DEFAULT_TIMEZONE = "UTC"

# Locale-independent: strftime("%A") would follow the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@functools.cache
def _tz_database_present() -> bool:
    try:
        ZoneInfo("Etc/UTC")
    except ZoneInfoNotFoundError:
        return False
    return True


def _zone_get(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: keys like "../x" or "/etc/x"; OSError: a folder name such as "Europe".
        if not _tz_database_present():
            raise ToolNotConfiguredError(
                "no time zone database on this server (install the tzdata package); only UTC is available"
            ) from None
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise ToolArgumentError(
            f"unknown time zone {shown!r}: use an IANA name such as 'Europe/Berlin' or 'America/New_York'",
            field="arguments.timezone",
        ) from None


def current_time_tool_spec() -> ToolSpec:
    return ToolSpec(
        name="current_time",
        description=(
            "Get the current date, time and weekday. Pass an IANA time zone such as 'Europe/Berlin' (default 'UTC')."
        ),
        parameters={
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "IANA time zone name, e.g. 'Europe/Berlin'. Default: UTC.",
                },
            },
            "additionalProperties": False,
        },
        sensitivity=Sensitivity.LOW,
        rate_limit=RateLimit(requests=60, window_s=60.0, burst=10),
        max_concurrent=8,
    )


def current_time_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """Tool handler: {"timezone"?} -> {"timezone", "iso", "weekday", "unix"}."""
    name = args.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(name, str) or not name.strip():
        raise ToolArgumentError("arguments.timezone must be a time zone name", field="arguments.timezone")
    name = name.strip()
    zone = _zone_get(name)
    now = datetime.now(zone)
    return {
        "timezone": "UTC" if zone is UTC else name,
        "iso": now.isoformat(timespec="seconds"),
        "weekday": _WEEKDAYS[now.weekday()],
        "unix": int(now.timestamp()),
    }
