"""The chat WebSocket: tokens stream to the browser as the model writes them.

Who the socket speaks for comes from its handshake: the session cookie (browsers) or an
`Authorization: Bearer <API key>` header (scripts). Without either the socket is accepted,
told why in an error frame (code not_authenticated) and closed with code 4401; a pending
account's, with 4403. Before every message the credentials are checked again: a revoked
key, a signed-out session or a disabled account closes the socket the same way.
`user_id` is optional, as on REST (webapp.accounts.identity.Principal.owner_for).

Protocol (the README and the OpenAPI description say the same):
  client → {"type": "message", "db_id", "user_id", "input_data", "persona" | character fields}
             office: optional "google_access", "tools" ("auto" | "required"), "tool_names"
           {"type": "regenerate", "db_id", "user_id", "persona" | character fields, "message_id"?}
             answers the last user message again, or reply message_id's question (an earlier
             reply from the history before it); the answer becomes that reply's newest swipe
           {"type": "continue", "db_id", "user_id", "persona" | character fields, "message_id"?}
             the model goes on writing the conversation's last reply (message_id, if given,
             must name it); start's "continues" names it, and the text that streams is added to it
           {"type": "speak", "db_id", "user_id", "speaker", "message_id"?}  a group chat (character
             app): member `speaker` replies to the group as it stands (after POST
             /character/groups/{db_id}/messages stored the user's message and named who speaks);
             with message_id (the group's last reply) it answers again: a new swipe
           {"type": "stop"}
           {"type": "approval", "approval_id", "decision": "approve" | "deny"}  (a paused tool call)
           {"type": "resume", "message_id", "user_id", "offset"}  after a dropped connection: the
             rest of a reply still running (or just finished), from character `offset` on
  server → {"type": "status", "state", "model"}   on connect, and when the model is ready
           {"type": "start", "message_id", "db_id", "user_message_id", "persona", "regenerates", "speaker",
             "continues"}
             (`speaker`: a group's member writing the reply; "" in a one-to-one chat)
           {"type": "queued", "position"}         while waiting for a free slot (1 = next)
           {"type": "token", "text"}               as tokens arrive (several, if the socket lagged)
           {"type": "tool_call", "tool", "arguments", "status"}  running, then ok | error |
             approval_required (with "approval_id": the turn waits for an approval frame) | denied
           {"type": "done", "message_id", "finish_reason", "usage", "timings", "sources", "tool_calls",
             "speaker"}
           {"type": "resumed", "message_id", "offset"}  then the frames the socket missed, then live
           {"type": "error", "code", "message", "field"}   the socket stays usable
             (code "server_busy" adds "retry_after" seconds and "queue_size")

One generation at a time per socket. Frames are validated by the same serializers as the
REST endpoints; the turn itself is run by the one turn service (webapp.chat.turns), whose
events this consumer only forwards as frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from webapp.accounts.identity import Principal
from webapp.accounts.sockets import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED, socket_principal
from webapp.accounts.usage import TurnLimits
from webapp.chat import group_chats, inputs, runtime, services
from webapp.chat.errors import error_frame
from webapp.chat.resume import TurnStream, stream_find
from webapp.chat.turns import (
    TurnControl,
    TurnDone,
    TurnEvent,
    TurnQueued,
    TurnRequest,
    TurnStarted,
    TurnText,
    TurnToolStep,
    turn_stream,
)
from webapp.core.errors import ApplicationError, NotAuthenticatedError, NotFoundError
from webapp.core.json_input import JsonInputError, json_loads_bounded

log = logging.getLogger(__name__)

FRAME_MAX_BYTES = 16 * 1024
MODEL_POLL_S = 0.5
# How long a closing socket waits for its stopped reply to be stored before it lets go.
# The turn goes on storing in the background if this passes.
CLOSE_WAIT_S = 5.0


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self._closed = False
        self._turn: asyncio.Task[None] | None = None
        self._control: TurnControl | None = None
        self._stream: TurnStream | None = None
        self._watch: asyncio.Task[None] | None = None
        await self.accept()
        runtime.websocket_opened(+1)
        self._counted_open = True
        if await self._principal_check() is None:
            return
        if await self._status_send() == "loading":
            self._watch = asyncio.create_task(self._model_ready_watch())

    async def disconnect(self, code: int) -> None:
        """The client left: stop its generation now and let the partial reply be stored."""
        if getattr(self, "_counted_open", False):
            runtime.websocket_opened(-1)
            self._counted_open = False
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        if not self._running():
            return
        if code in (1000, 1001) or self._stream is None:  # the user closed the page or the socket
            self._stop("disconnect")
            await asyncio.wait({self._turn}, timeout=CLOSE_WAIT_S)  # type: ignore[arg-type]
        else:  # the network dropped it (1006): the reply goes on for a while, for a resume
            self._stream.detach()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        principal = await self._principal_check()
        if principal is None:
            return
        try:
            frame = _frame_parse(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "stop":
                self._stop("user")
                return
            if kind == "approval":
                if self._control is None or not self._running():
                    raise ApplicationError(
                        "approval_id: no tool call of this socket waits for that approval",
                        field="approval_id",
                        code="no_pending_approval",
                    )
                self._control.decide(frame.get("approval_id"), frame.get("decision"))  # type: ignore[arg-type]
                return
            if kind == "resume":
                await self._resume(frame, principal)
                return
            if kind not in ("message", "regenerate", "continue", "speak"):
                raise ApplicationError(
                    f"type: unknown frame type {kind!r} (expected message, regenerate, continue, speak, stop, "
                    "approval or resume)",
                    field="type",
                    code="unknown_type",
                )
            if self._running():
                raise ApplicationError(
                    'a reply is still being generated; wait for "done" or send {"type": "stop"}',
                    code="generation_in_progress",
                )
        except Exception as exc:
            await self._error_send(exc)
            return
        try:
            owner = principal.owner_for(frame.get("user_id") if isinstance(frame.get("user_id"), str) else None)
        except ApplicationError as exc:
            await self._error_send(exc)
            return
        control = TurnControl(can_wait_for_approval=True)
        stream = TurnStream(user_id=owner, on_abandoned=lambda: control.stop("disconnect"))
        stream.attach(self._send)
        stream.control, self._control, self._stream = control, control, stream
        self._turn = stream.task = asyncio.create_task(self._turn_run(kind, frame, principal, control, stream))

    async def _principal_check(self) -> Principal | None:
        """Who this socket speaks for, checked again now; None (and the socket closed, with an
        error frame saying why) when its credentials no longer hold."""
        try:
            return await database_sync_to_async(socket_principal)(self.scope)
        except ApplicationError as exc:
            await self._error_send(exc)
            self._stop("disconnect")
            await self.close(
                code=CLOSE_NOT_AUTHENTICATED if isinstance(exc, NotAuthenticatedError) else CLOSE_FORBIDDEN
            )
            return None

    # --- one turn ---------------------------------------------------------------------

    async def _turn_run(
        self, kind: str, frame: dict[str, Any], principal: Principal, control: TurnControl, stream: TurnStream
    ) -> None:
        """Validate the frame, run the turn and send its events through `stream` (which a
        resumed socket may have taken over); errors become error frames."""
        with runtime.CountedRequest() as counted:
            try:
                client = (self.scope.get("client") or [None])[0]
                # Off the loop: the persona may be a character read from the store.
                request = await sync_to_async(_turn_request, thread_sensitive=False)(kind, frame, principal, client)
                async for event in turn_stream(request, deps=runtime.turn_deps(), control=control):
                    await stream.emit(_frame_of(event))
                counted.succeeded()
            except Exception as exc:
                await stream.emit(_error_frame_of(exc))
            finally:
                stream.finish()

    async def _resume(self, frame: dict[str, Any], principal: Principal) -> None:
        """Take over a turn whose socket dropped: send what this socket missed, then the rest live."""
        if self._running():
            raise ApplicationError(
                'a reply is still being generated; wait for "done" or send {"type": "stop"}',
                code="generation_in_progress",
            )
        offset = frame.get("offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ApplicationError("offset: must be a whole number of characters, 0 or more", field="offset")
        user_id = frame.get("user_id")
        stream = stream_find(
            frame.get("message_id"), principal.owner_for(user_id if isinstance(user_id, str) else None)
        )
        if stream is None:
            raise NotFoundError(
                "message_id: no reply of this user_id to resume (it ended a while ago, or runs elsewhere); "
                "reload the conversation",
                field="message_id",
            )
        self._stream, self._control, self._turn = stream, stream.control, stream.task
        await self._send({"type": "resumed", "message_id": stream.message_id, "offset": offset})
        await stream.replay(self._send, offset=offset)

    def _running(self) -> bool:
        return self._turn is not None and not self._turn.done()

    def _stop(self, by: Any) -> None:
        """Stop the running turn, if any; its partial reply is stored as stopped."""
        if self._control is not None and self._running():
            self._control.stop(by)

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
        await self._send(_error_frame_of(exc))


def _error_frame_of(exc: Exception) -> dict[str, Any]:
    frame = error_frame(exc)
    if frame is None:
        log.error("chat turn failed", exc_info=exc)
        frame = {
            "type": "error",
            "code": "server_error",
            "message": "internal error; see the server log",
            "field": None,
        }
    return frame


def _frame_of(event: TurnEvent) -> dict[str, Any]:
    """A turn event as the protocol's frame."""
    if isinstance(event, TurnText):
        return {"type": "token", "text": event.text}
    if isinstance(event, TurnQueued):
        return {"type": "queued", "position": event.position}
    if isinstance(event, TurnToolStep):
        return {"type": "tool_call", **event.step.public()}
    if isinstance(event, TurnStarted):
        return {
            "type": "start",
            "message_id": event.message_id,
            "db_id": event.conversation_id,
            "user_message_id": event.user_message_id,
            "persona": event.persona,
            "regenerates": event.regenerates,
            "speaker": event.speaker,
            "continues": event.continues,
        }
    assert isinstance(event, TurnDone) and event.message is not None
    meta = event.message.meta
    return {
        "type": "done",
        "message_id": event.message.id,
        "finish_reason": meta["finish_reason"],
        "usage": {
            "prompt_tokens": event.completion.usage.prompt_tokens,
            "completion_tokens": event.completion.usage.completion_tokens,
        },
        "timings": meta["timings"],
        "sources": meta.get("sources", []),
        "tool_calls": meta.get("tool_calls", []),
        # The character app: the lorebook entries that fired, and where the prompt's tokens went.
        "lore": meta.get("lore", []),
        "budget": meta.get("prompt", {}).get("budget"),
        "speaker": meta.get("speaker", ""),
    }


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


