"""The one chat turn service: a typed request in, typed events out, the reply stored.

Every interface runs a turn through `turn_stream` and only translates its events: REST
collects them into one response (`turn_collect`), the WebSocket forwards each as a frame,
and the OpenAI endpoint maps them to chunks. What makes a turn — fitting the prompt to
the context, grounding on documents and the web, admission by the engine, tool rounds and
approvals, checkpoints while it streams, draining on shutdown, storing the reply before
`TurnDone` (persist, then publish) — is written here once.

Two modes:
- `TurnRequest` (REST, WebSocket): a stored conversation. The history comes from the
  store; the user's message is stored once the engine accepted the prompt (a refused turn
  leaves no trace); the reply is stored with its measurements, sources and tool steps.
- `StatelessTurnRequest` (the OpenAI API): the client sends the whole conversation and
  gets the reply; nothing is stored, and a tool call goes back to the client.

Tool rounds: round 1 is generated under a grammar (webapp.engine.grammar) that admits one
call of an offered tool (or, in "auto" mode, a plain answer). The call goes through the
`ToolRunner` (the office's one way of calling tools: schema, permission, rate limit,
approval, audit); the next round has the call and its result in the prompt; "auto" may
call once more, up to MAX_TOOL_ROUNDS, and the last round is free text. A call that needs
approval yields a step with status "approval_required" and waits for
`TurnControl.decide` (WebSocket), or, when the caller can't wait (REST), ends the turn
with a reply that says how to approve it.

Blocking work (the store, grounding, tokenizing, tools) runs on worker threads; tokens
come from the engine's thread through the generation handle. Call from an event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from asgiref.sync import sync_to_async

from webapp.chat import lifecycle
from webapp.chat.assembly import Layout, layout_build, layout_first, layout_without_lowest_lore
from webapp.chat.checkpoints import ReplyCheckpoint
from webapp.chat.errors import GenerationFailedError, ServerBusyError
from webapp.chat.groups import group_instruction, group_script
from webapp.chat.personas import ChatScope, LoreItem, Persona
from webapp.chat.services import messages_visible, prompt_history
from webapp.core.errors import ApplicationError, ConflictError, NotFoundError
from webapp.engine.engine import (
    Completion,
    DoneEvent,
    Engine,
    EngineBusyError,
    ErrorEvent,
    GenerationHandle,
    GenerationRequest,
    GrammarError,
    QueuedEvent,
    SamplingError,
    SamplingParams,
    TokenEvent,
)
from webapp.engine.grammar import tool_call_grammar, tools_instruction
from webapp.engine.prompt import ChatMessage, PromptTooLongError
from webapp.store.chat_store import ChatStore, Conversation, Message

log = logging.getLogger(__name__)

T = TypeVar("T")

TITLE_CHARS = 60
# The most tokens a forced tool call may take, whatever the reply limit.
TOOL_CALL_MAX_TOKENS = 320
# Tokens kept free between the grounded prompt and the reply, for the template's own tokens.
GROUNDING_MARGIN = 64
MAX_TOOL_ROUNDS = 2
RESULT_PROMPT_CHARS = 2000
RESULT_STORED_CHARS = 2000

ToolMode = Literal["auto", "required"]
# "shutdown": the process was asked to stop (SIGTERM) and drained; see webapp.chat.lifecycle.
StoppedBy = Literal["user", "disconnect", "shutdown"]
StepStatus = Literal["running", "ok", "error", "approval_required", "denied"]


# --- what the office app plugs in --------------------------------------------------------


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


@dataclass(frozen=True)
class ToolStep:
    """One tool call of a turn and what came of it."""

    name: str
    arguments: dict[str, Any]
    status: StepStatus
    result: Any = None
    approval_id: str | None = None
    error: str | None = None

    def call_text(self) -> str:
        return json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)

    def result_text(self) -> str:
        """How the model hears the outcome."""
        if self.status == "ok":
            return f"Result of {self.name}: {json.dumps(self.result, ensure_ascii=False)[:RESULT_PROMPT_CHARS]}"
        if self.status == "denied":
            return f"The user did not allow {self.name} to run."
        return f"{self.name} failed: {self.error}"

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"tool": self.name, "arguments": self.arguments, "status": self.status}
        if self.approval_id:
            shown["approval_id"] = self.approval_id
        if self.error:
            shown["error"] = self.error
        if self.result is not None:
            text = json.dumps(self.result, ensure_ascii=False)
            shown["result"] = self.result if len(text) <= RESULT_STORED_CHARS else text[:RESULT_STORED_CHARS] + "…"
        return shown


class TurnGate(Protocol):
    """The account's limits on a turn (webapp.accounts.usage.TurnGate): `admit` before the
    turn reaches the engine (raises a 429 ApplicationError), `release` once it ends, with the
    tokens it used (prompt + completion of every round). Sync: run on a worker thread."""

    def admit(self) -> None: ...

    def release(self, tokens: int) -> None: ...


class ToolRunner(Protocol):
    """The office's tool service as a turn sees it (webapp.office.tool_calls.ChatToolRunner)."""

    def offered(self, names: Sequence[str] | None) -> list[tuple[str, str, dict[str, Any]]]: ...

    def call(self, *, user_id: str, role: str, name: str, arguments: dict[str, Any]) -> ToolStep: ...

    def decide(self, *, user_id: str, role: str, step: ToolStep, approve: bool) -> ToolStep: ...


@dataclass(frozen=True)
class TurnDeps:
    """The collaborators of a turn; the office app adds a grounder and tools (see webapp.config.wiring)."""

    engine: Engine
    store: ChatStore | None = None  # None only for stateless turns
    grounder: Grounder | None = None
    tools: ToolRunner | None = None


