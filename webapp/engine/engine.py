"""The engine's interface: submit a request, receive its tokens, cancel it.

`GenerationHandle` is the only thing the web layer holds. The scheduler thread pushes
events into it; a caller reads them either blocking (`events()`, from a worker thread)
or awaiting (`aevents()`, from an event loop). Nothing here blocks an event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from webapp.engine.prompt import ChatMessage, PromptPlan

# "deadline": the request ran past its time limit (GenerationRequest.deadline_s, or the
# engine's own default), counted from submission, queueing included.
FinishReason = Literal["stop", "length", "cancelled", "deadline", "error"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float
    max_tokens: int
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # end-of-generation tokens are banned (not under a grammar, which must end)
    # OpenAI's penalties (-2..2): subtracted from a seen token's logit once (presence) and
    # once per time it was seen (frequency), over the last PENALTY_LAST_N tokens.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    # Report each generated token's log-probability and this many alternatives (0-20);
    # None: no log-probabilities (Completion.logprobs stays None).
    top_logprobs: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """A chat to continue. `pinned` messages (the persona) survive context trimming."""

    pinned: Sequence[ChatMessage]
    history: Sequence[ChatMessage]
    user: ChatMessage
    sampling: SamplingParams
    # A llama.cpp GBNF grammar every reply must match (see webapp.engine.grammar); None = free text.
    grammar: str | None = None
    # Seconds from submission after which the reply ends as it is (finish_reason "deadline");
    # None: the engine's default (the registry's max_generation_s).
    deadline_s: float | None = None
    # Messages after the new user message, never dropped (a character's post-history instructions).
    after: Sequence[ChatMessage] = ()
    # How many leading `pinned` messages many conversations share (a persona's definition,
    # examples and greeting, not this turn's lore): the engine evaluates that prefix once
    # and copies its KV state into every slot that needs it. None: all of `pinned`; 0: none.
    shared: int | None = None
    # The start of the reply, already written: the prompt ends with it (after the reply's
    # opening), and the model goes on from there ("continue"). The completion is what follows.
    reply_start: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Timings:
    queued_ms: float
    ttft_ms: float
    total_ms: float
    tokens_per_s: float


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token under the model's own distribution (the logits before penalties,
    bias, temperature and truncation, as OpenAI reports them): its bytes (a token may hold
    part of a UTF-8 character), its log-probability, and the most likely alternatives."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()
    id: int = -1  # the token's id in the model's vocabulary (what logit_bias names)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    model: str
    # The tokens of `text`, when SamplingParams.top_logprobs asked for them.
    logprobs: tuple[TokenLogprob, ...] | None = None
    stop_sequence: str | None = None  # the stop string that ended it (finish_reason "stop")


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    completion: Completion


@dataclass(frozen=True)
class ErrorEvent:
    message: str


@dataclass(frozen=True)
class QueuedEvent:
    """The request waits for a free slot; `position` 1 is next."""

    position: int


Event = TokenEvent | DoneEvent | ErrorEvent | QueuedEvent


def is_final(event: Event) -> bool:
    return isinstance(event, DoneEvent | ErrorEvent)


class GenerationError(Exception):
    """The model failed while generating (not the caller's fault)."""


class GrammarError(ValueError):
    """The request's grammar does not parse."""


class SamplingError(ValueError):
    """A sampling parameter the model can't honour (a logit_bias token it does not have)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class EngineBusyError(Exception):
    """Refused at admission: the estimated wait is over the engine's limit (HTTP 429)."""

    def __init__(self, *, estimated_wait_s: float, retry_after_s: int, queue_depth: int) -> None:
        super().__init__(
            f"the server is busy: about {estimated_wait_s:.0f} s of work is queued ({queue_depth} waiting); "
            f"retry in {retry_after_s} s"
        )
        self.estimated_wait_s = estimated_wait_s
        self.retry_after_s = retry_after_s
        self.queue_depth = queue_depth


_ids = itertools.count(1)


@dataclass
class GenerationHandle:
    """One submitted request. Created by an engine; read by exactly one consumer.

    The consumer side (`events`, `aevents`, `result`, `cancel`) may be called from any
    thread, and a handle submitted from a worker thread can be read from an event loop:
    events wait in a buffer until someone reads them. `_emit` is called only by the
    engine's scheduler thread.
    """

    plan: PromptPlan
    request: GenerationRequest
    id: int = field(default_factory=lambda: next(_ids))
    submitted_at: float = field(default_factory=time.perf_counter)
    _pending: deque[Event] = field(default_factory=deque)
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the scheduler to stop this request at its next step. Idempotent."""
        self._cancelled.set()

    def _emit(self, event: Event) -> None:
        with self._arrived:
            self._pending.append(event)
            self._arrived.notify_all()
            waker = self._waker
        if waker is not None:
            loop, wake = waker
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the reader's loop is closed: nobody is listening
                self.cancel()

    def _take(self) -> list[Event]:
        with self._arrived:
            batch = list(self._pending)
            self._pending.clear()
            return batch

    def events(self) -> Iterator[Event]:
        """Blocking iteration; ends after the DoneEvent or ErrorEvent."""
        while True:
            with self._arrived:
                self._arrived.wait_for(lambda: bool(self._pending))
            for event in self._take():
                yield event
                if is_final(event):
                    return

    async def aevent_batches(self) -> AsyncIterator[list[Event]]:
        """Awaiting iteration over everything that arrived since the last step, in order.

        A reader that fell behind (a slow socket) catches up in one step instead of one
        step per token. The last batch ends with the DoneEvent or ErrorEvent. Leaving
        early (break, the task cancelled) cancels the generation.
        """
        wake = asyncio.Event()
        with self._arrived:
            self._waker = (asyncio.get_running_loop(), wake)
        try:
            while True:
                with self._arrived:
                    if not self._pending:
                        # Cleared under the lock: an event emitted after this sets it again.
                        wake.clear()
                if not wake.is_set() and not self._pending:
                    await wake.wait()
                batch = self._take()
                for i, event in enumerate(batch):
                    if is_final(event):
                        yield batch[: i + 1]
                        return
                if batch:
                    yield batch
        finally:
            self.cancel()  # a no-op after completion; frees the slot if the reader left early

    async def aevents(self) -> AsyncIterator[Event]:
        """Awaiting iteration, one event at a time; ends after the DoneEvent or ErrorEvent."""
        try:
            async for batch in self.aevent_batches():
                for event in batch:
                    yield event
        finally:
            self.cancel()  # closing this generator early must not wait for the inner one's GC

    def result(self) -> Completion:
        """Block until the request finishes and return its completion."""
        for event in self.events():
            if isinstance(event, DoneEvent):
                return event.completion
            if isinstance(event, ErrorEvent):
                raise GenerationError(event.message)
        raise GenerationError("generation ended without a result")


class Engine(Protocol):
    """What the web layer needs from an inference engine, whatever its scheduling."""

    model_alias: str
    n_ctx: int

    def submit(self, request: GenerationRequest) -> GenerationHandle: ...

    def count_tokens(self, text: str) -> int: ...

    def queue_depth(self) -> int: ...

    def active_requests(self) -> int: ...

    def stats(self) -> object: ...

    def close(self) -> None: ...
