"""Anthropic's Messages API: POST /<app>/v1/messages, so that tools built for it work here too.

The `anthropic` package is its tested client (tests/chat/test_anthropic_api.py): its
`api_key` arrives as `X-Api-Key` (webapp.accounts.identity reads it like a Bearer key).
Stateless, like /v1/chat/completions, and through the same turn service and tool-call
grammar (webapp.chat.stateless, webapp.chat.openai_tools):

- `system` (a string or text blocks), `messages` with text, `tool_use` and `tool_result`
  blocks; a last assistant message is a prefill the reply goes on from;
- `max_tokens`, `stop_sequences` (the reply's `stop_sequence` names the one that matched),
  `temperature`, `top_p`, `top_k`, `metadata.user_id` (a service key's end user);
- `tools` (client tools: name, description, input_schema) and `tool_choice` (auto, any,
  tool, none): a call comes back as a `tool_use` block with stop_reason "tool_use";
- `output_config.format` (a JSON Schema the reply must match: structured output);
- `stream`: Anthropic's events (message_start, content_block_start/delta/stop,
  message_delta, message_stop). A reply that may be a call is sent once complete, as
  /v1/chat/completions does: a call can't be told from text before it ends.

Every other field is honoured or refused with a 400 naming it (`REFUSED`, `BLOCK_TYPES`):
images, documents, thinking, server tools, containers and MCP servers are not offered.
`cache_control` marks are accepted: prompt prefixes are cached here without them (each
slot keeps its KV cache and the persona's prefix is shared), so a mark asks for nothing
that is not done anyway.

Not in the OpenAPI description, for the reason /v1/chat/completions is not (see
webapp.chat.openai_api): Anthropic publishes its contract, and the SDK is the test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import serializers

from webapp.accounts.identity import Principal
from webapp.chat import runtime, stateless
from webapp.chat.errors import GenerationFailedError, anthropic_error, application_error
from webapp.chat.inputs import StrictBooleanField, StrictCharField
from webapp.chat.openai_tools import (
    NAME_PATTERN,
    TOOLS_MAX,
    FunctionSerializer,
    KnownFieldsMixin,
    Refusals,
    ToolPlan,
    call_text,
    fields_check,
    result_message,
    tool_calls_parse,
    tool_plan,
)
from webapp.chat.structured import AnswerFormat, answer_format_parse
from webapp.chat.turns import StatelessTurnRequest, TurnDone, TurnEvent, TurnText
from webapp.core.errors import error_body
from webapp.engine.engine import Completion
from webapp.engine.prompt import ChatMessage

MESSAGES_MAX = 200
CONTENT_MAX = 32_000
BLOCKS_MAX = 64
STOP_MAX = 8

REFUSED: Refusals = (
    ("thinking", (None, {"type": "disabled"}), "the model does not think before answering"),
    ("container", (None,), "code execution containers are not offered"),
    ("mcp_servers", (None, []), "MCP servers are not reached through this API"),
    ("diagnostics", (None,), "diagnostics are not offered"),
    ("inference_geo", (None,), "the model runs on this server; there is no region to choose"),
    ("speed", (None, "standard"), 'there is one speed: only "standard"'),
    ("user_profile_id", (None,), "user profiles are not kept; a service key names its end user in metadata"),
    ("workspace_id", (None,), "there are no workspaces; an API key belongs to one account"),
)
CACHE_CONTROL = ("cache_control", (None, {"type": "ephemeral"}), 'only {"type": "ephemeral"}')


def _blocks(value: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """A content value as a list of blocks: a string is one text block."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list) or not value or len(value) > BLOCKS_MAX:
        message = f"must be a string or a list of 1-{BLOCKS_MAX} content blocks."
        raise serializers.ValidationError({where: message} if where else message)
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") not in allowed:
            kind = block.get("type") if isinstance(block, dict) else None
            at = f"{where}.{i}.type" if where else f"{i}.type"
            raise serializers.ValidationError(
                {at: f"{kind!r} blocks are not supported here (supported: {', '.join(allowed)})."}
            )
    return value


def _text_of(block: dict[str, Any], where: str) -> str:
    refused = (CACHE_CONTROL, ("citations", (None, []), "citations are not supported"))
    problem = _fields_problem(block, {"type", "text"}, refused)
    if problem:
        raise serializers.ValidationError({f"{where}.{problem[0]}": problem[1]})
    text = block.get("text")
    if not isinstance(text, str) or len(text) > CONTENT_MAX:
        raise serializers.ValidationError({f"{where}.text": f"must be a string of at most {CONTENT_MAX} characters."})
    return text


