"""Values the store can always hold, and records that can always be read back.

Written by hand because it is the store's own contract, not a general problem: MongoDB
(and montydb) refuse field names that start with "$" or contain "." in some operations,
and a string holding a lone UTF-16 surrogate ("\\ud800") is stored but can never be
encoded as UTF-8 again, so every later read of a list that held it answered 500.

- `storable(value)` is applied to whatever a client or the model chose (tool arguments,
  results) before it is written: such keys are escaped with the full-width look-alikes
  MongoDB's documentation suggests (＄ and ．), lone surrogates become U+FFFD.
- `readable(value)` repairs strings on the way out, for records written before this.
- `records_decode(docs, decode)` turns documents into records and leaves out (and logs)
  any that can't be decoded: one bad record never takes a whole list down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def _key(key: Any) -> str:
    text = _text(str(key))
    if text.startswith("$"):
        text = "＄" + text[1:]
    return text.replace(".", "．").replace("\x00", "\ufffd")


def storable(value: Any) -> Any:
    """A copy of `value` that MongoDB and montydb store and read back as it is (see the module)."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_key(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def readable(value: Any) -> Any:
    """Strings that can be encoded again, whatever was stored before values were made storable."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def records_decode(docs: Iterable[dict[str, Any]], decode: Callable[[dict[str, Any]], T]) -> list[T]:
    """`decode` each document; one that fails is logged and left out instead of failing the list."""
    records: list[T] = []
    for doc in docs:
        try:
            records.append(decode(readable(doc)))
        except Exception:
            log.exception("a stored record can't be read and is left out: _id=%r", doc.get("_id"))
    return records
