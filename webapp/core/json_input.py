"""Parse JSON from a client with bounds, in one place for every interface (REST, WebSocket, OpenAI).

Python's `json` accepts what later breaks the process or the store: nesting deep enough to
raise RecursionError (a 500 in the parser, or later in a serializer or the BSON encoder),
integers with thousands of digits (int() refuses past 4,300, and big ones are slow),
NaN and Infinity (not JSON), and lone UTF-16 surrogates ("\\ud800"), which are valid
escapes but not text: stored, they can't be encoded to UTF-8 again, and every later read
of that record failed. `json_loads_bounded` refuses all of them with an error that names
the path of the value at fault, so each interface can answer 400.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # objects and arrays inside each other; real bodies use 4-6
MAX_INT_DIGITS = 19  # int64: the largest any field of ours takes
MAX_FLOAT_CHARS = 32


class JsonInputError(ValueError):
    """The input is not JSON we accept. `code` is machine-readable; `path` names the value ($ = the root)."""

    def __init__(self, message: str, *, code: str, path: str = "$") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = path

    @property
    def field(self) -> str | None:
        """The path as the project's error bodies name a field: "messages.0.content"; None for the root."""
        return None if self.path == "$" else self.path.removeprefix("$.")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonInputError(
            f"a number has {len(text.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are accepted",
            code="number_too_large",
        )
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        raise JsonInputError(
            f"a number is {len(text)} characters long; at most {MAX_FLOAT_CHARS}", code="number_too_large"
        )
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonInputError(f"the number {text} is too large", code="number_too_large")
    return value


def _constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not JSON", code="malformed_json")


def _text_check(value: str, path: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonInputError(
            f"{what} holds a lone UTF-16 surrogate (\\u{ord(value[exc.start]):04x}), which is not text",
            code="invalid_unicode",
            path=path,
        ) from None


def json_check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Check an already-parsed value: depth, and every string and key is valid Unicode.

    Iterative, so that a deep value can't exhaust the stack here either.
    """
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            _text_check(node, path, "a string")
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                raise JsonInputError(
                    f"the JSON is nested more than {max_depth} levels deep", code="json_too_deep", path=path
                )
            if isinstance(node, dict):
                for key, child in node.items():
                    # A path is echoed in the error: a bad key is written as its escape there.
                    child_path = f"{path}.{key.encode('utf-8', 'backslashreplace').decode('utf-8')}"
                    _text_check(key, child_path, "a key")
                    stack.append((child, child_path, depth + 1))
            else:
                stack.extend((child, f"{path}.{i}", depth + 1) for i, child in enumerate(node))


def json_loads_bounded(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` for untrusted input; raises JsonInputError (never RecursionError or a 5xx-shaped surprise)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise JsonInputError(
            f"the body is not UTF-8: {exc.reason} at byte {exc.start}", code="malformed_json"
        ) from None
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JsonInputError(f"the JSON is nested more than {max_depth} levels deep", code="json_too_deep") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"not valid JSON: {exc}", code="malformed_json") from None
    json_check(value, max_depth=max_depth)
    return value