def _fields_problem(body: dict[str, Any], known: set[str], refused: Refusals) -> tuple[str, str] | None:
    problem = fields_check(body, known, refused)
    return None if problem is None else (problem[0], problem[2])


class ToolSerializer(KnownFieldsMixin, serializers.Serializer):
    """A client tool. Server tools (web search, code execution ...) have a `type` and are refused."""

    refused: Refusals = (
        CACHE_CONTROL,
        ("input_examples", (None, []), "input examples are not supported; describe the input in description"),
        ("defer_loading", (None, False), "every tool is loaded with the request"),
        ("allowed_callers", (None,), "programmatic tool calling is not offered"),
        ("eager_input_streaming", (None, False), "a call is sent once it is complete"),
    )
    name = serializers.RegexField(NAME_PATTERN, error_messages={"invalid": "must be 1-64 of a-z, A-Z, 0-9, _ and -."})
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    input_schema = serializers.DictField()
    strict = serializers.BooleanField(required=False, allow_null=True)  # the grammar always enforces the schema
    type = serializers.ChoiceField(choices=["custom"], required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") not in (None, "custom"):
            raise serializers.ValidationError(
                {"type": [f"{data['type']!r}: server tools are not offered; only client tools (no type, or custom)."]}
            )
        return super().to_internal_value(data)

    def validate_input_schema(self, value: dict[str, Any]) -> dict[str, Any]:
        return FunctionSerializer().validate_parameters(value)


class OutputConfigSerializer(KnownFieldsMixin, serializers.Serializer):
    refused: Refusals = (("effort", (None,), "the model has one effort level"),)
    format = serializers.JSONField(required=False, allow_null=True)

    def validate_format(self, value: Any) -> AnswerFormat:
        if value is None:
            return AnswerFormat()
        if not isinstance(value, dict) or value.get("type") != "json_schema" or set(value) - {"type", "schema"}:
            raise serializers.ValidationError('must be {"type": "json_schema", "schema": {...}}.')
        flat = {"type": "json_schema", "name": "output", "schema": value.get("schema", {})}
        try:
            return answer_format_parse(flat, field="format", flat=True)
        except serializers.ValidationError as exc:  # keyed "format.<path>": DRF adds output_config.format
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            raise serializers.ValidationError({k.removeprefix("format."): v for k, v in detail.items()}) from exc


class MetadataSerializer(KnownFieldsMixin, serializers.Serializer):
    user_id = StrictCharField(required=False, allow_null=True, max_length=128)


class MessagesSerializer(KnownFieldsMixin, serializers.Serializer):
    refused = (*REFUSED, CACHE_CONTROL)
    model = StrictCharField(max_length=128)
    max_tokens = serializers.IntegerField(min_value=1)
    messages = serializers.ListField(child=serializers.DictField(), allow_empty=False, max_length=MESSAGES_MAX)
    system = serializers.JSONField(required=False, allow_null=True)
    stop_sequences = serializers.ListField(
        child=StrictCharField(max_length=256, trim_whitespace=False), required=False, max_length=STOP_MAX
    )
    stream = StrictBooleanField(default=False)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    top_k = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1000)
    metadata = MetadataSerializer(required=False)
    tools = ToolSerializer(many=True, required=False, max_length=TOOLS_MAX)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    output_config = OutputConfigSerializer(required=False)
    # One tier here: both values ask for what is done anyway.
    service_tier = serializers.ChoiceField(choices=["auto", "standard_only"], required=False)
    persona = StrictCharField(required=False, max_length=64)  # an extension, as on /v1/chat/completions

    def validate_system(self, value: Any) -> list[ChatMessage]:
        if value is None:
            return []
        # Paths here are relative: DRF puts "system." in front.
        texts = [_text_of(b, str(i)) for i, b in enumerate(_blocks(value, "", ("text",)))]
        return [ChatMessage("system", "\n\n".join(texts))]

    def validate_messages(self, value: list[dict[str, Any]]) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        names: dict[str, str] = {}  # tool_use id -> tool name, for the results
        for i, message in enumerate(value):
            where = str(i)  # relative: DRF puts "messages." in front
            problem = _fields_problem(message, {"role", "content"}, ())
            if problem:
                raise serializers.ValidationError({f"{where}.{problem[0]}": problem[1]})
            role = message.get("role")
            if role not in ("user", "assistant"):
                raise serializers.ValidationError({f"{where}.role": 'must be "user" or "assistant".'})
            allowed = ("text", "tool_use") if role == "assistant" else ("text", "tool_result")
            texts: list[str] = []
            for j, block in enumerate(_blocks(message.get("content"), f"{where}.content", allowed)):
                at = f"{where}.content.{j}"
                if block["type"] == "text":
                    texts.append(_text_of(block, at))
                elif block["type"] == "tool_use":
                    problem = _fields_problem(block, {"type", "id", "name", "input"}, (CACHE_CONTROL,))
                    if problem or not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                        raise serializers.ValidationError({at: "a tool_use block has id, name and an input object."})
                    names[str(block.get("id"))] = block["name"]
                    texts.append(call_text(block["name"], block["input"]))
                else:  # a tool result is a turn of its own, naming its tool (as on /v1/chat/completions)
                    if texts:
                        out.append(ChatMessage(role, "\n".join(texts)))
                        texts = []
                    out.append(result_message(*_result_of(block, at, names)))
            if texts:
                out.append(ChatMessage(role, "\n".join(texts)))
        if _has_tool_use(value[-1]):
            raise serializers.ValidationError("the last message can't call a tool: send its tool_result.")
        return out

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["input_schema"],
                },
            }
            for t in attrs.get("tools", [])
        ]
        plan = tool_plan(tools, _tool_choice(attrs.get("tool_choice"), bool(tools)))
        answer: AnswerFormat = attrs.get("output_config", {}).get("format") or AnswerFormat()
        try:
            attrs["grammar"] = plan.grammar(answer.grammar_schema())
        except Exception as exc:  # the converter raises plain exceptions for schemas it can't express
            field = "output_config.format" if answer.structured else "tools"
            raise serializers.ValidationError({field: f"a schema can't be enforced: {exc}"}) from exc
        attrs["tool_plan"], attrs["answer_format"] = plan, answer
        return attrs


