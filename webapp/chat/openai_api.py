"""OpenAI-compatible endpoints: GET /<app>/v1/models and POST /<app>/v1/chat/completions.

So that the official `openai` package, IDEs and other chat front ends can use either
app. Stateless, like OpenAI: the client sends the whole conversation every time.

Model names: the app's model alias serves the messages as they are; a persona id (see
/v1/models) puts that persona in front of them. An extra body field `persona` does the
same whatever the model name.

These are async Django views (not DRF) because they stream Server-Sent Events. Input is
validated with a DRF serializer (pure, fast); submitting renders and tokenizes the
prompt, so it runs on a worker thread; tokens are awaited from the engine's thread.
Errors have the project's shape plus OpenAI's `type` and `param` keys, which its SDK reads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers

from webapp.chat import runtime, services
from webapp.chat.errors import (
    ApplicationError,
    GenerationFailedError,
    NotFoundError,
    ServerBusyError,
    error_frame,
)
from webapp.chat.inputs import StrictBooleanField, StrictCharField
from webapp.chat.openai_tools import (
    TOOLS_MAX,
    ToolPlan,
    ToolSerializer,
    messages_with_tools,
    tool_calls_parse,
    tool_plan,
)
from webapp.chat.personas import Persona
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.engine import (
    Completion,
    DoneEvent,
    ErrorEvent,
    GenerationHandle,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)
from webapp.engine.prompt import ChatMessage

MESSAGES_MAX = 200
CONTENT_MAX = 32_000
STOP_MAX = 4


class ToolCallFunctionSerializer(serializers.Serializer):
    name = StrictCharField(max_length=64)
    arguments = StrictCharField(allow_blank=True, max_length=CONTENT_MAX, trim_whitespace=False)


class ToolCallSerializer(serializers.Serializer):
    """An assistant message's earlier call, as OpenAI sends it back: arguments are a JSON string."""

    id = StrictCharField(required=False, max_length=128)
    type = serializers.ChoiceField(choices=["function"], required=False)
    function = ToolCallFunctionSerializer()


class MessageSerializer(serializers.Serializer):
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


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = StrictBooleanField(default=False)


