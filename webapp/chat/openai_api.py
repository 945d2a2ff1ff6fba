"""OpenAI-compatible endpoints: GET /<app>/v1/models and POST /<app>/v1/chat/completions.

So that the official `openai` package, IDEs and other chat front ends can use either
app. Stateless, like OpenAI: the client sends the whole conversation every time.
(/v1/responses and Anthropic's /v1/messages are their own modules; what the three share
is webapp.chat.stateless.)

Every field of the SDK's request is honoured or refused with a 400 naming it (`REFUSED`,
and KnownFieldsMixin on each nested object): tools and `response_format` (structured
output, webapp.chat.structured) constrain the reply with a grammar; `logprobs`,
`logit_bias` and the penalties come from the engine's sampler.

Model names: the app's model alias serves the messages as they are; a persona id (see
/v1/models) puts that persona in front of them. An extra body field `persona` does the
same whatever the model name.

Authentication: an API key (`Authorization: Bearer`, the SDK's `api_key`), as OpenAI's
own API; a session cookie is not read here (these views take no CSRF token). `user` never
picks the account: with a personal key it may only name the account itself, with a
service key it names one of the key's end users (whose documents ground the reply).
/v1/models is public: it lists model names only.

These are async Django views (not DRF) because they stream Server-Sent Events. Input is
validated with a DRF serializer (pure, fast); submitting renders and tokenizes the
prompt, so it runs on a worker thread; tokens are awaited from the engine's thread.
Errors have the project's shape plus OpenAI's `type` and `param` keys, which its SDK reads.

In the OpenAPI description (GET /<app>/schema): GET v1/models is there, through its
schema-only twin `ModelListSchema`. POST v1/chat/completions is left out on purpose. Its
contract is OpenAI's (OpenAI publishes the reference; the official `openai` package is its
tested client, tests/chat/test_openai_api.py), and its body can't be stated truthfully in
OpenAPI 3.0: whether `tools[].function.parameters` is accepted depends on llama.cpp's
grammar converter being able to enforce that schema, and `messages` has rules by role and
position (the last one is the user's or a tool's; content may be null only for an
assistant's tool calls). A description would be looser or stricter than the endpoint, and
a client generated from it wrong one way or the other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from webapp.accounts.identity import Principal
from webapp.chat import runtime, stateless
from webapp.chat.errors import GenerationFailedError, application_error, openai_error
from webapp.chat.inputs import StrictBooleanField, StrictCharField
from webapp.chat.openai_tools import (
    TOOLS_MAX,
    KnownFieldsMixin,
    Refusals,
    ToolPlan,
    ToolSerializer,
    messages_with_tools,
    tool_calls_parse,
    tool_plan,
)
from webapp.chat.schema import schema_only_endpoint
from webapp.chat.structured import AnswerFormat, answer_format_parse
from webapp.chat.turns import StatelessTurnRequest, TurnDone, TurnEvent, TurnText
from webapp.core.errors import ApplicationError, error_body
from webapp.engine.engine import Completion

MESSAGES_MAX = 200
CONTENT_MAX = 32_000
STOP_MAX = 4
TOP_LOGPROBS_MAX = 20
LOGIT_BIAS_MAX = 300


class ToolCallFunctionSerializer(KnownFieldsMixin, serializers.Serializer):
    name = StrictCharField(max_length=64)
    arguments = StrictCharField(allow_blank=True, max_length=CONTENT_MAX, trim_whitespace=False)


class ToolCallSerializer(KnownFieldsMixin, serializers.Serializer):
    """An assistant message's earlier call, as OpenAI sends it back: arguments are a JSON string."""

    id = StrictCharField(required=False, max_length=128)
    type = serializers.ChoiceField(choices=["function"], required=False)
    function = ToolCallFunctionSerializer()


MESSAGE_REFUSED: Refusals = (
    ("name", (None,), "participant names are not supported"),
    ("refusal", (None,), "an assistant's refusal can't be replayed; send it as content"),
    ("audio", (None,), "audio is not supported"),
    ("function_call", (None,), "the deprecated functions API is not supported: use tool_calls"),
    ("annotations", (None, []), "annotations are not supported"),
)


