"""A safe arithmetic calculator for the assistant: a tokenizer and a recursive-descent parser.

The expression is never handed to Python (no eval, exec, compile or ast): only the
grammar below exists, so a name such as `__import__` or `os` is just an unknown name.

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "//" | "%") unary)*
    unary      := ("+" | "-") unary | power
    power      := primary (("**" | "^") unary)?
    primary    := NUMBER | CONSTANT | FUNCTION "(" expression ("," expression)* ")"
                | "(" expression ")"

So `**` and `^` both mean power, bind tighter than a unary minus on their left and group
to the right, as in Python: -2**2 == -4 and 2^3^2 == 512. Arithmetic follows Python's
(`/` always gives a float, `//` and `%` floor); integers stay exact.

Limits keep one call cheap: at most 200 characters, at most 50 levels of nesting, and no
number beyond 1e300 in magnitude. A power is checked from its operands' sizes before it
is computed, so 9**9**9 is refused at once instead of running for hours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webapp.tools.limits import RateLimit
from webapp.tools.registry import Sensitivity, ToolArgumentError, ToolContext, ToolSpec

Number = int | float

MAX_EXPRESSION_CHARS = 200
MAX_DEPTH = 50
MAX_MAGNITUDE = 1e300
_MAX_LOG10 = 300.0  # log10(MAX_MAGNITUDE)


class CalculatorError(ValueError):
    """The expression is malformed or its value is undefined or too large.

    `position` is the 0-based index into the expression where the problem was found, or
    None when the problem is not at one place (e.g. the expression is too long).
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} at position {position}")
        self.position = position


@dataclass(frozen=True, kw_only=True)
class _Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    position: int
    value: Number | None = None

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        if self.kind == "number":
            return f"number {self.text!r}"
        if self.kind == "name":
            return f"name {self.text!r}"
        return repr(self.text)


_TOKEN_PATTERN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\*\*|//|[-+*/%^(),])
    """,
    re.VERBOSE,
)


def _number_checked(value: Number, position: int) -> Number:
    """Refuse NaN, infinities and anything beyond MAX_MAGNITUDE."""
    if isinstance(value, float) and math.isnan(value):
        raise CalculatorError("result is not a number", position)
    # int-to-float comparison is exact in Python, so huge ints are compared correctly.
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("number too large (the limit is 1e300)", position)
    return value


def _tokens_read(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(expression):
        match = _TOKEN_PATTERN.match(expression, position)
        if match is None:
            raise CalculatorError(f"unexpected character {expression[position]!r}", position)
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "number":
            is_float = any(mark in text for mark in ".eE")
            value: Number = float(text) if is_float else int(text)
            tokens.append(_Token(kind="number", text=text, position=position, value=_number_checked(value, position)))
        elif kind != "space":
            tokens.append(_Token(kind=kind, text=text, position=position))
        position = match.end()
    tokens.append(_Token(kind="end", text="", position=len(expression)))
    return tokens


def _integer_required(value: Number, what: str, position: int) -> int:
    if isinstance(value, int):
        return value
    if value.is_integer():
        return int(value)
    raise CalculatorError(f"{what} must be a whole number", position)


def _power(base: Number, exponent: Number, *, position: int) -> Number:
    """base ** exponent, refused before computing when the result would be too large."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        if abs(base) <= 1:  # 0, 1 and -1 stay small for any exponent
            return base**exponent
        if exponent * math.log10(abs(base)) > _MAX_LOG10:
            raise CalculatorError("result too large (the limit is 1e300)", position)
        return base**exponent  # exact integer
    b, x = float(base), float(exponent)
    if b == 0.0 and x < 0:
        raise CalculatorError("division by zero (zero to a negative power)", position)
    if b < 0 and not x.is_integer():
        raise CalculatorError("a negative number to a fractional power is not a real number", position)
    if b != 0.0 and x * math.log10(abs(b)) > _MAX_LOG10:
        raise CalculatorError("result too large (the limit is 1e300)", position)
    return math.pow(b, x)


def _log(args: list[Number], position: int) -> Number:
    x = args[0]
    if x <= 0:
        raise CalculatorError("logarithm of zero or a negative number", position)
    if len(args) == 1:
        return math.log(x)
    base = args[1]
    if base <= 0 or base == 1:
        raise CalculatorError("logarithm base must be positive and not 1", position)
    return math.log(x, base)


