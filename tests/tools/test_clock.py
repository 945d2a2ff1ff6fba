"""current_time: the right instant, in the zone asked for, and clear errors for unknown zones."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfoNotFoundError

import pytest

from webapp.tools import clock
from webapp.tools.clock import current_time_handler, current_time_tool_spec
from webapp.tools.registry import ToolArgumentError, ToolContext, ToolNotConfiguredError, ToolRegistry

CTX = ToolContext(user_id="alice")
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def test_default_is_utc_now() -> None:
    before = int(time.time())
    result = current_time_handler(CTX, {})
    after = int(time.time())

    assert set(result) == {"timezone", "iso", "weekday", "unix"}
    assert result["timezone"] == "UTC"
    assert before <= result["unix"] <= after
    parsed = datetime.fromisoformat(result["iso"])
    assert parsed.utcoffset() == timedelta(0)
    assert result["iso"].endswith("+00:00")
    assert int(parsed.timestamp()) == result["unix"]
    assert result["weekday"] == WEEKDAYS[parsed.weekday()]


@pytest.mark.parametrize(
    ("zone", "offset", "suffix"),
    [
        ("Asia/Kolkata", timedelta(hours=5, minutes=30), "+05:30"),  # no DST there
        ("Asia/Kathmandu", timedelta(hours=5, minutes=45), "+05:45"),
        ("Pacific/Honolulu", timedelta(hours=-10), "-10:00"),
    ],
)
def test_named_zone_gives_local_time_with_offset(zone: str, offset: timedelta, suffix: str) -> None:
    result = current_time_handler(CTX, {"timezone": zone})

    assert result["timezone"] == zone
    assert result["iso"].endswith(suffix)
    local = datetime.fromisoformat(result["iso"])
    assert local.utcoffset() == offset
    assert int(local.timestamp()) == result["unix"]
    assert abs(result["unix"] - time.time()) < 5
    expected_local = datetime.fromtimestamp(result["unix"], tz=UTC) + offset
    assert result["weekday"] == WEEKDAYS[expected_local.weekday()]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "/etc/localtime", "x" * 64])
def test_unknown_zone_is_an_argument_error(zone: str) -> None:
    with pytest.raises(ToolArgumentError) as caught:
        current_time_handler(CTX, {"timezone": zone})
    assert caught.value.field == "arguments.timezone"
    assert "unknown time zone" in str(caught.value)
    assert "Europe/Berlin" in str(caught.value)


def test_missing_tz_database_is_not_configured_but_utc_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_zones(name: str) -> None:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(clock, "ZoneInfo", no_zones)
    monkeypatch.setattr(clock, "_tz_database_present", lambda: False)

    with pytest.raises(ToolNotConfiguredError, match="tzdata"):
        current_time_handler(CTX, {"timezone": "Europe/Berlin"})
    assert current_time_handler(CTX, {"timezone": "UTC"})["timezone"] == "UTC"


def test_tool_through_the_registry() -> None:
    registry = ToolRegistry()
    registry.register(current_time_tool_spec(), current_time_handler)

    with pytest.raises(ToolArgumentError, match="must be a string") as caught:
        registry.arguments_check("current_time", {"timezone": 5})
    assert caught.value.field == "arguments.timezone"
    with pytest.raises(ToolArgumentError, match="unexpected property 'tz'"):
        registry.arguments_check("current_time", {"tz": "UTC"})

    result = registry.execute("current_time", CTX, registry.arguments_check("current_time", {"timezone": "Asia/Tokyo"}))
    assert result["iso"].endswith("+09:00")
