"""Writes and orchestration: chat turns (start, regenerate, finish) and deleting a conversation.

A turn has two halves so that a streaming interface can sit between them:
`chat_turn_start` checks the prompt, submits it and stores the user's message;
the caller reads tokens from `PendingTurn.handle`; `chat_turn_finish` stores the reply.
Both halves block on the store: call them from a worker thread, never from an event loop.
`chat_turn_run` does all three for the blocking REST endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from webapp.chat import lifecycle
from webapp.chat.checkpoints import ReplyCheckpoint
from webapp.chat.errors import ApplicationError, GenerationFailedError, NotFoundError, busy_error
from webapp.chat.personas import Persona
from webapp.chat.selectors import conversation_owned
from webapp.engine.engine import (
    Completion,
    DoneEvent,
    Engine,
    EngineBusyError,
    ErrorEvent,
    GenerationHandle,
    GenerationRequest,
    GrammarError,
    SamplingParams,
    TokenEvent,
)
from webapp.engine.prompt import ChatMessage, PromptTooLongError
from webapp.engine.registry import SamplingDefaults
from webapp.store.chat_store import ChatStore, Conversation, Message

log = logging.getLogger(__name__)

TITLE_CHARS = 60
# The most tokens a forced tool call may take, whatever the reply limit.
TOOL_CALL_MAX_TOKENS = 320
# Tokens kept free between the grounded prompt and the reply, for the template's own tokens.
GROUNDING_MARGIN = 64


class GroundingLike(Protocol):
    sources: Sequence[Any]  # each with .public() -> dict
    prompt_text: str
    notice: str | None  # said to the user before the reply (e.g. web search unavailable)


class Grounder(Protocol):
    """Finds sources for a turn (the office app's documents); see webapp.office.grounding."""

    def ground(
        self,
        *,
        user_id: str,
        question: str,
        earlier_user_turns: Sequence[str],
        budget_tokens: int,
        count_tokens: Callable[[str], int],
        web: bool = False,
    ) -> GroundingLike | None: ...


# "shutdown": the process was asked to stop (SIGTERM) and drained; see webapp.chat.lifecycle.
StoppedBy = Literal["user", "disconnect", "shutdown"]
ToolMode = Literal["auto", "required"]


@dataclass(frozen=True)
class PendingTurn:
    """A submitted turn whose reply is being generated (and is not stored yet)."""

    conversation: Conversation
    user_message: Message
    persona: Persona
    handle: GenerationHandle
    assistant_message_id: str
    history: Sequence[Message]  # what the prompt kept, oldest first
    regenerates: str | None = None
    sources: tuple[dict[str, Any], ...] = ()  # what the reply was grounded on (office)
    notice: str | None = None  # shown (and stored) before the reply text
    # Tool use (office, see webapp.chat.tool_turns): the mode of the round being generated
    # (None: a plain answer), the tools offered, the calls made so far, and the user turn
    # as the model saw it in round 1 (grounded), which later rounds repeat.
    tool_mode: ToolMode | None = None
    tools_offered: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    tool_steps: tuple[Any, ...] = ()
    prompt_user: ChatMessage = field(default_factory=lambda: ChatMessage("user", ""))
    sampling: SamplingParams | None = None  # the turn's own (a forced call's round may allow more tokens)


@dataclass(frozen=True)
class ChatTurn:
    conversation: Conversation
    user_message: Message
    assistant_message: Message
    completion: Completion


def sampling_params(defaults: SamplingDefaults, *, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        top_k=defaults.top_k,
        min_p=defaults.min_p,
        repeat_penalty=defaults.repeat_penalty,
        max_tokens=defaults.max_tokens,
        seed=seed,
        ignore_eos=defaults.ignore_eos,
    )


def messages_visible(messages: Sequence[Message]) -> list[Message]:
    """The conversation as its user sees it: replies that were regenerated away left out."""
    replaced = {m.meta["regenerates"] for m in messages if m.meta.get("regenerates")}
    return [m for m in messages if m.id not in replaced]


def prompt_history(messages: Sequence[Message]) -> list[Message]:
    """The messages a prompt should see: visible ones, without replies stopped before any text."""
    return [m for m in messages_visible(messages) if m.role != "assistant" or m.content]


def _submit(
    engine: Engine,
    *,
    persona: Persona,
    history: Sequence[Message],
    user: ChatMessage,
    sampling: SamplingParams,
    tools: tuple[ChatMessage, str] | None = None,
    tool_mode: ToolMode | None = None,
) -> GenerationHandle:
    """Submit one round; `tools` is the (instruction, grammar) of a round that may call a tool."""
    if tools and tool_mode == "required":
        # The call is not the reply: a short reply limit must not cut its JSON in half, and
        # its arguments are decoded greedily (the most likely value, not a creative one).
        sampling = replace(sampling, max_tokens=max(sampling.max_tokens, TOOL_CALL_MAX_TOKENS), temperature=0.0)
    request = GenerationRequest(
        pinned=[*persona.pinned_messages(), *([tools[0]] if tools else [])],
        history=[ChatMessage(m.role, m.content) for m in history],  # type: ignore[arg-type]
        user=user,
        sampling=sampling,
        grammar=tools[1] if tools else None,
    )
    return engine_submit(engine, request, field="input_data", what="input_data and the persona")


def _tools_setup(
    tools: Any, mode: ToolMode | None, names: Sequence[str] | None
) -> tuple[tuple[tuple[str, str, dict[str, Any]], ...], tuple[ChatMessage, str] | None]:
    """The tools offered to the model this turn and the first round's instruction and grammar."""
    if tools is None or mode is None:
        return (), None
    from webapp.chat.tool_turns import tools_for_round

    offered = tuple(tools.offered(names))
    return offered, (tools_for_round(offered, mode) if offered else None)


def turn_grounding(
    grounder: Grounder | None,
    engine: Engine,
    *,
    persona_messages: Sequence[ChatMessage],
    user_id: str,
    text: str,
    history: Sequence[Message],
    max_tokens: int,
    web: bool = False,
) -> GroundingLike | None:
    """Sources for this turn within what the context has left after the persona, the
    question and the reply; None without a grounder, documents or matches.

    A failing search must not take the chat down with it: the turn goes on ungrounded.
    """
    if grounder is None:
        return None
    count = engine.count_tokens
    fixed = sum(count(m.content) for m in persona_messages) + count(text)
    budget = min(engine.n_ctx // 2, engine.n_ctx - max_tokens - fixed - GROUNDING_MARGIN)
    if budget <= 0:
        return None
    try:
        return grounder.ground(
            user_id=user_id,
            question=text,
            earlier_user_turns=[m.content for m in history if m.role == "user"],
            budget_tokens=budget,
            count_tokens=count,
            web=web,
        )
    except Exception:
        log.exception("retrieval failed; answering without sources")
        return None


def sources_public(grounding: GroundingLike | None) -> tuple[dict[str, Any], ...]:
    return tuple(s.public() for s in grounding.sources) if grounding else ()


def _notice(grounding: GroundingLike | None) -> str | None:
    return grounding.notice if grounding else None


def reply_text(turn: PendingTurn, generated: str) -> str:
    """The reply as the user sees and the store keeps it: any notice, then the model's text."""
    return f"{turn.notice}\n\n{generated}" if turn.notice else generated


def engine_submit(
    engine: Engine, request: GenerationRequest, *, field: str, what: str, code: str = "too_long_for_context"
) -> GenerationHandle:
    """Submit to the engine, turning its refusals into application errors (429, or 503 naming `field`)."""
    try:
        return engine.submit(request)
    except EngineBusyError as exc:
        raise busy_error(exc) from exc
    except GrammarError as exc:
        raise ApplicationError(str(exc), field=field, code="invalid_grammar") from exc
    except PromptTooLongError as exc:
        raise GenerationFailedError(
            f"{what} need {exc.needed} tokens; the model's context allows {exc.budget}", field=field, code=code
        ) from exc


def _kept(history: Sequence[Message], handle: GenerationHandle) -> Sequence[Message]:
    kept = handle.plan.history_kept
    return history[len(history) - kept :] if kept else []


def chat_turn_start(
    *,
    store: ChatStore,
    engine: Engine,
    db_id: str,
    user_id: str,
    text: str,
    persona: Persona,
    sampling: SamplingParams,
    grounder: Grounder | None = None,
    web_search: bool = False,
    tools: Any = None,
    tool_mode: ToolMode | None = None,
    tool_names: Sequence[str] | None = None,
) -> PendingTurn:
    """Submit `text` to conversation `db_id` (created on first use) as `persona`.

    With `tools` (a webapp.chat.tool_turns.ToolRunner) and a `tool_mode`, the model may
    (auto) or must (required) call one of them first; see webapp.chat.tool_turns.

    With a grounder (office), the prompt carries sources from the user's documents, and
    from a web search when `web_search` (google_access) is on.
    The user's message is stored only once the engine accepted the prompt, so a refused
    turn leaves no trace.
    """
    conversation = store.conversation_get(db_id)
    if conversation is not None and conversation.user_id != user_id:
        raise NotFoundError(f"no conversation {db_id} for this user_id", field="db_id")
    history = prompt_history(store.messages_recent(db_id)) if conversation is not None else []
    # Before grounding: a bad tool_names must not cost the user a (rate-limited) web search.
    offered, round_tools = _tools_setup(tools, tool_mode, tool_names)
    grounding = turn_grounding(
        grounder,
        engine,
        persona_messages=persona.pinned_messages(),
        user_id=user_id,
        text=text,
        history=history,
        max_tokens=sampling.max_tokens,
        web=web_search,
    )
    prompt_user = ChatMessage("user", grounding.prompt_text if grounding else text)
    handle = _submit(
        engine,
        persona=persona,
        history=history,
        user=prompt_user,
        sampling=sampling,
        tools=round_tools,
        tool_mode=tool_mode,
    )

    if conversation is None:
        conversation = store.conversation_create(
            db_id=db_id, user_id=user_id, persona=persona.id, title=text[:TITLE_CHARS]
        )
    user_message = store.message_append(conversation, role="user", content=text, persona=persona.id)
    return PendingTurn(
        conversation=conversation,
        user_message=user_message,
        persona=persona,
        handle=handle,
        assistant_message_id=store.message_id_new(),
        history=_kept(history, handle),
        sources=sources_public(grounding),
        notice=_notice(grounding),
        tool_mode=tool_mode if round_tools else None,
        tools_offered=offered,
        prompt_user=prompt_user,
        sampling=sampling,
    )


def chat_turn_regenerate(
    *,
    store: ChatStore,
    engine: Engine,
    db_id: str,
    user_id: str,
    persona: Persona,
    sampling: SamplingParams,
    grounder: Grounder | None = None,
    web_search: bool = False,
) -> PendingTurn:
    """Answer the conversation's last user message again (with fresh sources; without tools).

    The new reply is appended with `regenerates` naming the reply it replaces; the old
    reply stays stored and drops out of later prompts.
    """
    conversation = conversation_owned(store=store, db_id=db_id, user_id=user_id)
    messages = messages_visible(store.messages_recent(db_id))
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last_user is None:
        raise ApplicationError(
            "this conversation has no message to answer again", field="db_id", code="nothing_to_regenerate"
        )
    replaced = next((m.id for m in messages[last_user + 1 :] if m.role == "assistant"), None)
    history = prompt_history(messages[:last_user])
    user_message = messages[last_user]
    grounding = turn_grounding(
        grounder,
        engine,
        persona_messages=persona.pinned_messages(),
        user_id=user_id,
        text=user_message.content,
        history=history,
        max_tokens=sampling.max_tokens,
        web=web_search,
    )
    prompt_user = ChatMessage("user", grounding.prompt_text if grounding else user_message.content)
    handle = _submit(engine, persona=persona, history=history, user=prompt_user, sampling=sampling)
    return PendingTurn(
        conversation=conversation,
        user_message=user_message,
        persona=persona,
        handle=handle,
        assistant_message_id=store.message_id_new(),
        history=_kept(history, handle),
        regenerates=replaced,
        sources=sources_public(grounding),
        notice=_notice(grounding),
        prompt_user=prompt_user,
    )


def chat_turn_finish(
    *, store: ChatStore, turn: PendingTurn, completion: Completion, stopped_by: StoppedBy | None = None
) -> Message:
    """Store the reply (partial if the turn was stopped) under the id announced at start."""
    finish_reason: str = completion.finish_reason
    if finish_reason == "cancelled":
        finish_reason = "interrupted" if stopped_by == "shutdown" else "stopped"
    meta = {
        "tokens": completion.usage.completion_tokens,
        "model": completion.model,
        "finish_reason": finish_reason,
        "timings": {
            "ttft_ms": round(completion.timings.ttft_ms, 1),
            "total_ms": round(completion.timings.total_ms, 1),
            "tokens_per_s": round(completion.timings.tokens_per_s, 1),
        },
        "prompt": {
            "tokens": completion.usage.prompt_tokens,
            "persona": turn.persona.id,
            "history_message_ids": [m.id for m in turn.history],
            "history_dropped": turn.handle.plan.history_dropped,
        },
    }
    if completion.finish_reason == "cancelled":
        meta["stopped_by"] = stopped_by or "user"
    if turn.regenerates:
        meta["regenerates"] = turn.regenerates
    if turn.sources:
        meta["sources"] = list(turn.sources)
    if turn.tool_steps:
        meta["tool_calls"] = [step.public() for step in turn.tool_steps]
    message = store.message_append(
        turn.conversation,
        role="assistant",
        content=reply_text(turn, completion.text),
        persona=turn.persona.id,
        meta=meta,
        message_id=turn.assistant_message_id,
    )
    store.checkpoint_clear(turn.assistant_message_id)  # stored: nothing left to recover
    return message


def reply_checkpoint(*, store: ChatStore, turn: PendingTurn) -> ReplyCheckpoint:
    """The checkpoint of `turn`'s reply while it streams (see webapp.chat.checkpoints)."""
    return ReplyCheckpoint(
        store=store, conversation=turn.conversation, message_id=turn.assistant_message_id, persona=turn.persona.id
    )


def checkpoint_meta(turn: PendingTurn) -> dict[str, Any]:
    """What a reply cut short by a crash keeps besides its text."""
    meta: dict[str, Any] = {}
    if turn.regenerates:
        meta["regenerates"] = turn.regenerates
    if turn.sources:
        meta["sources"] = list(turn.sources)
    if turn.tool_steps:
        meta["tool_calls"] = [step.public() for step in turn.tool_steps]
    return meta


def chat_turn_run(
    *,
    store: ChatStore,
    engine: Engine,
    db_id: str,
    user_id: str,
    text: str,
    persona: Persona,
    sampling: SamplingParams,
    grounder: Grounder | None = None,
    web_search: bool = False,
    tools: Any = None,
    tool_mode: ToolMode | None = None,
    tool_names: Sequence[str] | None = None,
) -> ChatTurn:
    """One whole turn, blocking until the reply is generated and stored (persist, then publish).

    Tool calls run in between; a call that needs approval ends the turn with a reply that
    says how to approve it (a blocking request can't wait for the user).
    """
    turn = chat_turn_start(
        store=store,
        engine=engine,
        db_id=db_id,
        user_id=user_id,
        text=text,
        persona=persona,
        sampling=sampling,
        grounder=grounder,
        web_search=web_search,
        tools=tools,
        tool_mode=tool_mode,
        tool_names=tool_names,
    )
    checkpoint = reply_checkpoint(store=store, turn=turn)
    current = [turn]  # the round being generated, for a shutdown to stop
    with lifecycle.TurnRegistration(stop=lambda: current[0].handle.cancel()):
        turn, completion = _turn_rounds(engine=engine, tools=tools, turn=turn, checkpoint=checkpoint, current=current)
    # A REST turn is only ever cancelled by a shutdown (see webapp.chat.lifecycle).
    stopped_by: StoppedBy | None = "shutdown" if completion.finish_reason == "cancelled" else None
    assistant_message = chat_turn_finish(store=store, turn=turn, completion=completion, stopped_by=stopped_by)
    return ChatTurn(
        conversation=store.conversation_get(db_id) or turn.conversation,
        user_message=turn.user_message,
        assistant_message=assistant_message,
        completion=completion,
    )


def _turn_rounds(
    *, engine: Engine, tools: Any, turn: PendingTurn, checkpoint: ReplyCheckpoint, current: list[PendingTurn]
) -> tuple[PendingTurn, Completion]:
    """Generate rounds until the model answers (running its tool calls in between); block."""
    from webapp.chat import tool_turns

    while True:
        current[0] = turn
        completion = _round_collect(turn, checkpoint)
        call = tool_turns.tool_call_read(turn, completion)
        if call is None:
            break
        step, following = tool_turns.chat_turn_tool(engine=engine, runner=tools, turn=turn, call=call)
        if following is None:  # waits for approval
            turn = replace(turn, tool_steps=(*turn.tool_steps, step))
            completion = replace(completion, text=tool_turns.approval_pending_text(step), finish_reason="stop")
            break
        turn = following
    return turn, completion


def _round_collect(turn: PendingTurn, checkpoint: ReplyCheckpoint) -> Completion:
    """Block until the round ends; checkpoint a plain answer's text as it grows."""
    text = ""
    for event in turn.handle.events():
        if isinstance(event, TokenEvent) and turn.tool_mode is None:
            text += event.text
            if checkpoint.due(text):
                checkpoint.save(reply_text(turn, text), checkpoint_meta(turn))
        elif isinstance(event, DoneEvent):
            return event.completion
        elif isinstance(event, ErrorEvent):
            raise GenerationFailedError(event.message)
    raise GenerationFailedError("generation ended without a result")


def conversation_delete(*, store: ChatStore, db_id: str, user_id: str) -> None:
    conversation_owned(store=store, db_id=db_id, user_id=user_id)
    store.conversation_delete(db_id)
