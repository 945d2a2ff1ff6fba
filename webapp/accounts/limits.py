"""Sign-in limits: django-ratelimit counts tries per username and per client address.

Every POST to the sign-in form counts, right or wrong, so a guesser can't learn from
which tries were counted; past the limit even the right password waits. The counts live
in the cache every app process shares (Redis; see settings.CACHES), in fixed windows.
The rates are settings (SIGNIN_RATE_PER_USERNAME, SIGNIN_RATE_PER_IP).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage


def _username(group: str, request: HttpRequest) -> str:
    return request.POST.get("username", "").strip().lower()[:150]


def signin_retry_after(request: HttpRequest) -> int | None:
    """Count this sign-in try; the seconds to wait when it is over a limit, else None."""
    waits = []
    for group, key, rate in (
        ("signin-ip", "ip", settings.ENV.signin_rate_ip),
        ("signin-username", _username, settings.ENV.signin_rate_user),
    ):
        usage = get_usage(request, group=group, key=key, rate=rate, method=["POST"], increment=True)
        if usage and usage["should_limit"]:
            waits.append(max(1, int(usage["time_left"])))
    return max(waits) if waits else None
