"""OpenAI function calling for /v1/chat/completions: `tools`, `tool_choice`, and `tool_calls` replies.

The client describes its functions with JSON Schemas. We tell the model about them in a
system message and constrain its reply with a grammar built from those schemas (see
webapp.engine.grammar), so a call's `arguments` always parse and match the schema of the
function it names. tool_choice "required" or a named function allows only calls;
"auto" allows a call or plain text; "none" offers no tools. As with OpenAI, the client
runs the functions and sends the results back as `tool` messages.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from rest_framework import serializers

from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.grammar import (
    GrammarBoundsError,
    answer_grammar,
    schema_check,
    tool_call_grammar,
    tools_instruction,
)
from webapp.engine.prompt import ChatMessage

TOOLS_MAX = 32
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


Refusals = tuple[tuple[str, tuple[Any, ...], str], ...]


def fields_check(body: dict[str, Any], known: set[str], refused: Refusals = ()) -> tuple[str, str, str] | None:
    """Honour or refuse: the first field of `body` that is neither implemented (`known`) nor
    asking for nothing, as (field, code, message); None when every field is honoured.

    `refused` lists fields OpenAI defines that are not implemented here: (field, the values
    that ask for nothing, why). Any other value of them is "unsupported_parameter"; a field
    in neither list is "unknown_parameter". Nothing a client sends is silently ignored.
    """
    reasons = {name: (quiet, why) for name, quiet, why in refused}
    for name, value in body.items():
        if name in known:
            continue
        if name not in reasons:
            return name, "unknown_parameter", "unknown parameter"
        quiet, why = reasons[name]
        if not any(value == q and type(value) is type(q) for q in quiet):
            return name, "unsupported_parameter", why
    return None


class KnownFieldsMixin:
    """A serializer that refuses fields it does not declare (DRF drops them silently)."""

    refused: Refusals = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            problem = fields_check(data, set(self.fields), self.refused)  # type: ignore[attr-defined]
            if problem is not None:
                field, code, message = problem
                raise serializers.ValidationError({field: [serializers.ErrorDetail(message, code=code)]})
        return super().to_internal_value(data)  # type: ignore[misc]


class FunctionSerializer(KnownFieldsMixin, serializers.Serializer):
    name = serializers.RegexField(NAME_PATTERN, error_messages={"invalid": "must be 1-64 of a-z, A-Z, 0-9, _ and -."})
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    parameters = serializers.DictField(required=False)
    # The grammar always enforces the parameters schema, so both values are honoured.
    strict = serializers.BooleanField(required=False, allow_null=True)

    def validate_parameters(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            schema_check(value)  # first: check_schema recurses, and the grammar must stay small
        except GrammarBoundsError as exc:
            raise serializers.ValidationError(f"can't be enforced: {exc}") from exc
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise serializers.ValidationError(f"is not a valid JSON Schema: {exc.message}") from exc
        if value.get("type", "object") != "object":
            raise serializers.ValidationError('must describe an object ({"type": "object", ...}).')
        return value


class ToolSerializer(KnownFieldsMixin, serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    function = FunctionSerializer()


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]


ChoiceMode = Literal["none", "auto", "required"]


@dataclass(frozen=True)
class ToolPlan:
    """What the request's tools and tool_choice mean for one generation."""

    offered: tuple[Function, ...]  # the functions the model may call
    mode: ChoiceMode

    @property
    def active(self) -> bool:
        return bool(self.offered) and self.mode != "none"

    def grammar(self, answer_schema: dict[str, Any] | None = None) -> str | None:
        """The reply's grammar: a call, or (tool_choice "auto") an answer, which is JSON
        matching `answer_schema` when given (structured output), else free text."""
        if not self.active:
            return answer_grammar(answer_schema) if answer_schema is not None else None
        pairs = [(f.name, f.parameters) for f in self.offered]
        if self.mode == "auto" and answer_schema is not None:
            return tool_call_grammar(pairs, answer_schema=answer_schema)
        return tool_call_grammar(pairs, allow_text=self.mode == "auto")

    def system_message(self) -> ChatMessage | None:
        if not self.active:
            return None
        listed = [(f.name, f.description, f.parameters) for f in self.offered]
        return ChatMessage("system", tools_instruction(listed, required=self.mode == "required"))


def tool_plan(tools: list[dict[str, Any]] | None, tool_choice: Any) -> ToolPlan:
    """Read `tools` (validated by ToolSerializer) and `tool_choice`; raise ValidationError naming the field."""
    functions = tuple(
        Function(
            name=t["function"]["name"],
            description=t["function"].get("description", ""),
            parameters=t["function"].get("parameters") or EMPTY_PARAMETERS,
        )
        for t in tools or []
    )
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise serializers.ValidationError({"tools": "function names must be unique."})
    if tool_choice is None:
        return ToolPlan(functions, "auto" if functions else "none")
    if tool_choice in ("none", "auto", "required"):
        if tool_choice != "none" and not functions:
            raise serializers.ValidationError({"tool_choice": f"'{tool_choice}' needs a non-empty `tools` list."})
        return ToolPlan(functions, tool_choice)
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        wanted = (tool_choice.get("function") or {}).get("name")
        chosen = tuple(f for f in functions if f.name == wanted)
        if not chosen:
            raise serializers.ValidationError({"tool_choice": f"names function {wanted!r}, which is not in `tools`."})
        return ToolPlan(chosen, "required")
    raise serializers.ValidationError(
        {"tool_choice": 'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.'}
    )


def call_text(name: str, arguments: Any) -> str:
    """An earlier call as the model writes one (what the tool grammar admits)."""
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def result_message(name: str, content: str) -> ChatMessage:
    """A function's result as the model reads it: a user turn naming the function."""
    return ChatMessage("user", f"Result of {name}: {content}")


def messages_with_tools(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """The request's messages as chat-template turns: an assistant's tool_calls become the
    JSON it would have written, and a tool result becomes a user turn naming its function."""
    names: dict[str, str] = {}
    out: list[ChatMessage] = []
    for m in messages:
        role = m["role"]
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                function = call.get("function", {})
                names[call.get("id", "")] = function.get("name", "")
                try:
                    arguments = json_loads_bounded(function.get("arguments") or "{}")
                except JsonInputError:
                    arguments = function.get("arguments")  # shown to the model as the client sent it
                calls.append(call_text(function.get("name"), arguments))
            out.append(ChatMessage("assistant", "\n".join(calls)))
        elif role == "tool":
            out.append(result_message(names.get(m.get("tool_call_id", ""), "the function"), m["content"]))
        else:
            out.append(ChatMessage("system" if role == "developer" else role, m["content"] or ""))
    return out


def tool_calls_parse(text: str, plan: ToolPlan) -> list[dict[str, Any]] | None:
    """The reply as OpenAI tool_calls, or None when it is a plain answer."""
    if not plan.active or not text.lstrip().startswith("{"):
        return None
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None  # cut off by max_tokens: the client gets the text and finish_reason "length"
    offered = {f.name for f in plan.offered}
    if not isinstance(call, dict) or call.get("name") not in offered:
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}), ensure_ascii=False)},
        }
    ]
