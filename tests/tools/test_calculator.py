"""The calculator: values checked against Python's own arithmetic, errors with positions, refusals."""

from __future__ import annotations

import math
import time

import pytest

from webapp.tools.calculator import (
    CalculatorError,
    calculate,
    calculator_handler,
    calculator_tool_spec,
)
from webapp.tools.registry import ToolArgumentError, ToolContext, ToolRegistry

# Expected values are Python expressions evaluated by the interpreter here, not by the
# calculator; `^` is written as `**` on the right-hand side.
VALUES = [
    ("1 + 2 * 3", 1 + 2 * 3),
    ("(1 + 2) * 3", (1 + 2) * 3),
    ("10 - 4 - 3", 10 - 4 - 3),
    ("100 / 10 / 5", 100 / 10 / 5),
    ("7 / 2", 7 / 2),
    ("7 // 2", 7 // 2),
    ("-7 // 2", -7 // 2),
    ("-7 % 3", -7 % 3),
    ("7.5 % 2", 7.5 % 2),
    ("2 ** 10", 1024),
    ("2 ^ 10", 1024),
    ("2 ^ 3 ^ 2", 2 ** (3**2)),
    ("2 ** 3 ** 2", 512),
    ("(2 ^ 3) ^ 2", 64),
    ("-2 ** 2", -(2**2)),
    ("(-2) ** 2", 4),
    ("2 ** -1", 0.5),
    ("-2 ^ -2", -(2**-2)),
    ("--3", 3),
    ("+-+3", -3),
    ("2 * -3", -6),
    ("4 ** 0.5", 2.0),
    ("0 ** 0", 1),
    ("1.5e3 + .5", 1500.5),
    ("1e-3", 0.001),
    ("3.", 3.0),
    ("0.1 + 0.2", 0.1 + 0.2),
    ("123456789 * 987654321", 123456789 * 987654321),
    ("2 ** 64 + 1", 18446744073709551617),
    ("sqrt(2)", math.sqrt(2)),
    ("sqrt(16)", 4.0),
    ("abs(-5)", 5),
    ("abs(-2.5)", 2.5),
    ("round(2.5)", 2),
    ("round(3.14159, 2)", 3.14),
    ("round(1234, -2)", 1200),
    ("floor(-2.5)", -3),
    ("ceil(2.1)", 3),
    ("log(e)", 1.0),
    ("log(8, 2)", math.log(8, 2)),
    ("log(1000, 10)", math.log(1000, 10)),
    ("ln(10)", math.log(10)),
    ("log10(1000)", 3.0),
    ("exp(2)", math.exp(2)),
    ("sin(pi / 2)", 1.0),
    ("cos(0)", 1.0),
    ("tan(pi / 4)", math.tan(math.pi / 4)),
    ("asin(1)", math.pi / 2),
    ("acos(1)", 0.0),
    ("atan(1) * 4", math.atan(1) * 4),
    ("min(3, 1, 2)", 1),
    ("max(3, 1.5, 2)", 3),
    ("max(7)", 7),
    ("tau - 2 * pi", math.tau - 2 * math.pi),
    ("sqrt(3 ** 2 + 4 ** 2)", 5.0),
    ("max(2, 3) ^ min(2, 3)", 9),
    ("((((1))))", 1),
    ("  12  ", 12),
]


@pytest.mark.parametrize(("expression", "expected"), VALUES)
def test_values_match_python_arithmetic(expression: str, expected: float) -> None:
    result = calculate(expression)
    assert result == expected
    assert type(result) is type(expected), f"{expression} gave {result!r}"


def test_integers_stay_exact() -> None:
    assert calculate("3 ** 40") == 12157665459056928801
    assert calculate("10 ** 300") == 10**300
    assert calculate("2 ** 996") == 2**996


ERRORS = [
    ("(1 + 2))", 7, "unexpected ')' at position 7"),
    ("1 +", 3, "unexpected end of expression at position 3"),
    ("(1 + 2", 6, "unclosed '(' from position 0: missing ')' at position 6"),
    ("sqrt(4", 6, "missing ')'"),
    ("1 2", 2, "unexpected number '2'"),
    ("2 $ 3", 2, "unexpected character '$'"),
    ("foo + 1", 0, "unknown name 'foo'"),
    ("1 + bar(2)", 4, "unknown name 'bar'"),
    ("1 / 0", 2, "division by zero"),
    ("1 // 0.0", 2, "division by zero"),
    ("5 % 0", 2, "modulo by zero"),
    ("0 ** -1", 2, "division by zero"),
    ("sqrt(-1)", 0, "square root of a negative number"),
    ("log(0)", 0, "logarithm of zero or a negative number"),
    ("ln(-1)", 0, "logarithm of zero or a negative number"),
    ("log10(0)", 0, "logarithm of zero or a negative number"),
    ("log(8, 1)", 0, "base must be positive and not 1"),
    ("asin(2)", 0, "asin() is defined only from -1 to 1"),
    ("(-8) ** (1/3)", 5, "fractional power"),
    ("sqrt", 0, "'sqrt' is a function"),
    ("pi(2)", 0, "'pi' is a constant"),
    ("sqrt(1, 2)", 0, "sqrt() takes 1 argument(s), got 2"),
    ("round(1, 2, 3)", 0, "round() takes 1 or 2 argument(s), got 3"),
    ("min()", 4, "unexpected ')'"),
    ("round(1.5, 0.5)", 0, "must be a whole number"),
    ("", None, "empty expression"),
    ("   ", None, "empty expression"),
    ("1,2", 1, "unexpected ','"),
    ("2 ^", 3, "unexpected end of expression"),
    ("* 2", 0, "unexpected '*'"),
]


@pytest.mark.parametrize(("expression", "position", "message"), ERRORS)
def test_errors_say_what_and_where(expression: str, position: int | None, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        calculate(expression)
    assert caught.value.position == position
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "position"),
    [
        ("9 ** 9 ** 9", 2),
        ("9 ^ 9 ^ 9 ^ 9", 6),  # the innermost power is refused first
        ("10 ** 400", 3),
        ("2 ** 997", 2),
        ("10.0 ** 301", 5),
        ("(-10) ** 301", 6),
        ("exp(1000)", 0),
        ("1e400", 0),
        ("1e300 * 10", 6),
    ],
)
def test_huge_results_are_refused_before_computing(expression: str, position: int) -> None:
    started = time.perf_counter()
    with pytest.raises(CalculatorError, match="too large") as caught:
        calculate(expression)
    assert time.perf_counter() - started < 0.5
    assert caught.value.position == position


def test_expression_length_limit_is_200_characters() -> None:
    longest = "1+" * 99 + "1"
    assert len(longest) == 199
    assert calculate(longest + " ") == 100

    with pytest.raises(CalculatorError, match="longer than 200 characters") as caught:
        calculate(longest + "+1")
    assert caught.value.position is None


def test_nesting_is_limited_to_50_levels() -> None:
    assert calculate("(" * 50 + "1" + ")" * 50) == 1
    assert calculate("-" * 50 + "1") == 1
    with pytest.raises(CalculatorError, match="nested too deeply") as caught:
        calculate("(" * 51 + "1" + ")" * 51)
    assert caught.value.position == 50
    with pytest.raises(CalculatorError, match="nested too deeply"):
        calculate("2" + "^2" * 51)
    with pytest.raises(CalculatorError, match="nested too deeply"):
        calculate("(" * 30 + "abs(" * 21 + "1" + ")" * 51)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__",
        "os",
        "os.system",
        "eval",
        "exec(1)",
        "open",
        "().__class__",
        "(1).__class__",
        "lambda: 1",
        "[1, 2]",
        "x = 1",
        "1; 2",
        "True",
        "None",
        "math.pi",
        "PI",
    ],
)
def test_python_names_and_syntax_are_refused(expression: str) -> None:
    with pytest.raises(CalculatorError):
        calculate(expression)