def _turn_request(kind: str, frame: dict[str, Any], principal: Principal, client: str | None) -> TurnRequest:
    """A message, regenerate or speak frame as a turn request; ValidationError names the field."""
    if kind == "speak":
        speak = group_chats.GroupSpeakSerializer(data={k: v for k, v in frame.items() if k != "type"})
        speak.is_valid(raise_exception=True)
        return group_chats.speak_request(
            speak.validated_data,
            owner=principal.owner_for(speak.validated_data.get("user_id")),
            user_name=speak.validated_data.get("user_id") or principal.username,
            role=principal.role,
            gate=TurnLimits(principal, client),
            sampling=services.sampling_params(runtime.model_spec_get().sampling),
        )
    wiring = runtime.wiring_get()
    serializer_class = wiring.turn_serializer if kind == "message" else wiring.regenerate_serializer
    serializer = serializer_class(data={k: v for k, v in frame.items() if k != "type"})
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    request = inputs.turn_request(
        data,
        owner=principal.owner_for(data.get("user_id")),
        user_name=data.get("user_id") or principal.username,
        role=principal.role,
        gate=TurnLimits(principal, client),
        sampling=services.sampling_params(runtime.model_spec_get().sampling),
    )
    return replace(request, continues=True) if kind == "continue" else request
