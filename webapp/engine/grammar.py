"""Grammars that constrain generation (llama.cpp GBNF), built from JSON Schemas.

A tool call is a JSON object {"name": <tool>, "arguments": <that tool's arguments>}:
`tool_call_grammar` turns the tools' JSON Schemas into one GBNF grammar whose every
sentence is such a call, so the arguments the model writes always parse and always match
the schema of the tool it names. With `allow_text`, the grammar also admits a plain
answer instead (any text that does not start with "{"), which is OpenAI's tool_choice
"auto".

A structured answer (OpenAI's `response_format`, the Responses API's `text.format`) is the
same machinery: `answer_grammar` admits only JSON documents that match the client's
schema. `answer_schema_check` refuses, naming the keyword, any schema keyword the grammar
would not enforce (`minimum` on a number, `uniqueItems`, `not`, most `format`s ...): a
reply must always validate, so an unenforceable promise is a 400, never ignored.

Schemas come from clients (OpenAI `tools`), so what reaches llama.cpp is bounded here.
Its grammar parser recurses once per nested group, and the converter spells "up to n"
as n nested optionals: one tool whose array had "maxItems": 20000 crashed the process
(SIGSEGV). `schema_check` refuses schemas past the bounds below, `_bounded` caps what
may be capped (string lengths, arrays with no maxItems), and `grammar_check` is the last gate on
any GBNF text before the engine hands it to native code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

# Keywords the grammar leaves out: they constrain nothing.
_DROPPED = frozenset({"default", "description", "title", "examples"})
# Every string in a call is at most this long, whatever its schema says: a small model can
# otherwise run on inside a string until max_tokens cuts the call in half. (The converter
# spells a limit as nested optionals, one per character; 200 of them sample fast enough.)
GRAMMAR_MAX_LENGTH = 200

# Bounds on a schema and on the grammar built from it (see the module docstring).
SCHEMA_MAX_DEPTH = 24  # JSON nesting of the schema document itself
SCHEMA_MAX_NODES = 2_000  # objects in the schema document
GRAMMAR_MAX_ITEMS = 64  # an array in a call holds at most this many items (unbounded ones are capped)
GRAMMAR_MAX_ENUM_RANGE = 100  # an integer range this small is spelled as an enum
PATTERN_MAX_CHARS = 256
PATTERN_MAX_REPEAT = GRAMMAR_MAX_LENGTH  # {m,n} in a pattern
GRAMMAR_MAX_BYTES = 256 * 1024
GRAMMAR_MAX_NESTING = 1_000  # nested groups; "maxItems": 20000 (420 KB of GBNF) crashed, 1,000 parses
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


class GrammarBoundsError(ValueError):
    """A schema or grammar past the bounds that keep llama.cpp's parser safe. `path` names the value."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


# A character inside a string of a call: no raw control characters (JSON forbids them)
# and no \u escapes (any character can be written as itself; an escape costs up to 6
# tokens, so a bounded string could outgrow the call's token budget, and one can spell a
# lone surrogate, which is not text and which the store can't hold).
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt]'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)


def _count(value: Any, default: int) -> int:
    """A schema's length keyword as an int (check_schema only promises a non-negative number)."""
    return int(value) if isinstance(value, int | float) and 0 <= value < 2**31 else default


def schema_check(schema: Any, *, path: str = "parameters") -> None:
    """Refuse a schema that no bound can make safe; raise GrammarBoundsError naming the value.

    Iterative (a deep schema can't exhaust the stack here), and run before jsonschema's own
    recursive check_schema.
    """
    stack: list[tuple[Any, str, int]] = [(schema, path, 0)]
    nodes = 0
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, Mapping):
            nodes += 1
            if depth >= SCHEMA_MAX_DEPTH:
                raise GrammarBoundsError(f"the schema is nested more than {SCHEMA_MAX_DEPTH} levels deep", path=where)
            if nodes > SCHEMA_MAX_NODES:
                raise GrammarBoundsError(f"the schema has more than {SCHEMA_MAX_NODES} objects", path=path)
            for keyword in ("minItems", "maxItems"):
                if _count(node.get(keyword), 0) > GRAMMAR_MAX_ITEMS:
                    raise GrammarBoundsError(
                        f"{keyword} {node[keyword]} is over {GRAMMAR_MAX_ITEMS}, the most items a call may hold",
                        path=where,
                    )
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                _pattern_check(pattern, where)
            stack.extend((v, f"{where}.{k}", depth + 1) for k, v in node.items() if k not in _DROPPED)
        elif isinstance(node, list):
            stack.extend((v, f"{where}.{i}", depth + 1) for i, v in enumerate(node))


def _pattern_check(pattern: str, where: str) -> None:
    if len(pattern) > PATTERN_MAX_CHARS:
        raise GrammarBoundsError(f"pattern is longer than {PATTERN_MAX_CHARS} characters", path=where)
    for match in _QUANTIFIER.finditer(pattern):
        for bound in match.groups():
            if bound and int(bound) > PATTERN_MAX_REPEAT:
                raise GrammarBoundsError(
                    f"pattern repeats up to {bound} times; at most {PATTERN_MAX_REPEAT}", path=where
                )