def _log_fixed(function: Callable[[float], float]) -> Callable[[list[Number], int], Number]:
    def call(args: list[Number], position: int) -> Number:
        if args[0] <= 0:
            raise CalculatorError("logarithm of zero or a negative number", position)
        return function(args[0])

    return call


def _sqrt(args: list[Number], position: int) -> Number:
    if args[0] < 0:
        raise CalculatorError("square root of a negative number", position)
    return math.sqrt(args[0])


def _exp(args: list[Number], position: int) -> Number:
    if args[0] > _MAX_LOG10 * math.log(10):
        raise CalculatorError("result too large (the limit is 1e300)", position)
    return math.exp(args[0])


def _round(args: list[Number], position: int) -> Number:
    if len(args) == 1:
        return round(args[0])
    digits = _integer_required(args[1], "round()'s number of digits", position)
    if abs(digits) > 400:  # beyond ±400 digits every value up to 1e300 is already exact
        digits = 400 if digits > 0 else -400
    return round(args[0], digits)


def _unit_domain(name: str, function: Callable[[float], float]) -> Callable[[list[Number], int], Number]:
    def call(args: list[Number], position: int) -> Number:
        if not -1 <= args[0] <= 1:
            raise CalculatorError(f"{name}() is defined only from -1 to 1", position)
        return function(args[0])

    return call


def _unary_function(function: Callable[[Any], Number]) -> Callable[[list[Number], int], Number]:
    return lambda args, _position: function(args[0])


@dataclass(frozen=True, kw_only=True)
class _Function:
    min_args: int
    max_args: int | None  # None: no upper bound
    call: Callable[[list[Number], int], Number]


