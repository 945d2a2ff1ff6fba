"""Tool-call grammars: what the GBNF built from JSON Schemas admits (unit tests, no model)."""

from __future__ import annotations

import json

import pytest

from webapp.engine.grammar import (
    GRAMMAR_MAX_BYTES,
    GRAMMAR_MAX_ITEMS,
    GRAMMAR_MAX_LENGTH,
    GRAMMAR_MAX_NESTING,
    PATTERN_MAX_CHARS,
    SCHEMA_MAX_DEPTH,
    GrammarBoundsError,
    grammar_check,
    tool_call_grammar,
    tool_call_schema,
    tools_instruction,
)

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
    assert '"\\\\" ["\\\\/bfnrt]' in grammar["char"]


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


def test_a_schema_past_the_bounds_is_refused_naming_the_value():
    def array(**bounds: int) -> dict:
        return {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, **bounds}}}

    nested: dict = {"type": "string"}
    for _ in range(SCHEMA_MAX_DEPTH):
        nested = {"type": "object", "properties": {"a": nested}}
    refused = [
        (array(minItems=GRAMMAR_MAX_ITEMS + 1), "f.parameters.properties.xs", "minItems"),
        # The request that crashed the office app: 20,000 nested optionals in the grammar.
        (array(maxItems=20000), "f.parameters.properties.xs", "maxItems 20000 is over"),
        (
            {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a{0,20000}$"}}},
            "f.parameters.properties.s",
            "repeats up to 20000",
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "pattern": "^" + "a" * PATTERN_MAX_CHARS + "$"}}},
            "f.parameters.properties.s",
            "longer than",
        ),
        (nested, "f.parameters", "nested more than"),
    ]
    for schema, path, rule in refused:
        with pytest.raises(GrammarBoundsError) as caught:
            tool_call_grammar([("f", schema)])
        assert caught.value.path.startswith(path) and rule in caught.value.message, caught.value


def test_unbounded_arrays_are_capped_and_the_grammar_stays_small():
    schema = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}}}}
    bounded = tool_call_schema([("f", schema)])["properties"]["arguments"]["properties"]["xs"]
    assert (bounded["minItems"], bounded["maxItems"]) == (0, GRAMMAR_MAX_ITEMS)
    grammar = tool_call_grammar([("f", schema)])
    assert len(grammar) < 20_000
    grammar_check(grammar)


def test_grammar_check_counts_nesting_outside_literals_classes_and_comments():
    grammar_check('root ::= "((((" [(((] # ((((\n')
    deep = "root ::= " + '("a" ' * (GRAMMAR_MAX_NESTING + 1) + ")?" * (GRAMMAR_MAX_NESTING + 1)
    with pytest.raises(GrammarBoundsError, match="nests groups"):
        grammar_check(deep)
    # Closing parentheses in a comment can't hide real nesting.
    with pytest.raises(GrammarBoundsError, match="nests groups"):
        grammar_check("# " + ")" * 5000 + "\n" + deep)
    with pytest.raises(GrammarBoundsError, match="larger than"):
        grammar_check('root ::= "' + "a" * (GRAMMAR_MAX_BYTES + 1) + '"')


def test_small_integer_ranges_become_enums_and_strings_have_no_unicode_escapes():
    schema = {"type": "object", "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 7}}}
    days = tool_call_schema([("f", schema)])["properties"]["arguments"]["properties"]["days"]
    assert days["enum"] == [1, 2, 3, 4, 5, 6, 7]
    char = rules(tool_call_grammar([("calculator", CALC)]))["char"]
    assert '"u"' not in char, "no \\u escapes: no lone surrogates, no 6-token characters"