# --- requests and events -------------------------------------------------------------------


@dataclass(frozen=True)
class TurnRequest:
    """A turn of stored conversation `db_id` (created on first use), as `user_id` (the owner
    key of the data, from authentication) with the account's `role` (what its tools may do).

    `text` is the new message; None answers the conversation's last message again
    (regenerate: fresh sources, no tools; the new answer becomes the reply's newest swipe,
    shown and seen by later prompts, and every earlier one stays stored beside it).
    `greeting_index` picks which of the persona's greetings a new conversation starts with
    (0: its first message; n: alternate greeting n); `user_name` is who the user is in the
    persona's macros when they have set no user persona.
    """

    user_id: str
    db_id: str
    persona: Persona
    sampling: SamplingParams
    role: str = "user"
    greeting_index: int = 0
    user_name: str = "User"
    gate: TurnGate | None = None
    text: str | None = None
    web_search: bool = False
    tool_mode: ToolMode | None = None
    tool_names: tuple[str, ...] | None = None
    swipe_of: str | None = None  # with text None: the reply the client means to answer again
    # A group chat's turn (webapp.chat.groups): `persona` (a member) replies to the chat as
    # it stands, no new message; `group_names` names every member by persona id.
    speaks: bool = False
    group_names: Mapping[str, str] | None = None
    # With text None: the model goes on writing the conversation's last reply (`swipe_of`,
    # if given, must name it) instead of answering again; the reply gets the rest.
    continues: bool = False


@dataclass(frozen=True)
class StatelessTurnRequest:
    """A turn whose whole conversation comes with it (the OpenAI API). Nothing is stored.

    `ground_for` names the user whose documents ground the last user message (OpenAI's
    `user`); `grammar` constrains the reply (the client's tools).
    """

    pinned: tuple[ChatMessage, ...]
    history: tuple[ChatMessage, ...]
    user: ChatMessage
    sampling: SamplingParams
    grammar: str | None = None
    ground_for: str | None = None
    gate: TurnGate | None = None
    reply_start: str = ""  # the reply, already begun (Anthropic's prefill): the model goes on from it


@dataclass(frozen=True)
class TurnStarted:
    """The engine accepted the turn (and, stored, the user's message is stored). In stateless
    mode it only says the turn was accepted: the ids are empty."""

    conversation_id: str
    message_id: str
    user_message_id: str
    persona: str
    regenerates: str | None
    speaker: str = ""  # a group chat's reply: the member writing it
    continues: str | None = None  # the reply being continued: the text that streams is added to it


@dataclass(frozen=True)
class TurnQueued:
    position: int  # 1 = next


@dataclass(frozen=True)
class TurnText:
    text: str  # more of the reply, as the user sees it


@dataclass(frozen=True)
class TurnToolStep:
    step: ToolStep  # "running", then its outcome


@dataclass(frozen=True)
class TurnDone:
    completion: Completion
    message: Message | None  # the stored reply (None in stateless mode)
    sources: tuple[dict[str, Any], ...] = ()


TurnEvent = TurnStarted | TurnQueued | TurnText | TurnToolStep | TurnDone


class TurnControl:
    """The caller's hold on a running turn: stop it, answer an approval. Use from the event loop."""

    def __init__(self, *, can_wait_for_approval: bool) -> None:
        self.can_wait_for_approval = can_wait_for_approval
        self.stopped_by: StoppedBy | None = None
        self._handle: GenerationHandle | None = None
        self._approval: tuple[str | None, asyncio.Future[str]] | None = None
        self.tokens = 0  # prompt + completion tokens of the turn's rounds so far

    def stop(self, by: StoppedBy) -> None:
        """Stop the turn: the generation ends at its next step, a waiting approval is denied."""
        self.stopped_by = self.stopped_by or by
        if self._approval is not None and not self._approval[1].done():
            self._approval[1].set_result("stop")
        if self._handle is not None:
            self._handle.cancel()

    def decide(self, approval_id: str | None, decision: str) -> None:
        """The user's answer ("approve" or "deny") to the step waiting for `approval_id`."""
        if decision not in ("approve", "deny"):
            raise ApplicationError('decision: must be "approve" or "deny"', field="decision")
        if self._approval is None or approval_id != self._approval[0]:
            raise ApplicationError(
                "approval_id: no tool call of this turn waits for that approval",
                field="approval_id",
                code="no_pending_approval",
            )
        if not self._approval[1].done():
            self._approval[1].set_result(decision)

    def _attach(self, handle: GenerationHandle) -> None:
        self._handle = handle
        if self.stopped_by is not None:
            handle.cancel()

    async def _decision(self, approval_id: str | None) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._approval = (approval_id, future)
        try:
            return "stop" if self.stopped_by is not None else await future
        finally:
            self._approval = None


# --- the service ---------------------------------------------------------------------------


def _worker(fn: Callable[..., T]) -> Callable[..., Any]:
    """Blocking work on a worker thread: never on the loop, never on the one thread that
    thread-sensitive sync_to_async shares with the rest of Django."""
    return sync_to_async(fn, thread_sensitive=False)