def _result_of(block: dict[str, Any], at: str, names: dict[str, str]) -> tuple[str, str]:
    """A tool_result block as (the tool's name, its result text)."""
    refused = (CACHE_CONTROL, ("toolset_name", (None,), "toolsets are not offered"))
    problem = _fields_problem(block, {"type", "tool_use_id", "content", "is_error"}, refused)
    if problem:
        raise serializers.ValidationError({f"{at}.{problem[0]}": problem[1]})
    content = block.get("content", "")
    if isinstance(content, list):
        blocks = _blocks(content, f"{at}.content", ("text",))
        content = "\n".join(_text_of(b, f"{at}.content.{k}") for k, b in enumerate(blocks))
    if not isinstance(content, str) or len(content) > CONTENT_MAX:
        raise serializers.ValidationError({f"{at}.content": f"must be text of at most {CONTENT_MAX} characters."})
    if block.get("is_error") is True:
        content = f"(error) {content}"
    return names.get(str(block.get("tool_use_id")), "the tool"), content


def _has_tool_use(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)


def _tool_choice(value: Any, has_tools: bool) -> Any:
    """Anthropic's tool_choice as OpenAI's (what tool_plan reads)."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        raise serializers.ValidationError({"tool_choice.type": 'must be "auto", "any", "tool" or "none".'})
    extra = set(value) - {"type", "name", "disable_parallel_tool_use"}
    if extra:
        raise serializers.ValidationError({f"tool_choice.{sorted(extra)[0]}": "unknown parameter"})
    # disable_parallel_tool_use: a reply holds at most one call, which both values allow.
    kind = value["type"]
    if kind == "tool":
        return {"type": "function", "function": {"name": value.get("name")}}
    return {"any": "required"}.get(kind, kind) if has_tools or kind == "none" else kind


def _turn_request(data: dict[str, Any], who: Principal, ip: str) -> StatelessTurnRequest:
    sampling = stateless.sampling_for(
        max_tokens=data["max_tokens"],
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        top_k=data.get("top_k"),
        stop=data.get("stop_sequences") or (),
    )
    return stateless.turn_request(
        persona=stateless.persona_for(data["model"], data.get("persona")),
        system=data.get("system") or [],
        messages=data["messages"],
        plan=data["tool_plan"],
        answer=data["answer_format"],
        grammar=data["grammar"],
        sampling=sampling,
        who=who,
        user=(data.get("metadata") or {}).get("user_id"),
        ip=ip,
    )


async def messages(request: HttpRequest) -> HttpResponse:
    """POST v1/messages (method checked by the route's `methods_only`)."""
    counted = runtime.CountedRequest()  # finished when the reply is out (or the request failed)
    try:
        data, events = await stateless.turn_accept(request, MessagesSerializer, _turn_request)
    except Exception as exc:
        counted.finish()
        return anthropic_error(exc)
    reply = _Reply(model=data["model"], plan=data["tool_plan"], answer=data["answer_format"])
    if data["stream"]:
        return stateless.event_stream(_sse(events, reply, counted))
    with counted:
        try:
            done = await stateless.done_await(events)
            content, stop_reason = reply.content(done.completion)
        except Exception as exc:
            return anthropic_error(exc)
        counted.succeeded()
    return JsonResponse(reply.message(content, stop_reason, done.completion))


class _Reply:
    """One reply in Anthropic's shapes."""

    def __init__(self, *, model: str, plan: ToolPlan, answer: AnswerFormat) -> None:
        self.id = f"msg_{uuid.uuid4().hex[:24]}"
        self.model = model
        self.plan = plan
        self.answer = answer

    def content(self, completion: Completion) -> tuple[list[dict[str, Any]], str]:
        """The reply's blocks and stop_reason; raises if a structured answer does not validate."""
        calls = tool_calls_parse(completion.text, self.plan)
        if calls:
            call = calls[0]
            block = {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"]),
            }
            return [block], "tool_use"
        self.answer.reply_check(completion.text, completion.finish_reason)
        return [{"type": "text", "text": completion.text}], _stop_reason(completion)

    def message(
        self, content: list[dict[str, Any]], stop_reason: str | None, completion: Completion | None
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": completion.stop_sequence if completion and stop_reason == "stop_sequence" else None,
            "usage": _usage(completion),
        }


def _stop_reason(completion: Completion) -> str:
    if completion.finish_reason in ("length", "deadline"):
        return "max_tokens"
    return "stop_sequence" if completion.stop_sequence is not None else "end_turn"


def _usage(completion: Completion | None) -> dict[str, int]:
    if completion is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": completion.usage.prompt_tokens, "output_tokens": completion.usage.completion_tokens}


def _event(kind: str, body: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **body}, ensure_ascii=False)}\n\n".encode()


