"""DRF's JSON parser with the project's bounds (webapp.core.json_input): depth, number size,
valid Unicode. A body past them is a 400 naming the rule and, where it can, the field."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from webapp.core.json_input import JsonInputError, json_loads_bounded


class JsonBodyError(ParseError):
    """A body refused by the bounded parser; carries the rule's code and the field at fault."""

    def __init__(self, error: JsonInputError) -> None:
        super().__init__(detail=error.message, code=error.code)
        self.code = error.code
        self.field = error.field


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return json_loads_bounded(stream.read() if stream is not None else b"")
        except JsonInputError as exc:
            raise JsonBodyError(exc) from None
