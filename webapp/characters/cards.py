"""Character Cards: read V1/V2/V3 cards from JSON, PNG and CHARX files, and write them back out.

Role-play users bring cards made in SillyTavern, RisuAI, chub and the like. A card is
untrusted input in three containers: plain JSON; a PNG whose `tEXt` chunks hold the card as
base64 JSON (`chara` = V2, `ccv3` = V3) and whose image is the avatar; and CHARX, a zip with
`card.json` and the avatar among its assets. Whatever comes in is normalized to one V3 `data`
object (ParsedCard.data); unknown fields, in the card and in its extensions and lorebook, are
kept as they came, because the spec requires them to survive an import/export round trip.

Why hand-written: there is no maintained Python library for the card specs, and the checks
that matter here are about hostile files, not schemas: bounded sizes before anything is
decoded, zip bombs and path traversal in CHARX, PNG chunk structure, JSON nesting that would
raise RecursionError, images whose header promises gigapixels. jsonschema could state the
field types, but not those, and not the error messages we want ("data.tags[3]: must be at
most 100 characters"). The PNG chunk reader/writer is a few lines of `struct` and `zlib`;
Pillow only decodes and re-encodes the avatar, from the image chunks alone.

Every refusal is a CardError (400) or CardTooLargeError (413) whose `field` names the part at
fault ("file", "ccv3", "card.json", "avatar", "data.character_book.entries[3].keys", ...);
no other exception escapes card_read, card_from_object or card_data_check for bad input.
Pure Python, no Django: the service and REST layers call it.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import contextlib
import copy
import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from webapp.core.errors import ApplicationError

# --- Limits -------------------------------------------------------------------------------
# Files.
MAX_CARD_FILE_BYTES = 8 * 1024 * 1024  # an upload: PNG, CHARX or JSON
MAX_CARD_JSON_BYTES = 4 * 1024 * 1024  # the card's JSON, wherever it came from (decoded base64, card.json, a file)
MAX_JSON_DEPTH = 64  # objects/arrays inside each other, the card object counting as 1; real cards use ~6
MAX_JSON_INT = 2**63  # |int| below this: the store (BSON) holds int64
MAX_PNG_CHUNKS = 10_000
MAX_CHARX_ENTRIES = 256
MAX_CHARX_UNCOMPRESSED_BYTES = 32 * 1024 * 1024  # the sum of the entries' declared sizes
MAX_CHARX_RATIO = 100  # uncompressed / compressed, per entry
# Below this size an entry's ratio is not judged: a small file of repeated bytes legitimately
# compresses more than 100 times, and reads are bounded anyway, so it can't hurt.
CHARX_RATIO_MIN_BYTES = 64 * 1024
MAX_AVATAR_FILE_BYTES = MAX_CARD_FILE_BYTES  # an avatar asset inside a CHARX, as large as a PNG card may be
# Images.
MAX_IMAGE_PIXELS = 40_000_000  # checked from the header, before anything is decoded
MAX_AVATAR_SIDE = 1024  # re-encoded avatars are shrunk so the longer side fits
PLACEHOLDER_SIZE = (400, 600)  # the avatar of an exported PNG card without one
# Card fields (characters, as Python counts them).
MAX_NAME_CHARS = 256
MAX_LONG_TEXT_CHARS = 60_000
MAX_SHORT_TEXT_CHARS = 256
MAX_GREETINGS = 100  # alternate_greetings, group_only_greetings
MAX_GREETING_CHARS = 60_000
MAX_TAGS = 100
MAX_TAG_CHARS = 100
MAX_SOURCES = 50
MAX_SOURCE_CHARS = 2_000
MAX_NOTES_LANGUAGES = 50  # creator_notes_multilingual keys
MAX_LANGUAGE_CODE_CHARS = 32
MAX_ASSETS = 100
MAX_ASSET_FIELD_CHARS = 256  # type, name, ext
MAX_ASSET_URI_CHARS = 2_000_000  # the spec allows data: URLs, so a uri may hold an image
MAX_DATE = 2**53  # creation/modification dates: seconds by the spec, milliseconds by some tools; JS-safe
# Character book (lorebook).
MAX_BOOK_NAME_CHARS = 256
MAX_BOOK_DESCRIPTION_CHARS = 60_000
MAX_BOOK_SCAN_DEPTH = 1_000
MAX_BOOK_TOKEN_BUDGET = 1_000_000
MAX_BOOK_ENTRIES = 2_000
MAX_BOOK_ENTRY_CONTENT_CHARS = 60_000
MAX_BOOK_KEYS = 100  # keys, secondary_keys
MAX_BOOK_KEY_CHARS = 500
MAX_BOOK_ENTRY_LABEL_CHARS = 2_000  # an entry's name and comment
MAX_BOOK_ORDER = 1_000_000  # |insertion_order|, |priority|
MAX_BOOK_ENTRY_ID = 2**53  # |id| when numeric (JS-safe)
MAX_BOOK_ENTRY_ID_CHARS = 256  # id when a string (some tools use UUIDs)
BOOK_POSITIONS = frozenset({"before_char", "after_char"})

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
UTF8_BOM = b"\xef\xbb\xbf"
SPEC_V2 = "chara_card_v2"
SPEC_V3 = "chara_card_v3"
CHARX_AVATAR_PATH = "assets/icon/images/main.png"
# The V3 spec spells it "embeded://"; some writers fix the spelling. We write the spec's.
EMBEDDED_URI_PREFIXES = ("embeded://", "embedded://")
# Decoders the avatar may go through. Pillow knows many more (EPS even runs Ghostscript);
# a card's avatar is one of these, so nothing else gets to parse untrusted bytes.
AVATAR_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")

V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
LONG_TEXT_FIELDS = (
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
)
SHORT_TEXT_FIELDS = ("creator", "character_version", "nickname")
V3_ONLY_FIELDS: frozenset[str] = frozenset(
    {
        "assets",
        "nickname",
        "creator_notes_multilingual",
        "source",
        "group_only_greetings",
        "creation_date",
        "modification_date",
    }
)
# Optional in the spec and held as None in `data` when absent; left out of exported cards
# when None, because strict readers want them absent rather than null.
OPTIONAL_NONE_FIELDS = ("character_book", "creation_date", "modification_date")


class CardError(ApplicationError):
    """A card the service refuses. `field` names the part at fault; the message says the rule."""

    status = 400
    code = "invalid_card"


class CardTooLargeError(CardError):
    """The file, or the card's JSON, is over its size limit."""

    status = 413
    code = "card_too_large"


