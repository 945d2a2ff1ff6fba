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

# Keywords left out of the grammar. The converter spells a string's maxLength as one
# nested optional per character (a 200-character limit is a 200-deep rule), which makes
# sampling slow; lengths are checked when the registry validates the parsed arguments,
# and max_tokens bounds the output.
_DROPPED = frozenset({"maxLength", "minLength", "default", "description", "title", "examples"})


def _bounded(schema: Any) -> Any:
    """A copy of `schema` without the keywords the grammar should not spell out."""
    if isinstance(schema, Mapping):
        return {k: _bounded(v) for k, v in schema.items() if k not in _DROPPED}
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
    if not allow_text:
        return gbnf
    # The converter names its start rule "root"; rename it so that ours can choose
    # between a call and free text.
    renamed = gbnf.replace("root ::=", "call ::=", 1)
    return "root ::= call | text\ntext ::= [^{ \\t\\n] [^\\x00]*\n" + renamed
