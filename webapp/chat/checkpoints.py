"""Checkpoints of a reply while it streams: what the user already saw survives a crash.

A streaming reply is written to the store's `checkpoints` (see webapp.store.chat_store) at
most once per `CHECKPOINT_INTERVAL_S`, so the cost is bounded by time, not by tokens: a
reply shorter than the interval is never checkpointed at all. When the reply is stored,
`turns.chat_turn_finish` deletes its checkpoint; one left behind by a process that died
becomes the reply, marked "interrupted", when the app starts again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from webapp.store.chat_store import ChatStore, Conversation

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


class ReplyCheckpoint:
    """The checkpoint of one reply. `due` is cheap and thread-safe; `save` blocks on the store."""

    def __init__(
        self,
        *,
        store: ChatStore,
        conversation: Conversation,
        message_id: str,
        persona: str,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._conversation = conversation
        self._message_id = message_id
        self._persona = persona
        self._interval_s = interval_s
        self._clock = clock
        self._last = clock()  # the first write waits a whole interval
        self._saved = ""

    def due(self, text: str) -> bool:
        """Whether `text` is new and the last write is an interval old."""
        return text != self._saved and self._clock() - self._last >= self._interval_s

    def save(self, text: str, meta: dict[str, Any]) -> None:
        """Write the checkpoint. A failure is logged, never raised: the reply goes on without it."""
        self._last = self._clock()
        self._saved = text
        try:
            self._store.checkpoint_save(
                conversation=self._conversation,
                message_id=self._message_id,
                persona=self._persona,
                content=text,
                meta=meta,
            )
        except Exception:
            log.exception("checkpoint of reply %s failed", self._message_id)
