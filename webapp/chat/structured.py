"""Structured outputs: a reply that is JSON matching the client's schema.

OpenAI's `response_format` on /v1/chat/completions and the Responses API's `text.format`
say the same three things, which `answer_format_parse` reads into an AnswerFormat:

- {"type": "text"}: free text (the default);
- {"type": "json_object"}: any JSON object;
- {"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}: a
  JSON document matching `schema` (the Responses API spells it flat: {"type":
  "json_schema", "name", "schema", "strict"}).

The reply is constrained by a grammar built from the schema, the machinery of tool calls
(webapp.engine.grammar), so it parses and matches. Keywords the grammar can't enforce are
refused with a 400 naming them, whether `strict` is true or not: a schema is either kept
or refused, never half-kept. The model is also shown the schema in a system message: the
grammar decides the shape, the instruction makes the content sensible.

After generation a complete reply is validated once more (jsonschema): one that does not
validate would be our bug, reported as a server error, never passed on as valid. A reply
cut off by max_tokens is passed on as it is with finish_reason "length", as OpenAI does
(the SDK's `parse()` raises LengthFinishReasonError).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from rest_framework import serializers

from webapp.chat.errors import GenerationFailedError
from webapp.engine.grammar import GrammarBoundsError, answer_schema_check
from webapp.engine.prompt import ChatMessage

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class AnswerFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    name: str = ""
    description: str = ""
    schema: dict[str, Any] | None = None  # as the client sent it (validation, the model's instruction)
    grammar_form: dict[str, Any] | None = None  # as the grammar takes it: references inlined

    @property
    def structured(self) -> bool:
        return self.kind != "text"

    def grammar_schema(self) -> dict[str, Any] | None:
        """The schema the reply's grammar admits; None for free text."""
        if self.kind == "json_object":
            return ANY_OBJECT
        return self.grammar_form if self.kind == "json_schema" else None

    def instruction(self) -> ChatMessage | None:
        if self.kind == "json_object":
            return ChatMessage("system", "Answer with a single JSON object and nothing else.")
        if self.kind == "json_schema":
            about = f" ({self.description})" if self.description else ""
            return ChatMessage(
                "system",
                f"Answer with a single JSON document named {self.name}{about} that matches this JSON Schema, "
                f"and nothing else: {json.dumps(self.schema, ensure_ascii=False)}",
            )
        return None

    def reply_check(self, text: str, finish_reason: str) -> None:
        """Raise GenerationFailedError if a complete structured reply does not validate."""
        schema = ANY_OBJECT if self.kind == "json_object" else self.schema
        if schema is None or finish_reason == "length":
            return
        try:
            document = json.loads(text)
            errors = list(Draft202012Validator(schema).iter_errors(document))
        except (json.JSONDecodeError, RecursionError) as exc:
            errors = [exc]
        if errors:
            log.error("a structured reply does not match its schema: %s; reply %r", errors[0], text[:500])
            raise GenerationFailedError("the reply did not match the schema; see the server log")


TEXT = AnswerFormat()


def answer_format_parse(value: Any, *, field: str, flat: bool = False) -> AnswerFormat:
    """Read a response_format (or, `flat`, the Responses API's text.format); raise
    serializers.ValidationError keyed by the dotted path of the offending value."""

    def refuse(where: str, message: str) -> serializers.ValidationError:
        return serializers.ValidationError({where: message})

    if value is None:
        return TEXT
    if not isinstance(value, dict):
        raise refuse(field, 'must be an object such as {"type": "json_object"}.')
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise refuse(f"{field}.type", 'must be "text", "json_object" or "json_schema".')
    allowed = {"type"} | ({"name", "schema", "strict", "description"} if flat and kind == "json_schema" else set())
    if not flat and kind == "json_schema":
        allowed.add("json_schema")
    for key in value:
        if key not in allowed:
            raise refuse(f"{field}.{key}", f"is not a field of a {kind} format.")
    if kind == "text":
        return TEXT
    if kind == "json_object":
        return AnswerFormat("json_object")
    spec = value if flat else value.get("json_schema")
    where = field if flat else f"{field}.json_schema"
    if not isinstance(spec, dict):
        raise refuse(where, 'is required: {"name": ..., "schema": {...}}.')
    for key in spec:
        if key not in ("name", "schema", "strict", "description", "type"):
            raise refuse(f"{where}.{key}", "is not a field of a json_schema format.")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise refuse(f"{where}.name", "is required: 1-64 of a-z, A-Z, 0-9, _ and -.")
    description = spec.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise refuse(f"{where}.description", "must be a string of at most 2000 characters.")
    if not isinstance(spec.get("strict", False), bool | None):
        raise refuse(f"{where}.strict", "must be a boolean.")
    schema = spec.get("schema", ANY_OBJECT)
    try:
        grammar_form = answer_schema_check(schema, path=f"{where}.schema")  # bounds first: check_schema recurses
    except GrammarBoundsError as exc:
        raise refuse(exc.path or f"{where}.schema", f"can't be enforced: {exc.message}") from exc
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise refuse(f"{where}.schema", f"is not a valid JSON Schema: {exc.message}") from exc
    return AnswerFormat("json_schema", name=name, description=description, schema=schema, grammar_form=grammar_form)