_FUNCTIONS: dict[str, _Function] = {
    "sqrt": _Function(min_args=1, max_args=1, call=_sqrt),
    "abs": _Function(min_args=1, max_args=1, call=_unary_function(abs)),
    "round": _Function(min_args=1, max_args=2, call=_round),
    "floor": _Function(min_args=1, max_args=1, call=_unary_function(math.floor)),
    "ceil": _Function(min_args=1, max_args=1, call=_unary_function(math.ceil)),
    "log": _Function(min_args=1, max_args=2, call=_log),
    "ln": _Function(min_args=1, max_args=1, call=_log_fixed(math.log)),
    "log10": _Function(min_args=1, max_args=1, call=_log_fixed(math.log10)),
    "exp": _Function(min_args=1, max_args=1, call=_exp),
    "sin": _Function(min_args=1, max_args=1, call=_unary_function(math.sin)),
    "cos": _Function(min_args=1, max_args=1, call=_unary_function(math.cos)),
    "tan": _Function(min_args=1, max_args=1, call=_unary_function(math.tan)),
    "asin": _Function(min_args=1, max_args=1, call=_unit_domain("asin", math.asin)),
    "acos": _Function(min_args=1, max_args=1, call=_unit_domain("acos", math.acos)),
    "atan": _Function(min_args=1, max_args=1, call=_unary_function(math.atan)),
    "min": _Function(min_args=1, max_args=None, call=lambda args, _position: min(args)),
    "max": _Function(min_args=1, max_args=None, call=lambda args, _position: max(args)),
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_KNOWN_NAMES = ", ".join(sorted([*_FUNCTIONS, *_CONSTANTS]))


class _Parser:
    """Evaluates while it parses: each rule returns the value of what it consumed."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0

    def value_parse(self) -> Number:
        value = self._expression()
        token = self._peek()
        if token.kind != "end":
            raise CalculatorError(f"unexpected {token.describe()}", token.position)
        return value

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _at_op(self, *ops: str) -> bool:
        token = self._peek()
        return token.kind == "op" and token.text in ops

    def _expect(self, op: str, opened_at: _Token) -> None:
        token = self._peek()
        if token.kind == "op" and token.text == op:
            self._advance()
            return
        if token.kind == "end":
            raise CalculatorError(
                f"unclosed {opened_at.text!r} from position {opened_at.position}: missing {op!r}", token.position
            )
        raise CalculatorError(f"expected {op!r} but found {token.describe()}", token.position)

    def _descend(self, token: _Token) -> None:
        """Count one level of nesting. Bounding it keeps Python's own recursion limit far away."""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise CalculatorError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", token.position)

    def _expression(self) -> Number:
        value = self._term()
        while self._at_op("+", "-"):
            op = self._advance()
            right = self._term()
            value = _number_checked(value + right if op.text == "+" else value - right, op.position)
        return value

    def _term(self) -> Number:
        value = self._unary()
        while self._at_op("*", "/", "//", "%"):
            op = self._advance()
            right = self._unary()
            if op.text == "*":
                value = value * right
            elif right == 0:
                raise CalculatorError("modulo by zero" if op.text == "%" else "division by zero", op.position)
            elif op.text == "/":
                value = value / right
            elif op.text == "//":
                value = value // right
            else:
                value = value % right
            value = _number_checked(value, op.position)
        return value

    def _unary(self) -> Number:
        if self._at_op("+", "-"):
            op = self._advance()
            self._descend(op)
            operand = self._unary()
            self._depth -= 1
            return -operand if op.text == "-" else +operand
        return self._power()

    def _power(self) -> Number:
        base = self._primary()
        if not self._at_op("**", "^"):
            return base
        op = self._advance()
        self._descend(op)
        exponent = self._unary()  # a unary on the right: 2**-1; recursion makes it right-associative
        self._depth -= 1
        return _number_checked(_power(base, exponent, position=op.position), op.position)

    def _primary(self) -> Number:
        token = self._advance()
        if token.kind == "number":
            assert token.value is not None
            return token.value
        if token.kind == "op" and token.text == "(":
            self._descend(token)
            value = self._expression()
            self._expect(")", token)
            self._depth -= 1
            return value
        if token.kind == "name":
            return self._name_value(token)
        raise CalculatorError(f"unexpected {token.describe()}", token.position)

    def _name_value(self, token: _Token) -> Number:
        name = token.text
        if name in _CONSTANTS:
            if self._at_op("("):
                raise CalculatorError(f"{name!r} is a constant, not a function", token.position)
            return _CONSTANTS[name]
        function = _FUNCTIONS.get(name)
        if function is None:
            raise CalculatorError(f"unknown name {name!r} (known: {_KNOWN_NAMES})", token.position)
        if not self._at_op("("):
            raise CalculatorError(f"{name!r} is a function: call it as {name}(...)", token.position)
        opening = self._advance()
        self._descend(opening)
        args = [self._expression()]
        while self._at_op(","):
            self._advance()
            args.append(self._expression())
        self._expect(")", opening)
        self._depth -= 1
        if len(args) < function.min_args or (function.max_args is not None and len(args) > function.max_args):
            if function.max_args is None:
                wanted = f"at least {function.min_args}"
            elif function.min_args == function.max_args:
                wanted = str(function.min_args)
            else:
                wanted = f"{function.min_args} or {function.max_args}"
            raise CalculatorError(f"{name}() takes {wanted} argument(s), got {len(args)}", token.position)
        try:
            result = function.call(args, token.position)
        except CalculatorError:
            raise
        except (OverflowError, ValueError, ZeroDivisionError):
            raise CalculatorError(f"{name}() is not defined for these arguments", token.position) from None
        return _number_checked(result, token.position)


def calculate(expression: str) -> Number:
    """The value of an arithmetic expression; CalculatorError when it has none."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    if not expression.strip():
        raise CalculatorError("empty expression")
    tokens = _tokens_read(expression)
    try:
        return _Parser(tokens).value_parse()
    except CalculatorError:
        raise
    except (OverflowError, ValueError, ZeroDivisionError):
        # The checks above should make these unreachable; if one slips through, the
        # caller still gets a CalculatorError rather than a failed tool.
        raise CalculatorError("the expression has no finite value") from None


def calculator_tool_spec() -> ToolSpec:
    return ToolSpec(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression, e.g. '(17.5 * 3 + 2) / 4' or 'sqrt(2) ^ 2' "
            "(whole numbers stay exact; decimals are 64-bit floats). "
            "Operators: + - * / // % and ** or ^ for power. Functions: sqrt, abs, round(x[, digits]), floor, "
            "ceil, log(x[, base]), ln, log10, exp, sin, cos, tan, asin, acos, atan (radians), min, max. "
            "Constants: pi, e, tau."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_EXPRESSION_CHARS,
                    "description": "The arithmetic expression to evaluate.",
                },
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        sensitivity=Sensitivity.LOW,
        rate_limit=RateLimit(requests=60, window_s=60.0, burst=10),
        max_concurrent=8,
    )


def calculator_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """Tool handler: {"expression"} -> {"expression", "result"}."""
    expression = args.get("expression")
    if not isinstance(expression, str):
        raise ToolArgumentError("arguments.expression must be a string", field="arguments.expression")
    try:
        result = calculate(expression)
    except CalculatorError as exc:
        raise ToolArgumentError(str(exc), field="arguments.expression") from None
    return {"expression": expression, "result": result}