class MessageSerializer(KnownFieldsMixin, serializers.Serializer):
    refused = MESSAGE_REFUSED
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = serializers.JSONField(allow_null=True, required=False, default=None)
    tool_calls = serializers.ListField(child=ToolCallSerializer(), required=False, max_length=16)
    tool_call_id = StrictCharField(required=False, max_length=128)

    def validate_content(self, value: Any) -> str | None:
        # OpenAI allows a string or a list of parts; only text parts mean anything here.
        # null is allowed where OpenAI allows it: an assistant message that only calls tools.
        if value is None:
            return None
        if isinstance(value, str):
            text = value
        elif isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
            text = "".join(str(p.get("text", "")) for p in value)
        else:
            raise serializers.ValidationError("must be a string or a list of text parts.")
        if len(text) > CONTENT_MAX:
            raise serializers.ValidationError(f"must be at most {CONTENT_MAX} characters.")
        return text

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("content") is None and not (attrs["role"] == "assistant" and attrs.get("tool_calls")):
            raise serializers.ValidationError({"content": "is required (null only for an assistant's tool_calls)."})
        if attrs["role"] == "tool" and not attrs.get("tool_call_id"):
            raise serializers.ValidationError({"tool_call_id": "is required for a tool message."})
        return attrs


class StreamOptionsSerializer(KnownFieldsMixin, serializers.Serializer):
    refused: Refusals = (("include_obfuscation", (None, False), "stream chunks are not padded for obfuscation"),)
    include_usage = StrictBooleanField(default=False)


# Request fields OpenAI defines that this server does not implement: a value other than
# the one that asks for nothing is refused with a 400 naming the field, never ignored.
# (field, the values that ask for nothing, why it is refused)
REFUSED: Refusals = (
    ("audio", (None,), "audio output is not supported: the model writes text"),
    ("modalities", (None, ["text"]), 'only ["text"] is supported: the model writes text'),
    ("prediction", (None,), "predicted outputs are not supported"),
    ("reasoning_effort", (None,), "the model does not reason before answering"),
    ("verbosity", (None,), "is not supported; ask for length in the messages, or set max_tokens"),
    ("web_search_options", (None,), "web search is not offered through this API"),
    ("store", (None, False), "chat completions are not stored"),
    ("metadata", (None, {}), "is kept only with stored completions, which are not supported"),
    ("service_tier", (None, "auto", "default"), 'there is one service tier: only "auto" or "default"'),
    ("functions", (None, []), "the deprecated functions API is not supported: use tools"),
    ("function_call", (None,), "the deprecated functions API is not supported: use tool_choice"),
    ("prompt_cache_key", (None,), "prompts are cached by their prefix, automatically; a key is not used"),
    ("prompt_cache_retention", (None,), "prompts are cached by their prefix, automatically; retention is not set"),
    ("prompt_cache_options", (None,), "prompts are cached by their prefix, automatically; options are not set"),
    ("safety_identifier", (None,), "is not used; a service key names its end user with `user`"),
    ("moderation", (None,), "moderation is not offered"),
)


