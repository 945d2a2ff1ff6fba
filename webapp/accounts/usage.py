"""Per-account chat limits, checked by the turn service before a turn reaches the engine
(webapp.chat.turns calls `TurnGate.admit`, then `release` with the tokens the turn used):

- turns per account (TURN_RATE_PER_ACCOUNT, or the account's own `turn_rate`) and per
  client address (TURN_RATE_PER_IP): django-ratelimit's counters, fixed windows;
- generations at once per account (GENERATIONS_PER_ACCOUNT, or the account's
  `max_generations`): a counter that `release` takes back;
- tokens per day, prompt and completion (DAILY_TOKEN_QUOTA, or the account's
  `daily_token_quota`; 0 is no quota): counted per UTC day as the turn runs (a reply the
  client leaves is charged for what it used); the user sees the day's use on their
  account page. It is checked when a turn starts, so the turns running when it runs out
  finish: the day's use can pass the quota by at most what those turns use.

A service key's end users share their account's limits: the account is who pays. Every
count lives in the cache both app processes share (Redis under `make run` and
docker-compose). A refusal is a TooManyRequestsError (429) with Retry-After, in each
interface's error shape, and an audit entry (once per window).

Written here rather than taken from a library: django-ratelimit counts requests in a
window, which covers the turn rates; "at most N at once" and "tokens per day" are counts
of other things (generations running, tokens used) on the same cache.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from webapp.accounts.audit import refusal_record
from webapp.accounts.identity import Principal
from webapp.accounts.models import Account, AuthEventKind
from webapp.core.errors import NotAuthenticatedError, TooManyRequestsError, UnavailableError

# The running count expires this long after the account's last admission: a generation whose
# process died stops counting then. Longer than a turn runs (an approval may keep one open).
_RUNNING_TTL_S = 60 * 60


@dataclass(frozen=True)
class AccountLimits:
    turn_rate: str
    max_generations: int
    daily_tokens: int  # 0: no quota


def limits_of(account: Account) -> AccountLimits:
    env = settings.ENV
    return AccountLimits(
        turn_rate=account.turn_rate or env.turn_rate_account,
        max_generations=account.max_generations or env.generations_per_account,
        daily_tokens=env.daily_token_quota if account.daily_token_quota is None else account.daily_token_quota,
    )


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _seconds_to_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1, int((midnight - now).total_seconds()))


def _tokens_key(account_id: int, day: dt.date) -> str:
    return f"usage:tokens:{account_id}:{day.isoformat()}"


def _running_key(account_id: int) -> str:
    return f"usage:running:{account_id}"


def _incr(key: str, by: int, *, timeout: int) -> int:
    """Add `by` to the count at `key` (made at 0 if missing), keeping it `timeout` seconds."""
    cache.add(key, 0, timeout=timeout)
    try:
        value = int(cache.incr(key, by))
    except ValueError:  # expired between add and incr
        cache.set(key, by, timeout=timeout)
        return by
    cache.touch(key, timeout)
    return value


def tokens_used_today(account_id: int) -> int:
    return int(cache.get(_tokens_key(account_id, _today()), 0))


@dataclass(frozen=True)
class Usage:
    """What the account page shows."""

    tokens_today: int
    daily_tokens: int  # 0: no quota
    resets_in_s: int
    turn_rate: str
    max_generations: int
    running: int  # replies being generated now


def usage_of(account: Account) -> Usage:
    limits = limits_of(account)
    return Usage(
        tokens_today=tokens_used_today(account.pk),
        daily_tokens=limits.daily_tokens,
        resets_in_s=_seconds_to_midnight(),
        turn_rate=limits.turn_rate,
        max_generations=limits.max_generations,
        running=int(cache.get(_running_key(account.pk), 0)),
    )


def _limited(message: str, *, retry_after: float, code: str, **extra: Any) -> TooManyRequestsError:
    return TooManyRequestsError(message, code=code, retry_after=retry_after, **extra)


class TurnLimits:
    """One turn's admission for `principal`, from address `ip` (see the module docstring).
    Sync: both calls talk to the cache; the turn service runs them on a worker thread."""

    def __init__(self, principal: Principal, ip: str | None) -> None:
        self._principal = principal
        self._ip = ip or "unknown"
        self._holding = False

    def admit(self) -> None:
        """Count the turn, or refuse it (TooManyRequestsError; nothing counted as running)."""
        account = Account.objects.filter(pk=self._principal.account_id).first()
        if account is None or not account.is_active:  # deleted or disabled meanwhile
            raise NotAuthenticatedError("this account is no longer active", field="Authorization")
        limits = limits_of(account)
        try:
            self._rates_check(limits)
            if limits.daily_tokens:
                used = tokens_used_today(account.pk)
                if used >= limits.daily_tokens:
                    self._refused("daily token quota", once_per_s=_seconds_to_midnight())
                    raise _limited(
                        f"daily token quota reached: {used:,} of {limits.daily_tokens:,} tokens today "
                        "(prompt and completion); it resets at 00:00 UTC",
                        retry_after=_seconds_to_midnight(),
                        code="quota_exceeded",
                        quota=limits.daily_tokens,
                        used=used,
                    )
            key = _running_key(account.pk)
            running = _incr(key, 1, timeout=_RUNNING_TTL_S)
            if running > limits.max_generations:
                with contextlib.suppress(ValueError):
                    cache.decr(key)
                self._refused("generations at once", once_per_s=60)
                raise _limited(
                    f"this account already has {limits.max_generations} replies being generated; "
                    "wait for one to finish",
                    retry_after=2,
                    code="too_many_generations",
                )
            self._holding = True
        except redis.RedisError as exc:
            raise UnavailableError("limits can't be checked right now; try again shortly", retry_after=5) from exc

    def release(self, tokens: int) -> None:
        """The turn ended, having used `tokens` (prompt + completion, every round)."""
        account_id = self._principal.account_id
        try:
            if self._holding:
                self._holding = False
                key = _running_key(account_id)
                with contextlib.suppress(ValueError):  # the count expired meanwhile
                    if cache.decr(key) < 0:  # it expired and began again under running turns
                        cache.set(key, 0, timeout=_RUNNING_TTL_S)
            if tokens > 0:
                _incr(_tokens_key(account_id, _today()), tokens, timeout=2 * 24 * 3600)
        except redis.RedisError:
            pass  # the running count expires by itself; a lost token count favours the user

    def _rates_check(self, limits: AccountLimits) -> None:
        request = HttpRequest()  # django-ratelimit's core wants one; the keys below don't read it
        for group, value, rate in (
            ("turn-account", str(self._principal.account_id), limits.turn_rate),
            ("turn-ip", self._ip, settings.ENV.turn_rate_ip),
        ):
            usage = get_usage(request, group=group, key=lambda _g, _r, v=value: v, rate=rate, increment=True)
            if usage and usage["should_limit"]:
                if usage["count"] == usage["limit"] + 1:  # the first refusal of its window
                    self._refused(f"turn rate per {group.removeprefix('turn-')} ({rate})", once_per_s=0)
                who = "this account" if group == "turn-account" else "this address"
                raise _limited(
                    f"too many chat turns from {who}: at most {rate.replace('/', ' per ')}",
                    retry_after=max(1, int(usage["time_left"])),
                    code="rate_limited",
                )

    def _refused(self, what: str, *, once_per_s: int) -> None:
        refusal_record(
            kind=AuthEventKind.RATE_LIMITED,
            account_id=self._principal.account_id,
            username=self._principal.username,
            detail=f"refused: {what}",
            ip=self._ip,
            once_per_s=once_per_s,
        )


def _account_rate_admit(principal: Principal, ip: str | None, *, what: str, rate: str, field: str | None) -> None:
    try:
        usage = get_usage(
            HttpRequest(),
            group=f"{what}-account",
            key=lambda _g, _r: str(principal.account_id),
            rate=rate,
            increment=True,
        )
    except redis.RedisError as exc:
        raise UnavailableError("limits can't be checked right now; try again shortly", retry_after=5) from exc
    if usage and usage["should_limit"]:
        if usage["count"] == usage["limit"] + 1:
            TurnLimits(principal, ip)._refused(f"{what} ({rate})", once_per_s=0)
        raise _limited(
            f"too many {what} from this account: at most {rate.replace('/', ' per ')}",
            retry_after=max(1, int(usage["time_left"])),
            code="rate_limited",
            field=field,
        )


def upload_admit(principal: Principal, ip: str | None) -> None:
    """Count one document upload of the account (UPLOAD_RATE_PER_ACCOUNT), or refuse it."""
    _account_rate_admit(principal, ip, what="uploads", rate=settings.ENV.upload_rate_account, field="file")


def tool_call_admit(principal: Principal, ip: str | None) -> None:
    """Count one tool call through REST (TOOL_CALL_RATE_PER_ACCOUNT), or refuse it. Each tool
    also has its own allowance per user (a service key's end users each have theirs); this
    caps the account as a whole, so rotating end users gains nothing past it."""
    _account_rate_admit(principal, ip, what="tool calls", rate=settings.ENV.tool_call_rate_account, field=None)
