"""The engine's interface: submit a request, receive its tokens, cancel it.

`GenerationHandle` is the only thing the web layer holds. The scheduler thread pushes
events into it; a caller reads them either blocking (`events()`, from a worker thread)
or awaiting (`aevents()`, from an event loop). Nothing here blocks an event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from webapp.engine.prompt import ChatMessage, PromptPlan

FinishReason = Literal["stop", "length", "cancelled", "error"]


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


@dataclass(frozen=True)
class GenerationRequest:
    """A chat to continue. `pinned` messages (the persona) survive context trimming."""

    pinned: Sequence[ChatMessage]
    history: Sequence[ChatMessage]
    user: ChatMessage
    sampling: SamplingParams


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
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    model: str


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    completion: Completion


@dataclass(frozen=True)
class ErrorEvent:
    message: str


Event = TokenEvent | DoneEvent | ErrorEvent


class GenerationError(Exception):
    """The model failed while generating (not the caller's fault)."""


_ids = itertools.count(1)


@dataclass
class GenerationHandle:
    """One submitted request. Created by an engine; read by exactly one consumer.

    The consumer side (`events`, `aevents`, `result`, `cancel`) may be called from any
    thread. `_emit` is called only by the engine's scheduler thread.
    """

    plan: PromptPlan
    request: GenerationRequest
    id: int = field(default_factory=lambda: next(_ids))
    submitted_at: float = field(default_factory=time.perf_counter)
    _loop: asyncio.AbstractEventLoop | None = None
    _async_queue: asyncio.Queue[Event] | None = None
    _sync_queue: queue.SimpleQueue[Event] = field(default_factory=queue.SimpleQueue)
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._async_queue = asyncio.Queue()
        except RuntimeError:
            self._loop = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the scheduler to stop this request at its next step. Idempotent."""
        self._cancelled.set()

    def _emit(self, event: Event) -> None:
        if self._loop is not None and self._async_queue is not None:
            try:
                self._loop.call_soon_threadsafe(self._async_queue.put_nowait, event)
            except RuntimeError:  # the consumer's loop is gone: nobody is listening
                self.cancel()
        else:
            self._sync_queue.put(event)

    def events(self) -> Iterator[Event]:
        """Blocking iteration; ends after the DoneEvent or ErrorEvent."""
        if self._loop is not None:
            raise RuntimeError("this handle was submitted from an event loop: use aevents()")
        while True:
            event = self._sync_queue.get()
            yield event
            if not isinstance(event, TokenEvent):
                return

    async def aevents(self) -> AsyncIterator[Event]:
        """Awaiting iteration; cancelling the awaiting task cancels the generation."""
        if self._async_queue is None:
            raise RuntimeError("this handle was submitted outside an event loop: use events()")
        try:
            while True:
                event = await self._async_queue.get()
                yield event
                if not isinstance(event, TokenEvent):
                    return
        finally:
            self.cancel()  # a no-op after completion; frees the slot if the reader left early

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

    def queue_depth(self) -> int: ...

    def active_requests(self) -> int: ...

    def close(self) -> None: ...