async def _sse(
    events: AsyncIterator[TurnEvent], reply: _Reply, counted: runtime.CountedRequest
) -> AsyncIterator[bytes]:
    """Anthropic's event stream. Text streams as it is written; a reply that may be a tool
    call is sent once complete. If the client goes away, closing the events cancels it."""
    try:
        yield _event("message_start", {"message": reply.message([], None, None)})
        streaming = not reply.plan.active
        if streaming:
            yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        try:
            done: TurnDone | None = None
            async for event in events:
                if isinstance(event, TurnText) and streaming:
                    yield _event(
                        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": event.text}}
                    )
                elif isinstance(event, TurnDone):
                    done = event
            if done is None:
                raise GenerationFailedError("generation ended without a result")
            content, stop_reason = reply.content(done.completion)
        except Exception as exc:
            error = application_error(exc) or GenerationFailedError("generation failed; see the server log")
            yield _event("error", {"error": {**error_body(error)["error"], "type": "api_error"}})
            return
        if not streaming:
            block = content[0]
            if block["type"] == "tool_use":
                yield _event("content_block_start", {"index": 0, "content_block": {**block, "input": {}}})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"], ensure_ascii=False)}
            else:
                yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                delta = {"type": "text_delta", "text": block["text"]}
            yield _event("content_block_delta", {"index": 0, "delta": delta})
        yield _event("content_block_stop", {"index": 0})
        final = reply.message(content, stop_reason, done.completion)
        yield _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": final["stop_sequence"]},
                "usage": {"output_tokens": done.completion.usage.completion_tokens},
            },
        )
        yield _event("message_stop", {})
        counted.succeeded()
    finally:
        counted.finish()
        await events.aclose()