def grammar_check(gbnf: str) -> None:
    """The last gate before llama.cpp parses `gbnf`: its size and how deep its groups nest.

    Nesting is counted outside string literals, character classes and comments, across
    lines (a group may span several).
    """
    if len(gbnf.encode("utf-8")) > GRAMMAR_MAX_BYTES:
        raise GrammarBoundsError(f"the grammar is larger than {GRAMMAR_MAX_BYTES} bytes")
    depth = deepest = 0
    closer = ""  # inside a "..." literal, a [...] class or a # comment: the character that ends it
    escaped = False
    for char in gbnf:
        if closer:
            if escaped:
                escaped = False
            elif char == "\\" and closer != "\n":
                escaped = True
            elif char == closer:
                closer = ""
        elif char == '"':
            closer = '"'
        elif char == "[":
            closer = "]"
        elif char == "#":
            closer = "\n"
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
    if deepest > GRAMMAR_MAX_NESTING:
        raise GrammarBoundsError(f"the grammar nests groups {deepest} deep; at most {GRAMMAR_MAX_NESTING}")


def _bounded(schema: Any) -> Any:
    """A copy of `schema` as the grammar should spell it: no annotations, bounded strings and arrays."""
    if isinstance(schema, Mapping):
        kept = {k: _bounded(v) for k, v in schema.items() if k not in _DROPPED}
        if kept.get("type") == "string" and "enum" not in kept and "const" not in kept and "pattern" not in kept:
            kept["maxLength"] = min(_count(kept.get("maxLength"), GRAMMAR_MAX_LENGTH), GRAMMAR_MAX_LENGTH)
            kept["minLength"] = min(_count(kept.get("minLength"), 0), kept["maxLength"])
        if kept.get("type") == "integer" and "enum" not in kept and "const" not in kept:
            # The converter does not enforce minimum/maximum; a small range it can, as an enum.
            low, high = kept.get("minimum"), kept.get("maximum")
            if isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= GRAMMAR_MAX_ENUM_RANGE:
                kept["enum"] = list(range(low, high + 1))
        if "items" in kept or "prefixItems" in kept:
            kept["maxItems"] = min(_count(kept.get("maxItems"), GRAMMAR_MAX_ITEMS), GRAMMAR_MAX_ITEMS)
            kept["minItems"] = min(_count(kept.get("minItems"), 0), kept["maxItems"])
        return kept
    if isinstance(schema, list):
        return [_bounded(v) for v in schema]
    return schema


def tool_call_schema(tools: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The JSON Schema of one call of any of `tools` ((name, parameters schema) pairs)."""
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": _bounded(parameters)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in tools
    ]
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def _converted(schema: Mapping[str, Any]) -> str:
    """GBNF of `schema` (already bounded), with strict JSON string characters, checked."""
    gbnf = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    # The converter's string characters admit raw control characters (a newline inside a
    # string), which JSON forbids: json.loads would refuse the call (llama.cpp's own
    # converter excludes them too), and \\u escapes (see _STRICT_CHAR).
    gbnf = _CHAR_RULE.sub(lambda _: _STRICT_CHAR, gbnf)
    grammar_check(gbnf)
    return gbnf


def tool_call_grammar(
    tools: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    allow_text: bool = False,
    answer_schema: Mapping[str, Any] | None = None,
) -> str:
    """A grammar whose sentences are one call of `tools`; with `answer_schema`, or a JSON
    answer matching it (structured output); else with `allow_text`, or a plain answer."""
    if not tools:
        raise ValueError("tool_call_grammar needs at least one tool")
    for name, parameters in tools:
        schema_check(parameters, path=f"{name}.parameters")
    calls = tool_call_schema(tools)
    if answer_schema is not None:
        schema_check(answer_schema, path="schema")
        variants = calls.get("oneOf", [calls])
        return _converted({"anyOf": [*variants, _bounded(answer_schema)]})
    gbnf = _converted(calls)
    if not allow_text:
        return gbnf
    # The converter names its start rule "root"; rename it so that ours can choose
    # between a call and free text.
    renamed = gbnf.replace("root ::=", "call ::=", 1)
    return "root ::= call | text\ntext ::= [^{ \\t\\n] [^\\x00]*\n" + renamed


def answer_grammar(schema: Mapping[str, Any]) -> str:
    """A grammar whose sentences are JSON documents matching `schema` (structured output).
    Call `answer_schema_check` first: it refuses what the grammar could not enforce."""
    schema_check(schema, path="schema")
    return _converted(_bounded(schema))


# What a structured answer's schema may use: the grammar enforces each of these (and the
# annotations in _DROPPED, which constrain nothing). Anything else would be a promise the
# reply might break, so it is refused rather than ignored.
_ENFORCED = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
        "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
        "minLength", "maxLength", "pattern", "format", "$schema", "$id", "$comment",
    }
)  # fmt: skip
_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def answer_schema_check(schema: Any, *, path: str = "schema") -> dict[str, Any]:
    """Refuse a structured answer's schema that the grammar could not enforce; raise
    GrammarBoundsError naming the value. Bounds first (schema_check), then keywords.

    Returns the schema as `answer_grammar` takes it: local references inlined (the
    converter's own resolution fails on some; recursive schemas are refused)."""
    schema_check(schema, path=path)
    if not isinstance(schema, Mapping):
        raise GrammarBoundsError("must be a JSON Schema object", path=path)
    stack: list[tuple[Any, str]] = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, Mapping):
            continue
        _answer_node_check(node, where)
        for key in ("properties", "$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                stack.append((sub, f"{where}.{key}.{name}"))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for i, sub in enumerate(node.get(key) or []):
                stack.append((sub, f"{where}.{key}.{i}"))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), Mapping):
                stack.append((node[key], f"{where}.{key}"))
    return _refs_inlined(schema, path)


