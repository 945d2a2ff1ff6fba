"""OpenAI's Responses API: POST /<app>/v1/responses, stateless like /v1/chat/completions.

The official `openai` package is its tested client (tests/chat/test_openai_responses.py).
Through the same turn service, tool-call grammar and structured-output grammar as chat
completions (webapp.chat.stateless):

- `input`: a string, or items: messages (text parts; an assistant's `output_text` echoed
  back), `function_call` and `function_call_output`; `instructions` is a system message;
- `max_output_tokens`, `temperature`, `top_p`, `user` (a service key's end user);
- `tools` (function tools) and `tool_choice`: a call comes back as a `function_call`
  item; `max_tool_calls` and `parallel_tool_calls` are honoured (a reply holds at most one
  call, so any limit of one or more and either flag allow it);
- `text.format`: structured output (json_object, json_schema), as `response_format`;
- `stream`: the API's events (response.created, output_item.added, output_text.delta ...,
  response.completed or response.incomplete), each with its sequence_number;
- `truncation`: "auto" (history that does not fit is dropped, oldest turns first, which
  is what happens here); "disabled" is refused, since it would be ignored.

Nothing is stored: `store: true`, `previous_response_id`, `conversation` and `background`
are refused with a 400 naming them, as is every field not implemented here (`REFUSED`).
Not in the OpenAPI description, for the reason /v1/chat/completions is not.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import serializers

from webapp.accounts.identity import Principal
from webapp.chat import runtime, stateless
from webapp.chat.errors import GenerationFailedError, application_error, openai_error
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
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.engine import Completion
from webapp.engine.prompt import ChatMessage

ITEMS_MAX = 200
CONTENT_MAX = 32_000
PARTS_MAX = 64

REFUSED: Refusals = (
    ("access_programs", (None,), "access programs are not offered"),
    ("background", (None, False), "responses run while the request is open; background runs are not offered"),
    ("background_options", (None,), "background runs are not offered"),
    ("context_management", (None, []), "context is managed by truncation: auto"),
    (
        "conversation",
        (None,),
        "conversations are not kept by this API (the chat API at /<app>/conversations keeps them)",
    ),
    ("image", (None,), "image generation is not offered"),
    ("include", (None, []), "no extra output can be included"),
    ("metadata", (None, {}), "is kept only with stored responses, which are not supported"),
    ("moderation", (None,), "moderation is not offered"),
    ("previous_response_id", (None,), "responses are not stored: send the whole input"),
    ("prompt", (None,), "stored prompt templates are not offered"),
    ("prompt_cache_key", (None,), "prompts are cached by their prefix, automatically; a key is not used"),
    ("prompt_cache_options", (None,), "prompts are cached by their prefix, automatically"),
    ("prompt_cache_retention", (None,), "prompts are cached by their prefix, automatically"),
    ("reasoning", (None,), "the model does not reason before answering"),
    ("safety_identifier", (None,), "is not used; a service key names its end user with `user`"),
    ("service_tier", (None, "auto", "default"), 'there is one service tier: only "auto" or "default"'),
    ("store", (None, False), "responses are not stored: only store: false"),
    ("top_logprobs", (None, 0), "log-probabilities are offered on /v1/chat/completions, not here"),
)
_ECHO_STATUS = ("status", (None, "completed", "in_progress", "incomplete"), "an item's status is not read")


def _refuse(where: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({where: message})


def _fields(item: dict[str, Any], where: str, known: set[str], refused: Refusals = ()) -> None:
    problem = fields_check(item, known, refused)
    if problem is not None:
        raise _refuse(f"{where}.{problem[0]}", problem[2])


def _text(content: Any, where: str, part_types: tuple[str, ...]) -> str:
    """A message's content (a string or text parts) as one text."""
    if isinstance(content, str):
        parts = [content]
    elif isinstance(content, list) and 0 < len(content) <= PARTS_MAX:
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in part_types:
                kind = part.get("type") if isinstance(part, dict) else None
                raise _refuse(
                    f"{where}.{i}.type", f"{kind!r} parts are not supported (supported: {', '.join(part_types)})."
                )
            _fields(part, f"{where}.{i}", {"type", "text", "annotations", "logprobs"})
            if not isinstance(part.get("text"), str):
                raise _refuse(f"{where}.{i}.text", "must be a string.")
            parts.append(part["text"])
    else:
        raise _refuse(where, f"must be a string or a list of 1-{PARTS_MAX} text parts.")
    text = "".join(parts)
    if len(text) > CONTENT_MAX:
        raise _refuse(where, f"must be at most {CONTENT_MAX} characters.")
    return text


