"""What the client APIs share: OpenAI's chat completions and Responses, Anthropic's Messages.

Each of them reads its own request shape, then asks the one turn service for a stateless
turn (webapp.chat.turns, `StatelessTurnRequest`) through the helpers here: the model
names (the model alias, or a persona id that puts the persona in front), the sampling
parameters with the registry's defaults, the request body read under the JSON bounds,
accepting a turn and streaming its events. (Honour-or-refuse for each API's fields is
its serializers' KnownFieldsMixin, webapp.chat.openai_tools.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, StreamingHttpResponse
from rest_framework import serializers

from webapp.accounts.client_ip import client_ip
from webapp.accounts.identity import Principal, request_principal
from webapp.accounts.usage import TurnLimits
from webapp.chat import runtime
from webapp.chat.errors import GenerationFailedError
from webapp.chat.openai_tools import ToolPlan
from webapp.chat.personas import Persona
from webapp.chat.structured import AnswerFormat
from webapp.chat.turns import StatelessTurnRequest, TurnControl, TurnDone, TurnEvent, turn_stream
from webapp.core.errors import ApplicationError, NotFoundError
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.engine import SamplingParams
from webapp.engine.prompt import ChatMessage


def models() -> list[tuple[str, Persona | None]]:
    """The chat model names: the app's model alias (no persona), then every persona id."""
    spec = runtime.model_spec_get()
    return [(spec.alias, None), *((p.id, p) for p in runtime.personas_get().personas.values())]


def persona_for(model: str, persona_id: str | None = None) -> Persona | None:
    """The persona a request names (`persona`, an extension field, wins over the model name)."""
    if persona_id is not None:
        persona = runtime.personas_get().get(persona_id)
        if persona is None:
            raise ApplicationError(f"persona: unknown persona '{persona_id}'", field="persona")
        return persona
    for name, persona in models():
        if name == model:
            return persona
    known = ", ".join(name for name, _ in models())
    raise NotFoundError(f"model: unknown model '{model}' (known: {known})", field="model", code="model_not_found")


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object, parsed under the project's bounds (depth, size)."""
    try:
        body = json_loads_bounded(request.body or b"null")
    except JsonInputError as exc:
        raise ApplicationError(f"request body: {exc}", code=exc.code, field=exc.field) from exc
    if not isinstance(body, dict):
        raise ApplicationError("request body must be a JSON object", code="malformed_json")
    return body


def sampling_for(
    *,
    max_tokens: int | None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    logit_bias: tuple[tuple[int, float], ...] = (),
    top_logprobs: int | None = None,
) -> SamplingParams:
    """The request's sampling; what it leaves out comes from the model registry's defaults."""
    defaults = runtime.model_spec_get().sampling
    return SamplingParams(
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p if top_p is None else top_p,
        top_k=defaults.top_k if top_k is None else top_k,
        min_p=defaults.min_p,
        repeat_penalty=defaults.repeat_penalty,
        max_tokens=max_tokens or defaults.max_tokens,
        seed=seed,
        stop=tuple(stop),
        ignore_eos=defaults.ignore_eos,
        frequency_penalty=frequency_penalty or 0.0,
        presence_penalty=presence_penalty or 0.0,
        logit_bias=logit_bias,
        top_logprobs=top_logprobs,
    )


def turn_request(
    *,
    persona: Persona | None,
    system: Sequence[ChatMessage],
    messages: Sequence[ChatMessage],
    plan: ToolPlan,
    answer: AnswerFormat,
    grammar: str | None,
    sampling: SamplingParams,
    who: Principal,
    user: str | None,
    ip: str,
) -> StatelessTurnRequest:
    """A stateless turn: the persona, the client's system messages and our instructions
    (tools, answer format) pinned; the last message is the one answered.

    A last message from the assistant is a reply already begun (Anthropic's prefill): the
    model goes on from it, and the completion is what follows."""
    reply_start = ""
    if messages and messages[-1].role == "assistant":
        reply_start, messages = messages[-1].content, messages[:-1]
    if not messages:
        raise ApplicationError("messages: there is no message to answer", field="messages")
    instructions = [m for m in (plan.system_message(), answer.instruction()) if m is not None]
    return StatelessTurnRequest(
        pinned=(*(persona.pinned_messages() if persona else []), *system, *instructions),
        history=tuple(messages[:-1]),
        user=messages[-1],
        sampling=sampling,
        grammar=grammar,
        # The documents of the key's account, or with a service key of its end user `user`.
        ground_for=who.owner_for(user),
        gate=TurnLimits(who, ip),
        reply_start=reply_start,
    )


async def turn_begin(turn: StatelessTurnRequest) -> AsyncIterator[TurnEvent]:
    """Start the turn; return its events once the engine accepted it (raises if refused:
    busy, too long for the context, a grammar it can't parse)."""
    events = turn_stream(turn, deps=runtime.turn_deps(), control=TurnControl(can_wait_for_approval=False))
    await anext(events)  # TurnStarted
    return events


async def turn_accept(
    request: HttpRequest,
    serializer_class: type[serializers.Serializer],
    turn_build: Callable[[dict[str, Any], Principal, str], StatelessTurnRequest],
) -> tuple[dict[str, Any], AsyncIterator[TurnEvent]]:
    """Authenticate, validate the body, build the turn and start it: the validated data
    and the turn's events, or an exception for the endpoint to render in its API's shape."""
    who = await sync_to_async(request_principal)(request)
    serializer = serializer_class(data=json_body(request))
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    return data, await turn_begin(turn_build(data, who, client_ip(request)))


def event_stream(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A Server-Sent Events response that nothing on the way holds back."""
    response = StreamingHttpResponse(chunks, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def done_await(events: AsyncIterator[TurnEvent]) -> TurnDone:
    async for event in events:
        if isinstance(event, TurnDone):
            return event
    raise GenerationFailedError("generation ended without a result")
