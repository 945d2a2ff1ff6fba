"""Lorebooks (world info): which entries a chat turn activates, as Character Card V2/V3 say.

A lorebook is a list of entries, each a piece of text with trigger keys. Before each turn the
recent messages are scanned; the entries whose keys occur there are added to the prompt,
within a token budget. Books come from a card's `data.character_book` or from standalone files
(Character Card V3 `lorebook_v3`, a bare `character_book`, or SillyTavern's world-info JSON).

Hand-written because no Python library implements the card spec's activation rules; the
SillyTavern code that defines them in practice is JavaScript inside its UI. Regex keys run on
RE2 (google-re2), not Python's `re`: RE2 matches in time linear in the text, so a card author's
hostile key such as `(a+)+$` cannot hang a turn. Patterns RE2 rejects (lookbehind,
backreferences) never match and never raise.

Decided here, where the spec is silent or SillyTavern differs:
- Keys are trimmed; a blank key never matches. Plain keys are substrings (SillyTavern's
  whole-word option is not implemented).
- A regex key is `/pattern/flags` (flags i, s and m honoured, others ignored) or a bare
  pattern. It is case-insensitive when the entry is not `case_sensitive` or the flag `i` is set.
  An entry's regex keys are scanned together as one RE2 set; an entry whose keys together
  need more than REGEX_MAX_MEM never matches, and neither does one whose scan outgrows RE2's
  DFA memory (RE2 sets have no slower fallback). Plain keys are scanned one by one: a book
  at the limits (2,000 entries of 100 keys) took about 4 s on 50,000 characters, so the
  scan text is the newest SCAN_TEXT_MAX_CHARS (12,000: four long messages) — about 1 s at
  the limits, milliseconds for real books.
- Recursion: each pass scans the content of the entries fired by the previous pass (of any
  book) for keys of entries not yet fired in books with `recursive_scanning`. A selective
  entry needs its primary and secondary key in the same text.
- The budget is applied after activation (an entry dropped by it may have triggered another
  by recursion). Over budget, the lowest priority goes first; ties drop the higher
  insertion_order first, then the later entry.
- SillyTavern world info: `position` 0 is before_char and 1 after_char; every other value
  (author's note top/bottom, @depth, example messages) becomes after_char, the nearest spot
  this prompt has. Its per-book settings (scan depth, budget, recursion) live in the user's
  settings, not the file, so they come in unset. `selectiveLogic` other than "AND ANY" is not
  implemented. SillyTavern treats any key written `/.../flags` as a regex; here an entry
  without `useRegex` is a regex entry when all its keys are written that way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2

from webapp.core.errors import ApplicationError

Position = Literal["before_char", "after_char"]

MAX_ENTRIES = 2_000
MAX_CONTENT_CHARS = 60_000
MAX_KEYS = 100
MAX_KEY_CHARS = 500
SCAN_TEXT_MAX_CHARS = 12_000  # the newest part of the scan text is kept: bounds the work per turn
REGEX_MAX_MEM = 2 << 20  # bytes RE2 may use for one entry's compiled keys

_REGEX_FLAGS = frozenset("ism")


class LorebookError(ApplicationError):
    """A file (or one of its entries) that is not a lorebook we can read."""

    status = 400
    code = "invalid_lorebook"


@dataclass(frozen=True)
class LoreEntry:
    uid: str  # the id from the file, else the entry's index (or SillyTavern's key) as str
    keys: tuple[str, ...]
    secondary_keys: tuple[str, ...]
    content: str
    enabled: bool = True
    insertion_order: int = 100
    case_sensitive: bool = False
    use_regex: bool = False
    constant: bool = False
    selective: bool = False
    priority: int = 10  # over token_budget, lower priorities are dropped first
    position: Position = "before_char"
    name: str = ""  # name or comment, for the trace shown to the user


@dataclass(frozen=True)
class Lorebook:
    name: str
    entries: tuple[LoreEntry, ...]
    scan_depth: int | None = None  # messages scanned; None: the caller's default
    token_budget: int | None = None
    recursive_scanning: bool = False


@dataclass(frozen=True)
class FiredEntry:
    entry: LoreEntry
    book: str  # the book's name
    tokens: int
    reason: str  # "constant", "key: <the key that matched>" or "recursion: <key>"


@dataclass(frozen=True)
class LoreResult:
    fired: tuple[FiredEntry, ...]  # kept, by insertion_order (ties: book order, then entry order)
    dropped: tuple[FiredEntry, ...]  # matched but over the token budget, same order
    tokens: int  # of the fired entries


# --- reading books --------------------------------------------------------------------------


class _Invalid(Exception):
    """One malformed value: `where` is its path below the entry or book being read."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _int_or_none(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int in Python but never a number in these files; JSON numbers may be 100.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(name, f"{name} must be a number")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise _Invalid(name, f"{name} must be a whole number")
    return int(value)