def input_messages(value: Any) -> list[ChatMessage]:
    """`input` as chat-template turns (relative paths: DRF puts "input." in front)."""
    if isinstance(value, str):
        if not value or len(value) > CONTENT_MAX:
            raise serializers.ValidationError(f"must be 1-{CONTENT_MAX} characters.")
        return [ChatMessage("user", value)]
    if not isinstance(value, list) or not value or len(value) > ITEMS_MAX:
        raise serializers.ValidationError(f"must be a string or a list of 1-{ITEMS_MAX} items.")
    out: list[ChatMessage] = []
    names: dict[str, str] = {}  # call_id -> function name, for the outputs
    for i, item in enumerate(value):
        where = str(i)
        if not isinstance(item, dict):
            raise _refuse(where, "must be an object.")
        kind = item.get("type", "message")
        if kind == "message":
            _fields(item, where, {"type", "role", "content", "id", "phase"}, (_ECHO_STATUS,))
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _refuse(f"{where}.role", 'must be "user", "assistant", "system" or "developer".')
            parts = ("output_text",) if role == "assistant" else ("input_text",)
            text = _text(item.get("content"), f"{where}.content", parts)
            out.append(ChatMessage("system" if role == "developer" else role, text))
        elif kind == "function_call":
            _fields(
                item,
                where,
                {"type", "id", "call_id", "name", "arguments"},
                (
                    _ECHO_STATUS,
                    ("namespace", (None,), "namespaces are not offered"),
                    ("caller", (None,), "is not read"),
                ),
            )
            name, arguments = item.get("name"), item.get("arguments")
            if not isinstance(name, str) or not isinstance(arguments, str) or not isinstance(item.get("call_id"), str):
                raise _refuse(where, "a function_call has call_id, name and arguments (a JSON string).")
            try:
                parsed = json_loads_bounded(arguments)
            except JsonInputError:
                parsed = arguments  # shown to the model as the client sent it
            names[item["call_id"]] = name
            out.append(ChatMessage("assistant", call_text(name, parsed)))
        elif kind == "function_call_output":
            _fields(
                item,
                where,
                {"type", "id", "call_id", "output"},
                (
                    _ECHO_STATUS,
                    ("caller", (None,), "is not read"),
                    ("name", (None,), "is read from the call"),
                    ("namespace", (None,), "namespaces are not offered"),
                ),
            )
            output = _text(item.get("output"), f"{where}.output", ("input_text",))
            out.append(result_message(names.get(str(item.get("call_id")), "the function"), output))
        else:
            raise _refuse(
                f"{where}.type",
                f"{kind!r} items are not supported (supported: message, function_call, function_call_output).",
            )
    if out[-1].role != "user":
        raise serializers.ValidationError("the last item must be a user message or a function_call_output.")
    return out