def test_calculator_error_is_a_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


# --- as a tool ------------------------------------------------------------------------

CTX = ToolContext(user_id="alice")


def test_handler_returns_expression_and_result() -> None:
    assert calculator_handler(CTX, {"expression": "2^3^2"}) == {"expression": "2^3^2", "result": 512}


def test_handler_turns_calculator_errors_into_argument_errors() -> None:
    with pytest.raises(ToolArgumentError) as caught:
        calculator_handler(CTX, {"expression": "(1 + 2))"})
    error = caught.value
    assert (error.status, error.field) == (400, "arguments.expression")
    assert str(error) == "unexpected ')' at position 7"


def test_tool_through_the_registry() -> None:
    registry = ToolRegistry()
    registry.register(calculator_tool_spec(), calculator_handler)

    arguments = registry.arguments_check("calculator", {"expression": "sqrt(16) + 1"})
    assert registry.execute("calculator", CTX, arguments) == {"expression": "sqrt(16) + 1", "result": 5.0}

    with pytest.raises(ToolArgumentError, match="at most 200 characters") as caught:
        registry.arguments_check("calculator", {"expression": "1" * 201})
    assert caught.value.field == "arguments.expression"
    with pytest.raises(ToolArgumentError, match="must be a string"):
        registry.arguments_check("calculator", {"expression": 12})

    spec = registry.get("calculator").public()
    assert (spec["sensitivity"], spec["rate_limit"], spec["max_concurrent"]) == (
        "LOW",
        {"requests": 60, "window_s": 60.0, "burst": 10},
        8,
    )
