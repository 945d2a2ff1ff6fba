"""One error path: typed application errors and the handlers that render them.

Every error response, from DRF views and Django's own 404/500, has the shape
{"error": {"code", "message", "field"}}; `field` is null when no single input field is
at fault. Validation errors also list every problem under "details". The WebSocket
consumer sends the same fields as a frame: {"type": "error", "code", "message", "field"}.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from webapp.chat.parsers import JsonBodyError

log = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An error the client can act on. Services raise these; interfaces render them."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra  # more fields for the error body, e.g. retry_after
        if code:
            self.code = code

    def headers(self) -> dict[str, str]:
        return {}


class NotFoundError(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class ModelNotReadyError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "model_loading"


class ShuttingDownError(ApplicationError):
    """The process is draining before it stops (SIGTERM): come back to the restarted app."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "shutting_down"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra.get("retry_after", 5))}


class ServerBusyError(ApplicationError):
    """Admission refused: the wait for the model is over its limit. Say when to come back."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "server_busy"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra["retry_after"])}


class GenerationFailedError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "generation_failed"


def busy_error(exc: Any) -> ServerBusyError:
    """The web layer's form of the engine's EngineBusyError."""
    return ServerBusyError(str(exc), retry_after=exc.retry_after_s, queue_size=exc.queue_depth)


def error_body(*, code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def _validation_body(detail: Any) -> dict[str, Any]:
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
    return error_body(code=first["code"], message=first["message"], field=first["field"], details=problems)


def error_frame(exc: Exception) -> dict[str, Any] | None:
    """The WebSocket twin of `drf_exception_handler`: the same error as a flat frame.

    {"type": "error", "code", "message", "field"}; None for an unexpected exception,
    which the consumer logs and reports as a server error.
    """
    if isinstance(exc, ApplicationError):
        body = error_body(code=exc.code, message=exc.message, field=exc.field, **exc.extra)
    elif isinstance(exc, exceptions.ValidationError):
        body = _validation_body(exc.detail)
    else:
        return None
    return {"type": "error", **body["error"]}


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every handled error becomes the one JSON shape."""
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(code=exc.code, message=exc.message, field=exc.field, **exc.extra),
            status=exc.status_code,
            headers=exc.headers(),
        )
    if isinstance(exc, exceptions.ValidationError):
        return Response(_validation_body(exc.detail), status=exc.status_code)
    if isinstance(exc, JsonBodyError):
        return Response(
            error_body(code=exc.code, message=f"request body: {exc.detail}", field=exc.field), status=exc.status_code
        )
    if isinstance(exc, exceptions.ParseError):  # a form or multipart body (JSON ones are JsonBodyError)
        return Response(
            error_body(code="malformed_body", message=f"request body can't be read: {exc.detail}"),
            status=exc.status_code,
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(
            error_body(
                code="unsupported_media_type",
                message=f"{exc.detail} Send Content-Type: application/json.",
                field="Content-Type",
            ),
            status=exc.status_code,
        )
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        return Response(error_body(code=str(code), message=str(exc.detail)), status=exc.status_code)
    return None  # unexpected: Django logs it and handler500 answers


def django_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    from webapp.chat.urls import endpoint_list

    return JsonResponse(
        error_body(
            code="not_found",
            message=f"no endpoint at {request.path}",
            endpoints=endpoint_list(),
        ),
        status=404,
    )


def django_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (an unknown Host header, a malformed request) in the one error shape."""
    message = str(exception) if exception is not None and str(exception) else "bad request"
    field = "Host" if type(exception).__name__ == "DisallowedHost" else None
    return JsonResponse(error_body(code="bad_request", message=message, field=field), status=400)


def django_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body(code="server_error", message="internal error; see the server log"), status=500)
