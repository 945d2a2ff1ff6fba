"""Grammars that constrain generation (llama.cpp GBNF), built from JSON Schemas.

A tool call is a JSON object {"name": <tool>, "arguments": <that tool's arguments>}:
`tool_call_grammar` turns the tools' JSON Schemas into one GBNF grammar whose every
sentence is such a call, so the arguments the model writes always parse and always match
the schema of the tool it names. With `allow_text`, the grammar also admits a plain
answer instead (any text that does not start with "{"), which is OpenAI's tool_choice
"auto".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

# Keywords the grammar leaves out: they constrain nothing.
_DROPPED = frozenset({"default", "description", "title", "examples"})
# Every string in a call is at most this long, whatever its schema says: a small model can
# otherwise run on inside a string until max_tokens cuts the call in half. (The converter
# spells a limit as nested optionals, one per character; 200 of them sample fast enough.)
GRAMMAR_MAX_LENGTH = 200

_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _bounded(schema: Any) -> Any:
    """A copy of `schema` as the grammar should spell it: no annotations, bounded strings."""
    if isinstance(schema, Mapping):
        kept = {k: _bounded(v) for k, v in schema.items() if k not in _DROPPED}
        if kept.get("type") == "string" and "enum" not in kept and "const" not in kept and "pattern" not in kept:
            kept["maxLength"] = min(int(kept.get("maxLength", GRAMMAR_MAX_LENGTH)), GRAMMAR_MAX_LENGTH)
            kept["minLength"] = min(int(kept.get("minLength", 0)), kept["maxLength"])
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


def tool_call_grammar(tools: Sequence[tuple[str, Mapping[str, Any]]], *, allow_text: bool = False) -> str:
    if not tools:
        raise ValueError("tool_call_grammar needs at least one tool")
    gbnf = json_schema_to_gbnf(json.dumps(tool_call_schema(tools)), prop_order=["name", "arguments"])
    # The converter's string characters admit raw control characters (a newline inside a
    # string), which JSON forbids: json.loads would refuse the call. Exclude them, as
    # llama.cpp's own converter does.
    gbnf = gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
    if not allow_text:
        return gbnf
    # The converter names its start rule "root"; rename it so that ours can choose
    # between a call and free text.
    renamed = gbnf.replace("root ::=", "call ::=", 1)
    return "root ::= call | text\ntext ::= [^{ \\t\\n] [^\\x00]*\n" + renamed


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