@dataclass(frozen=True)
class _Turn:
    """A submitted turn whose reply is being generated. Internal to this module."""

    persona_id: str
    handle: GenerationHandle
    prompt_user: ChatMessage  # the user turn as the model saw it in round 1 (grounded)
    history: Sequence[Message] = ()  # stored history the prompt kept, oldest first
    history_chat: tuple[ChatMessage, ...] = ()  # stateless: the client's history
    pinned: tuple[ChatMessage, ...] = ()
    conversation: Conversation | None = None
    user_message: Message | None = None
    assistant_message_id: str = ""
    regenerates: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    notice: str | None = None
    tool_mode: ToolMode | None = None  # of the round being generated (None: a plain answer)
    tools_offered: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    tool_steps: tuple[ToolStep, ...] = ()
    sampling: SamplingParams | None = None
    persona: Persona | None = None  # bound to the chat (webapp.chat.personas.Persona.bind)
    layout: Layout | None = None  # round 1's prompt around the history (webapp.chat.assembly)
    budget: dict[str, int] | None = None  # round 1's prompt tokens by part
    speaker: str = ""  # a group chat's reply: the member writing it
    continues: str | None = None  # the stored reply this turn goes on writing


_releasing: set[asyncio.Future[Any]] = set()  # gate releases under way (held so they aren't collected)


