"""The chat app's errors, and the three small adapters that render every error.

The error type itself is webapp.core.errors.ApplicationError (Django-free, one renderer:
`error_body`). Here are the chat domain's errors (model loading, server busy, generation
failed, shutting down), `application_error` which turns DRF's own exceptions (validation,
parse, media type) into one, and the adapters:

- `drf_exception_handler`: a DRF response {"error": {"code", "message", "field", ...}};
  validation errors also list every problem under "details";
- `error_frame`: the WebSocket frame {"type": "error", "code", "message", "field", ...};
- `openai_error`: OpenAI's envelope, with its `type` and `param` keys (its SDK reads them);
- `anthropic_error`: Anthropic's envelope, for /v1/messages.

Django's own 400/404/500 answer in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import exceptions
from rest_framework.response import Response

from webapp.chat.parsers import JsonBodyError
from webapp.core.errors import (
    ApplicationError,
    ForbiddenError,
    NotAuthenticatedError,
    TooManyRequestsError,
    UnavailableError,
    UnsupportedMediaTypeError,
    error_body,
)

log = logging.getLogger(__name__)


class ModelNotReadyError(UnavailableError):
    code = "model_loading"


class ShuttingDownError(UnavailableError):
    """The process is draining before it stops (SIGTERM): come back to the restarted app."""

    code = "shutting_down"


class ServerBusyError(TooManyRequestsError):
    """Admission refused: the wait for the model is over its limit. Says when to come back.

    The seed design's clients read `retry_after`, `queue_size` and `detail` at the top level
    of the body: they are there too (see drf_exception_handler).
    """

    code = "server_busy"


class GenerationFailedError(UnavailableError):
    code = "generation_failed"


class InvalidInputError(ApplicationError):
    """Validation failed; `details` lists every problem, the first one is the error."""

    code = "invalid"


def _validation_error(detail: Any) -> InvalidInputError:
    problems: list[dict[str, Any]] = []

    def walk(node: Any, path: str | None) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                name = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
                walk(value, name)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        else:
            code = getattr(node, "code", "invalid")
            message = f"{path}: {node}" if path else str(node)
            problems.append({"code": code, "message": message, "field": path})

    walk(detail, None)
    first = problems[0] if problems else {"code": "invalid", "message": "invalid input", "field": None}
    return InvalidInputError(first["message"], field=first["field"], code=first["code"], details=problems)


def application_error(exc: Exception) -> ApplicationError | None:
    """`exc` as the one error type; None for an unexpected exception (a bug: logged, 500)."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, exceptions.ValidationError):
        return _validation_error(exc.detail)
    if isinstance(exc, JsonBodyError):
        return ApplicationError(f"request body: {exc.detail}", code=exc.code, field=exc.field)
    if isinstance(exc, exceptions.ParseError):  # a form or multipart body (JSON ones are JsonBodyError)
        return ApplicationError(f"request body can't be read: {exc.detail}", code="malformed_body")
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return UnsupportedMediaTypeError(f"{exc.detail} Send Content-Type: application/json.", field="Content-Type")
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # DRF answers 403 instead when no authenticator of the view can name a scheme.
        kind = NotAuthenticatedError if exc.status_code == 401 else ForbiddenError
        return kind(str(exc.detail), code=str(exc.get_codes()), field="Authorization")
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        return ApplicationError(str(exc.detail), code=str(code), status=exc.status_code)
    return None


def _rest_body(error: ApplicationError) -> dict[str, Any]:
    body = error_body(error)
    if isinstance(error, ServerBusyError):  # the seed design's 429 fields, at the top level too
        body.update(detail=error.message, retry_after=error.retry_after, queue_size=error.extra.get("queue_size"))
    return body


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every handled error becomes the one JSON shape."""
    error = application_error(exc)
    if error is None:
        return None  # unexpected: Django logs it and handler500 answers
    return Response(_rest_body(error), status=error.status, headers=error.headers())


def error_frame(exc: Exception) -> dict[str, Any] | None:
    """The WebSocket twin of `drf_exception_handler`: the same error as a flat frame.

    {"type": "error", "code", "message", "field", ...}; None for an unexpected exception,
    which the consumer logs and reports as a server error.
    """
    error = application_error(exc)
    return None if error is None else {"type": "error", **error_body(error)["error"]}


def openai_error(exc: Exception) -> JsonResponse:
    """OpenAI's error envelope: the one shape plus `type` (invalid_request_error,
    rate_limit_error, server_error) and `param` (the field), which its SDK reads."""
    error = application_error(exc)
    if error is None:
        log.error("OpenAI request failed", exc_info=exc)
        error = ApplicationError("internal error; see the server log", code="server_error", status=500)
    body = error_body(error)["error"]
    kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        error.status, "invalid_request_error" if error.status < 500 else "server_error"
    )
    response = JsonResponse({"error": {**body, "type": kind, "param": error.field}}, status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    return response


def anthropic_error(exc: Exception) -> JsonResponse:
    """Anthropic's error envelope {"type": "error", "error": {"type", "message"}}, which its
    SDK reads, with the one shape's `code` and `field` (and `param`) in `error` too."""
    error = application_error(exc)
    if error is None:
        log.error("Anthropic request failed", exc_info=exc)
        error = ApplicationError("internal error; see the server log", code="server_error", status=500)
    kind = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
    }.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")
    body = {**error_body(error)["error"], "type": kind, "param": error.field}
    response = JsonResponse({"type": "error", "error": body}, status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    return response


def django_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    error = ApplicationError(f"no endpoint at {request.path}", code="not_found", status=404, endpoints=endpoint_list())
    return JsonResponse(error_body(error), status=404)


def django_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (an unknown Host header, a malformed request) in the one error shape."""
    message = str(exception) if exception is not None and str(exception) else "bad request"
    field = "Host" if type(exception).__name__ == "DisallowedHost" else None
    return JsonResponse(error_body(ApplicationError(message, code="bad_request", field=field)), status=400)


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """CSRF_FAILURE_VIEW: a form or session-authenticated write without a valid CSRF token."""
    error = ForbiddenError(
        f"csrfmiddlewaretoken: this write needs the CSRF token of a page from this site ({reason})",
        code="csrf_failed",
        field="csrfmiddlewaretoken",
    )
    return JsonResponse(error_body(error), status=403)


def django_server_error(request: HttpRequest) -> JsonResponse:
    error = ApplicationError("internal error; see the server log", code="server_error", status=500)
    return JsonResponse(error_body(error), status=500)


_METHODS = {
    "llama": "POST",
    "conversation": "DELETE",
    "openai-chat": "POST",
    "documents": "GET|POST",
    "documents-search": "POST",
    "document": "GET|DELETE",
    "tool-call": "POST",
    "approval": "POST",
}
_PLACEHOLDERS = {
    "<uuid:db_id>": "{db_id}",
    "<str:document_id>": "{id}",
    "<str:name>": "{name}",
    "<str:approval_id>": "{id}",
}


def endpoint_list() -> list[str]:
    """The real endpoints of this app (as the URLconf has them), for 404 bodies."""
    app = settings.APP_MODE

    def shown(pattern: str) -> str:
        for raw, nice in _PLACEHOLDERS.items():
            pattern = pattern.replace(raw, nice)
        return pattern

    routes: list[str] = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and str(entry.pattern) == f"{app}/":
            for child in entry.url_patterns:
                if isinstance(child, URLPattern):
                    routes.append(f"{_METHODS.get(child.name or '', 'GET')} /{app}/{shown(str(child.pattern))}")
    return [*routes, f"WebSocket /{app}/ws/chat/"]