class ChatCompletionSerializer(serializers.Serializer):
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

    def validate_stop(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > STOP_MAX:
            raise serializers.ValidationError(f"must be a non-empty string or a list of at most {STOP_MAX} of them.")
        return tuple(stops)

    def validate_messages(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        if value[-1]["role"] not in ("user", "tool"):
            raise serializers.ValidationError("the last message must have role 'user' (or 'tool').")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        plan = tool_plan(attrs.get("tools"), attrs.get("tool_choice"))
        try:
            attrs["grammar"] = plan.grammar()
        except Exception as exc:  # the converter raises plain exceptions for schemas it can't express
            raise serializers.ValidationError({"tools": f"a parameters schema can't be enforced: {exc}"}) from exc
        attrs["tool_plan"] = plan
        return attrs


def _error(exc: Exception, status: int) -> JsonResponse:
    frame = error_frame(exc) or {"code": "server_error", "message": "internal error", "field": None}
    body = {key: value for key, value in frame.items() if key != "type"}
    kind = "invalid_request_error" if status < 500 else "server_error"
    if isinstance(exc, ServerBusyError):
        kind = "rate_limit_error"
    response = JsonResponse({"error": {**body, "type": kind, "param": body["field"]}}, status=status)
    if isinstance(exc, ApplicationError):
        for name, value in exc.headers().items():
            response[name] = value
    return response


def _models() -> list[tuple[str, Persona | None]]:
    spec = runtime.model_spec_get()
    return [(spec.alias, None), *((p.id, p) for p in runtime.personas_get().personas.values())]


async def models_list(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _error(ApplicationError("use GET", code="method_not_allowed"), 405)
    created = int(time.time())
    data = [{"id": name, "object": "model", "created": created, "owned_by": "personachat"} for name, _ in _models()]
    return JsonResponse({"object": "list", "data": data})


def _persona_for(data: dict[str, Any]) -> Persona | None:
    wanted = data.get("persona")
    if wanted is not None:
        persona = runtime.personas_get().get(wanted)
        if persona is None:
            raise ApplicationError(f"persona: unknown persona '{wanted}'", field="persona")
        return persona
    for name, persona in _models():
        if name == data["model"]:
            return persona
    known = ", ".join(name for name, _ in _models())
    raise NotFoundError(
        f"model: unknown model '{data['model']}' (known: {known})", field="model", code="model_not_found"
    )


def _generation_request(data: dict[str, Any], persona: Persona | None) -> GenerationRequest:
    defaults = runtime.model_spec_get().sampling
    plan: ToolPlan = data["tool_plan"]
    messages = messages_with_tools(data["messages"])
    leading_system = 0
    while leading_system < len(messages) - 1 and messages[leading_system].role == "system":
        leading_system += 1
    tools_message = plan.system_message()
    pinned = [
        *(persona.pinned_messages() if persona else []),
        *messages[:leading_system],
        *([tools_message] if tools_message else []),
    ]
    max_tokens = data.get("max_completion_tokens") or data.get("max_tokens") or defaults.max_tokens
    temperature = data.get("temperature")
    top_p = data.get("top_p")
    sampling = SamplingParams(
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p if top_p is None else top_p,
        top_k=defaults.top_k,
        min_p=defaults.min_p,
        repeat_penalty=defaults.repeat_penalty,
        max_tokens=max_tokens,
        seed=data.get("seed"),
        stop=data.get("stop") or (),
        ignore_eos=defaults.ignore_eos,
    )
    return GenerationRequest(
        pinned=pinned,
        history=messages[leading_system:-1],
        user=messages[-1],
        sampling=sampling,
        grammar=data["grammar"],
    )


def _submit(request: GenerationRequest, user_id: str | None) -> tuple[GenerationHandle, list[dict[str, Any]]]:
    """Ground the last user message on the user's documents (office, with `user`), then submit.

    Blocking (search, tokenizing): runs on a worker thread.
    """
    engine = runtime.engine_get()
    sources: list[dict[str, Any]] = []
    if user_id and request.user.role == "user" and request.grammar is None:
        grounding = services.turn_grounding(
            runtime.grounder_get(),
            engine,
            persona_messages=request.pinned,
            user_id=user_id,
            text=request.user.content,
            history=[],
            max_tokens=request.sampling.max_tokens,
        )
        if grounding is not None and grounding.sources:
            request = replace(request, user=ChatMessage("user", grounding.prompt_text))
            sources = list(services.sources_public(grounding))
    handle = services.engine_submit(engine, request, field="messages", what="messages", code="context_length_exceeded")
    return handle, sources


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(ApplicationError("use POST", code="method_not_allowed"), 405)
    stats = runtime.request_stats_get()
    try:
        body = json_loads_bounded(request.body or b"null")
    except JsonInputError as exc:
        return _error(ApplicationError(f"request body: {exc}", code=exc.code, field=exc.field), 400)
    if not isinstance(body, dict):
        return _error(ApplicationError("request body must be a JSON object", code="malformed_json"), 400)
    serializer = ChatCompletionSerializer(data=body)
    try:
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        generation = _generation_request(data, _persona_for(data))
        handle, sources = await sync_to_async(_submit, thread_sensitive=False)(generation, data.get("user"))
    except serializers.ValidationError as exc:
        return _error(exc, 400)
    except ApplicationError as exc:
        return _error(exc, exc.status_code)

    stats.request_started()
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": data["model"]}
    if sources:  # an extension field: the document chunks the reply was grounded on (office)
        meta["sources"] = sources
    plan: ToolPlan = data["tool_plan"]
    if data["stream"] and plan.active:
        # A call can't be told from an answer until it is complete: generate, then stream it.
        include_usage = data.get("stream_options", {}).get("include_usage", False)
        response = StreamingHttpResponse(
            _sse_whole(handle, meta, plan, include_usage=include_usage), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    if data["stream"]:
        include_usage = data.get("stream_options", {}).get("include_usage", False)
        response = StreamingHttpResponse(
            _sse(handle, meta, include_usage=include_usage), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    started = time.perf_counter()
    completion = await _completion_await(handle)
    stats.request_finished(ok=completion is not None, seconds=time.perf_counter() - started)
    if completion is None:
        return _error(GenerationFailedError("generation failed; see the server log"), 503)
    message, finish_reason = _reply_message(completion, plan)
    return JsonResponse(
        {
            **meta,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": _usage(completion),
        }
    )


def _reply_message(completion: Completion, plan: ToolPlan) -> tuple[dict[str, Any], str]:
    calls = tool_calls_parse(completion.text, plan)
    if calls is not None:
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    return {"role": "assistant", "content": completion.text}, _finish_reason(completion)


async def _sse_whole(
    handle: GenerationHandle, meta: dict[str, Any], plan: ToolPlan, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """The SSE stream of a reply that may be a tool call: sent once it is complete."""
    started, ok = time.perf_counter(), False
    try:
        completion = await _completion_await(handle)
        if completion is None:
            failure = {"error": {"code": "generation_failed", "message": "generation failed", "type": "server_error"}}
            yield f"data: {json.dumps(failure)}\n\n".encode()
            return
        message, finish_reason = _reply_message(completion, plan)
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        yield _chunk(meta, delta, None)
        yield _chunk(meta, {}, finish_reason)
        if include_usage:
            usage = {**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(completion)}
            yield f"data: {json.dumps(usage)}\n\n".encode()
        ok = True
        yield b"data: [DONE]\n\n"
    finally:
        runtime.request_stats_get().request_finished(ok=ok, seconds=time.perf_counter() - started)


async def _completion_await(handle: GenerationHandle) -> Completion | None:
    async for event in handle.aevents():
        if isinstance(event, DoneEvent):
            return event.completion
        if isinstance(event, ErrorEvent):
            return None
    return None


def _finish_reason(completion: Completion) -> str:
    return "length" if completion.finish_reason == "length" else "stop"


def _usage(completion: Completion) -> dict[str, int]:
    usage = completion.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _chunk(meta: dict[str, Any], delta: dict[str, Any], finish_reason: str | None) -> bytes:
    body = {
        **meta,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


async def _sse(handle: GenerationHandle, meta: dict[str, Any], *, include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE stream. If the client goes away, Django cancels this generator, and leaving
    `aevent_batches` cancels the generation."""
    started, ok = time.perf_counter(), False
    try:
        yield _chunk(meta, {"role": "assistant", "content": ""}, None)
        async for batch in handle.aevent_batches():
            text = "".join(e.text for e in batch if isinstance(e, TokenEvent))
            if text:
                yield _chunk(meta, {"content": text}, None)
            last = batch[-1]
            if isinstance(last, ErrorEvent):
                failure = {"error": {"code": "generation_failed", "message": last.message, "type": "server_error"}}
                yield f"data: {json.dumps(failure)}\n\n".encode()
                return
            if isinstance(last, DoneEvent):
                yield _chunk(meta, {}, _finish_reason(last.completion))
                if include_usage:
                    usage = {**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(last.completion)}
                    yield f"data: {json.dumps(usage)}\n\n".encode()
                ok = True
        yield b"data: [DONE]\n\n"
    finally:
        runtime.request_stats_get().request_finished(ok=ok, seconds=time.perf_counter() - started)
