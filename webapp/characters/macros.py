"""SillyTavern-style macros in character cards: `{{char}}`, `{{user}}`, `{{time}}`, `{{random:a,b}}`, ...

Cards written for SillyTavern use these in their description, greeting, system prompt and
lorebook, so a card reads as its author meant only if we expand them the same way.

Hand-written rather than borrowed: SillyTavern's implementation is a list of JavaScript regex
replacements run one after another, which re-expands text that an earlier macro produced (a
user named "{{char}}" turns into the character's name). Here expansion is one left-to-right
pass over the input: whatever a macro produces is output as-is and never scanned again, so a
name, a random item or the original prompt cannot smuggle in macros, and no input can
make expansion recurse. The scanner uses only `str.find`/`rfind` from a moving position,
so its work is linear in the input whatever the input is (no regex backtracking over the
whole text).

Differences from SillyTavern, on purpose:
- `{{original}}` expands once; later occurrences give "" (SillyTavern does the same), so a
  card cannot multiply a long default prompt.
- A malformed or out-of-bounds `{{roll:...}}` is left as written (SillyTavern gives "").
- `{{pick}}` depends on (seed, the macro's own text, which occurrence of that text it is),
  not on a hash of the whole field, so editing elsewhere in a card does not reshuffle picks.
- A comment `{{// ...}}` that holds a macro (`{{// {{user}} is the player}}`) is removed
  whole, as SillyTavern's later comment pass would after expanding the inner macro.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_CLOCK = frozenset({"time", "date", "weekday", "isotime", "isodate"})
_SIMPLE = frozenset({"char", "user", "original", "newline", "trim"} | _CLOCK)
# SillyTavern's own patterns: `random`/`pick`, an optional space, then `:` or `::`.
_LIST_MACRO = re.compile(r"(random|pick)\s?::?(.+)", re.IGNORECASE | re.DOTALL)
_ROLL_MACRO = re.compile(r"roll[ :](.+)", re.IGNORECASE | re.DOTALL)
# Digit counts are capped in the pattern so that int() never sees a huge number.
_ROLL_FORMULA = re.compile(r"(\d{0,3})d(\d{1,7})(?:([+-])(\d{1,7}))?", re.IGNORECASE | re.ASCII)
_ROLL_MAX_DICE = 100
_ROLL_MAX_SIDES = 1_000_000
_ROLL_MAX_MODIFIER = 1_000_000
_LEGACY = re.compile(r"<(user|bot|char)>", re.IGNORECASE)
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")

MacroName = str


@dataclass(frozen=True, kw_only=True)
class MacroContext:
    """What the macros of one prompt expand to.

    `now` must be timezone-aware; the caller picks the instant (e.g. the conversation's start,
    so that the system prompt, and with it the model's prompt cache, stays the same turn to
    turn). `seed` is stable per chat: `{{pick}}` depends only on it and the macro. `rng` drives
    `{{random}}` and `{{roll}}`; when None each expansion uses a Random seeded from `seed`, so
    the result is deterministic; callers that want fresh randomness each turn pass their own.
    """

    char: str
    user: str
    original: str = ""
    now: datetime
    seed: str
    rng: random.Random | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("MacroContext.now must be timezone-aware")


Token = tuple[Literal["text", "comment", "macro"], str]


def _comment_end(text: str, start: int) -> int | None:
    """Index of the `}}` that closes the comment opened at `start`, counting inner `{{ }}` pairs.

    None when the inner pairs never balance before the end of the text. Each of `{{` and
    `}}` is searched for again only once passed, so one call is linear in what it reads.
    """
    depth, pos = 1, start + 4
    next_open, next_close = text.find("{{", pos), text.find("}}", pos)
    while next_close >= 0:
        if 0 <= next_open < next_close:
            depth, pos = depth + 1, next_open + 2
        else:
            depth, pos = depth - 1, next_close + 2
            if depth == 0:
                return next_close
        if 0 <= next_open < pos:
            next_open = text.find("{{", pos)
        if next_close < pos:
            next_close = text.find("}}", pos)
    return None


def _tokens(text: str) -> Iterator[Token]:
    """Split `text` into literal runs, comments and macros (each with its braces), left to right.

    A macro is the innermost `{{` before the first `}}`, which is what SillyTavern's
    per-macro regexes match: in `{{a {{user}}` only `{{user}}` is a macro. Once no `}}`
    follows, no later `{{` can close either, so the rest is literal.
    """
    i = 0
    # A balanced comment's scan ends where the comment does and the next scan starts after
    # it, so those scans never overlap. An unbalanced one reads to the end of the text; after
    # one such, comments end at their first `}}` (SillyTavern's lazy match), else every later
    # comment could read to the end again and the pass would be quadratic.
    nesting = True
    while True:
        start = text.find("{{", i)
        if start < 0:
            break
        if text.startswith("//", start + 2):
            end = _comment_end(text, start) if nesting else None
            if end is None:
                nesting = False
                end = text.find("}}", start + 4)
        else:
            end = text.find("}}", start + 2)
            if end >= 0:
                start = text.rfind("{{", start, end)
        if end < 0:
            break
        if start > i:
            yield "text", text[i:start]
        raw = text[start : end + 2]
        yield ("comment" if raw.startswith("{{//") else "macro"), raw
        i = end + 2
    if i < len(text):
        yield "text", text[i:]


def _macro_parse(body: str) -> tuple[MacroName, str] | None:
    """(lower-case name, argument text) of a known macro body, or None for anything else."""
    lowered = body.lower()
    if lowered in _SIMPLE:
        return lowered, ""
    if match := _LIST_MACRO.fullmatch(body):
        return match.group(1).lower(), match.group(2)
    if (match := _ROLL_MACRO.fullmatch(body)) and _roll_parse(match.group(1)) is not None:
        return "roll", match.group(1)
    return None


def _roll_parse(formula: str) -> tuple[int, int, int] | None:
    """(dice, sides, modifier) of `dN`, `N`, `XdY`, `XdY+Z` or `XdY-Z` within bounds, else None."""
    formula = formula.strip()
    if formula.isascii() and formula.isdigit():
        formula = f"1d{formula}"
    match = _ROLL_FORMULA.fullmatch(formula)
    if match is None:
        return None
    dice = int(match.group(1) or "1")
    sides = int(match.group(2))
    modifier = int(match.group(4) or "0") * (-1 if match.group(3) == "-" else 1)
    if not (1 <= dice <= _ROLL_MAX_DICE and 1 <= sides <= _ROLL_MAX_SIDES and abs(modifier) <= _ROLL_MAX_MODIFIER):
        return None
    return dice, sides, modifier


def _list_items(arg: str) -> list[str]:
    # SillyTavern: with `::` items are kept as written; with commas they are trimmed, and
    # `\,` is a literal comma.
    if "::" in arg:
        return arg.split("::")
    return [item.strip().replace("\\,", ",") for item in _UNESCAPED_COMMA.split(arg)]


def _pick_index(*, seed: str, raw: str, occurrence: int, count: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{raw}\x00{occurrence}".encode()).digest()
    # 256 bits modulo a small count: the bias is far below anything observable.
    return int.from_bytes(digest, "big") % count


def _clock(name: MacroName, now: datetime) -> str:
    # Written out rather than strftime: %B, %A and %p follow the server's locale.
    if name == "time":
        return f"{now.hour % 12 or 12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"
    if name == "date":
        return f"{_MONTHS[now.month - 1]} {now.day}, {now.year}"
    if name == "weekday":
        return _WEEKDAYS[now.weekday()]
    if name == "isotime":
        return f"{now.hour:02d}:{now.minute:02d}"
    return f"{now.year:04d}-{now.month:02d}-{now.day:02d}"


class _Output:
    """The expanded pieces so far, with `{{trim}}`'s "drop the newlines around me"."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.skip_newlines = False

    def add(self, piece: str) -> None:
        if self.skip_newlines:
            piece = piece.lstrip("\r\n")
            if not piece:
                return
            self.skip_newlines = False
        self.parts.append(piece)

    def trim(self) -> None:
        while self.parts:
            last = self.parts[-1].rstrip("\r\n")
            if last:
                self.parts[-1] = last
                break
            self.parts.pop()
        self.skip_newlines = True