def _refs_inlined(schema: Mapping[str, Any], path: str) -> dict[str, Any]:
    """`schema` with every "#/$defs/x" (or "#/definitions/x") reference replaced by x itself.
    A reference cycle is refused, and so is an inlined schema past SCHEMA_MAX_NODES (a few
    definitions that each use the next twice would otherwise grow it exponentially)."""
    defs = {f"#/{key}/{name}": sub for key in ("$defs", "definitions") for name, sub in (schema.get(key) or {}).items()}
    nodes = 0

    def walk(node: Any, where: str, seen: tuple[str, ...]) -> Any:
        nonlocal nodes
        if isinstance(node, list):
            return [walk(v, f"{where}.{i}", seen) for i, v in enumerate(node)]
        if not isinstance(node, Mapping):
            return node
        nodes += 1
        if nodes > SCHEMA_MAX_NODES:
            raise GrammarBoundsError(f"with its references inlined, more than {SCHEMA_MAX_NODES} objects", path=path)
        ref = node.get("$ref")
        if ref is None:
            return {k: walk(v, f"{where}.{k}", seen) for k, v in node.items() if k not in ("$defs", "definitions")}
        if ref not in defs:
            raise GrammarBoundsError(f"the reference {ref!r} is not defined in the schema", path=f"{where}.$ref")
        if ref in seen:
            raise GrammarBoundsError(
                f"a recursive schema ({' → '.join((*seen, ref))}) can't be enforced", path=f"{where}.$ref"
            )
        target = walk(defs[ref], f"{path}.{ref[2:].replace('/', '.')}", (*seen, ref))
        return {**target, **{k: walk(v, f"{where}.{k}", seen) for k, v in node.items() if k != "$ref"}}

    return walk(schema, path, ())


def _answer_node_check(node: Mapping[str, Any], where: str) -> None:
    for keyword in node:
        if keyword in _DROPPED or keyword in _ENFORCED:
            continue
        if keyword in ("minimum", "maximum") and node.get("type") == "integer":
            low, high = node.get("minimum"), node.get("maximum")
            if isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= GRAMMAR_MAX_ENUM_RANGE:
                continue  # spelled as an enum (see _bounded)
            raise GrammarBoundsError(
                f"an integer's minimum and maximum are enforced only together and at most "
                f"{GRAMMAR_MAX_ENUM_RANGE} apart",
                path=f"{where}.{keyword}",
            )
        raise GrammarBoundsError(f"'{keyword}' can't be enforced by the grammar", path=f"{where}.{keyword}")
    types = node.get("type")
    for t in types if isinstance(types, list) else [types] if types is not None else []:
        if t not in _TYPES:
            raise GrammarBoundsError(f"unknown type {t!r}", path=f"{where}.type")
    if "format" in node and node["format"] not in _FORMATS:
        raise GrammarBoundsError(
            f"format {node['format']!r} can't be enforced (enforced: {', '.join(sorted(_FORMATS))})",
            path=f"{where}.format",
        )
    if _count(node.get("minLength"), 0) > GRAMMAR_MAX_LENGTH:
        raise GrammarBoundsError(
            f"minLength is over {GRAMMAR_MAX_LENGTH}, the longest string a reply may hold", path=f"{where}.minLength"
        )
    if "allOf" in node and node.get("type", "object") != "object":
        raise GrammarBoundsError("allOf is enforced only for objects", path=f"{where}.allOf")
    ref = node.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/"))):
        raise GrammarBoundsError(
            "only local references (#/$defs/…, #/definitions/…) are followed", path=f"{where}.$ref"
        )


def tools_instruction(tools: Sequence[tuple[str, str, Mapping[str, Any]]], *, required: bool) -> str:
    """The system message that tells the model which tools it has and how to call one.

    `tools` are (name, description, parameters schema). The grammar enforces the shape;
    this text is what makes a model choose a call at all.
    """
    listed = "\n".join(
        f"- {name}: {description or 'no description'}; arguments schema: {json.dumps(_bounded(parameters))}"
        for name, description, parameters in tools
    )
    ask = (
        "Answer with exactly one function call."
        if required
        else "If a function is needed, answer with only the call; otherwise answer normally."
    )
    return (
        f"You can call these functions:\n{listed}\n"
        'To call one, answer with JSON: {"name": "<function>", "arguments": {...}}. ' + ask
    )