@dataclass(frozen=True)
class ParsedCard:
    """A card read from any format, as V3.

    `data`: the V3 `data` object with every V3 field present (defaults filled) and unknown
    fields kept. `extra`: the card object's unknown top-level fields (for V1, every key that
    is not one of the six V1 fields). `source`: "v1" | "v2" | "v3". `avatar`: the card's image
    re-encoded as a clean PNG, or None.
    """

    data: dict[str, Any]
    extra: dict[str, Any]
    source: str
    avatar: bytes | None


def _fail(field: str, rule: str, *, too_large: bool = False) -> CardError:
    error = CardTooLargeError if too_large else CardError
    return error(f"{field}: {rule}", field=field)


# --- Reading ------------------------------------------------------------------------------


def card_read(content: bytes) -> ParsedCard:
    """Read an uploaded card file: a PNG card, a CHARX zip, or JSON (UTF-8, optional BOM).

    The format is sniffed from the first bytes, not taken from a file name or content type.
    Raises CardError (CardTooLargeError for a file over MAX_CARD_FILE_BYTES).
    """
    if len(content) > MAX_CARD_FILE_BYTES:
        raise _fail("file", f"the file is {len(content):,} bytes; at most {MAX_CARD_FILE_BYTES:,}", too_large=True)
    if not content:
        raise _fail("file", "the file is empty")
    if content.startswith(PNG_SIGNATURE):
        return _png_card_read(content)
    if content.startswith(ZIP_SIGNATURE):
        return _charx_read(content)
    return _card_from_object(_json_parse(content, origin="file"), origin="file")


def card_from_object(obj: Any) -> ParsedCard:
    """Read a decoded JSON card of any version (V1 has no `spec`). The avatar is None."""
    return _card_from_object(obj, origin="file")


def _card_from_object(obj: Any, *, origin: str) -> ParsedCard:
    if not isinstance(obj, dict):
        raise _fail(origin, f"a card must be a JSON object, not {_json_type(obj)}")
    _json_value_check(obj, path="", level=1)
    spec = obj.get("spec")
    if spec is None:
        source = "v1"
        data = {key: obj[key] for key in V1_FIELDS if key in obj}
        extra = {key: value for key, value in obj.items() if key not in V1_FIELDS}
    elif spec in (SPEC_V2, SPEC_V3):
        source = "v2" if spec == SPEC_V2 else "v3"
        data = obj.get("data")
        if not isinstance(data, dict):
            raise _fail("data", f"must be an object, not {_json_type(data)}")
        extra = {key: value for key, value in obj.items() if key not in ("spec", "spec_version", "data")}
    else:
        shown = spec if isinstance(spec, str) else _json_type(spec)
        raise _fail("spec", f"unknown card spec {_shorten(str(shown))!r}; expected {SPEC_V2}, {SPEC_V3}, or none (V1)")
    # Tools in the wild write null for fields they leave empty; on import null means absent
    # (the editor's input, through card_data_check, gets no such leniency).
    data = {key: value for key, value in data.items() if not (key in _FIELD_CHECKS and value is None)}
    return ParsedCard(data=card_data_check(data), extra=copy.deepcopy(extra), source=source, avatar=None)


