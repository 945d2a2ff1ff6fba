"""The chat WebSocket: tokens stream to the browser as the model writes them.

Protocol (the README and the OpenAPI description say the same):
  client → {"type": "message", "db_id", "user_id", "input_data", "persona" | character fields}
             office: optional "google_access", "tools" ("auto" | "required"), "tool_names"
           {"type": "regenerate", "db_id", "user_id", "persona" | character fields}
           {"type": "stop"}
           {"type": "approval", "approval_id", "decision": "approve" | "deny"}  (a paused tool call)
  server → {"type": "status", "state", "model"}   on connect, and when the model is ready
           {"type": "start", "message_id", "db_id", "user_message_id", "persona", "regenerates"}
           {"type": "queued", "position"}         while waiting for a free slot (1 = next)
           {"type": "token", "text"}               as tokens arrive (several, if the socket lagged)
           {"type": "tool_call", "tool", "arguments", "status"}  running, then ok | error |
             approval_required (with "approval_id": the turn waits for an approval frame) | denied
           {"type": "done", "message_id", "finish_reason", "usage", "timings", "sources", "tool_calls"}
           {"type": "error", "code", "message", "field"}   the socket stays usable
             (code "server_busy" adds "retry_after" seconds and "queue_size")

One generation at a time per socket. Frames are validated by the same serializers as the
REST endpoints. The services block on the store, so they run on a worker thread; tokens
come from the engine's thread through the handle and are awaited here on the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from webapp.chat import inputs, lifecycle, runtime, services, tool_turns
from webapp.chat.checkpoints import ReplyCheckpoint
from webapp.chat.errors import ApplicationError, error_frame
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.engine import Completion, DoneEvent, ErrorEvent, GenerationHandle, QueuedEvent, TokenEvent

log = logging.getLogger(__name__)

FRAME_MAX_BYTES = 16 * 1024
MODEL_POLL_S = 0.5
# How long a closing socket waits for its stopped reply to be stored before it lets go.
# The turn goes on storing in the background if this passes.
CLOSE_WAIT_S = 5.0


def _worker(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run blocking store work on a worker thread: never on the loop, never on the one
    thread that thread-sensitive sync_to_async shares with the rest of Django."""
    return sync_to_async(fn, thread_sensitive=False)


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self._closed = False
        self._turn: asyncio.Task[None] | None = None
        self._handle: GenerationHandle | None = None
        self._stopped_by: services.StoppedBy | None = None
        self._watch: asyncio.Task[None] | None = None
        self._approval: tuple[str | None, asyncio.Future[str]] | None = None
        self._steps_done: tuple[Any, ...] = ()
        # The running reply as the client saw it, and its checkpoint (see webapp.chat.checkpoints).
        self._shown = ""
        self._checkpoint: ReplyCheckpoint | None = None
        self._checkpoint_write: asyncio.Task[None] | None = None
        await self.accept()
        if await self._status_send() == "loading":
            self._watch = asyncio.create_task(self._model_ready_watch())

    async def disconnect(self, code: int) -> None:
        """The client left: stop its generation now and let the partial reply be stored."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        if self._turn is not None and not self._turn.done():
            self._stop("disconnect")
            await asyncio.wait({self._turn}, timeout=CLOSE_WAIT_S)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = _frame_parse(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "stop":
                self._stop("user")
                return
            if kind == "approval":
                self._approval_receive(frame)
                return
            if kind not in ("message", "regenerate"):
                raise ApplicationError(
                    f"type: unknown frame type {kind!r} (expected message, regenerate, stop or approval)",
                    field="type",
                    code="unknown_type",
                )
            if self._turn is not None and not self._turn.done():
                raise ApplicationError(
                    'a reply is still being generated; wait for "done" or send {"type": "stop"}',
                    code="generation_in_progress",
                )
            start = _turn_starter(kind, frame)
        except Exception as exc:
            await self._error_send(exc)
            return
        self._stopped_by = None
        self._turn = asyncio.create_task(self._turn_run(start))

    # --- one turn ---------------------------------------------------------------------

    async def _turn_run(self, start: Callable[[], services.PendingTurn]) -> None:
        """Run one turn, registered so that a shutdown drains it (see webapp.chat.lifecycle)."""
        with lifecycle.TurnRegistration(stop=lambda: self._stop("shutdown")):
            await self._turn_body(start)

    async def _turn_body(self, start: Callable[[], services.PendingTurn]) -> None:
        stats = runtime.request_stats_get()
        stats.request_started()
        began, ok = time.perf_counter(), False
        try:
            turn = await _worker(start)()
            self._handle = turn.handle
            if self._stopped_by is not None:  # stopped (or gone) while the turn was starting
                turn.handle.cancel()
            await self._send(
                {
                    "type": "start",
                    "message_id": turn.assistant_message_id,
                    "db_id": turn.conversation.db_id,
                    "user_message_id": turn.user_message.id,
                    "persona": turn.persona.id,
                    "regenerates": turn.regenerates,
                }
            )
            self._checkpoint = services.reply_checkpoint(store=runtime.chat_store_get(), turn=turn)
            self._shown = ""
            if turn.notice:  # part of the reply text, as stored: e.g. "Web search was not used: …"
                self._shown = services.reply_text(turn, "")
                await self._send({"type": "token", "text": self._shown})
            while True:
                completion = await self._round_stream(turn)
                call = tool_turns.tool_call_read(turn, completion)
                if call is None:
                    break
                following, completion = await self._tool_run(turn, completion, call)
                if following is None:  # stopped while waiting for the user's approval
                    turn = replace(turn, tool_steps=self._steps_done)
                    break
                turn = following
            if self._checkpoint_write is not None:
                await asyncio.wait({self._checkpoint_write})  # before the reply is stored, never after
            message = await _worker(services.chat_turn_finish)(
                store=runtime.chat_store_get(), turn=turn, completion=completion, stopped_by=self._stopped_by
            )
            ok = True
            await self._send(
                {
                    "type": "done",
                    "message_id": message.id,
                    "finish_reason": message.meta["finish_reason"],
                    "usage": {
                        "prompt_tokens": completion.usage.prompt_tokens,
                        "completion_tokens": completion.usage.completion_tokens,
                    },
                    "timings": message.meta["timings"],
                    "sources": message.meta.get("sources", []),
                    "tool_calls": message.meta.get("tool_calls", []),
                }
            )
        except Exception as exc:
            await self._error_send(exc)
        finally:
            self._handle = None
            stats.request_finished(ok=ok, seconds=time.perf_counter() - began)

    async def _round_stream(self, turn: services.PendingTurn) -> Completion:
        """Send one round's tokens as they come (a tool call's JSON is held back); return its completion."""
        self._handle = turn.handle
        if self._stopped_by is not None:
            turn.handle.cancel()
        holding: bool | None = None if turn.tool_mode is not None else False
        last: DoneEvent | ErrorEvent | None = None
        async for batch in turn.handle.aevent_batches():
            positions = [e.position for e in batch if isinstance(e, QueuedEvent)]
            if positions:
                await self._send({"type": "queued", "position": positions[-1]})
            text = "".join(e.text for e in batch if isinstance(e, TokenEvent))
            if text and holding is None:
                # The grammar lets a plain answer start with anything but "{": the first
                # text tells a call (held back, announced as a tool_call frame) from an answer.
                holding = text.lstrip().startswith("{")
            if text and not holding:
                await self._send({"type": "token", "text": text})
                self._shown += text
                self._checkpoint_maybe(turn)
            if isinstance(batch[-1], DoneEvent | ErrorEvent):
                last = batch[-1]
        if not isinstance(last, DoneEvent):
            reason = last.message if last is not None else "generation ended without a result"
            raise ApplicationError(reason, code="generation_failed")
        if holding and last.completion.finish_reason == "cancelled":
            return replace(last.completion, text="")  # half a call is no reply
        return last.completion

    async def _tool_run(
        self, turn: services.PendingTurn, completion: Completion, call: tuple[str, dict[str, Any]]
    ) -> tuple[services.PendingTurn | None, Completion]:
        """Run the model's call (asking the user first if it needs approval); return the next round."""
        runner, engine = runtime.tool_runner_get(), runtime.engine_get()
        await self._send({"type": "tool_call", "tool": call[0], "arguments": call[1], "status": "running"})
        step, following = await _worker(tool_turns.chat_turn_tool)(engine=engine, runner=runner, turn=turn, call=call)
        if following is None:
            await self._send({"type": "tool_call", **step.public()})
            self._approval = (step.approval_id, asyncio.get_running_loop().create_future())
            try:
                decision = await self._approval[1]
            finally:
                self._approval = None
            if decision == "stop":
                step = await _worker(runner.decide)(user_id=turn.conversation.user_id, step=step, approve=False)
                await self._send({"type": "tool_call", **step.public()})
                self._steps_done = (*turn.tool_steps, step)
                return None, replace(completion, text="", finish_reason="cancelled")
            step, following = await _worker(tool_turns.chat_turn_tool_decided)(
                engine=engine, runner=runner, turn=turn, step=step, approve=decision == "approve"
            )
        await self._send({"type": "tool_call", **step.public()})
        return following, completion

    def _checkpoint_maybe(self, turn: services.PendingTurn) -> None:
        """Write what the client has seen to the store when a checkpoint is due (one write at a time)."""
        checkpoint = self._checkpoint
        if checkpoint is None or not checkpoint.due(self._shown):
            return
        if self._checkpoint_write is not None and not self._checkpoint_write.done():
            return
        save = _worker(checkpoint.save)(self._shown, services.checkpoint_meta(turn))
        self._checkpoint_write = asyncio.ensure_future(save)

    def _approval_receive(self, frame: dict[str, Any]) -> None:
        """The user's answer to a paused tool call: {"type": "approval", "approval_id", "decision"}."""
        decision = frame.get("decision")
        if decision not in ("approve", "deny"):
            raise ApplicationError('decision: must be "approve" or "deny"', field="decision")
        if self._approval is None or frame.get("approval_id") != self._approval[0]:
            raise ApplicationError(
                "approval_id: no tool call of this socket waits for that approval",
                field="approval_id",
                code="no_pending_approval",
            )
        if not self._approval[1].done():
            self._approval[1].set_result(decision)

    def _stop(self, by: services.StoppedBy) -> None:
        """Stop the running generation, if any; its partial reply is stored as stopped."""
        if self._turn is None or self._turn.done():
            return  # nothing running: a late Stop after "done" is not an error
        self._stopped_by = self._stopped_by or by
        if self._approval is not None and not self._approval[1].done():
            self._approval[1].set_result("stop")  # a paused call is denied
        if self._handle is not None:
            self._handle.cancel()

    # --- model status -----------------------------------------------------------------

    async def _status_send(self) -> str:
        state, _ = runtime.engine_status()
        await self._send({"type": "status", "state": state, "model": runtime.model_spec_get().alias})
        return state

    async def _model_ready_watch(self) -> None:
        while runtime.engine_status()[0] == "loading":
            await asyncio.sleep(MODEL_POLL_S)
        await self._status_send()

    # --- sending ----------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        """Send a frame if the socket is still there; never raise (the turn must still store its reply)."""
        if self._closed:
            return
        try:
            await self.send(text_data=json.dumps(frame, ensure_ascii=False))
        except Exception:  # the server is going away (shutdown), or the socket broke
            log.info("frame not sent: the socket is gone", exc_info=True)
            self._closed = True

    async def _error_send(self, exc: Exception) -> None:
        frame = error_frame(exc)
        if frame is None:
            log.error("chat turn failed", exc_info=exc)
            frame = {
                "type": "error",
                "code": "server_error",
                "message": "internal error; see the server log",
                "field": None,
            }
        await self._send(frame)