def _int(raw: Mapping[str, Any], name: str, default: int) -> int:
    value = _int_or_none(raw, name)
    return default if value is None else value


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name)
    if value is None:  # SillyTavern writes caseSensitive: null for "use the global setting"
        return default
    if not isinstance(value, bool):
        raise _Invalid(name, f"{name} must be true or false")
    return value


def _str(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(name, f"{name} must be a string")
    return value


def _keys(raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise _Invalid(name, f"{name} must be a list of strings")
    if len(value) > MAX_KEYS:
        raise _Invalid(name, f"at most {MAX_KEYS} keys")
    if any(len(key) > MAX_KEY_CHARS for key in value):
        raise _Invalid(name, f"a key is at most {MAX_KEY_CHARS} characters")
    return tuple(value)


def _content(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise _Invalid(name, f"{name} must be a string")
    if len(value) > MAX_CONTENT_CHARS:
        raise _Invalid(name, f"{name} is at most {MAX_CONTENT_CHARS} characters")
    return value


def _uid(value: Any, fallback: str) -> str:
    return str(value) if isinstance(value, int | str) and not isinstance(value, bool) and str(value) else fallback


def _entry_from_spec(raw: Any, fallback_uid: str) -> LoreEntry:
    """One entry of a V2/V3 `character_book`."""
    if not isinstance(raw, dict):
        raise _Invalid("", "an entry must be an object")
    position = raw.get("position")
    if position is not None and not isinstance(position, str):
        raise _Invalid("position", "position must be a string")
    return LoreEntry(
        uid=_uid(raw.get("id"), fallback_uid),
        keys=_keys(raw, "keys"),
        secondary_keys=_keys(raw, "secondary_keys"),
        content=_content(raw, "content"),
        enabled=_bool(raw, "enabled", True),
        insertion_order=_int(raw, "insertion_order", 100),
        case_sensitive=_bool(raw, "case_sensitive", False),
        use_regex=_bool(raw, "use_regex", False),
        constant=_bool(raw, "constant", False),
        selective=_bool(raw, "selective", False),
        priority=_int(raw, "priority", 10),
        # V3 allows more positions than before/after the character; after is the nearest.
        position="before_char" if position in (None, "before_char") else "after_char",
        name=_str(raw, "name") or _str(raw, "comment"),
    )


def _entry_from_sillytavern(raw: Any, fallback_uid: str) -> LoreEntry:
    """One entry of SillyTavern's world-info JSON (`key`, `keysecondary`, `order`, `disable`, ...)."""
    if not isinstance(raw, dict):
        raise _Invalid("", "an entry must be an object")
    keys = _keys(raw, "key")
    use_regex = raw.get("useRegex")
    if use_regex is None:
        stripped = [key.strip() for key in keys if key.strip()]
        use_regex = bool(stripped) and all(_js_regex(key) is not None for key in stripped)
    else:
        use_regex = _bool(raw, "useRegex", False)
    return LoreEntry(
        uid=_uid(raw.get("uid"), fallback_uid),
        keys=keys,
        secondary_keys=_keys(raw, "keysecondary"),
        content=_content(raw, "content"),
        enabled=not _bool(raw, "disable", False),
        insertion_order=_int(raw, "order", 100),
        case_sensitive=_bool(raw, "caseSensitive", False),
        use_regex=use_regex,
        constant=_bool(raw, "constant", False),
        selective=_bool(raw, "selective", False),
        position="before_char" if _int(raw, "position", 0) == 0 else "after_char",
        name=_str(raw, "comment"),
    )


def _entries_read(
    items: Iterable[tuple[str, Any]],
    *,
    parse: Callable[[Any, str], LoreEntry],
    path: str,
    strict: bool,
) -> tuple[LoreEntry, ...]:
    entries: list[LoreEntry] = []
    for label, raw in items:
        try:
            entries.append(parse(raw, label))
        except _Invalid as exc:
            if strict:
                field = f"{path}[{label}]" + (f".{exc.where}" if exc.where else "")
                raise LorebookError(f"{field}: {exc.message}", field=field) from None
    return tuple(entries)


def _count_or_none(raw: Mapping[str, Any], name: str) -> int | None:
    value = _int_or_none(raw, name)
    if value is not None and value < 0:
        raise _Invalid(name, f"{name} must not be negative")
    return value


def _book_settings(raw: Mapping[str, Any], *, path: str, strict: bool) -> dict[str, Any]:
    """The book-level fields of a `character_book`; in lenient mode a bad one keeps its default."""
    readers: dict[str, tuple[Callable[[], Any], Any]] = {
        "name": (lambda: _str(raw, "name"), ""),
        "scan_depth": (lambda: _count_or_none(raw, "scan_depth"), None),
        "token_budget": (lambda: _count_or_none(raw, "token_budget"), None),
        "recursive_scanning": (lambda: _bool(raw, "recursive_scanning", False), False),
    }
    settings: dict[str, Any] = {}
    for name, (read, default) in readers.items():
        try:
            settings[name] = read()
        except _Invalid as exc:
            if strict:
                field = f"{path}{exc.where}"
                raise LorebookError(f"{field}: {exc.message}", field=field) from None
            settings[name] = default
    return settings


def _book_read(raw: Mapping[str, Any], *, path: str, strict: bool) -> Lorebook:
    """A `character_book` object; `path` prefixes error fields ("" or "data.")."""
    entries = raw.get("entries")
    if not isinstance(entries, list):
        raise LorebookError("a lorebook needs a list of entries", field=f"{path}entries" if path else "file")
    if len(entries) > MAX_ENTRIES:
        if strict:
            raise LorebookError(f"a lorebook has at most {MAX_ENTRIES} entries", field=f"{path}entries")
        entries = entries[:MAX_ENTRIES]
    return Lorebook(
        entries=_entries_read(
            ((str(index), entry) for index, entry in enumerate(entries)),
            parse=_entry_from_spec,
            path=f"{path}entries",
            strict=strict,
        ),
        **_book_settings(raw, path=path, strict=strict),
    )


def lorebook_from_card(book: dict[str, Any]) -> Lorebook:
    """The lorebook of a card's `data.character_book`. Never raises: malformed entries, and
    entries past the limits, are skipped, malformed settings take their defaults, and anything
    that is not a book at all gives an empty one (the card itself was validated elsewhere)."""
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        name = book.get("name") if isinstance(book, dict) else None
        return Lorebook(name=name if isinstance(name, str) else "", entries=())
    return _book_read(book, path="", strict=False)


def lorebook_from_file(obj: Any) -> Lorebook:
    """A standalone lorebook file, parsed JSON: Character Card V3's `{"spec": "lorebook_v3",
    "data": {...}}`, a bare `character_book` `{"entries": [...]}`, or SillyTavern's world info
    `{"entries": {"0": {...}, ...}}`.

    Raises LorebookError (field "file", or the path of the bad value such as
    "entries[3].keys") for anything else, a malformed entry or one past the limits: at most
    2,000 entries, content up to 60,000 characters, up to 100 keys of 500 characters.
    """
    if not isinstance(obj, dict):
        raise LorebookError("not a lorebook: expected a JSON object", field="file")
    if "spec" in obj:
        if obj.get("spec") != "lorebook_v3":
            raise LorebookError(f"not a lorebook: spec is {str(obj.get('spec'))[:40]!r}", field="file")
        data = obj.get("data")
        if not isinstance(data, dict):
            raise LorebookError("a lorebook_v3 file needs a data object", field="data")
        return _book_read(data, path="data.", strict=True)
    entries = obj.get("entries")
    if isinstance(entries, list):
        return _book_read(obj, path="", strict=True)
    if isinstance(entries, dict):
        if len(entries) > MAX_ENTRIES:
            raise LorebookError(f"a lorebook has at most {MAX_ENTRIES} entries", field="entries")
        name = obj.get("name")
        return Lorebook(
            name=name if isinstance(name, str) else "",
            entries=_entries_read(
                ((str(key), entry) for key, entry in entries.items()),
                parse=_entry_from_sillytavern,
                path="entries",
                strict=True,
            ),
        )
    raise LorebookError("not a lorebook: no entries", field="file")


# --- matching -------------------------------------------------------------------------------


def _js_regex(key: str) -> tuple[str, str] | None:
    """(pattern, flags) of a key written `/pattern/flags`, else None."""
    if len(key) < 2 or not key.startswith("/"):
        return None
    last = key.rfind("/")
    flags = key[last + 1 :]
    if last == 0 or not flags.isascii() or not (flags.isalpha() or flags == ""):
        return None
    return key[1:last], flags


def _regex_options() -> re2.Options:
    options = re2.Options()
    if hasattr(options, "log_errors"):
        options.log_errors = False  # a bad pattern from a card is expected, not worth stderr
    # RE2's default is 8 MiB; compiled key sets are cached, so a book of keys built to be huge
    # could otherwise hold gigabytes.
    options.max_mem = REGEX_MAX_MEM
    return options


def _regex_pattern(key: str, *, case_sensitive: bool) -> str | None:
    """The RE2 pattern of one (trimmed) regex key with its flags inline, or None when empty."""
    parsed = _js_regex(key)
    pattern, flags = parsed if parsed is not None else (key, "")
    if not pattern:
        return None
    inline = "".join(sorted(flag for flag in set(flags) if flag in _REGEX_FLAGS))
    if not case_sensitive and "i" not in inline:
        inline += "i"
    return f"(?{inline}){pattern}" if inline else pattern


@functools.lru_cache(maxsize=256)
def _regex_set(keys: tuple[str, ...], case_sensitive: bool) -> tuple[Any, dict[int, str]] | None:
    """One RE2 Set of all of an entry's regex keys, and the key behind each set index.

    One scan of the text per entry rather than per key (measured: 100 keys on 50,000
    characters, 0.2 ms as a set against 18 ms key by key). RE2 parses each key on its own
    when it is added, so an invalid key is left out alone and cannot join its neighbours
    (`a)|(b`). None when no key is valid, or when the keys together outgrow REGEX_MAX_MEM.
    """
    regex_set = re2.Set.SearchSet(_regex_options())
    by_index: dict[int, str] = {}
    for key in keys:
        key = key.strip()
        pattern = _regex_pattern(key, case_sensitive=case_sensitive) if key else None
        if pattern is None:
            continue
        try:
            by_index[regex_set.Add(pattern)] = key
        except re2.error:
            continue
    if not by_index:
        return None
    try:
        regex_set.Compile()
    except re2.error:
        return None
    return regex_set, by_index


class _ScanText:
    """One text to scan, with the case-folded and UTF-8 forms made once, not once per key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None
        self._utf8: bytes | None = None

    def first_key(self, keys: tuple[str, ...], *, entry: LoreEntry) -> str | None:
        """The first of `keys` (trimmed) that occurs in the text under `entry`'s rules, or None."""
        if entry.use_regex:
            compiled = _regex_set(keys, entry.case_sensitive)
            if compiled is None:
                return None
            regex_set, by_index = compiled
            if self._utf8 is None:
                self._utf8 = self.text.encode()
            # re2 matches bytes as given, so the text is encoded once rather than per entry.
            matched = regex_set.Match(self._utf8)
            return by_index[min(matched)] if matched else None
        if entry.case_sensitive:
            haystack = self.text
        else:
            if self._lower is None:
                self._lower = self.text.lower()
            haystack = self._lower
        for key in keys:
            key = key.strip()
            if key and (key if entry.case_sensitive else key.lower()) in haystack:
                return key
        return None


def _entry_match(entry: LoreEntry, text: _ScanText) -> str | None:
    """The primary key by which `entry` fires on `text`, or None."""
    key = text.first_key(entry.keys, entry=entry)
    if key is None:
        return None
    if entry.selective and entry.secondary_keys and text.first_key(entry.secondary_keys, entry=entry) is None:
        return None
    return key


def _joined_tail(texts: Sequence[str]) -> str:
    """`texts` joined with newlines, cut to the newest SCAN_TEXT_MAX_CHARS; reads no further
    back than that, so a long history (or many long entries) costs no more than the cap."""
    parts: list[str] = []
    size = 0
    for text in reversed(texts):
        parts.append(text)
        size += len(text) + 1
        if size >= SCAN_TEXT_MAX_CHARS:
            break
    return "\n".join(reversed(parts))[-SCAN_TEXT_MAX_CHARS:]


def lore_activate(
    books: Sequence[Lorebook],
    *,
    messages: Sequence[str],
    count_tokens: Callable[[str], int],
    scan_depth: int = 4,
    token_budget: int = 512,
    max_recursion: int = 3,
) -> LoreResult:
    """The entries of `books` that the last messages activate, within the token budget.

    `messages` are the chat's texts, oldest first, the new user message last. `scan_depth`
    and `token_budget` are used when no book sets its own; when several books set a budget
    the smallest applies, to all of them together. Pure: no clock, no randomness.
    """
    # (book index, entry index) -> reason; dict order is firing order.
    fired: dict[tuple[int, int], str] = {}
    texts: dict[int, _ScanText] = {}
    newly: list[tuple[int, int]] = []
    for b, book in enumerate(books):
        depth = book.scan_depth if book.scan_depth is not None else scan_depth
        if depth not in texts:
            texts[depth] = _ScanText(_joined_tail(messages[-depth:] if depth > 0 else []))
        for e, entry in enumerate(book.entries):
            if not entry.enabled:
                continue
            reason = "constant" if entry.constant else None
            if reason is None and depth > 0 and (key := _entry_match(entry, texts[depth])) is not None:
                reason = f"key: {key}"
            if reason is not None:
                fired[(b, e)] = reason
                newly.append((b, e))

    for _ in range(max(0, max_recursion)):
        if not newly:
            break
        text = _ScanText(_joined_tail([books[b].entries[e].content for b, e in newly]))
        newly = []
        for b, book in enumerate(books):
            if not book.recursive_scanning:
                continue
            for e, entry in enumerate(book.entries):
                if not entry.enabled or (b, e) in fired:
                    continue
                if (key := _entry_match(entry, text)) is not None:
                    fired[(b, e)] = f"recursion: {key}"
                    newly.append((b, e))
        # The entries fired in this pass are scanned in the next, and only they: the earlier
        # ones' content has already been scanned for every entry still unfired.

    set_budgets = [book.token_budget for book in books if book.token_budget is not None]
    budget = min(set_budgets) if set_budgets else token_budget
    candidates = {
        place: FiredEntry(
            entry=books[place[0]].entries[place[1]],
            book=books[place[0]].name,
            tokens=count_tokens(books[place[0]].entries[place[1]].content),
            reason=reason,
        )
        for place, reason in fired.items()
    }
    total = sum(item.tokens for item in candidates.values())
    dropped: set[tuple[int, int]] = set()
    drop_order = sorted(
        candidates,
        key=lambda place: (
            candidates[place].entry.priority,
            -candidates[place].entry.insertion_order,
            -place[0],
            -place[1],
        ),
    )
    for place in drop_order:
        if total <= budget:
            break
        dropped.add(place)
        total -= candidates[place].tokens

    def insertion(place: tuple[int, int]) -> tuple[int, int, int]:
        return candidates[place].entry.insertion_order, place[0], place[1]

    ordered = sorted(candidates, key=insertion)
    return LoreResult(
        fired=tuple(candidates[place] for place in ordered if place not in dropped),
        dropped=tuple(candidates[place] for place in ordered if place in dropped),
        tokens=total,
    )


def lore_text(result: LoreResult, position: Position) -> str:
    """The contents of the kept entries at `position`, in insertion order, one per line."""
    return "\n".join(item.entry.content for item in result.fired if item.entry.position == position)