# --- JSON ---------------------------------------------------------------------------------


def _json_parse(raw: bytes, *, origin: str) -> Any:
    """Parse untrusted JSON bytes; refuses non-UTF-8, NaN, huge numbers and deep nesting."""
    if len(raw) > MAX_CARD_JSON_BYTES:
        raise _fail(origin, f"the card JSON is {len(raw):,} bytes; at most {MAX_CARD_JSON_BYTES:,}", too_large=True)
    try:
        text = raw.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(origin, f"not a PNG card, a CHARX zip or UTF-8 JSON ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except RecursionError:
        # The C scanner recurses per level; a deep enough document exhausts the stack before
        # our own (iterative) depth check could see the value.
        raise _fail(origin, f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        if text.lstrip()[:1] not in ("{", "["):
            raise _fail(origin, "not a PNG card, a CHARX zip or JSON") from None
        raise _fail(origin, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _JsonValueError as exc:
        raise _fail(origin, str(exc)) from None
    return value


class _JsonValueError(ValueError):
    pass


def _json_int(text: str) -> int:
    # int() of thousands of digits is slow (and refused past 4,300); nothing in a card needs it.
    if len(text.lstrip("-")) > 19:
        raise _JsonValueError(f"the number {_shorten(text)} is too large")
    return int(text)


def _json_constant(name: str) -> Any:
    raise _JsonValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _path_key(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    # Escaped so that a key with NUL, surrogates or brackets in it can be shown safely.
    return f"{path}[{json.dumps(_shorten(key), ensure_ascii=True)}]"


def _text_check(value: str, path: str) -> None:
    if "\x00" in value:
        raise _fail(path, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(
            path, f"holds a lone UTF-16 surrogate (\\u{ord(value[exc.start]):04x}), which is not text"
        ) from None


def _json_value_check(value: Any, *, path: str, level: int) -> None:
    """Check a value holds only JSON: str keys, bounded depth and ints, finite floats, real text.

    Iterative, so a deep value can't exhaust the stack; `level` is the depth of `value` itself
    in the card (the card object is 1, its `data` 2), so a `data` accepted alone still fits
    in a card.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, level)]
    while stack:
        node, node_path, node_level = stack.pop()
        if isinstance(node, str):
            _text_check(node, node_path or "file")
        elif node is None or isinstance(node, bool):
            pass
        elif isinstance(node, int):
            if not -MAX_JSON_INT <= node < MAX_JSON_INT:
                raise _fail(node_path or "file", "the number is too large (more than 64 bits)")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise _fail(node_path or "file", "NaN and Infinity are not JSON")
        elif isinstance(node, dict | list):
            if node_level > MAX_JSON_DEPTH:
                raise _fail(node_path or "file", f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(node, dict):
                for key, child in node.items():
                    if not isinstance(key, str):
                        raise _fail(node_path or "file", f"object keys must be strings, not {type(key).__name__}")
                    child_path = _path_key(node_path, key)
                    _text_check(key, child_path)
                    stack.append((child, child_path, node_level + 1))
            else:
                stack.extend((child, f"{node_path}[{i}]", node_level + 1) for i, child in enumerate(node))
        else:
            raise _fail(node_path or "file", f"must be a JSON value, not {type(node).__name__}")


# --- Field checks -------------------------------------------------------------------------


def _text(value: Any, path: str, *, max_chars: int) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, not {_json_type(value)}")
    if len(value) > max_chars:
        raise _fail(path, f"must be at most {max_chars:,} characters (it has {len(value):,})")
    _text_check(value, path)
    return value


def _text_list(value: Any, path: str, *, max_items: int, max_chars: int) -> list[str]:
    if not isinstance(value, list):
        raise _fail(path, f"must be a list of strings, not {_json_type(value)}")
    if len(value) > max_items:
        raise _fail(path, f"must have at most {max_items:,} items (it has {len(value):,})")
    return [_text(item, f"{path}[{i}]", max_chars=max_chars) for i, item in enumerate(value)]


def _integer(value: Any, path: str, *, low: int, high: int) -> int:
    # bool is an int to Python, but `true` is not a number to a card.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer, not {_json_type(value)}")
    if not low <= value <= high:
        raise _fail(path, f"must be between {low:,} and {high:,}")
    return value


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"must be true or false, not {_json_type(value)}")
    return value


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, not {_json_type(value)}")
    return copy.deepcopy(value)


def _name(value: Any, path: str) -> str:
    name = _text(value, path, max_chars=MAX_NAME_CHARS).strip()
    if not name:
        raise _fail(path, "must not be empty")
    return name


def _date(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)  # some writers emit JS Date.now()/1000 unrounded
    return _integer(value, path, low=0, high=MAX_DATE)


def _notes_multilingual(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object of language code to text, not {_json_type(value)}")
    if len(value) > MAX_NOTES_LANGUAGES:
        raise _fail(path, f"must have at most {MAX_NOTES_LANGUAGES} languages (it has {len(value):,})")
    for language, notes in value.items():
        if len(language) > MAX_LANGUAGE_CODE_CHARS:
            raise _fail(path, f"language codes must be at most {MAX_LANGUAGE_CODE_CHARS} characters")
        _text(notes, _path_key(path, language), max_chars=MAX_LONG_TEXT_CHARS)
    return dict(value)


def _assets(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _fail(path, f"must be a list, not {_json_type(value)}")
    if len(value) > MAX_ASSETS:
        raise _fail(path, f"must have at most {MAX_ASSETS} items (it has {len(value):,})")
    for i, asset in enumerate(value):
        asset_path = f"{path}[{i}]"
        if not isinstance(asset, dict):
            raise _fail(asset_path, f"must be an object, not {_json_type(asset)}")
        for key in ("type", "uri"):
            if key not in asset:
                raise _fail(f"{asset_path}.{key}", "is required")
        for key in ("type", "name", "ext"):
            if key in asset:
                _text(asset[key], f"{asset_path}.{key}", max_chars=MAX_ASSET_FIELD_CHARS)
        _text(asset["uri"], f"{asset_path}.uri", max_chars=MAX_ASSET_URI_CHARS)
    return copy.deepcopy(value)


def _optional(check: Callable[[Any, str], Any], value: Any, path: str) -> None:
    # Lorebook fields marked optional may be null: writers use null for "not set".
    if value is not None:
        check(value, path)


def _book(value: Any, path: str) -> dict[str, Any] | None:
    """Check a character_book's shape; returns it raw (a copy), unknown fields and all."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object or null, not {_json_type(value)}")
    _optional(lambda v, p: _text(v, p, max_chars=MAX_BOOK_NAME_CHARS), value.get("name"), f"{path}.name")
    _optional(
        lambda v, p: _text(v, p, max_chars=MAX_BOOK_DESCRIPTION_CHARS), value.get("description"), f"{path}.description"
    )
    _optional(
        lambda v, p: _integer(v, p, low=0, high=MAX_BOOK_SCAN_DEPTH), value.get("scan_depth"), f"{path}.scan_depth"
    )
    _optional(
        lambda v, p: _integer(v, p, low=0, high=MAX_BOOK_TOKEN_BUDGET),
        value.get("token_budget"),
        f"{path}.token_budget",
    )
    _optional(_boolean, value.get("recursive_scanning"), f"{path}.recursive_scanning")
    _optional(_object, value.get("extensions"), f"{path}.extensions")
    entries = value.get("entries")
    if not isinstance(entries, list):
        raise _fail(f"{path}.entries", f"must be a list, not {_json_type(entries)}")
    if len(entries) > MAX_BOOK_ENTRIES:
        raise _fail(f"{path}.entries", f"must have at most {MAX_BOOK_ENTRIES:,} items (it has {len(entries):,})")
    for i, entry in enumerate(entries):
        _book_entry(entry, f"{path}.entries[{i}]")
    return copy.deepcopy(value)


def _book_entry(entry: Any, path: str) -> None:
    if not isinstance(entry, dict):
        raise _fail(path, f"must be an object, not {_json_type(entry)}")
    if "keys" not in entry:
        raise _fail(f"{path}.keys", "is required")
    _text_list(entry["keys"], f"{path}.keys", max_items=MAX_BOOK_KEYS, max_chars=MAX_BOOK_KEY_CHARS)
    if "content" not in entry:
        raise _fail(f"{path}.content", "is required")
    _text(entry["content"], f"{path}.content", max_chars=MAX_BOOK_ENTRY_CONTENT_CHARS)
    _optional(
        lambda v, p: _text_list(v, p, max_items=MAX_BOOK_KEYS, max_chars=MAX_BOOK_KEY_CHARS),
        entry.get("secondary_keys"),
        f"{path}.secondary_keys",
    )
    _optional(_object, entry.get("extensions"), f"{path}.extensions")
    for flag in ("enabled", "case_sensitive", "use_regex", "constant", "selective"):
        _optional(_boolean, entry.get(flag), f"{path}.{flag}")
    for number in ("insertion_order", "priority"):
        _optional(
            lambda v, p: _integer(v, p, low=-MAX_BOOK_ORDER, high=MAX_BOOK_ORDER), entry.get(number), f"{path}.{number}"
        )
    for label in ("name", "comment"):
        _optional(lambda v, p: _text(v, p, max_chars=MAX_BOOK_ENTRY_LABEL_CHARS), entry.get(label), f"{path}.{label}")
    entry_id = entry.get("id")
    if isinstance(entry_id, str):
        _text(entry_id, f"{path}.id", max_chars=MAX_BOOK_ENTRY_ID_CHARS)
    else:
        _optional(lambda v, p: _integer(v, p, low=-MAX_BOOK_ENTRY_ID, high=MAX_BOOK_ENTRY_ID), entry_id, f"{path}.id")
    position = entry.get("position")
    if position is not None and position not in BOOK_POSITIONS:
        shown = _shorten(position) if isinstance(position, str) else _json_type(position)
        raise _fail(f"{path}.position", f"must be before_char or after_char, not {shown!r}")


def _long_text(value: Any, path: str) -> str:
    return _text(value, path, max_chars=MAX_LONG_TEXT_CHARS)


def _short_text(value: Any, path: str) -> str:
    return _text(value, path, max_chars=MAX_SHORT_TEXT_CHARS)


# Every known V3 data field: its check (returning the normalized value) and its default.
_FIELD_CHECKS: dict[str, tuple[Callable[[Any, str], Any], Callable[[], Any]]] = {
    "name": (_name, str),
    **{field: (_long_text, str) for field in LONG_TEXT_FIELDS},
    **{field: (_short_text, str) for field in SHORT_TEXT_FIELDS},
    "alternate_greetings": (
        lambda v, p: _text_list(v, p, max_items=MAX_GREETINGS, max_chars=MAX_GREETING_CHARS),
        list,
    ),
    "group_only_greetings": (
        lambda v, p: _text_list(v, p, max_items=MAX_GREETINGS, max_chars=MAX_GREETING_CHARS),
        list,
    ),
    "tags": (lambda v, p: _text_list(v, p, max_items=MAX_TAGS, max_chars=MAX_TAG_CHARS), list),
    "source": (lambda v, p: _text_list(v, p, max_items=MAX_SOURCES, max_chars=MAX_SOURCE_CHARS), list),
    "extensions": (_object, dict),
    "character_book": (_book, lambda: None),
    "assets": (_assets, list),
    "creator_notes_multilingual": (_notes_multilingual, dict),
    "creation_date": (_date, lambda: None),
    "modification_date": (_date, lambda: None),
}


def card_data_check(data: Any, *, partial: bool = False) -> dict[str, Any]:
    """Check a V3 `data` object (an import's, or the browser editor's) and return a normalized copy.

    Known fields are checked for type and size; unknown fields are kept as they are (checked
    only to be plain JSON). The name is stripped and must not be empty. With partial=False
    every V3 field is present in the result (defaults: "" for texts, [] for lists, {} for
    objects, None for character_book and the dates) and the name is required; with
    partial=True (a PATCH) only the given keys are checked and returned.
    """
    if not isinstance(data, dict):
        raise _fail("data", f"must be an object, not {_json_type(data)}")
    _json_value_check(data, path="data", level=2)
    checked: dict[str, Any] = {}
    for key, value in data.items():
        field_check = _FIELD_CHECKS.get(key)
        checked[key] = field_check[0](value, f"data.{key}") if field_check else copy.deepcopy(value)
    if partial:
        return checked
    if "name" not in checked:
        raise _fail("data.name", "is required")
    for key, (_, default) in _FIELD_CHECKS.items():
        checked.setdefault(key, default())
    size = len(_json_dumps(checked))
    if size > MAX_CARD_JSON_BYTES:
        # So that whatever is stored can be exported and read back.
        raise _fail("data", f"the card is {size:,} bytes as JSON; at most {MAX_CARD_JSON_BYTES:,}", too_large=True)
    return checked


# --- Writing ------------------------------------------------------------------------------


def _card_object(*, spec: str, version: str, data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    card = dict(extra)
    # SillyTavern repeats the V1 fields at the top level of its V2 cards for old readers; a
    # card edited here would otherwise carry stale copies, so refresh those that are there.
    for key in V1_FIELDS:
        if key in card and key in data:
            card[key] = data[key]
    card["spec"] = spec
    card["spec_version"] = version
    card["data"] = {key: value for key, value in data.items() if not (key in OPTIONAL_NONE_FIELDS and value is None)}
    return card


def card_v3(*, data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The V3 card object: extra's fields, then spec, spec_version and data."""
    return _card_object(spec=SPEC_V3, version="3.0", data=data, extra=extra)


def card_v2(*, data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The V2 card object: as card_v3, less the data fields V2 does not have."""
    v2_data = {key: value for key, value in data.items() if key not in V3_ONLY_FIELDS}
    return _card_object(spec=SPEC_V2, version="2.0", data=v2_data, extra=extra)


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def card_png(*, data: dict[str, Any], extra: dict[str, Any], avatar: bytes | None) -> bytes:
    """A PNG card: the avatar (or a placeholder) with `chara` (V2) and `ccv3` (V3) tEXt chunks.

    Existing chara/ccv3 chunks in the avatar are dropped first, so a card never carries two.
    """
    if avatar is None:
        image = _placeholder_png(name=str(data.get("name", "")))
    else:
        # Avatars from card_read are clean already; anything else goes through Pillow, so no
        # metadata of the original file (EXIF, GPS, text) leaves with the card.
        image = avatar if _is_clean_png(avatar) else image_reencode(avatar)
    chunks = _png_chunks(image, field="avatar")
    kept = [(kind, body) for kind, body in chunks if _text_keyword(kind, body) not in ("chara", "ccv3")]
    cards = [
        (b"tEXt", b"chara\x00" + base64.b64encode(_json_dumps(card_v2(data=data, extra=extra)))),
        (b"tEXt", b"ccv3\x00" + base64.b64encode(_json_dumps(card_v3(data=data, extra=extra)))),
    ]
    out = bytearray(PNG_SIGNATURE)
    for kind, body in kept[:-1] + cards + kept[-1:]:  # _png_chunks ends with IEND
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return bytes(out)


def card_charx(*, data: dict[str, Any], extra: dict[str, Any], avatar: bytes | None) -> bytes:
    """A CHARX zip: card.json (V3) and, with an avatar, the avatar as the "main" icon asset.

    Embedded assets we do not carry are dropped from data.assets (their files aren't in the
    zip); remote and ccdefault: entries stay as they were.
    """
    assets = [
        asset
        for asset in data.get("assets") or []
        if not str(asset.get("uri", "")).startswith(EMBEDDED_URI_PREFIXES)
        and not (avatar is not None and asset.get("type") == "icon" and asset.get("name") == "main")
    ]
    png = None
    if avatar is not None:
        png = avatar if _is_clean_png(avatar) else image_reencode(avatar)
        icon = {"type": "icon", "uri": f"{EMBEDDED_URI_PREFIXES[0]}{CHARX_AVATAR_PATH}", "name": "main", "ext": "png"}
        assets = [icon, *assets]
    card = card_v3(data={**data, "assets": assets}, extra=extra)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed timestamp keeps exports of the same card byte-identical.
        archive.writestr(zipfile.ZipInfo("card.json", (1980, 1, 1, 0, 0, 0)), _json_dumps(card), zipfile.ZIP_DEFLATED)
        if png is not None:
            archive.writestr(zipfile.ZipInfo(CHARX_AVATAR_PATH, (1980, 1, 1, 0, 0, 0)), png, zipfile.ZIP_STORED)
    return buffer.getvalue()


def _is_clean_png(content: bytes) -> bool:
    if not content.startswith(PNG_SIGNATURE):
        return False
    try:
        return all(kind in (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND") for kind, _ in _png_chunks(content))
    except CardError:
        return False


def _placeholder_png(*, name: str) -> bytes:
    # A muted colour picked by the name, so that placeholder cards can be told apart.
    hue = (zlib.crc32(name.encode("utf-8", "replace")) % 360) / 360
    red, green, blue = (round(c * 255) for c in colorsys.hls_to_rgb(hue, 0.45, 0.35))
    out = io.BytesIO()
    Image.new("RGB", PLACEHOLDER_SIZE, (red, green, blue)).save(out, format="PNG")
    return out.getvalue()


# --- PNG ----------------------------------------------------------------------------------


def _png_chunks(content: bytes, *, field: str = "file") -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, data) chunks up to and including IEND; refuses a broken structure."""
    if not content.startswith(PNG_SIGNATURE):
        raise _fail(field, "not a PNG (bad signature)")
    chunks: list[tuple[bytes, bytes]] = []
    offset = len(PNG_SIGNATURE)
    while True:
        if len(chunks) >= MAX_PNG_CHUNKS:
            raise _fail(field, f"the PNG has more than {MAX_PNG_CHUNKS:,} chunks")
        if offset + 8 > len(content):
            raise _fail(field, "the PNG is truncated: it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", content, offset)
        shown = kind.decode("latin-1")
        if length > 0x7FFFFFFF or offset + 12 + length > len(content):
            raise _fail(field, f"the PNG is truncated: chunk {shown!r} at byte {offset:,} claims {length:,} bytes")
        body = content[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", content, offset + 8 + length)
        if crc != zlib.crc32(kind + body):
            raise _fail(field, f"the PNG is corrupt: chunk {shown!r} at byte {offset:,} fails its CRC check")
        chunks.append((kind, body))
        offset += 12 + length
        if kind == b"IEND":
            return chunks  # anything after IEND is not part of the image


def _text_keyword(kind: bytes, body: bytes) -> str | None:
    """The keyword of a tEXt chunk, lower-cased as SillyTavern compares it; None for other chunks."""
    if kind != b"tEXt" or b"\x00" not in body:
        return None
    return body.split(b"\x00", 1)[0].decode("latin-1").lower()


def _png_card_read(content: bytes) -> ParsedCard:
    chunks = _png_chunks(content)
    texts: dict[str, bytes] = {}
    for kind, body in chunks:
        keyword = _text_keyword(kind, body)
        if keyword in ("chara", "ccv3"):
            texts.setdefault(keyword, body.split(b"\x00", 1)[1])  # the first wins, as in SillyTavern
    # ccv3 is the newer card; when it is there but broken we refuse rather than silently read
    # the older chara copy, which may hold other (stale) data.
    keyword = "ccv3" if "ccv3" in texts else "chara" if "chara" in texts else None
    if keyword is None:
        raise _fail("file", "this PNG has no character card in it (no chara or ccv3 text chunk)")
    obj = _json_parse(_base64_decode(texts[keyword], origin=keyword), origin=keyword)
    try:
        card = _card_from_object(obj, origin=keyword)
    except CardError as exc:
        raise type(exc)(f"in the {keyword} chunk: {exc.message}", field=exc.field) from None
    # Pillow sees only the image's own chunks: the card text (megabytes, sometimes) is ours.
    image_only = [(kind, body) for kind, body in chunks if kind not in (b"tEXt", b"zTXt", b"iTXt")]
    image = bytearray(PNG_SIGNATURE)
    for kind, body in image_only:
        image += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return ParsedCard(data=card.data, extra=card.extra, source=card.source, avatar=image_reencode(bytes(image)))


_BASE64_WHITESPACE = re.compile(rb"[ \t\r\n\f\v]+")


def _base64_decode(text: bytes, *, origin: str) -> bytes:
    # Some writers wrap base64 at 76 columns or pad the chunk with newlines; nothing else is let through.
    compact = _BASE64_WHITESPACE.sub(b"", text)
    if len(compact) > (MAX_CARD_JSON_BYTES + 2) // 3 * 4:
        raise _fail(origin, f"the card JSON is over {MAX_CARD_JSON_BYTES:,} bytes", too_large=True)
    compact += b"=" * (-len(compact) % 4)  # some writers drop the padding
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(origin, "the chunk is not valid base64") from None


# --- CHARX --------------------------------------------------------------------------------


_DRIVE = re.compile(r"^[A-Za-z]:")


def _charx_read(content: bytes) -> ParsedCard:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError):
        raise _fail("file", "not a valid zip (CHARX) file") from None
    with archive:
        infos = archive.infolist()
        _charx_entries_check(infos)
        by_name = {info.orig_filename: info for info in infos}
        card_info = by_name.get("card.json")
        if card_info is None:
            raise _fail("file", "this CHARX has no card.json at its root")
        raw = _zip_read(archive, card_info, limit=MAX_CARD_JSON_BYTES, field="card.json")
        obj = _json_parse(raw, origin="card.json")
        try:
            card = _card_from_object(obj, origin="card.json")
        except CardError as exc:
            raise type(exc)(f"in card.json: {exc.message}", field=exc.field) from None
        avatar = None
        path = _charx_avatar_path(card.data.get("assets") or [])
        if path is not None and path in by_name:
            avatar = image_reencode(_zip_read(archive, by_name[path], limit=MAX_AVATAR_FILE_BYTES, field="avatar"))
    return ParsedCard(data=card.data, extra=card.extra, source=card.source, avatar=avatar)


def _charx_entries_check(infos: Iterable[zipfile.ZipInfo]) -> None:
    infos = list(infos)
    if len(infos) > MAX_CHARX_ENTRIES:
        raise _fail("file", f"the CHARX has {len(infos):,} entries; at most {MAX_CHARX_ENTRIES}")
    names: set[str] = set()
    total = 0
    for info in infos:
        name = info.orig_filename  # as stored: ZipInfo.filename is already altered on some platforms
        shown = _shorten(name).encode("unicode_escape").decode("ascii")
        parts = name.split("/")
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or "\x00" in name
            or _DRIVE.match(name)
            or ".." in parts
            or ":" in parts[0]
        ):
            raise _fail("file", f"the CHARX holds an unsafe entry name {shown!r}")
        if name in names:
            raise _fail("file", f"the CHARX holds {shown!r} twice")
        names.add(name)
        if info.flag_bits & 0x1:
            raise _fail("file", f"the CHARX entry {shown!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _fail("file", f"the CHARX entry {shown!r} uses an unsupported compression method")
        total += info.file_size
        if total > MAX_CHARX_UNCOMPRESSED_BYTES:
            raise _fail("file", f"the CHARX expands to more than {MAX_CHARX_UNCOMPRESSED_BYTES:,} bytes")
        if info.file_size > CHARX_RATIO_MIN_BYTES and info.file_size > MAX_CHARX_RATIO * max(info.compress_size, 1):
            raise _fail("file", f"the CHARX entry {shown!r} is compressed over {MAX_CHARX_RATIO} times (a zip bomb?)")


def _zip_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int, field: str) -> bytes:
    # The declared size is the writer's claim; read at most limit + 1 bytes whatever it says.
    try:
        with archive.open(info) as entry:
            data = entry.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError):
        raise _fail(field, f"the CHARX entry {info.orig_filename!r} can't be read (corrupt zip data)") from None
    if len(data) > limit:
        raise _fail(field, f"{info.orig_filename} is over {limit:,} bytes", too_large=True)
    return data


def _charx_avatar_path(assets: list[Any]) -> str | None:
    """The zip path of the avatar: the "main" icon, else the first icon; None unless embedded.

    ccdefault: means the app's default; http(s) and any other scheme are never fetched.
    """
    icons = [asset for asset in assets if isinstance(asset, dict) and asset.get("type") == "icon"]
    main = next((asset for asset in icons if asset.get("name") == "main"), icons[0] if icons else None)
    uri = main.get("uri") if main else None
    if not isinstance(uri, str):
        return None
    for prefix in EMBEDDED_URI_PREFIXES:
        if uri.startswith(prefix):
            return uri.removeprefix(prefix)
    return None


# --- Images -------------------------------------------------------------------------------


def image_reencode(content: bytes, *, field: str = "avatar") -> bytes:
    """Decode an untrusted image and return a clean PNG: RGB(A), longest side <= 1024, no metadata.

    The pixel count is checked from the header before anything is decoded. Image.MAX_IMAGE_PIXELS
    is left alone: it is process-wide, and other parts of the app decode images too; Pillow's
    own DecompressionBombError (far above our limit) is handled as the same refusal.
    """
    if not content:
        raise _fail(field, "the image is empty")
    try:
        image = Image.open(io.BytesIO(content), formats=AVATAR_FORMATS)
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _fail(
                field,
                f"the image is {width:,}x{height:,} pixels; at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels",
            )
        image.draft("RGB", (MAX_AVATAR_SIDE, MAX_AVATAR_SIDE))  # JPEG: decode at a reduced scale
        image.load()
        # The pixels as the camera meant them (the EXIF tag itself is dropped below); a
        # malformed EXIF block costs the orientation, not the avatar.
        with contextlib.suppress(Exception):
            image = ImageOps.exif_transpose(image)
        alpha = image.mode in ("RGBA", "LA", "PA") or image.has_transparency_data
        image = image.convert("RGBA" if alpha else "RGB")
        image.thumbnail((MAX_AVATAR_SIDE, MAX_AVATAR_SIDE), Image.Resampling.LANCZOS)
        # A fresh image from the pixels alone: no info, ICC profile, EXIF or text chunks survive.
        clean = Image.frombytes(image.mode, image.size, image.tobytes())
        out = io.BytesIO()
        clean.save(out, format="PNG", optimize=False)
    except CardError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _fail(
            field, f"the image has too many pixels; at most {MAX_IMAGE_PIXELS // 1_000_000:,} megapixels"
        ) from None
    except MemoryError:
        raise _fail(field, "the image is too large to decode") from None
    except Exception:
        # Pillow's decoders raise many types on hostile input (OSError, SyntaxError, ValueError,
        # struct.error, IndexError, ...); every one of them means "not an image we take".
        raise _fail(field, f"not a readable image ({', '.join(AVATAR_FORMATS)}), or a truncated one") from None
    return out.getvalue()
