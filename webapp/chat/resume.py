"""Streams a client can come back to: a WebSocket turn outlives a dropped connection for a while.

A phone that loses its network for a moment should not lose the reply it was reading, and
the model should not write it twice. So the frames of every WebSocket turn go through a
`TurnStream`, which keeps them (a reply is a few KB) and forwards them to whichever socket
is attached. When a socket drops without closing (close code 1006: the network, not the
user), the turn keeps running for RESUME_GRACE_S; a new socket of the same user sends
{"type": "resume", "message_id", "user_id", "offset"} (offset: characters of reply text it
already has) and receives the rest — the frames it missed, the text from `offset` on —
then the live stream. If nobody resumes in time the turn is stopped, exactly as a closed
socket stops it (its partial reply is stored, stopped_by "disconnect"). A stream that
finished while detached stays findable for RESUME_GRACE_S, so a late client still gets
its `done` frame.

Process-local: with several replicas a resume must reach the replica that runs the turn
(nginx's upstream hashes on the client), otherwise it is a "not found" and the client
reloads the stored conversation. Use from the event loop only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

RESUME_GRACE_S = 15.0

Sink = Callable[[dict[str, Any]], Awaitable[None]]

_streams: dict[str, TurnStream] = {}  # message id -> its stream, while resumable


class TurnStream:
    """The frames of one WebSocket turn, and the socket they go to (if any)."""

    def __init__(self, *, user_id: str, on_abandoned: Callable[[], None], grace_s: float | None = None) -> None:
        self.user_id = user_id
        self.message_id: str | None = None
        self._frames: list[dict[str, Any]] = []
        self._sink: Sink | None = None
        self._on_abandoned = on_abandoned  # stops the turn when nobody came back in time
        self._grace_s = RESUME_GRACE_S if grace_s is None else grace_s
        self._expiry: asyncio.TimerHandle | None = None
        self.finished = False
        self.task: asyncio.Task[None] | None = None  # the turn, for a resumed socket to stop or wait on
        self.control: Any = None  # its TurnControl

    def attach(self, sink: Sink) -> None:
        self._sink = sink
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def detach(self) -> None:
        """The socket dropped: keep the turn (or its end) for a resume, within the grace period."""
        self._sink = None
        self._expiry = asyncio.get_running_loop().call_later(self._grace_s, self._expire)

    async def emit(self, frame: dict[str, Any]) -> None:
        """Record a frame of the turn and send it to the attached socket, if any."""
        if frame.get("type") == "start" and self.message_id is None:
            self.message_id = frame["message_id"]
            _streams[self.message_id] = self
        self._frames.append(frame)
        if self._sink is not None:
            await self._sink(frame)

    def finish(self) -> None:
        """The turn ended: forget it now if a socket has its end (or nobody is coming back),
        else when the grace period ends."""
        self.finished = True
        if self._sink is not None or self._expiry is None:
            self._forget()

    async def replay(self, sink: Sink, *, offset: int) -> None:
        """Send `sink` what it missed: every frame after start, the reply text from `offset` on."""
        seen = 0
        for frame in self._frames:
            if frame.get("type") == "start":
                continue
            if frame.get("type") == "token":
                text, start = frame["text"], seen
                seen += len(text)
                if seen <= offset:
                    continue
                frame = {**frame, "text": text[max(0, offset - start) :]}
            await sink(frame)
        self.attach(sink)
        if self.finished:
            self._forget()

    def _expire(self) -> None:
        self._expiry = None
        if self._sink is not None:
            return
        if self.finished:
            self._forget()
        else:
            self._on_abandoned()  # the turn stops, stores its reply, then finishes

    def _forget(self) -> None:
        if self.message_id is not None and _streams.get(self.message_id) is self:
            del _streams[self.message_id]


def stream_find(message_id: object, user_id: object) -> TurnStream | None:
    """The resumable stream of `message_id`, if it is this user's; another user's is none."""
    stream = _streams.get(message_id) if isinstance(message_id, str) else None
    return stream if stream is not None and stream.user_id == user_id else None
