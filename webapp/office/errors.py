"""The office app's application errors (rendered by webapp.chat.errors' one error path)."""

from __future__ import annotations

from rest_framework import status

from webapp.chat.errors import ApplicationError


class FileTooLargeError(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "file_too_large"


class UnsupportedFileError(ApplicationError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_type"


class UnreadableFileError(ApplicationError):
    """The file has a supported type but no text we can index (empty, corrupt, encrypted, scanned)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class IndexingFailedError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "indexing_failed"
