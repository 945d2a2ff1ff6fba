"""Request ids, HTTP metrics and secure cookies, for sync and async views alike.

These middlewares work in either mode, so Django never has to move an async view (the
OpenAI streaming endpoint) onto a thread to get through them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from webapp.chat import runtime


class _DualMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        before = self.before(request)
        return self.after(request, self.get_response(request), before)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        before = self.before(request)
        return self.after(request, await self.get_response(request), before)

    def before(self, request: HttpRequest) -> Any:
        return None

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        return response


# What nginx lets through too (gateway/templates): an id, not a payload to echo.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware(_DualMiddleware):
    """Take nginx's X-Request-ID (or make one, if it is missing or not a sane id) and echo it."""

    def before(self, request: HttpRequest) -> str:
        offered = request.headers.get("X-Request-ID", "")
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        response["X-Request-ID"] = before
        return response


class MetricsMiddleware(_DualMiddleware):
    """Count every response by route pattern (not by raw path: ids would explode the labels)."""

    def before(self, request: HttpRequest) -> float:
        return time.perf_counter()

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        runtime.http_metrics_get().observe(
            route=route, method=request.method or "", status=response.status_code, seconds=time.perf_counter() - before
        )
        return response


class SecureCookiesMiddleware(_DualMiddleware):
    """Session and CSRF cookies get `Secure` when the request came over TLS.

    Django's SESSION_COOKIE_SECURE is one setting for every request, but one deployment is
    reached over plain HTTP on localhost (make run) and over TLS behind a proxy; so the flag
    follows the request (request.is_secure() trusts nginx's X-Forwarded-Proto)."""

    def after(self, request: HttpRequest, response: HttpResponse, before: Any) -> HttpResponse:
        if request.is_secure():
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                if name in response.cookies:
                    response.cookies[name]["secure"] = True
        return response
