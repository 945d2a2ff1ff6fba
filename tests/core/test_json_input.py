"""The bounded JSON parser every interface uses (unit tests: no server)."""

from __future__ import annotations

import pytest

from webapp.core.json_input import MAX_DEPTH, MAX_INT_DIGITS, JsonInputError, json_loads_bounded


def refused(raw: str | bytes) -> JsonInputError:
    with pytest.raises(JsonInputError) as caught:
        json_loads_bounded(raw)
    return caught.value


def test_ordinary_json_parses_as_json_does():
    assert json_loads_bounded(b'{"a": [1, 2.5, "\\u00e9", null, true], "\\uc548": "\\ud83d\\ude00"}') == {
        "a": [1, 2.5, "é", None, True],
        "안": "😀",
    }


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ('{"a": ' * 5000 + "1" + "}" * 5000, "json_too_deep", None),  # past Python's recursion limit
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "json_too_deep", "0." * (MAX_DEPTH - 1) + "0"),
        ('{"n": ' + "9" * 5000 + "}", "number_too_large", None),
        ('{"n": ' + "9" * (MAX_INT_DIGITS + 1) + "}", "number_too_large", None),
        ('{"n": 1e999}', "number_too_large", None),
        ('{"n": NaN}', "malformed_json", None),
        ('{"n": -Infinity}', "malformed_json", None),
        ('{"text": "ok \\ud800"}', "invalid_unicode", "text"),
        ('{"list": ["a", {"\\udfff": 1}]}', "invalid_unicode", "list.1.\\udfff"),
        ('{"a": 1', "malformed_json", None),
        (b'{"a": "\xff"}', "malformed_json", None),
    ],
)
def test_hostile_json_is_refused_with_a_code_and_the_path(raw, code, field):
    error = refused(raw)
    assert (error.code, error.field) == (code, field), error.message


def test_the_deepest_accepted_value_and_the_largest_accepted_integer():
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    json_loads_bounded(ok)
    assert json_loads_bounded("-" + "9" * MAX_INT_DIGITS) == -int("9" * MAX_INT_DIGITS)