class ChatCompletionSerializer(KnownFieldsMixin, serializers.Serializer):
    refused = REFUSED
    model = StrictCharField(max_length=128)
    messages = MessageSerializer(many=True, allow_empty=False, max_length=MESSAGES_MAX)
    stream = StrictBooleanField(default=False)
    stream_options = StreamOptionsSerializer(required=False)
    stop = serializers.JSONField(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    seed = serializers.IntegerField(required=False, allow_null=True)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1)
    persona = StrictCharField(required=False, max_length=64)
    user = StrictCharField(required=False, max_length=128)
    tools = ToolSerializer(many=True, required=False, max_length=TOOLS_MAX)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    # A reply holds at most one call, which both values allow.
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    response_format = serializers.JSONField(required=False, allow_null=True)
    frequency_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    presence_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    logit_bias = serializers.DictField(
        child=serializers.FloatField(min_value=-100, max_value=100), required=False, allow_null=True
    )
    logprobs = StrictBooleanField(required=False, allow_null=True)
    top_logprobs = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=TOP_LOGPROBS_MAX)

    def validate_stop(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > STOP_MAX:
            raise serializers.ValidationError(f"must be a non-empty string or a list of at most {STOP_MAX} of them.")
        return tuple(stops)

    def validate_logit_bias(self, value: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
        if not value:
            return ()
        if len(value) > LOGIT_BIAS_MAX:
            raise serializers.ValidationError(f"may bias at most {LOGIT_BIAS_MAX} tokens.")
        if not all(key.isascii() and key.isdigit() and len(key) <= 9 for key in value):
            raise serializers.ValidationError("keys must be token ids (digits, as strings).")
        return tuple((int(key), bias) for key, bias in value.items())

    def validate_messages(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        if value[-1]["role"] not in ("user", "tool"):
            raise serializers.ValidationError("the last message must have role 'user' (or 'tool').")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("top_logprobs") is not None and not attrs.get("logprobs"):
            raise serializers.ValidationError({"top_logprobs": "needs logprobs: true."})
        plan = tool_plan(attrs.get("tools"), attrs.get("tool_choice"))
        answer = answer_format_parse(attrs.get("response_format"), field="response_format")
        try:
            attrs["grammar"] = plan.grammar(answer.grammar_schema())
        except Exception as exc:  # the converter raises plain exceptions for schemas it can't express
            field = "response_format" if answer.structured else "tools"
            raise serializers.ValidationError({field: f"a schema can't be enforced: {exc}"}) from exc
        attrs["tool_plan"] = plan
        attrs["answer_format"] = answer
        return attrs


class ModelListSchema(APIView):
    """The OpenAPI description of GET v1/models (`models_list`, a plain async view that
    drf-spectacular can't see; `schema_endpoints` adds this class in its place). Never routed."""

    authentication_classes = ()
    permission_classes = ()

    @extend_schema(
        operation_id="v1_models_list",
        tags=["v1"],
        responses={
            200: inline_serializer(
                "ModelList",
                {
                    "object": serializers.ChoiceField(choices=["list"]),
                    "data": inline_serializer(
                        "Model",
                        {
                            "id": serializers.CharField(help_text="the model alias, or a persona id"),
                            "object": serializers.ChoiceField(choices=["model"]),
                            "created": serializers.IntegerField(help_text="Unix time"),
                            "owned_by": serializers.CharField(),
                        },
                        many=True,
                    ),
                },
            )
        },
        summary="OpenAI: the models, which are the app's model alias and its personas",
    )
    def get(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError("schema only: GET v1/models is served by models_list")


def schema_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular PREPROCESSING_HOOK: add GET v1/models (drf-spectacular lists only DRF
    views) through ModelListSchema. v1/chat/completions stays out: see the module docstring."""
    return schema_only_endpoint(endpoints, url_name="openai-models", method="GET", view=ModelListSchema)


async def models_list(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return openai_error(ApplicationError("use GET", code="method_not_allowed", status=405))
    created = int(time.time())
    names = [*(name for name, _ in stateless.models()), *runtime.wiring_get().models_extra()]
    data = [{"id": name, "object": "model", "created": created, "owned_by": "personachat"} for name in names]
    return JsonResponse({"object": "list", "data": data})


def _turn_request(data: dict[str, Any], who: Principal, ip: str) -> StatelessTurnRequest:
    messages = messages_with_tools(data["messages"])
    leading_system = 0
    while leading_system < len(messages) - 1 and messages[leading_system].role == "system":
        leading_system += 1
    sampling = stateless.sampling_for(
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        seed=data.get("seed"),
        stop=data.get("stop") or (),
        frequency_penalty=data.get("frequency_penalty"),
        presence_penalty=data.get("presence_penalty"),
        logit_bias=data.get("logit_bias") or (),
        top_logprobs=(data.get("top_logprobs") or 0) if data.get("logprobs") else None,
    )
    return stateless.turn_request(
        persona=stateless.persona_for(data["model"], data.get("persona")),
        system=messages[:leading_system],
        messages=messages[leading_system:],
        plan=data["tool_plan"],
        answer=data["answer_format"],
        grammar=data["grammar"],
        sampling=sampling,
        who=who,
        user=data.get("user"),
        ip=ip,
    )


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST v1/chat/completions. Not in the OpenAPI description: see the module docstring."""
    if request.method != "POST":
        return openai_error(ApplicationError("use POST", code="method_not_allowed", status=405))
    counted = runtime.CountedRequest()  # finished when the reply is out (or the request failed)
    try:
        data, events = await stateless.turn_accept(request, ChatCompletionSerializer, _turn_request)
    except Exception as exc:
        counted.finish()
        return openai_error(exc)

    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": data["model"]}
    plan: ToolPlan = data["tool_plan"]
    include_usage = data.get("stream_options", {}).get("include_usage", False)
    if data["stream"]:
        # A call can't be told from an answer until it is complete: with tools, generate, then stream it.
        chunks = _sse_whole if plan.active else _sse
        return stateless.event_stream(
            chunks(events, meta, plan, data["answer_format"], counted=counted, include_usage=include_usage)
        )
    with counted:
        try:
            done = await stateless.done_await(events)
            message, finish_reason = _reply_message(done.completion, plan, data["answer_format"])
        except Exception as exc:
            return openai_error(exc)
        counted.succeeded()
    if done.sources:  # an extension field: the document chunks the reply was grounded on (office)
        meta["sources"] = list(done.sources)
    choice = {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": _logprobs(done.completion)}
    return JsonResponse({**meta, "object": "chat.completion", "choices": [choice], "usage": _usage(done.completion)})


def _reply_message(completion: Completion, plan: ToolPlan, answer: AnswerFormat) -> tuple[dict[str, Any], str]:
    """The reply as OpenAI's message; raises GenerationFailedError if a complete structured
    answer does not match its schema (see webapp.chat.structured)."""
    calls = tool_calls_parse(completion.text, plan)
    if calls is not None:
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    answer.reply_check(completion.text, completion.finish_reason)
    return {"role": "assistant", "content": completion.text}, _finish_reason(completion)


def _token_logprob(token: bytes, logprob: float) -> dict[str, Any]:
    # A token can hold part of a UTF-8 character: `bytes` has it whole, `token` as text.
    return {"token": token.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(token)}


def _logprobs(completion: Completion) -> dict[str, Any] | None:
    """OpenAI's choice.logprobs of the reply's tokens, or None when not asked for."""
    if completion.logprobs is None:
        return None
    content = [
        {**_token_logprob(t.token, t.logprob), "top_logprobs": [_token_logprob(b, lp) for b, lp in t.top]}
        for t in completion.logprobs
    ]
    return {"content": content, "refusal": None}


def _failure_chunk(exc: Exception) -> bytes:
    error = application_error(exc) or GenerationFailedError("generation failed; see the server log")
    failure = {"error": {**error_body(error)["error"], "type": "server_error"}}
    return f"data: {json.dumps(failure)}\n\n".encode()


async def _sse_whole(
    events: AsyncIterator[TurnEvent],
    meta: dict[str, Any],
    plan: ToolPlan,
    answer: AnswerFormat,
    *,
    counted: runtime.CountedRequest,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE stream of a reply that may be a tool call: sent once it is complete."""
    try:
        try:
            done = await stateless.done_await(events)
            message, finish_reason = _reply_message(done.completion, plan, answer)
        except Exception as exc:
            yield _failure_chunk(exc)
            return
        if done.sources:
            meta = {**meta, "sources": list(done.sources)}
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        yield _chunk(meta, delta, None)
        for chunk in _sse_end(meta, done.completion, finish_reason, include_usage=include_usage):
            yield chunk
        counted.succeeded()
    finally:
        counted.finish()
        await events.aclose()


def _sse_end(meta: dict[str, Any], completion: Completion, finish_reason: str, *, include_usage: bool) -> list[bytes]:
    """The last chunks of a stream: the finish reason (with the reply's logprobs, when
    asked for: they come whole, here, not token by token), usage if asked for, [DONE]."""
    end = [_chunk(meta, {}, finish_reason, logprobs=_logprobs(completion))]
    if include_usage:
        usage = {**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(completion)}
        end.append(f"data: {json.dumps(usage)}\n\n".encode())
    end.append(b"data: [DONE]\n\n")
    return end


def _finish_reason(completion: Completion) -> str:
    return {"length": "length", "deadline": "deadline"}.get(completion.finish_reason, "stop")


def _usage(completion: Completion) -> dict[str, int]:
    usage = completion.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _chunk(
    meta: dict[str, Any], delta: dict[str, Any], finish_reason: str | None, *, logprobs: dict[str, Any] | None = None
) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    body = {**meta, "object": "chat.completion.chunk", "choices": [choice]}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


async def _sse(
    events: AsyncIterator[TurnEvent],
    meta: dict[str, Any],
    plan: ToolPlan,
    answer: AnswerFormat,
    *,
    counted: runtime.CountedRequest,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE stream. If the client goes away, Django cancels this generator, and closing
    the turn's events cancels the generation. A structured answer streams as it is written
    and is checked at the end (a failure chunk if it does not match, which can't happen
    while the grammar holds)."""
    try:
        yield _chunk(meta, {"role": "assistant", "content": ""}, None)
        try:
            done = None
            async for event in events:
                if isinstance(event, TurnText):
                    yield _chunk(meta, {"content": event.text}, None)
                elif isinstance(event, TurnDone):
                    done = event
            if done is None:
                raise GenerationFailedError("generation ended without a result")
            _, finish_reason = _reply_message(done.completion, plan, answer)
        except Exception as exc:
            yield _failure_chunk(exc)
            return
        if done.sources:
            meta = {**meta, "sources": list(done.sources)}
        for chunk in _sse_end(meta, done.completion, finish_reason, include_usage=include_usage):
            yield chunk
        counted.succeeded()
    finally:
        counted.finish()
        await events.aclose()
