"""The one application error type: what a client did wrong (or must wait for), and how to say it.

Every layer raises these (services, tools, retrieval, the office app), so it has no Django
or DRF in it. An error carries a machine-readable `code`, a `message` safe to show, the
input `field` at fault (None when no single field is), an HTTP `status`, headers such as
Retry-After, and extra body fields (e.g. `retry_after`, `queue_size`).

One function renders the body, `error_body`; the interfaces' small adapters turn it into
a DRF response, a WebSocket error frame and OpenAI's envelope (webapp.chat.errors). The
engine's own exceptions (busy, prompt too long, bad grammar) are mapped to these in one
table, webapp.chat.services.engine_error.
"""

from __future__ import annotations

import math
from typing import Any


class ApplicationError(Exception):
    """An error the client can act on. Subclasses set `status` and `code`."""

    status = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code
        if status:
            self.status = status
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))
        self.extra = dict(extra)  # more fields for the error body
        if self.retry_after is not None:
            self.extra["retry_after"] = self.retry_after

    @property
    def status_code(self) -> int:
        return self.status

    def headers(self) -> dict[str, str]:
        # Retry-After takes whole seconds; rounded up, so that a retry then does not fail again.
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class NotAuthenticatedError(ApplicationError):
    """No credentials, or credentials that are not (or no longer) valid: sign in or send a key."""

    status = 401
    code = "not_authenticated"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer realm="persona-chat"'}


class ForbiddenError(ApplicationError):
    status = 403
    code = "forbidden"


class NotFoundError(ApplicationError):
    status = 404
    code = "not_found"


class ConflictError(ApplicationError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(ApplicationError):
    status = 413
    code = "too_large"


class UnsupportedMediaTypeError(ApplicationError):
    status = 415
    code = "unsupported_media_type"


class UnprocessableError(ApplicationError):
    status = 422
    code = "unprocessable"


class TooManyRequestsError(ApplicationError):
    """Refused for now; `retry_after` says when to come back."""

    status = 429
    code = "rate_limited"


class BadGatewayError(ApplicationError):
    """Something this service depends on failed (a web search provider, a tool's backend)."""

    status = 502
    code = "upstream_failed"


class UnavailableError(ApplicationError):
    """This service can't answer right now (model loading, shutting down, generation failed)."""

    status = 503
    code = "unavailable"


def error_body(exc: ApplicationError) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "field", ...extra}}."""
    return {"error": {"code": exc.code, "message": exc.message, "field": exc.field, **exc.extra}}