def macros_expand(text: str, ctx: MacroContext) -> str:
    """`text` with every known macro replaced, in one pass: macro output is never re-expanded.

    Unknown macros (`{{foo}}`) and malformed ones stay exactly as written; comments
    `{{// ...}}` are removed; the legacy `<USER>`, `<BOT>` and `<CHAR>` are names too.
    """
    rng = ctx.rng if ctx.rng is not None else random.Random(ctx.seed)  # noqa: S311 - game dice, not secrets
    out = _Output()
    occurrences: dict[str, int] = {}
    original_used = False

    def legacy(match: re.Match[str]) -> str:
        return ctx.user if match.group(1).lower() == "user" else ctx.char

    for kind, piece in _tokens(text):
        if kind == "text":
            out.add(_LEGACY.sub(legacy, piece))
            continue
        if kind == "comment":
            continue
        parsed = _macro_parse(piece[2:-2])
        if parsed is None:
            out.add(piece)
            continue
        name, arg = parsed
        if name == "char":
            out.add(ctx.char)
        elif name == "user":
            out.add(ctx.user)
        elif name == "original":
            out.add("" if original_used else ctx.original)
            original_used = True
        elif name in _CLOCK:
            out.add(_clock(name, ctx.now))
        elif name == "newline":
            out.add("\n")
        elif name == "trim":
            out.trim()
        elif name == "random":
            out.add(rng.choice(_list_items(arg)))
        elif name == "pick":
            items = _list_items(arg)
            occurrence = occurrences.get(piece, 0)
            occurrences[piece] = occurrence + 1
            out.add(items[_pick_index(seed=ctx.seed, raw=piece, occurrence=occurrence, count=len(items))])
        elif name == "roll":
            roll = _roll_parse(arg)
            assert roll is not None  # _macro_parse only accepts valid formulas
            dice, sides, modifier = roll
            out.add(str(sum(rng.randint(1, sides) for _ in range(dice)) + modifier))
    return "".join(out.parts)


def macros_in(text: str) -> set[MacroName]:
    """The lower-case names of the macros `text` would expand, e.g. {"user", "time", "random"}.

    Lets a caller tell whether a text depends on the clock ("time", "date", "weekday",
    "isotime", "isodate") or on randomness ("random", "roll"). Legacy `<USER>` counts as
    "user" and `<BOT>`/`<CHAR>` as "char"; comments, unknown and malformed macros are not
    listed, since they expand to nothing or to themselves.
    """
    names: set[MacroName] = set()
    for kind, piece in _tokens(text):
        if kind == "text":
            names.update("user" if m.group(1).lower() == "user" else "char" for m in _LEGACY.finditer(piece))
        elif kind == "macro" and (parsed := _macro_parse(piece[2:-2])) is not None:
            names.add(parsed[0])
    return names