def _frame_parse(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", errors="replace")
    if len(raw.encode("utf-8", errors="surrogatepass")) > FRAME_MAX_BYTES:
        raise ApplicationError(f"frame is larger than {FRAME_MAX_BYTES} bytes", code="frame_too_large")
    try:
        frame = json_loads_bounded(raw)
    except JsonInputError as exc:
        raise ApplicationError(f"frame: {exc}", code=exc.code, field=exc.field) from exc
    if not isinstance(frame, dict):
        raise ApplicationError('frame must be a JSON object like {"type": "message", ...}', code="malformed_json")
    return frame


def _turn_starter(kind: str, frame: dict[str, Any]) -> Callable[[], services.PendingTurn]:
    """Validate a message or regenerate frame; return the blocking call that starts its turn.

    Validation (pure, in memory) and the model check run here, on the loop, so bad frames
    are answered at once; the returned call touches the store and must run on a worker.
    """
    serializer_class = inputs.turn_serializer_class() if kind == "message" else inputs.regenerate_serializer_class()
    serializer = serializer_class(data={k: v for k, v in frame.items() if k != "type"})
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    persona = inputs.persona_from_input(data)
    engine = runtime.engine_get()
    sampling = services.sampling_params(runtime.model_spec_get().sampling)
    db_id, user_id = str(data["db_id"]), data["user_id"]

    if kind == "regenerate":
        return lambda: services.chat_turn_regenerate(
            store=runtime.chat_store_get(),
            engine=engine,
            db_id=db_id,
            user_id=user_id,
            persona=persona,
            sampling=sampling,
            grounder=runtime.grounder_get(),
            web_search=bool(data.get("google_access")),
        )
    return lambda: services.chat_turn_start(
        store=runtime.chat_store_get(),
        engine=engine,
        db_id=db_id,
        user_id=user_id,
        text=data["input_data"],
        persona=persona,
        sampling=sampling,
        grounder=runtime.grounder_get(),
        web_search=bool(data.get("google_access")),
        tools=runtime.tool_runner_get(),
        tool_mode=data.get("tools"),
        tool_names=data.get("tool_names"),
    )
