"""Lorebook entries fire as the card spec says: keys in the scan depth, selective, regex on RE2,
recursion with a bound, a token budget by priority; and the three file formats read alike."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.characters.lorebook import (
    Lorebook,
    LorebookError,
    LoreEntry,
    LoreResult,
    lore_activate,
    lore_text,
    lorebook_from_card,
    lorebook_from_file,
)


def words(text: str) -> int:
    return len(text.split())


def entry(uid: str, *keys: str, **changes: Any) -> LoreEntry:
    values: dict[str, Any] = {"uid": uid, "keys": keys, "secondary_keys": (), "content": f"lore {uid}"}
    values.update(changes)
    if isinstance(values["secondary_keys"], list):
        values["secondary_keys"] = tuple(values["secondary_keys"])
    return LoreEntry(**values)


def book(*entries: LoreEntry, name: str = "book", **settings: Any) -> Lorebook:
    return Lorebook(name=name, entries=entries, **settings)


def chain(length: int) -> Lorebook:
    """Entry n fires on "link-n" and its content names link-(n+1): each triggers the next."""
    return book(
        *(entry(str(n), f"link-{n}", content=f"see link-{n + 1}") for n in range(length)),
        recursive_scanning=True,
    )


def activate(books: list[Lorebook], messages: list[str], **options: Any) -> LoreResult:
    return lore_activate(books, messages=messages, count_tokens=words, **options)


HOSTILE = "a" * 30_000 + "b"

ACTIVATION = [
    pytest.param([book(entry("a", "dragon"))], ["a dragon!"], {}, ["a"], id="key-in-last-message"),
    pytest.param([book(entry("a", "dragon"))], ["a cat"], {}, [], id="key-absent"),
    pytest.param(
        [book(entry("a", "dragon", enabled=False), entry("b", constant=True, enabled=False))],
        ["dragon"],
        {},
        [],
        id="disabled-never-fires",
    ),
    pytest.param([book(entry("c", constant=True))], ["nothing"], {}, ["c"], id="constant-fires-without-keys"),
    pytest.param([book(entry("c", constant=True))], [], {}, ["c"], id="constant-fires-without-messages"),
    pytest.param(
        [book(entry("a", "dragon"))], ["dragon", "b", "c", "d", "e"], {}, [], id="key-outside-default-scan-depth"
    ),
    pytest.param(
        [book(entry("a", "dragon"))], ["dragon", "b", "c", "d"], {}, ["a"], id="key-at-edge-of-default-scan-depth"
    ),
    pytest.param([book(entry("a", "dragon"))], ["dragon", "b", "c"], {"scan_depth": 2}, [], id="caller-scan-depth"),
    pytest.param(
        [book(entry("a", "dragon"), scan_depth=5)],
        ["dragon", "b", "c", "d", "e"],
        {"scan_depth": 1},
        ["a"],
        id="book-scan-depth-wins",
    ),
    pytest.param(
        [book(entry("a", "dragon"), entry("c", constant=True), scan_depth=0)],
        ["dragon"],
        {},
        ["c"],
        id="scan-depth-zero-only-constants",
    ),
    pytest.param(
        [book(entry("a", "dragon", secondary_keys=["cave"], selective=True))],
        ["the dragon in its cave"],
        {},
        ["a"],
        id="selective-secondary-matches",
    ),
    pytest.param(
        [book(entry("a", "dragon", secondary_keys=["cave"], selective=True))],
        ["the dragon in the sky"],
        {},
        [],
        id="selective-secondary-missing",
    ),
    pytest.param(
        [book(entry("a", "dragon", selective=True))], ["a dragon"], {}, ["a"], id="selective-without-secondary-keys"
    ),
    pytest.param(
        [book(entry("a", "dragon", secondary_keys=["cave"], selective=False))],
        ["a dragon"],
        {},
        ["a"],
        id="secondary-keys-ignored-unless-selective",
    ),
    pytest.param(
        [book(entry("a", "cave", secondary_keys=["dragon"], selective=True))],
        ["a cave"],
        {},
        [],
        id="secondary-key-alone-does-not-fire",
    ),
    pytest.param([book(entry("a", "Dragon"))], ["a DRAGON"], {}, ["a"], id="plain-case-insensitive-by-default"),
    pytest.param(
        [book(entry("a", "Dragon", case_sensitive=True))], ["a dragon"], {}, [], id="plain-case-sensitive-miss"
    ),
    pytest.param(
        [book(entry("a", "Dragon", case_sensitive=True))], ["a Dragon"], {}, ["a"], id="plain-case-sensitive-hit"
    ),
    pytest.param([book(entry("a", "cat"))], ["concatenate"], {}, ["a"], id="plain-keys-are-substrings"),
    pytest.param([book(entry("a", "", "   "))], ["anything"], {}, [], id="empty-keys-never-match"),
    pytest.param(
        [book(entry("a", "", "  ", "//", use_regex=True))], ["anything"], {}, [], id="empty-regex-keys-never-match"
    ),
    pytest.param([book(entry("a", " dragon "))], ["dragon"], {}, ["a"], id="keys-are-trimmed"),
    pytest.param([book(entry("a", "dr[ae]gon", use_regex=True))], ["a dregon"], {}, ["a"], id="regex-bare-pattern"),
    pytest.param(
        [book(entry("a", "dr[ae]gon", use_regex=False))],
        ["a dregon"],
        {},
        [],
        id="regex-syntax-is-plain-unless-use-regex",
    ),
    pytest.param(
        [book(entry("a", "/dra.on/i", use_regex=True, case_sensitive=True))],
        ["a DRAGON"],
        {},
        ["a"],
        id="regex-js-form-flag-i",
    ),
    pytest.param(
        [book(entry("a", "/dra.on/", use_regex=True, case_sensitive=True))],
        ["a DRAGON"],
        {},
        [],
        id="regex-case-sensitive-miss",
    ),
    pytest.param(
        [book(entry("a", "/dra.on/", use_regex=True))], ["a DRAGON"], {}, ["a"], id="regex-case-insensitive-entry"
    ),
    pytest.param(
        [book(entry("a", "/^dragon$/m", use_regex=True))], ["hello\ndragon\nbye"], {}, ["a"], id="regex-flag-m"
    ),
    pytest.param(
        [book(entry("a", "/^dragon$/", use_regex=True))], ["hello\ndragon\nbye"], {}, [], id="regex-without-flag-m"
    ),
    pytest.param([book(entry("a", "/a.b/s", use_regex=True))], ["a\nb"], {}, ["a"], id="regex-flag-s"),
    pytest.param([book(entry("a", "/a.b/", use_regex=True))], ["a\nb"], {}, [], id="regex-without-flag-s"),
    pytest.param(
        [book(entry("a", "/dragon/gu", use_regex=True))], ["dragon"], {}, ["a"], id="regex-other-flags-ignored"
    ),
    pytest.param([book(entry("a", "/drágon/i", use_regex=True))], ["DRÁGON"], {}, ["a"], id="regex-unicode-case"),
    pytest.param(
        [book(entry("a", "(?<=a)b", "(", r"(a)\1", "a)|(b", use_regex=True))],
        ["ab ( aa"],
        {},
        [],
        id="invalid-regex-never-matches",
    ),
    pytest.param(
        [book(entry("a", "(", "dragon", use_regex=True))], ["dragon"], {}, ["a"], id="invalid-key-does-not-stop-others"
    ),
    pytest.param([book(entry("a", "(a+)+$", use_regex=True))], [HOSTILE], {}, [], id="redos-pattern-completes"),
    pytest.param([book(entry("a", "(a+)+b", use_regex=True))], [HOSTILE], {}, ["a"], id="redos-shape-still-matches"),
    pytest.param(
        [book(entry("a", "alpha", content="now beta"), entry("b", "beta"), recursive_scanning=True)],
        ["alpha"],
        {},
        ["a", "b"],
        id="recursion-on",
    ),
    pytest.param(
        [book(entry("a", "alpha", content="now beta"), entry("b", "beta"), recursive_scanning=False)],
        ["alpha"],
        {},
        ["a"],
        id="recursion-off",
    ),
    pytest.param(
        [book(entry("c", constant=True, content="beta"), entry("b", "beta"), recursive_scanning=True)],
        ["nothing"],
        {},
        ["c", "b"],
        id="recursion-from-constant",
    ),
    pytest.param([chain(5)], ["link-0"], {"max_recursion": 3}, ["0", "1", "2", "3"], id="recursion-bounded"),
    pytest.param([chain(5)], ["link-0"], {"max_recursion": 0}, ["0"], id="recursion-zero-passes"),
    pytest.param([chain(5)], ["link-0"], {"max_recursion": 10}, ["0", "1", "2", "3", "4"], id="recursion-ends-itself"),
    pytest.param(
        [
            book(entry("a", "alpha", content="beta"), entry("b", "beta"), name="flat"),
            book(entry("c", "beta"), name="deep", recursive_scanning=True),
        ],
        ["alpha"],
        {},
        ["a", "c"],
        id="recursion-fires-only-in-recursive-books",
    ),
    pytest.param(
        [
            book(
                entry("a", "alpha", content="one two three four", priority=5),
                entry("b", "alpha", content="one two three four", priority=20),
                entry("c", "alpha", content="one two three four", priority=10),
            )
        ],
        ["alpha"],
        {"token_budget": 8},
        ["b", "c"],
        id="budget-drops-lowest-priority",
    ),
    pytest.param(
        [
            book(
                entry("a", "alpha", content="one two three four", insertion_order=1),
                entry("b", "alpha", content="one two three four", insertion_order=3),
                entry("c", "alpha", content="one two three four", insertion_order=2),
            )
        ],
        ["alpha"],
        {"token_budget": 8},
        ["a", "c"],
        id="budget-tie-drops-higher-insertion-order",
    ),
    pytest.param(
        [
            book(
                entry("a", "alpha", content="one two three four five six", priority=1),
                entry("b", "alpha", content="one two", priority=9),
            )
        ],
        ["alpha"],
        {"token_budget": 6},
        ["b"],
        id="budget-drops-low-priority-even-if-large",
    ),
    pytest.param(
        [book(entry("a", "alpha", content="one two"), entry("b", "alpha", content="three four"))],
        ["alpha"],
        {"token_budget": 4},
        ["a", "b"],
        id="budget-exactly-met",
    ),
    pytest.param(
        [
            book(entry("a", "alpha", content="one two three"), token_budget=5, name="tight"),
            book(entry("b", "alpha", content="one two three"), token_budget=100, name="loose"),
        ],
        ["alpha"],
        {"token_budget": 1000},
        ["a"],  # 6 tokens over 5: equal priority and order, so the later book's entry goes
        id="smallest-book-budget-wins",
    ),
    pytest.param(
        [
            book(
                entry("a", "alpha", insertion_order=30),
                entry("b", "alpha", insertion_order=10),
                entry("c", "alpha", insertion_order=20),
            ),
            book(entry("d", "alpha", insertion_order=20), entry("e", "alpha", insertion_order=10)),
        ],
        ["alpha"],
        {},
        ["b", "e", "c", "d", "a"],
        id="ordered-by-insertion-order-then-book-then-entry",
    ),
    pytest.param(
        [book(entry("a", "dragon"))], ["dragon " + "x" * 12_000], {}, [], id="scan-text-capped-to-newest-12000"
    ),
    pytest.param([book(entry("a", "dragon"))], ["x" * 60_000 + " dragon"], {}, ["a"], id="newest-text-kept-under-cap"),
]


@pytest.mark.parametrize(("books", "messages", "options", "expected"), ACTIVATION)
def test_lore_activate(
    books: list[Lorebook], messages: list[str], options: dict[str, Any], expected: list[str]
) -> None:
    result = activate(books, messages, **options)
    assert [item.entry.uid for item in result.fired] == expected
    assert result.tokens == sum(item.tokens for item in result.fired)


def test_fired_entries_say_why() -> None:
    books = [
        book(
            entry("c", constant=True, content="one"),
            entry("k", "Dragon", content="two beta"),
            entry("r", "beta", content="three"),
            name="World",
            recursive_scanning=True,
        )
    ]
    result = activate(books, ["a dragon"])
    assert [(item.entry.uid, item.book, item.reason, item.tokens) for item in result.fired] == [
        ("c", "World", "constant", 1),
        ("k", "World", "key: Dragon", 2),
        ("r", "World", "recursion: beta", 1),
    ]


def test_regex_reason_is_the_first_matching_key() -> None:
    books = [book(entry("a", "(", "/w.rm/", "/dra.on/i", "/DRAGON/", use_regex=True))]
    result = activate(books, ["a dragon, not a worm"])
    assert [item.reason for item in result.fired] == ["key: /w.rm/"]


def test_many_regex_keys_per_entry() -> None:
    # 300 entries of 100 distinct regex keys each (one RE2 set per entry); each entry's
    # last key matches only its own marker, and the reason names that key.
    books = [
        book(
            *(
                entry(str(n), *(f"/e{n}k{m}[0-9]zz/" for m in range(99)), f"/mark-{n}-/", use_regex=True)
                for n in range(300)
            )
        )
    ]
    messages = ["y" * 40_000, " ".join(f"mark-{n}-" for n in range(0, 300, 7))]
    result = activate(books, messages, token_budget=10_000)
    assert [(item.entry.uid, item.reason) for item in result.fired] == [
        (str(n), f"key: /mark-{n}-/") for n in range(0, 300, 7)
    ]


def test_dropped_entries_are_reported_and_not_counted() -> None:
    books = [
        book(
            entry("low", "alpha", content="one two three", priority=1),
            entry("high", "alpha", content="one two three", priority=50),
        )
    ]
    result = activate(books, ["alpha"], token_budget=4)
    assert [item.entry.uid for item in result.fired] == ["high"]
    assert [item.entry.uid for item in result.dropped] == ["low"]
    assert result.tokens == 3


def test_scan_text_joins_messages_with_newlines() -> None:
    books = [book(entry("a", "/one\\ntwo/", use_regex=True))]
    assert [item.entry.uid for item in activate(books, ["one", "two"]).fired] == ["a"]


def test_lore_text_by_position() -> None:
    books = [
        book(
            entry("a", "alpha", content="first", insertion_order=2),
            entry("b", "alpha", content="after", position="after_char"),
            entry("c", "alpha", content="zeroth", insertion_order=1),
        )
    ]
    result = activate(books, ["alpha"])
    assert lore_text(result, "before_char") == "zeroth\nfirst"
    assert lore_text(result, "after_char") == "after"


def test_no_books_no_lore() -> None:
    result = activate([], ["alpha"])
    assert result == LoreResult(fired=(), dropped=(), tokens=0)
    assert lore_text(result, "before_char") == ""


# --- files ----------------------------------------------------------------------------------

SPEC_ENTRY: dict[str, Any] = {
    "keys": ["dragon", "wyrm"],
    "content": "Dragons sleep on gold.",
    "extensions": {},
    "enabled": True,
    "insertion_order": 5,
    "case_sensitive": True,
    "name": "Dragons",
    "priority": 3,
    "id": 7,
    "selective": True,
    "secondary_keys": ["gold"],
    "constant": False,
    "position": "after_char",
    "use_regex": False,
}
SPEC_EXPECTED = LoreEntry(
    uid="7",
    keys=("dragon", "wyrm"),
    secondary_keys=("gold",),
    content="Dragons sleep on gold.",
    enabled=True,
    insertion_order=5,
    case_sensitive=True,
    use_regex=False,
    constant=False,
    selective=True,
    priority=3,
    position="after_char",
    name="Dragons",
)
MINIMAL_EXPECTED = LoreEntry(uid="1", keys=("elf",), secondary_keys=(), content="Elves are tall.")
BOOK_DATA: dict[str, Any] = {
    "name": "Bestiary",
    "scan_depth": 6,
    "token_budget": 300,
    "recursive_scanning": True,
    "extensions": {},
    "entries": [SPEC_ENTRY, {"keys": ["elf"], "content": "Elves are tall.", "extensions": {}}],
}
SILLYTAVERN: dict[str, Any] = {
    "name": "Bestiary",
    "entries": {
        "0": {
            "uid": 0,
            "key": ["dragon"],
            "keysecondary": ["gold"],
            "content": "Dragons sleep on gold.",
            "comment": "Dragons",
            "constant": False,
            "selective": True,
            "order": 5,
            "position": 0,
            "disable": False,
            "caseSensitive": None,
            "excludeRecursion": False,
            "depth": 4,
        },
        "1": {"uid": 1, "key": ["elf"], "content": "Elves.", "position": 1, "disable": True, "caseSensitive": True},
        "2": {"uid": 2, "key": ["x"], "content": "At depth.", "position": 4, "constant": True},
        "3": {"uid": 3, "key": ["/dra.on/i", "/wyrm/"], "content": "Regex keys.", "position": 2},
        "4": {"key": ["/dra.on/i", "plain"], "content": "Mixed keys.", "useRegex": False},
    },
}


def test_file_lorebook_v3() -> None:
    parsed = lorebook_from_file({"spec": "lorebook_v3", "data": BOOK_DATA})
    assert parsed == Lorebook(
        name="Bestiary",
        entries=(SPEC_EXPECTED, MINIMAL_EXPECTED),
        scan_depth=6,
        token_budget=300,
        recursive_scanning=True,
    )


def test_file_bare_character_book() -> None:
    parsed = lorebook_from_file(BOOK_DATA)
    assert parsed.entries == (SPEC_EXPECTED, MINIMAL_EXPECTED)
    assert (parsed.name, parsed.scan_depth, parsed.token_budget, parsed.recursive_scanning) == (
        "Bestiary",
        6,
        300,
        True,
    )


def test_file_bare_character_book_defaults() -> None:
    parsed = lorebook_from_file({"entries": [{"keys": ["elf"], "content": "Elves are tall."}]})
    assert parsed == Lorebook(
        name="", entries=(LoreEntry(uid="0", keys=("elf",), secondary_keys=(), content="Elves are tall."),)
    )


def test_file_sillytavern_world_info() -> None:
    parsed = lorebook_from_file(SILLYTAVERN)
    assert parsed.name == "Bestiary"
    assert (parsed.scan_depth, parsed.token_budget, parsed.recursive_scanning) == (None, None, False)
    first, disabled, at_depth, regex, mixed = parsed.entries
    assert first == LoreEntry(
        uid="0",
        keys=("dragon",),
        secondary_keys=("gold",),
        content="Dragons sleep on gold.",
        insertion_order=5,
        selective=True,
        name="Dragons",
        position="before_char",
    )
    assert (disabled.uid, disabled.enabled, disabled.case_sensitive, disabled.position) == (
        "1",
        False,
        True,
        "after_char",
    )
    assert (at_depth.position, at_depth.constant) == ("after_char", True)
    assert (regex.use_regex, regex.position) == (True, "after_char")
    assert (mixed.uid, mixed.use_regex) == ("4", False)


def test_sillytavern_book_activates() -> None:
    result = activate([lorebook_from_file(SILLYTAVERN)], ["the DRAGON and its gold"])
    assert [item.entry.uid for item in result.fired] == ["0", "2", "3"]


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        pytest.param([], "file", id="not-an-object"),
        pytest.param("entries", "file", id="a-string"),
        pytest.param({}, "file", id="no-entries"),
        pytest.param({"entries": 3}, "file", id="entries-not-a-collection"),
        pytest.param({"spec": "chara_card_v2", "data": {"name": "A card"}}, "file", id="a-character-card"),
        pytest.param({"spec": "lorebook_v3", "data": []}, "data", id="v3-without-data"),
        pytest.param({"spec": "lorebook_v3", "data": {"entries": {}}}, "data.entries", id="v3-entries-not-a-list"),
        pytest.param({"entries": ["x"]}, "entries[0]", id="entry-not-an-object"),
        pytest.param({"entries": [{"keys": "dragon", "content": "x"}]}, "entries[0].keys", id="keys-not-a-list"),
        pytest.param({"entries": [{"keys": [1], "content": "x"}]}, "entries[0].keys", id="key-not-a-string"),
        pytest.param({"entries": [{"keys": ["a"]}]}, "entries[0].content", id="content-missing"),
        pytest.param(
            {"entries": [{"keys": ["a"], "content": "x"}, {"keys": ["a"], "content": "x", "enabled": "yes"}]},
            "entries[1].enabled",
            id="enabled-not-a-bool",
        ),
        pytest.param(
            {"entries": [{"keys": ["a"], "content": "x", "insertion_order": True}]},
            "entries[0].insertion_order",
            id="order-is-a-bool",
        ),
        pytest.param(
            {"entries": [{"keys": ["a"], "content": "x", "priority": 1.5}]},
            "entries[0].priority",
            id="priority-fraction",
        ),
        pytest.param(
            {"entries": [{"keys": ["a"], "content": "x", "position": 1}]},
            "entries[0].position",
            id="position-not-a-string",
        ),
        pytest.param(
            {"entries": [{"keys": ["a"], "content": "x" * 60_001}]}, "entries[0].content", id="content-too-long"
        ),
        pytest.param({"entries": [{"keys": ["a"] * 101, "content": "x"}]}, "entries[0].keys", id="too-many-keys"),
        pytest.param(
            {"entries": [{"keys": ["a"], "secondary_keys": ["b" * 501], "content": "x"}]},
            "entries[0].secondary_keys",
            id="key-too-long",
        ),
        pytest.param({"entries": [{"keys": ["a"], "content": "x"}] * 2_001}, "entries", id="too-many-entries"),
        pytest.param(
            {"entries": {str(n): {"key": ["a"], "content": "x"} for n in range(2_001)}},
            "entries",
            id="sillytavern-too-many-entries",
        ),
        pytest.param(
            {"entries": {"5": {"key": ["a"], "content": 3}}},
            "entries[5].content",
            id="sillytavern-content-not-a-string",
        ),
        pytest.param(
            {"entries": {"0": {"key": ["a"], "content": "x", "useRegex": "yes"}}},
            "entries[0].useRegex",
            id="sillytavern-use-regex-not-a-bool",
        ),
        pytest.param({"entries": [], "scan_depth": -1}, "scan_depth", id="negative-scan-depth"),
        pytest.param({"entries": [], "token_budget": "lots"}, "token_budget", id="budget-not-a-number"),
        pytest.param(
            {"spec": "lorebook_v3", "data": {"entries": [], "recursive_scanning": 1}},
            "data.recursive_scanning",
            id="v3-recursion-not-a-bool",
        ),
    ],
)
def test_file_errors(obj: Any, field: str) -> None:
    with pytest.raises(LorebookError) as caught:
        lorebook_from_file(obj)
    assert (caught.value.status, caught.value.code, caught.value.field) == (400, "invalid_lorebook", field)


def test_file_at_the_limits() -> None:
    entries = [{"keys": ["k" * 500] * 100, "content": "x" * 60_000}] * 2_000
    assert len(lorebook_from_file({"entries": entries}).entries) == 2_000


def test_card_book_skips_malformed_entries() -> None:
    parsed = lorebook_from_card(
        {
            "name": "Card lore",
            "scan_depth": "deep",
            "token_budget": 50,
            "entries": [
                {"keys": ["a"], "content": "good", "extensions": {}},
                "not an entry",
                {"keys": "a", "content": "keys not a list"},
                {"keys": ["a"], "content": "x" * 60_001},
                {"keys": ["b"], "content": "also good", "enabled": False, "id": 12},
            ],
        }
    )
    assert parsed == Lorebook(
        name="Card lore",
        entries=(
            LoreEntry(uid="0", keys=("a",), secondary_keys=(), content="good"),
            LoreEntry(uid="12", keys=("b",), secondary_keys=(), content="also good", enabled=False),
        ),
        scan_depth=None,
        token_budget=50,
    )


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="a-list"),
        pytest.param({"name": "x"}, id="no-entries"),
        pytest.param({"entries": {"0": {}}}, id="entries-not-a-list"),
    ],
)
def test_card_book_not_a_book_is_empty(raw: Any) -> None:
    assert lorebook_from_card(raw).entries == ()


def test_card_book_keeps_the_first_2000_entries() -> None:
    entries = [{"keys": ["a"], "content": str(n)} for n in range(2_005)]
    parsed = lorebook_from_card({"entries": entries})
    assert len(parsed.entries) == 2_000
    assert parsed.entries[-1].content == "1999"