def _release_after(admission: asyncio.Future[Any], gate: TurnGate, control: TurnControl) -> None:
    """Give the turn's place and tokens back once its admission is settled. Not awaited: this
    runs while the turn's generator closes (maybe cancelled); the gate's counts expire by
    themselves should a release never land."""

    def release(done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # refused (or failed): nothing was taken
        task = asyncio.ensure_future(_worker(gate.release)(control.tokens))
        _releasing.add(task)
        task.add_done_callback(_releasing.discard)

    if admission.done():
        release(admission)
    else:
        admission.add_done_callback(release)


async def turn_stream(
    request: TurnRequest | StatelessTurnRequest, *, deps: TurnDeps, control: TurnControl
) -> AsyncIterator[TurnEvent]:
    """Run one turn; yield its events; the last is TurnDone (after the reply is stored).

    Raises ApplicationError for what the client can act on (not found, too long for the
    context, server busy, generation failed). Leaving early (the caller stopped iterating)
    cancels the generation.
    """
    gate, admission = request.gate, None
    with lifecycle.TurnRegistration(stop=lambda: control.stop("shutdown")):
        try:
            if gate is not None:
                # The account's limits: a 429 before anything is stored. Shielded: cancelled
                # meanwhile (the client left), the admission still completes and is released.
                admission = asyncio.ensure_future(_worker(gate.admit)())
                await asyncio.shield(admission)
            if isinstance(request, StatelessTurnRequest):
                async for event in _stateless(request, deps=deps, control=control):
                    yield event
            else:
                async for event in _stored(request, deps=deps, control=control):
                    yield event
        finally:
            if control._handle is not None:
                control._handle.cancel()  # a no-op once it finished; frees the slot if the caller left early
            if gate is not None and admission is not None:
                _release_after(admission, gate, control)


async def turn_collect(request: TurnRequest, *, deps: TurnDeps) -> TurnDone:
    """Run a turn to the end (REST): a call that needs approval ends it with instructions."""
    control = TurnControl(can_wait_for_approval=False)
    async for event in turn_stream(request, deps=deps, control=control):
        if isinstance(event, TurnDone):
            return event
    raise GenerationFailedError("the turn ended without a reply")


async def _stateless(
    request: StatelessTurnRequest, *, deps: TurnDeps, control: TurnControl
) -> AsyncIterator[TurnEvent]:
    turn = await _worker(_stateless_start)(request, deps)
    control._attach(turn.handle)
    yield TurnStarted(conversation_id="", message_id="", user_message_id="", persona="", regenerates=None)
    completion = None
    async for event in _round(turn, hold_calls=False, control=control):
        if isinstance(event, Completion):
            completion = event
        else:
            yield event
    assert completion is not None
    yield TurnDone(completion=completion, message=None, sources=turn.sources)


async def _stored(request: TurnRequest, *, deps: TurnDeps, control: TurnControl) -> AsyncIterator[TurnEvent]:
    store = deps.store
    assert store is not None, "a stored turn needs the chat store"
    starts = {
        "speak": _speak_start,
        "continue": _continue_start,
        "regenerate": _regenerate_start,
        "message": _message_start,
    }
    kind = "message" if request.text is not None else "regenerate"
    start = starts["speak" if request.speaks else "continue" if request.continues else kind]
    turn = await _worker(start)(request, deps)
    control._attach(turn.handle)
    assert turn.conversation is not None
    yield TurnStarted(
        conversation_id=turn.conversation.db_id,
        message_id=turn.assistant_message_id,
        user_message_id=turn.user_message.id if turn.user_message is not None else "",
        persona=turn.persona_id,
        regenerates=turn.regenerates,
        speaker=turn.speaker,
        continues=turn.continues,
    )
    checkpoint = ReplyCheckpoint(
        store=store,
        conversation=turn.conversation,
        message_id=turn.assistant_message_id,
        persona=turn.persona_id,
    )
    shown = ""  # the reply as the user has seen it: what a crash must not lose
    writing: asyncio.Future[Any] | None = None
    if turn.notice:  # part of the reply text, as stored: e.g. "Web search was not used: …"
        shown = reply_text(turn.notice, "")
        yield TurnText(shown)
    while True:
        completion = None
        async for event in _round(turn, hold_calls=turn.tool_mode is not None, control=control):
            if isinstance(event, Completion):
                completion = event
                continue
            if isinstance(event, TurnText):
                shown += event.text
                if checkpoint.due(shown) and (writing is None or writing.done()):
                    writing = asyncio.ensure_future(_worker(checkpoint.save)(shown, _checkpoint_meta(turn)))
            yield event
        assert completion is not None
        call = _tool_call_read(turn, completion)
        if call is None or deps.tools is None:
            break
        runner = deps.tools
        yield TurnToolStep(ToolStep(name=call[0], arguments=call[1], status="running"))
        step = await _worker(runner.call)(user_id=request.user_id, role=request.role, name=call[0], arguments=call[1])
        if step.status == "approval_required":
            yield TurnToolStep(step)
            if not control.can_wait_for_approval:
                turn = replace(turn, tool_steps=(*turn.tool_steps, step))
                completion = replace(completion, text=approval_pending_text(step), finish_reason="stop")
                break
            decision = await control._decision(step.approval_id)
            step = await _worker(runner.decide)(
                user_id=request.user_id, role=request.role, step=step, approve=decision == "approve"
            )
            if decision == "stop":
                yield TurnToolStep(step)
                turn = replace(turn, tool_steps=(*turn.tool_steps, step))
                completion = replace(completion, text="", finish_reason="cancelled")
                break
        yield TurnToolStep(step)
        turn = await _worker(_next_round)(deps.engine, turn, step)
        control._attach(turn.handle)
    if writing is not None:
        await asyncio.wait({writing})  # before the reply is stored, never after
    message = await _worker(chat_turn_finish)(
        store=store, turn=turn, completion=completion, stopped_by=control.stopped_by
    )
    yield TurnDone(completion=completion, message=message, sources=turn.sources)


async def _round(
    turn: _Turn, *, hold_calls: bool, control: TurnControl
) -> AsyncIterator[TurnQueued | TurnText | Completion]:
    """One generation round: queue positions and text as they come, then its Completion.

    With `hold_calls`, a reply that starts with "{" is a tool call (the grammar lets a
    plain answer start with anything else): it is held back, not shown as text. The round's
    tokens count into `control.tokens` as they come (the prompt at once, then each token), so
    a turn the client leaves mid-reply is charged for what it used; the engine's own count
    replaces the running one when the round ends.
    """
    holding: bool | None = None if hold_calls else False
    last: DoneEvent | ErrorEvent | None = None
    charged = turn.handle.plan.n_tokens
    control.tokens += charged
    async for batch in turn.handle.aevent_batches():
        generated = sum(1 for e in batch if isinstance(e, TokenEvent))
        control.tokens += generated
        charged += generated
        positions = [e.position for e in batch if isinstance(e, QueuedEvent)]
        if positions:
            yield TurnQueued(positions[-1])
        text = "".join(e.text for e in batch if isinstance(e, TokenEvent))
        if text and holding is None:
            holding = text.lstrip().startswith("{")
        if text and not holding:
            yield TurnText(text)
        if isinstance(batch[-1], DoneEvent | ErrorEvent):
            last = batch[-1]
    if not isinstance(last, DoneEvent):
        raise GenerationFailedError(last.message if last is not None else "generation ended without a result")
    usage = last.completion.usage
    control.tokens += usage.prompt_tokens + usage.completion_tokens - charged
    if holding and last.completion.finish_reason == "cancelled":
        yield replace(last.completion, text="")  # half a call is no reply
        return
    yield last.completion


# --- steps (blocking: run on a worker thread) ------------------------------------------------

HISTORY_READ = 64  # messages read before an earlier reply that is answered again (the store's window)


def engine_error(exc: Exception, *, field: str, what: str) -> ApplicationError | None:
    """The engine's refusals as application errors, in one table; None for anything else."""
    if isinstance(exc, EngineBusyError):
        return ServerBusyError(str(exc), retry_after=exc.retry_after_s, queue_size=exc.queue_depth)
    if isinstance(exc, GrammarError):
        return ApplicationError(str(exc), field=field, code="invalid_grammar")
    if isinstance(exc, SamplingError):
        return ApplicationError(f"{exc.field}: {exc}", field=exc.field, code="invalid_sampling")
    if isinstance(exc, PromptTooLongError):
        return ApplicationError(
            f"{what} need {exc.needed} tokens; the model's context allows {exc.budget}",
            field=field,
            code="context_length_exceeded",
        )
    return None


def _submit(engine: Engine, request: GenerationRequest, *, field: str, what: str) -> GenerationHandle:
    try:
        return engine.submit(request)
    except (EngineBusyError, GrammarError, PromptTooLongError, SamplingError) as exc:
        raise engine_error(exc, field=field, what=what) from exc  # type: ignore[misc]


def _grounding(
    grounder: Grounder | None,
    engine: Engine,
    *,
    pinned: Sequence[ChatMessage],
    user_id: str,
    text: str,
    earlier: Sequence[str],
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
    fixed = sum(count(m.content) for m in pinned) + count(text)
    budget = min(engine.n_ctx // 2, engine.n_ctx - max_tokens - fixed - GROUNDING_MARGIN)
    if budget <= 0:
        return None
    try:
        return grounder.ground(
            user_id=user_id,
            question=text,
            earlier_user_turns=earlier,
            budget_tokens=budget,
            count_tokens=count,
            web=web,
        )
    except Exception:
        log.exception("retrieval failed; answering without sources")
        return None


def _sources(grounding: GroundingLike | None) -> tuple[dict[str, Any], ...]:
    return tuple(s.public() for s in grounding.sources) if grounding else ()


def _stateless_start(request: StatelessTurnRequest, deps: TurnDeps) -> _Turn:
    user, sources = request.user, ()
    if request.ground_for and user.role == "user" and request.grammar is None:
        grounding = _grounding(
            deps.grounder,
            deps.engine,
            pinned=request.pinned,
            user_id=request.ground_for,
            text=user.content,
            earlier=[],
            max_tokens=request.sampling.max_tokens,
        )
        if grounding is not None and grounding.sources:
            user, sources = ChatMessage("user", grounding.prompt_text), _sources(grounding)
    generation = GenerationRequest(
        pinned=request.pinned,
        history=request.history,
        user=user,
        sampling=request.sampling,
        grammar=request.grammar,
        reply_start=request.reply_start,
    )
    handle = _submit(deps.engine, generation, field="messages", what="messages")
    return _Turn(persona_id="", handle=handle, prompt_user=user, sources=sources)


def tools_for_round(offered: Sequence[tuple[str, str, dict[str, Any]]], mode: ToolMode) -> tuple[ChatMessage, str]:
    """The instruction and the grammar of a round in which the model may (or must) call a tool."""
    instruction = ChatMessage("system", tools_instruction(offered, required=mode == "required"))
    grammar = tool_call_grammar([(name, parameters) for name, _, parameters in offered], allow_text=mode == "auto")
    return instruction, grammar


def _round_submit(
    engine: Engine,
    *,
    persona: Persona,
    lore: Sequence[LoreItem],
    history: Sequence[ChatMessage],
    user: ChatMessage,
    sampling: SamplingParams,
    tools: tuple[ChatMessage, str] | None,
    tool_mode: ToolMode | None,
    note: ChatMessage | None = None,
    reply_start: str = "",
) -> tuple[Layout, GenerationHandle]:
    """Lay out and submit round 1; `tools` is the (instruction, grammar) of a round that may
    call a tool. When even no history leaves room, the lowest-priority lore goes, one entry
    at a time (webapp.chat.assembly); without lore left, the turn is refused."""
    if tools and tool_mode == "required":
        # The call is not the reply: a short reply limit must not cut its JSON in half, and
        # its arguments are decoded greedily (the most likely value, not a creative one).
        sampling = replace(sampling, max_tokens=max(sampling.max_tokens, TOOL_CALL_MAX_TOKENS), temperature=0.0)
    instruction = tools[0] if tools else note
    layout = layout_first(
        persona,
        lore=lore,
        history=history,
        user=user,
        count_tokens=engine.count_tokens,
        n_ctx=engine.n_ctx,
        max_tokens=sampling.max_tokens,
        instruction=instruction,
    )
    what = "input_data and the character" if persona.app == "character" else "input_data and the persona"
    while True:
        request = GenerationRequest(
            pinned=layout.pinned,
            shared=layout.shared,
            history=list(history),
            user=user,
            after=layout.after,
            sampling=sampling,
            grammar=tools[1] if tools else None,
            reply_start=reply_start,
        )
        try:
            return layout, engine.submit(request)
        except PromptTooLongError as exc:
            if not layout.lore:
                raise engine_error(exc, field="input_data", what=what) from exc  # type: ignore[misc]
            layout = layout_without_lowest_lore(persona, layout, instruction=instruction)
        except (EngineBusyError, GrammarError, SamplingError) as exc:
            raise engine_error(exc, field="input_data", what=what) from exc  # type: ignore[misc]


def _persona_bound(request: TurnRequest, conversation: Conversation | None) -> Persona:
    """The request's persona for this chat: its macros, greeting and user persona settled
    (a new conversation starts now, with the greeting the request picked)."""
    now = datetime.now(UTC)
    scope = ChatScope(
        owner=request.user_id,
        user_name=request.user_name,
        seed=request.db_id,
        started_at=conversation.created_at if conversation is not None else now,
        now=now,
        greeting_index=conversation.greeting if conversation is not None else request.greeting_index,
        lorebooks=conversation.lorebooks if conversation is not None else (),
    )
    return request.persona.bind(scope)


def _lore(engine: Engine, persona: Persona, *, history: Sequence[Message], text: str) -> tuple[LoreItem, ...]:
    """The persona's lore entries that the chat's recent texts set off (none without a lorebook)."""
    if persona.lore is None:
        return ()
    texts = [*([persona.greeting] if persona.greeting else []), *(m.content for m in history), text]
    return persona.lore(texts, engine.count_tokens)


def _kept(history: Sequence[Message], handle: GenerationHandle) -> Sequence[Message]:
    kept = handle.plan.history_kept
    return history[len(history) - kept :] if kept else []


def _chat(messages: Sequence[Message]) -> list[ChatMessage]:
    return [ChatMessage(m.role, m.content) for m in messages]  # type: ignore[arg-type]


def _owned(store: ChatStore, db_id: str, user_id: str) -> Conversation | None:
    """The conversation if it is this user's; another user's is "not found", exactly like none."""
    conversation = store.conversation_get(db_id)
    if conversation is not None and conversation.user_id != user_id:
        raise NotFoundError(f"no conversation {db_id} for this user_id", field="db_id")
    return conversation


def _group_refused(conversation: Conversation | None) -> Conversation | None:
    """A one-to-one turn can't go to a group chat, whose replies each name their speaker."""
    if conversation is not None and conversation.is_group:
        raise ApplicationError(
            f"db_id: {conversation.db_id} is a group chat: post to POST /character/groups/{conversation.db_id}/"
            "messages and let its members speak (a speak frame, or POST …/speak)",
            field="db_id",
            code="group_chat",
        )
    return conversation


def _first_round(
    deps: TurnDeps,
    request: TurnRequest,
    *,
    persona: Persona,
    text: str,
    history: Sequence[Message],
    tools: tuple[ChatMessage, str] | None,
    tool_mode: ToolMode | None,
) -> tuple[GroundingLike | None, ChatMessage, Layout, GenerationHandle]:
    """Ground `text` on the user's sources and submit round 1 for the bound `persona`; the
    grounding, the user turn as the model sees it, the prompt's layout, and the handle."""
    grounding = _grounding(
        deps.grounder,
        deps.engine,
        pinned=persona.pinned_messages(),
        user_id=request.user_id,
        text=text,
        earlier=[m.content for m in history if m.role == "user"],
        max_tokens=request.sampling.max_tokens,
        web=request.web_search,
    )
    prompt_user = ChatMessage("user", grounding.prompt_text if grounding else text)
    layout, handle = _round_submit(
        deps.engine,
        persona=persona,
        lore=_lore(deps.engine, persona, history=history, text=text),
        history=_chat(history),
        user=prompt_user,
        sampling=request.sampling,
        tools=tools,
        tool_mode=tool_mode,
    )
    return grounding, prompt_user, layout, handle


def _message_start(request: TurnRequest, deps: TurnDeps) -> _Turn:
    store = deps.store
    assert store is not None and request.text is not None
    conversation = _group_refused(_owned(store, request.db_id, request.user_id))
    history = prompt_history(store.messages_recent(request.db_id)) if conversation is not None else []
    # Before grounding: a bad tool_names must not cost the user a (rate-limited) web search.
    offered: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    round_tools = None
    if deps.tools is not None and request.tool_mode is not None:
        offered = tuple(deps.tools.offered(request.tool_names))
        round_tools = tools_for_round(offered, request.tool_mode) if offered else None
    if conversation is None and request.greeting_index >= max(1, len(request.persona.greetings())):
        raise ApplicationError(
            f"greeting_index: {request.persona.name} has {len(request.persona.greetings())} greeting(s); "
            f"pick one from 0 to {max(0, len(request.persona.greetings()) - 1)}",
            field="greeting_index",
            code="invalid_greeting",
        )
    persona = _persona_bound(request, conversation)
    grounding, prompt_user, layout, handle = _first_round(
        deps,
        request,
        persona=persona,
        text=request.text,
        history=history,
        tools=round_tools,
        tool_mode=request.tool_mode,
    )
    if conversation is None:
        conversation = store.conversation_create(
            db_id=request.db_id,
            user_id=request.user_id,
            persona=persona.id,
            title=request.text[:TITLE_CHARS],
            greeting=request.greeting_index,
        )
    user_message = store.message_append(conversation, role="user", content=request.text, persona=persona.id)
    return _Turn(
        persona_id=persona.id,
        persona=persona,
        handle=handle,
        prompt_user=prompt_user,
        history=_kept(history, handle),
        conversation=conversation,
        user_message=user_message,
        assistant_message_id=store.message_id_new(),
        sources=_sources(grounding),
        notice=grounding.notice if grounding else None,
        tool_mode=request.tool_mode if round_tools else None,
        tools_offered=offered,
        sampling=request.sampling,
        layout=layout,
        budget=_budget_measure(deps.engine, persona=persona, layout=layout, handle=handle, user=prompt_user.content),
    )


def _regenerate_start(request: TurnRequest, deps: TurnDeps) -> _Turn:
    store = deps.store
    assert store is not None
    conversation = _group_refused(_owned(store, request.db_id, request.user_id))
    if conversation is None:
        raise NotFoundError(f"no conversation {request.db_id} for this user_id", field="db_id")
    messages = messages_visible(store.messages_recent(request.db_id))
    last_user = _last_user_index(messages)
    replaced = None
    if last_user is not None:
        replaced = next((m.id for m in messages[last_user + 1 :] if m.role == "assistant"), None)
    if request.swipe_of is not None and request.swipe_of != replaced:
        # An earlier reply: answered again from the history before it, as it was then.
        target = store.message_get(request.db_id, request.swipe_of)
        if target is None or target.role != "assistant":
            raise ApplicationError(
                "message_id: only a reply of this conversation can be answered again",
                field="message_id",
                code="not_a_reply",
            )
        before = store.messages_page(request.db_id, before=target.seq, limit=HISTORY_READ)
        messages = [*messages_visible(before), target]
        last_user, replaced = _last_user_index(messages), target.id
    if last_user is None:
        raise ApplicationError(
            "this conversation has no message to answer again", field="db_id", code="nothing_to_regenerate"
        )
    history = prompt_history(messages[:last_user])
    user_message = messages[last_user]
    persona = _persona_bound(request, conversation)
    grounding, prompt_user, layout, handle = _first_round(
        deps, request, persona=persona, text=user_message.content, history=history, tools=None, tool_mode=None
    )
    return _Turn(
        persona_id=persona.id,
        persona=persona,
        handle=handle,
        prompt_user=prompt_user,
        history=_kept(history, handle),
        conversation=conversation,
        user_message=user_message,
        assistant_message_id=store.message_id_new(),
        regenerates=replaced,
        sources=_sources(grounding),
        notice=grounding.notice if grounding else None,
        sampling=request.sampling,
        layout=layout,
        budget=_budget_measure(deps.engine, persona=persona, layout=layout, handle=handle, user=prompt_user.content),
    )


def _continue_start(request: TurnRequest, deps: TurnDeps) -> _Turn:
    """The model goes on writing the conversation's last reply, from where it ends: the
    prompt is the one that reply answered, ended by the reply's text so far."""
    store = deps.store
    assert store is not None
    conversation = _group_refused(_owned(store, request.db_id, request.user_id))
    if conversation is None:
        raise NotFoundError(f"no conversation {request.db_id} for this user_id", field="db_id")
    messages = messages_visible(store.messages_recent(request.db_id))
    reply = messages[-1] if messages else None
    last_user = _last_user_index(messages)
    if reply is None or reply.role != "assistant" or last_user is None:
        raise ApplicationError(
            "this conversation does not end with a reply to continue", field="db_id", code="nothing_to_continue"
        )
    if request.swipe_of is not None and request.swipe_of != reply.id:
        raise ConflictError(
            f"message_id: only the conversation's last reply ({reply.id}) can be continued",
            field="message_id",
            code="not_the_last_reply",
        )
    history = prompt_history(messages[:last_user])
    persona = _persona_bound(request, conversation)
    prompt_user = ChatMessage("user", messages[last_user].content)
    layout, handle = _round_submit(
        deps.engine,
        persona=persona,
        lore=_lore(deps.engine, persona, history=history, text=prompt_user.content),
        history=_chat(history),
        user=prompt_user,
        sampling=request.sampling,
        tools=None,
        tool_mode=None,
        reply_start=reply.content,
    )
    return _Turn(
        persona_id=persona.id,
        persona=persona,
        handle=handle,
        prompt_user=prompt_user,
        history=_kept(history, handle),
        conversation=conversation,
        user_message=messages[last_user],
        assistant_message_id=store.message_id_new(),
        sampling=request.sampling,
        layout=layout,
        budget=_budget_measure(deps.engine, persona=persona, layout=layout, handle=handle, user=prompt_user.content),
        continues=reply.id,
    )


def _last_user_index(messages: Sequence[Message]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)


def _speak_start(request: TurnRequest, deps: TurnDeps) -> _Turn:
    """A group member (`request.persona`) replies to the chat as it stands: the group's next
    speaker, or one the user made speak now. With `swipe_of` (the chat's last message, a
    reply) it answers again in its place: the reply's newest swipe."""
    store = deps.store
    assert store is not None
    conversation = _owned(store, request.db_id, request.user_id)
    if conversation is None or not conversation.is_group:
        raise NotFoundError(f"no group chat {request.db_id} for this user_id", field="db_id")
    speaker = request.persona.id
    if speaker not in conversation.members:
        raise ApplicationError(
            f"speaker: {speaker!r} is not a member of this group", field="speaker", code="not_a_member"
        )
    messages = messages_visible(store.messages_recent(request.db_id))
    regenerates = None
    if request.swipe_of is not None:
        last = messages[-1] if messages else None
        if last is None or last.id != request.swipe_of or last.role != "assistant":
            raise ConflictError(
                "message_id: only the group's last message, a reply, can be answered again",
                field="message_id",
                code="not_the_last_reply",
            )
        regenerates, messages = last.id, messages[:-1]
    history = prompt_history(messages)
    names = dict(request.group_names or {})
    persona = replace(_persona_bound(request, conversation), greeting="")  # its greeting was never said here
    script = group_script(history, speaker=speaker, names=names, user_name=request.user_name)
    if script and script[-1].role == "user":
        prompt_user, earlier = script[-1], script[:-1]
    else:  # it spoke last, or nobody has yet
        prompt_user, earlier = ChatMessage("user", f"[{persona.name} speaks next.]"), script
    note = group_instruction(
        speaker_name=persona.name,
        member_names=[names.get(m, m) for m in conversation.members],
        user_name=request.user_name,
    )
    layout, handle = _round_submit(
        deps.engine,
        persona=persona,
        lore=_lore(deps.engine, persona, history=history, text=""),
        history=earlier,
        user=prompt_user,
        sampling=request.sampling,
        tools=None,
        tool_mode=None,
        note=note,
    )
    kept = handle.plan.history_kept
    # The stored messages the prompt saw: the kept part of `earlier` (one line per message),
    # and the last message when it is the prompt's own user turn.
    in_earlier = history[: len(earlier)]
    seen = list(in_earlier[len(in_earlier) - kept :] if kept else [])
    if len(earlier) < len(script):
        seen.append(history[-1])
    return _Turn(
        persona_id=speaker,
        persona=persona,
        handle=handle,
        prompt_user=prompt_user,
        history=seen,
        conversation=conversation,
        user_message=next((m for m in reversed(history) if m.role == "user"), None),
        assistant_message_id=store.message_id_new(),
        regenerates=regenerates,
        sampling=request.sampling,
        layout=layout,
        budget=_budget_measure(deps.engine, persona=persona, layout=layout, handle=handle, user=prompt_user.content),
        speaker=speaker,
    )


def _tool_call_read(turn: _Turn, completion: Completion) -> tuple[str, dict[str, Any]] | None:
    """The call the model made in this round, or None when it answered."""
    if turn.tool_mode is None or not completion.text.lstrip().startswith("{"):
        return None
    try:
        call = json.loads(completion.text)
    except (json.JSONDecodeError, RecursionError):
        return None  # cut off by max_tokens: it is stored as the (odd) answer it is
    offered = {name for name, _, _ in turn.tools_offered}
    if not isinstance(call, dict) or call.get("name") not in offered or not isinstance(call.get("arguments"), dict):
        return None
    return call["name"], call["arguments"]


def _next_round(engine: Engine, turn: _Turn, step: ToolStep) -> _Turn:
    """The round after a tool step: the call and its result in the prompt, then answer."""
    assert turn.persona is not None
    steps = (*turn.tool_steps, step)
    # "required" forces exactly one call; "auto" may call again, within the bound.
    mode: ToolMode | None = "auto" if turn.tool_mode == "auto" and len(steps) < MAX_TOOL_ROUNDS else None
    exchange: list[ChatMessage] = [turn.prompt_user]
    for earlier in steps[:-1]:
        exchange += [ChatMessage("assistant", earlier.call_text()), ChatMessage("user", earlier.result_text())]
    exchange.append(ChatMessage("assistant", step.call_text()))
    assert turn.layout is not None
    grammar, instruction = None, None
    if mode is not None:
        instruction, grammar = tools_for_round(turn.tools_offered, mode)
    layout = layout_build(
        turn.persona,
        lore=turn.layout.lore,
        examples=turn.layout.examples,
        instruction=instruction,
        dropped=turn.layout.lore_dropped,
    )
    request = GenerationRequest(
        pinned=layout.pinned,
        shared=layout.shared,
        after=layout.after,
        history=[*_chat(turn.history), *exchange],
        user=ChatMessage("user", f"{step.result_text()}\nNow answer my question."),
        sampling=turn.sampling or turn.handle.request.sampling,
        grammar=grammar,
    )
    handle = _submit(engine, request, field="input_data", what="the conversation and the tool results")
    return replace(turn, handle=handle, tool_steps=steps, tool_mode=mode)


def approval_pending_text(step: ToolStep) -> str:
    """The reply of a turn that can't wait for an approval (REST): what to do next."""
    return (
        f"The assistant wants to run {step.name} with {json.dumps(step.arguments, ensure_ascii=False)}, "
        f"which needs your approval. Approve or deny it with POST /office/approvals/{step.approval_id} "
        '{"user_id": ..., "decision": "approve" | "deny"}.'
    )


def reply_text(notice: str | None, generated: str) -> str:
    """The reply as the user sees and the store keeps it: any notice, then the model's text."""
    return f"{notice}\n\n{generated}" if notice else generated


def _budget(turn: _Turn, completion: Completion) -> dict[str, Any]:
    """Where round 1's prompt went (character / lore / examples / history) and the reply's share."""
    if not turn.budget or turn.layout is None or turn.persona is None:
        return {}
    return {
        "budget": {**turn.budget, "reply": completion.usage.completion_tokens},
        "examples_dropped": bool(turn.persona.examples) and not turn.layout.examples,
    }


def _budget_measure(
    engine: Engine, *, persona: Persona, layout: Layout, handle: GenerationHandle, user: str
) -> dict[str, int]:
    """Round 1's prompt tokens by part; the history's share is what the others leave (with the
    template's own tokens)."""
    parts = layout.budget(persona=persona, count_tokens=engine.count_tokens)
    history = handle.plan.n_tokens - sum(parts.values()) - engine.count_tokens(user)
    return {**parts, "history": max(0, history)}


def _checkpoint_meta(turn: _Turn) -> dict[str, Any]:
    """What a reply cut short by a crash keeps besides its text."""
    meta: dict[str, Any] = {}
    if turn.speaker:
        meta["speaker"] = turn.speaker
    if turn.regenerates:
        meta["regenerates"] = turn.regenerates
    if turn.continues:
        meta["continues"] = turn.continues
    if turn.sources:
        meta["sources"] = list(turn.sources)
    if turn.tool_steps:
        meta["tool_calls"] = [step.public() for step in turn.tool_steps]
    if turn.layout is not None and (turn.layout.lore or turn.layout.lore_dropped):
        meta["lore"] = [
            *(item.trace for item in turn.layout.lore),
            *({**item.trace, "dropped": True} for item in turn.layout.lore_dropped),
        ]
    return meta


def chat_turn_finish(
    *, store: ChatStore, turn: _Turn, completion: Completion, stopped_by: StoppedBy | None = None
) -> Message:
    """Store the reply (partial if the turn was stopped) under the id announced at start."""
    assert turn.conversation is not None
    finish_reason: str = completion.finish_reason
    if finish_reason == "cancelled":
        finish_reason = "interrupted" if stopped_by == "shutdown" else "stopped"
    meta: dict[str, Any] = {
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
            "persona": turn.persona_id,
            "history_message_ids": [m.id for m in turn.history],
            "history_dropped": turn.handle.plan.history_dropped,
            **_budget(turn, completion),
        },
    }
    if completion.finish_reason == "cancelled":
        meta["stopped_by"] = stopped_by or "user"
    meta.update(_checkpoint_meta(turn))
    content = reply_text(turn.notice, completion.text)
    if turn.continues:
        # The rest of a stored reply is added to it (deleted meanwhile: a message of its own).
        own = {k: v for k, v in meta.items() if k != "continues"}
        continued = store.message_continue(
            turn.conversation.db_id, turn.continues, key=turn.assistant_message_id, text=content, meta=own
        )
        if continued is not None:
            store.checkpoint_clear(turn.assistant_message_id)
            return continued
    # Another answer to a stored reply becomes its newest swipe, shown; the reply it was
    # asked of may have been deleted meanwhile, and then it is a message of its own.
    swiped = (
        store.message_swipe_add(
            turn.conversation.db_id,
            turn.regenerates,
            swipe_key=turn.assistant_message_id,
            content=content,
            meta={k: v for k, v in meta.items() if k != "regenerates"},
        )
        if turn.regenerates
        else None
    )
    message = swiped or store.message_append(
        turn.conversation,
        role="assistant",
        content=content,
        persona=turn.conversation.persona if turn.speaker else turn.persona_id,  # a group keeps its own
        meta={k: v for k, v in meta.items() if k != "continues"},
        message_id=turn.assistant_message_id,
    )
    store.checkpoint_clear(turn.assistant_message_id)  # stored: nothing left to recover
    return message


__all__ = [
    "Grounder",
    "GroundingLike",
    "StatelessTurnRequest",
    "ToolMode",
    "ToolRunner",
    "ToolStep",
    "TurnControl",
    "TurnDeps",
    "TurnDone",
    "TurnEvent",
    "TurnQueued",
    "TurnRequest",
    "TurnStarted",
    "TurnText",
    "TurnToolStep",
    "approval_pending_text",
    "engine_error",
    "turn_collect",
    "turn_stream",
]
