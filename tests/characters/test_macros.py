"""Card macros expand as SillyTavern's do, in one pass: macro output is never expanded again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from webapp.characters.macros import MacroContext, macros_expand, macros_in

# A Monday afternoon, in a zone that is not UTC so a conversion would show.
NOW = datetime(2026, 11, 30, 15, 7, tzinfo=timezone(timedelta(hours=9)))


def context(**changes: object) -> MacroContext:
    values: dict[str, object] = {
        "char": "Aria",
        "user": "Bob",
        "original": "Be helpful.",
        "now": NOW,
        "seed": "chat-1",
    }
    values.update(changes)
    return MacroContext(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{{char}} greets {{user}}.", "Aria greets Bob.", id="char-and-user"),
        pytest.param("{{Char}} {{CHAR}} {{uSeR}}", "Aria Aria Bob", id="names-case-insensitive"),
        pytest.param("{{original}} Stay in character.", "Be helpful. Stay in character.", id="original"),
        pytest.param("[{{original}}|{{original}}]", "[Be helpful.|]", id="original-only-once"),
        pytest.param("{{time}}", "3:07 PM", id="time"),
        pytest.param("{{date}}", "November 30, 2026", id="date"),
        pytest.param("{{weekday}}", "Monday", id="weekday"),
        pytest.param("{{isotime}}", "15:07", id="isotime"),
        pytest.param("{{isodate}}", "2026-11-30", id="isodate"),
        pytest.param("{{TIME}} {{IsoDate}}", "3:07 PM 2026-11-30", id="clock-case-insensitive"),
        pytest.param("a{{newline}}b", "a\nb", id="newline"),
        pytest.param("a\n\n{{trim}}\n\nb", "ab", id="trim-removes-surrounding-newlines"),
        pytest.param("a {{trim}} b", "a  b", id="trim-keeps-spaces"),
        pytest.param("a{{// a note for card authors}}b", "ab", id="comment"),
        pytest.param("a{{// line one\nline two\n}}b", "ab", id="comment-multi-line"),
        pytest.param("a{{// {{user}} is the player}}b", "ab", id="comment-holding-a-macro"),
        pytest.param("<USER> meets <BOT> and <char>", "Bob meets Aria and Aria", id="legacy-tags"),
        pytest.param("{{foo}} {{char }} {{}}", "{{foo}} {{char }} {{}}", id="unknown-kept"),
        pytest.param("{{foo:{{user}}}}", "{{foo:Bob}}", id="inner-macro-of-unknown"),
        pytest.param("{{{user}}}", "{Bob}", id="triple-braces"),
        pytest.param("{{user", "{{user", id="unclosed"),
        pytest.param(
            "{{roll:0}} {{roll:1d0}} {{roll:2x6}}", "{{roll:0}} {{roll:1d0}} {{roll:2x6}}", id="roll-malformed"
        ),
        pytest.param("{{roll:101d6}}", "{{roll:101d6}}", id="roll-too-many-dice"),
        pytest.param("{{roll:d1000001}}", "{{roll:d1000001}}", id="roll-too-many-sides"),
        pytest.param("{{roll:1d6+1000001}}", "{{roll:1d6+1000001}}", id="roll-modifier-too-big"),
        pytest.param("{{roll:99999999999999999999}}", "{{roll:99999999999999999999}}", id="roll-huge-number"),
        pytest.param("{{roll:d1}} {{roll:3d1+2}} {{roll:1d1-5}}", "1 5 -4", id="roll-one-sided"),
        pytest.param("{{random:}} {{pick}}", "{{random:}} {{pick}}", id="lists-need-items"),
        pytest.param("{{random:only}}", "only", id="random-one-item"),
        pytest.param("{{random::solo }}", "solo", id="random-double-colon-one-item"),
        pytest.param("{{random:a\\,b}}", "a,b", id="random-escaped-comma"),
    ],
)
def test_macros_expand(text: str, expected: str) -> None:
    assert macros_expand(text, context()) == expected


@pytest.mark.parametrize(
    ("user", "char", "text", "expected"),
    [
        pytest.param("{{char}}", "Aria", "Hi {{user}}", "Hi {{char}}", id="user-named-like-a-macro"),
        pytest.param("Bob", "{{user}}{{time}}", "{{char}}", "{{user}}{{time}}", id="char-named-like-macros"),
        pytest.param("<BOT>", "Aria", "{{user}}", "<BOT>", id="user-named-like-a-legacy-tag"),
        pytest.param("{{random:x,y}}", "Aria", "<USER>", "{{random:x,y}}", id="legacy-tag-output-not-expanded"),
    ],
)
def test_macro_output_is_not_expanded_again(user: str, char: str, text: str, expected: str) -> None:
    assert macros_expand(text, context(user=user, char=char)) == expected


def test_original_output_is_not_expanded_again() -> None:
    assert macros_expand("{{original}}", context(original="{{user}} <USER>")) == "{{user}} <USER>"


def test_original_empty_gives_nothing() -> None:
    assert macros_expand("[{{original}}]", context(original="")) == "[]"


def test_random_item_is_not_expanded_again() -> None:
    assert macros_expand("{{random:<USER>,<BOT>}}", context()) in {"<USER>", "<BOT>"}


@pytest.mark.parametrize(
    ("text", "items"),
    [
        pytest.param("{{random:a, b ,c}}", ["a", "b", "c"], id="comma-form-trimmed"),
        pytest.param("{{random::a :: b::c}}", ["a ", " b", "c"], id="double-colon-form-kept-as-written"),
        pytest.param("{{RANDOM:x,y}}", ["x", "y"], id="case-insensitive"),
        pytest.param("{{random: one\\, two , three}}", ["one, two", "three"], id="escaped-comma"),
    ],
)
def test_random_uses_the_given_rng(text: str, items: list[str]) -> None:
    # The same seeded Random, asked the same question, must give the same answer.
    expected_rng = random.Random(7)
    expected = [expected_rng.choice(items) for _ in range(5)]
    rng = random.Random(7)
    got = [macros_expand(text, context(rng=rng)) for _ in range(5)]
    assert got == expected


def test_random_without_rng_is_seeded_from_the_chat_seed() -> None:
    text = "{{random:a,b,c,d,e,f,g,h}} {{roll:d1000}}"
    expected_rng = random.Random("chat-1")
    expected = f"{expected_rng.choice(list('abcdefgh'))} {expected_rng.randint(1, 1000)}"
    assert macros_expand(text, context()) == expected
    assert macros_expand(text, context()) == expected


def test_pick_is_stable_for_a_seed() -> None:
    text = "{{pick:a,b,c,d,e,f,g,h}} and {{pick::1::2::3::4::5::6::7::8}}"
    first = macros_expand(text, context(seed="chat-42"))
    # The rng does not move picks; only the seed does.
    for rng_seed in range(10):
        assert macros_expand(text, context(seed="chat-42", rng=random.Random(rng_seed))) == first


def test_pick_differs_between_seeds() -> None:
    text = "{{pick:a,b,c,d,e,f,g,h}}"
    picks = {macros_expand(text, context(seed=f"chat-{n}")) for n in range(20)}
    assert len(picks) > 1
    assert picks <= set("abcdefgh")


def test_pick_depends_on_the_occurrence() -> None:
    # Twenty copies of the same macro in one text: by position they are not all the same.
    text = " ".join(["{{pick:a,b,c,d,e,f,g,h}}"] * 20)
    assert len(set(macros_expand(text, context()).split())) > 1


def test_pick_does_not_move_when_other_text_changes() -> None:
    before = macros_expand("Intro. {{pick:a,b,c,d,e,f,g,h}}", context())
    after = macros_expand("A longer, edited intro! {{user}} {{pick:a,b,c,d,e,f,g,h}}", context())
    assert before.split()[-1] == after.split()[-1]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        pytest.param("{{roll:d6}}", 1, 6, id="dN"),
        pytest.param("{{roll:20}}", 1, 20, id="N"),
        pytest.param("{{roll 20}}", 1, 20, id="space-separator"),
        pytest.param("{{ROLL:3d4}}", 3, 12, id="XdY"),
        pytest.param("{{roll:2d6+3}}", 5, 15, id="XdY+Z"),
        pytest.param("{{roll:2D6-3}}", -1, 9, id="XdY-Z"),
        pytest.param("{{roll:100d1000000+1000000}}", 1_000_100, 101_000_000, id="at-the-bounds"),
    ],
)
def test_roll_stays_in_bounds(text: str, low: int, high: int) -> None:
    rng = random.Random(3)
    results = [int(macros_expand(text, context(rng=rng))) for _ in range(300)]
    assert all(low <= result <= high for result in results)
    assert len(set(results)) > 1


def test_roll_reaches_both_ends() -> None:
    rng = random.Random(5)
    results = {int(macros_expand("{{roll:d6}}", context(rng=rng))) for _ in range(500)}
    assert results == {1, 2, 3, 4, 5, 6}


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        context(now=datetime(2026, 11, 30, 15, 7))  # naive on purpose


@pytest.mark.parametrize(
    ("now", "time", "date", "weekday"),
    [
        pytest.param(datetime(2026, 1, 5, 0, 0, tzinfo=UTC), "12:00 AM", "January 5, 2026", "Monday", id="midnight"),
        pytest.param(datetime(2026, 3, 1, 12, 30, tzinfo=UTC), "12:30 PM", "March 1, 2026", "Sunday", id="noon"),
        pytest.param(datetime(2026, 7, 4, 9, 5, tzinfo=UTC), "9:05 AM", "July 4, 2026", "Saturday", id="morning"),
    ],
)
def test_clock_formats(now: datetime, time: str, date: str, weekday: str) -> None:
    assert macros_expand("{{time}}|{{date}}|{{weekday}}", context(now=now)) == f"{time}|{date}|{weekday}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{{" * 100_000, id="only-openers"),
        pytest.param("{{// {{ }}" * 20_000, id="unbalanced-comments"),
        pytest.param("{{//" * 50_000 + "}}", id="comment-openers"),
        pytest.param("{{x}}" * 40_000, id="many-unknown-macros"),
        pytest.param("{{" * 50_000 + "}}" * 50_000, id="nested-openers"),
        pytest.param("{{random:" + "a," * 100_000 + "}}", id="long-list"),
        pytest.param("<USER" * 40_000, id="legacy-prefixes"),
    ],
)
def test_huge_hostile_input_completes(text: str) -> None:
    assert len(text) >= 200_000
    result = macros_expand(text, context())
    assert isinstance(result, str)
    macros_in(text)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("Hello {{User}}, it is {{time}}. {{random:a,b}}", {"user", "time", "random"}, id="mixed"),
        pytest.param("<BOT> and <user>", {"char", "user"}, id="legacy"),
        pytest.param("{{pick::a::b}} {{roll:d20}} {{isodate}}", {"pick", "roll", "isodate"}, id="pick-roll-date"),
        pytest.param("{{foo}} {{roll:0d0}} {{// {{time}} }}", set(), id="unknown-malformed-comment-not-listed"),
        pytest.param("plain text", set(), id="none"),
        pytest.param("{{original}}{{newline}}{{trim}}{{char}}", {"original", "newline", "trim", "char"}, id="others"),
    ],
)
def test_macros_in(text: str, names: set[str]) -> None:
    assert macros_in(text) == names
