"""The office app's errors: uploads and indexing (one hierarchy: webapp.core.errors)."""

from __future__ import annotations

from webapp.core.errors import (
    ConflictError,
    PayloadTooLargeError,
    UnavailableError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)


class FileTooLargeError(PayloadTooLargeError):
    code = "file_too_large"


class UnsupportedFileError(UnsupportedMediaTypeError):
    code = "unsupported_type"


class UnreadableFileError(UnprocessableError):
    """The file has a supported type but no text we can index (empty, corrupt, encrypted, scanned)."""


class IndexingFailedError(UnavailableError):
    code = "indexing_failed"


class ApprovalClosedError(ConflictError):
    """A tool call's approval that was already decided, or expired."""

    code = "approval_closed"
