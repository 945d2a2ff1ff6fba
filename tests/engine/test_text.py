"""TextStream: token bytes in, displayable text out, cut at stop strings."""

from __future__ import annotations

import pytest

from webapp.engine.text import TextStream


def push_all(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.push(piece) for piece in pieces]


def test_hangul_syllable_split_across_pieces_is_released_only_when_complete() -> None:
    syllable = "한".encode()
    assert len(syllable) == 3
    stream = TextStream()

    assert push_all(stream, [b"a" + syllable[:1], syllable[1:2], syllable[2:] + b"b"]) == ["a", "", "한b"]
    assert stream.flush() == ""


def test_every_byte_split_of_korean_text_round_trips() -> None:
    text = "안녕하세요, 서연이에요."
    stream = TextStream()

    released = push_all(stream, [bytes([b]) for b in text.encode()])

    assert "".join(released) + stream.flush() == text
    assert all("\ufffd" not in piece for piece in released)


def test_stop_string_split_across_two_tokens_is_cut() -> None:
    stream = TextStream(["<END>"])

    out = push_all(stream, [b"Hello <E", b"ND> and more", b"after"])

    assert out == ["Hello ", "", ""]
    assert stream.stopped
    assert stream.flush() == ""


def test_stop_string_split_across_three_tokens_is_cut() -> None:
    stream = TextStream(["<END>"])

    out = push_all(stream, [b"ok <", b"EN", b"D>tail", b"more"])

    assert "".join(out) == "ok "
    assert stream.stopped
    assert stream.flush() == ""


def test_stop_string_inside_one_token_keeps_text_before_it() -> None:
    stream = TextStream(["\nUser:"])

    assert stream.push(b"Fine.\nUser: hi") == "Fine."
    assert stream.stopped


def test_partial_stop_prefix_that_is_not_a_stop_is_released_later() -> None:
    stream = TextStream(["<END>"])

    first = stream.push(b"x <EN")
    second = stream.push(b"TRY")

    assert first == "x "  # "<EN" could still become "<END>"
    assert second == "<ENTRY"
    assert not stream.stopped
    assert stream.flush() == ""


def test_flush_returns_held_text() -> None:
    stream = TextStream(["<END>"])

    assert stream.push(b"abc<E") == "abc"
    assert stream.flush() == "<E"
    assert not stream.stopped


def test_flush_returns_incomplete_utf8_as_replacement() -> None:
    stream = TextStream()

    assert stream.push("한".encode()[:2]) == ""
    assert stream.flush() == "\ufffd"


@pytest.mark.parametrize(
    ("stops", "expected"),
    [
        (["STOP", "END"], "a "),
        (["END", "STOP"], "a "),
        (["ND b", "END"], "a "),  # both match; the one that starts first wins
        (["a END", "END"], ""),
    ],
)
def test_multiple_stop_strings_cut_at_the_earliest(stops: list[str], expected: str) -> None:
    stream = TextStream(stops)

    assert stream.push(b"a END b STOP c") == expected
    assert stream.stopped


def test_multiple_stop_strings_split_across_tokens_cut_at_the_earliest() -> None:
    stream = TextStream(["STOP", "END"])

    out = push_all(stream, [b"one E", b"N", b"D two STOP"])

    assert "".join(out) == "one "
    assert stream.stopped


def test_hold_back_is_the_longest_possible_stop_prefix() -> None:
    stream = TextStream(["ab", "xyzab"])

    assert stream.push(b"..xyza") == ".."
    assert stream.push(b"c") == "xyzac"


def test_multibyte_stop_string_split_inside_a_character() -> None:
    stop = "끝"
    stream = TextStream([stop])
    data = "좋아요" + stop + "뒤"

    out = push_all(stream, [bytes([b]) for b in data.encode()])

    assert "".join(out) == "좋아요"
    assert stream.stopped


def test_empty_stop_strings_are_ignored() -> None:
    stream = TextStream(["", "END"])

    assert stream.push(b"text") == "text"
    assert not stream.stopped
