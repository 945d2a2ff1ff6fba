"""Sign-in and sign-up limits: django-ratelimit counts tries in the cache every app process
shares (Redis; see settings.CACHES), in fixed windows. The rates are settings.

Sign-in: every POST counts, right or wrong, so a guesser can't learn from which tries were
counted; past a limit even the right password waits.
- per client address (SIGNIN_RATE_PER_IP);
- per username from one address (SIGNIN_RATE_PER_USERNAME): a guesser's limit;
- per username from anywhere, ten times that: a cap on a guesser with many addresses,
  loose enough that someone else's tries don't lock a user out for long.
The username is counted as the sign-in form reads it (NFKC, so "ａdmin" is "admin"),
casefolded.

Sign-up: per client address (SIGNUP_RATE_PER_IP).

When Redis can't be reached the answer is "try again shortly" (LimitsUnavailable): no
unlimited guessing while the counter is down.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from webapp.accounts.client_ip import client_ip


class LimitsUnavailable(Exception):
    """The shared counter (Redis) can't be reached."""


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # seconds
    first: bool  # the first refused try of its window (the audit records only that one)


def _username(request: HttpRequest) -> str:
    typed = request.POST.get("username", "")[:200]
    return unicodedata.normalize("NFKC", typed).strip().casefold()


def _scaled(rate: str, factor: int) -> str:
    count, period = rate.split("/")
    return f"{int(count) * factor}/{period}"


def _count(request: HttpRequest, checks: list[tuple[str, str, str]]) -> Refusal | None:
    refusals = []
    try:
        for group, value, rate in checks:
            usage = get_usage(
                request,
                group=group,
                key=lambda _group, _request, v=value: v,
                rate=rate,
                method=["POST"],
                increment=True,
            )
            if usage and usage["should_limit"]:
                refusals.append(Refusal(max(1, int(usage["time_left"])), usage["count"] == usage["limit"] + 1))
    except redis.RedisError as exc:
        raise LimitsUnavailable(str(exc)) from exc
    if not refusals:
        return None
    return Refusal(max(r.retry_after for r in refusals), any(r.first for r in refusals))


def signin_count(request: HttpRequest) -> Refusal | None:
    """Count this sign-in try; a Refusal when it is over a limit."""
    ip, username = client_ip(request), _username(request)
    rate = settings.ENV.signin_rate_user
    return _count(
        request,
        [
            ("signin-ip", ip, settings.ENV.signin_rate_ip),
            ("signin-username-ip", f"{username}\x1f{ip}", rate),
            ("signin-username", username, _scaled(rate, 10)),
        ],
    )


def signup_count(request: HttpRequest) -> Refusal | None:
    return _count(request, [("signup-ip", client_ip(request), settings.ENV.signup_rate_ip)])
