"""Tool-call grammars: what the GBNF built from JSON Schemas admits (unit tests, no model)."""

from __future__ import annotations

import json

from webapp.engine.grammar import GRAMMAR_MAX_LENGTH, tool_call_grammar, tool_call_schema, tools_instruction

DELETE = {
    "type": "object",
    "properties": {"document_id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "the id"}},
    "required": ["document_id"],
    "additionalProperties": False,
}
CALC = {
    "type": "object",
    "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200}},
    "required": ["expression"],
    "additionalProperties": False,
}


def rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def test_every_call_names_one_tool_and_its_own_arguments():
    schema = tool_call_schema([("delete_document", DELETE), ("calculator", CALC)])
    names = [variant["properties"]["name"]["const"] for variant in schema["oneOf"]]
    assert names == ["delete_document", "calculator"]
    assert schema["oneOf"][1]["properties"]["arguments"]["required"] == ["expression"]
    assert all(variant["additionalProperties"] is False for variant in schema["oneOf"])


def test_every_string_is_bounded():
    free = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}
    schema = tool_call_schema([("delete_document", DELETE), ("calculator", CALC), ("free", free)])
    document_id = schema["oneOf"][0]["properties"]["arguments"]["properties"]["document_id"]
    expression = schema["oneOf"][1]["properties"]["arguments"]["properties"]["expression"]
    q = schema["oneOf"][2]["properties"]["arguments"]["properties"]["q"]
    assert (document_id["minLength"], document_id["maxLength"]) == (1, 64)
    assert "description" not in document_id
    assert (expression["minLength"], expression["maxLength"]) == (1, GRAMMAR_MAX_LENGTH)
    assert q["maxLength"] == GRAMMAR_MAX_LENGTH
    assert "maxLength" not in schema["oneOf"][2]["properties"]["arguments"]["properties"]["n"]


def test_strings_cannot_hold_raw_control_characters():
    grammar = rules(tool_call_grammar([("calculator", CALC)]))
    assert grammar["char"].startswith('[^"\\\\\\x7F\\x00-\\x1F]')
    assert json.loads('"a\\nb"') == "a\nb"  # escaped newlines stay possible through the "\\" branch
    assert '"\\\\" (["\\\\/bfnrt]' in grammar["char"]


def test_auto_admits_a_call_or_text_that_does_not_start_like_one():
    grammar = rules(tool_call_grammar([("calculator", CALC)], allow_text=True))
    assert grammar["root"] == "call | text"
    assert grammar["text"].startswith("[^{ \\t\\n]")
    assert "call" in grammar
    assert rules(tool_call_grammar([("calculator", CALC)]))["root"].startswith('"{"')


def test_the_instruction_lists_each_tool_with_its_schema():
    text = tools_instruction([("calculator", "Evaluate arithmetic", CALC)], required=True)
    assert "- calculator: Evaluate arithmetic; arguments schema: " in text
    assert '"expression"' in text and "exactly one function call" in text
    assert "otherwise answer normally" in tools_instruction([("calculator", "", CALC)], required=False)