class FunctionToolSerializer(KnownFieldsMixin, serializers.Serializer):
    """A function tool, flat as this API spells it. Hosted tools (web_search, file_search, mcp ...) are refused."""

    refused: Refusals = (("defer_loading", (None, False), "every tool is loaded with the request"),)
    type = serializers.ChoiceField(
        choices=["function"], error_messages={"invalid_choice": "{input!r} tools are not offered; only function tools."}
    )
    name = serializers.RegexField(NAME_PATTERN, error_messages={"invalid": "must be 1-64 of a-z, A-Z, 0-9, _ and -."})
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=2000)
    parameters = serializers.DictField(required=False, allow_null=True)
    strict = serializers.BooleanField(required=False, allow_null=True)  # the grammar always enforces the schema

    def validate_parameters(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else FunctionSerializer().validate_parameters(value)


class TextConfigSerializer(KnownFieldsMixin, serializers.Serializer):
    refused: Refusals = (("verbosity", (None, "medium"), "is not supported; ask for length in the input"),)
    format = serializers.JSONField(required=False, allow_null=True)

    def validate_format(self, value: Any) -> AnswerFormat:
        try:
            return answer_format_parse(value, field="format", flat=True)
        except serializers.ValidationError as exc:  # keyed "format.<path>": DRF adds text.format
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            raise serializers.ValidationError(
                {k.removeprefix("format").lstrip("."): v for k, v in detail.items()}
            ) from exc


class StreamOptionsSerializer(KnownFieldsMixin, serializers.Serializer):
    refused: Refusals = (("include_obfuscation", (None, False), "stream events are not padded for obfuscation"),)


class ResponseSerializer(KnownFieldsMixin, serializers.Serializer):
    refused = REFUSED
    model = StrictCharField(max_length=128)
    input = serializers.JSONField()
    instructions = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=CONTENT_MAX)
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_tool_calls = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    text = TextConfigSerializer(required=False)
    tools = FunctionToolSerializer(many=True, required=False, max_length=TOOLS_MAX)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    truncation = serializers.ChoiceField(
        choices=["auto"],
        required=False,
        allow_null=True,
        error_messages={"invalid_choice": 'only "auto": history that does not fit is dropped, oldest turns first.'},
    )
    user = StrictCharField(required=False, max_length=128)
    stream = StrictBooleanField(default=False)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    persona = StrictCharField(required=False, max_length=64)  # an extension, as on /v1/chat/completions

    def validate_input(self, value: Any) -> list[ChatMessage]:
        return input_messages(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tools = [
            {
                "type": "function",
                "function": {
                    k: v for k, v in t.items() if k in ("name", "description", "parameters") and v is not None
                },
            }
            for t in attrs.get("tools", [])
        ]
        plan = tool_plan(tools, _tool_choice(attrs.get("tool_choice")))
        answer: AnswerFormat = (attrs.get("text") or {}).get("format") or AnswerFormat()
        try:
            attrs["grammar"] = plan.grammar(answer.grammar_schema())
        except Exception as exc:  # the converter raises plain exceptions for schemas it can't express
            field = "text.format" if answer.structured else "tools"
            raise serializers.ValidationError({field: f"a schema can't be enforced: {exc}"}) from exc
        attrs["tool_plan"], attrs["answer_format"] = plan, answer
        return attrs


def _tool_choice(value: Any) -> Any:
    """This API's tool_choice as chat completions' (what tool_plan reads)."""
    if isinstance(value, dict):
        if value.get("type") != "function" or set(value) - {"type", "name"}:
            raise serializers.ValidationError(
                {"tool_choice": 'must be "none", "auto", "required" or {"type": "function", "name": ...}.'}
            )
        return {"type": "function", "function": {"name": value.get("name")}}
    return value


def _turn_request(data: dict[str, Any], who: Principal, ip: str) -> StatelessTurnRequest:
    messages: list[ChatMessage] = data["input"]
    leading_system = 0
    while leading_system < len(messages) - 1 and messages[leading_system].role == "system":
        leading_system += 1
    instructions = [ChatMessage("system", data["instructions"])] if data.get("instructions") else []
    return stateless.turn_request(
        persona=stateless.persona_for(data["model"], data.get("persona")),
        system=[*instructions, *messages[:leading_system]],
        messages=messages[leading_system:],
        plan=data["tool_plan"],
        answer=data["answer_format"],
        grammar=data["grammar"],
        sampling=stateless.sampling_for(
            max_tokens=data.get("max_output_tokens"), temperature=data.get("temperature"), top_p=data.get("top_p")
        ),
        who=who,
        user=data.get("user"),
        ip=ip,
    )


async def responses(request: HttpRequest) -> HttpResponse:
    """POST v1/responses (method checked by the route's `methods_only`)."""
    counted = runtime.CountedRequest()  # finished when the reply is out (or the request failed)
    try:
        data, events = await stateless.turn_accept(request, ResponseSerializer, _turn_request)
    except Exception as exc:
        counted.finish()
        return openai_error(exc)
    reply = _Reply(data)
    if data["stream"]:
        return stateless.event_stream(_sse(events, reply, counted))
    with counted:
        try:
            done = await stateless.done_await(events)
            item = reply.item(done.completion)
        except Exception as exc:
            return openai_error(exc)
        counted.succeeded()
    return JsonResponse(reply.response(done.completion, [item]))


class _Reply:
    """One response in this API's shapes."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.data = data
        self.plan: ToolPlan = data["tool_plan"]
        self.answer: AnswerFormat = data["answer_format"]

    def item(self, completion: Completion) -> dict[str, Any]:
        """The output item: a function_call, or the message (raises if a structured answer does not validate)."""
        calls = tool_calls_parse(completion.text, self.plan)
        if calls:
            function = calls[0]["function"]
            return {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex}",
                "call_id": calls[0]["id"],
                "name": function["name"],
                "arguments": function["arguments"],
                "status": "completed",
            }
        self.answer.reply_check(completion.text, completion.finish_reason)
        return self.message(completion.text, "completed" if _complete(completion) else "incomplete")

    def message(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    def response(self, completion: Completion | None, output: list[dict[str, Any]]) -> dict[str, Any]:
        data = self.data
        status = "in_progress" if completion is None else "completed" if _complete(completion) else "incomplete"
        answer = self.answer
        text_format: dict[str, Any] = {"type": answer.kind}
        if answer.kind == "json_schema":
            text_format.update(name=answer.name, schema=answer.schema, strict=True)
        usage = None
        if completion is not None:
            done = completion.usage
            usage = {
                "input_tokens": done.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": done.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "model": data["model"],
            "output": output,
            "parallel_tool_calls": data.get("parallel_tool_calls", True) is not False,
            "previous_response_id": None,
            "store": False,
            "background": False,
            "temperature": data.get("temperature"),
            "top_p": data.get("top_p"),
            "tool_choice": self.plan.mode if not isinstance(data.get("tool_choice"), dict) else data["tool_choice"],
            "tools": [dict(t) for t in data.get("tools", [])],
            "text": {"format": text_format},
            "truncation": "auto",
            "usage": usage,
            "user": data.get("user"),
            "metadata": {},
        }


def _complete(completion: Completion) -> bool:
    return completion.finish_reason not in ("length", "deadline")


async def _sse(
    events: AsyncIterator[TurnEvent], reply: _Reply, counted: runtime.CountedRequest
) -> AsyncIterator[bytes]:
    """The API's event stream. Text streams as it is written; a reply that may be a function
    call is sent once complete. If the client goes away, closing the events cancels it."""
    sequence = 0

    def event(kind: str, body: dict[str, Any]) -> bytes:
        nonlocal sequence
        sequence += 1
        payload = {"type": kind, "sequence_number": sequence - 1, **body}
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    where = {"item_id": reply.item_id, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    try:
        yield event("response.created", {"response": reply.response(None, [])})
        yield event("response.in_progress", {"response": reply.response(None, [])})
        streaming = not reply.plan.active
        if streaming:
            yield event("response.output_item.added", {"output_index": 0, "item": reply.message(None, "in_progress")})
            yield event("response.content_part.added", {**where, "part": empty_part})
        try:
            done: TurnDone | None = None
            async for turn_event in events:
                if isinstance(turn_event, TurnText) and streaming:
                    yield event("response.output_text.delta", {**where, "delta": turn_event.text, "logprobs": []})
                elif isinstance(turn_event, TurnDone):
                    done = turn_event
            if done is None:
                raise GenerationFailedError("generation ended without a result")
            item = reply.item(done.completion)
        except Exception as exc:
            error = application_error(exc) or GenerationFailedError("generation failed; see the server log")
            body = error_body(error)["error"]
            yield event("error", {"code": body["code"], "message": body["message"], "param": body.get("field")})
            return
        if item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "arguments": "", "status": "in_progress"}},
            )
            at = {"item_id": item["id"], "output_index": 0}
            yield event("response.function_call_arguments.delta", {**at, "delta": item["arguments"]})
            yield event(
                "response.function_call_arguments.done", {**at, "name": item["name"], "arguments": item["arguments"]}
            )
        else:
            if not streaming:
                yield event(
                    "response.output_item.added", {"output_index": 0, "item": reply.message(None, "in_progress")}
                )
                yield event("response.content_part.added", {**where, "part": empty_part})
                yield event("response.output_text.delta", {**where, "delta": done.completion.text, "logprobs": []})
            text = done.completion.text
            yield event("response.output_text.done", {**where, "text": text, "logprobs": []})
            yield event("response.content_part.done", {**where, "part": {**empty_part, "text": text}})
        yield event("response.output_item.done", {"output_index": 0, "item": item})
        final = reply.response(done.completion, [item])
        yield event(
            "response.completed" if final["status"] == "completed" else "response.incomplete", {"response": final}
        )
        counted.succeeded()
    finally:
        counted.finish()
        await events.aclose()
