"""Turns in flight, and a shutdown that lets them end well (SIGTERM drains).

Every chat turn (REST, WebSocket) is registered here while it runs, with a way to stop
it. When the process is asked to stop (supervisord or docker sends SIGTERM), `drain`:

1. refuses new turns (`draining`: 503 `shutting_down` with Retry-After, see
   runtime.engine_get), so a client retries against the restarted app;
2. waits up to SHUTDOWN_DRAIN_S (20 s) for the running turns to finish on their own;
3. stops those still running: each stores its partial reply with finish_reason
   "interrupted" (stopped_by "shutdown"), and waits a few seconds for those writes.

A process killed outright (SIGKILL, a crash) can't do any of this; its replies are kept
by their checkpoints instead (webapp.chat.checkpoints).

Under daphne, `shutdown_hook_install` runs `drain` as a Twisted "before shutdown"
trigger: daphne stops its reactor on SIGTERM, and the reactor waits for the drain.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

STORE_WAIT_S = 5.0  # after stopping the last turns: time for their partial replies to be stored

_lock = threading.Lock()
_turns: dict[int, Callable[[], None]] = {}
_ids = itertools.count(1)
_draining = threading.Event()


def draining() -> bool:
    return _draining.is_set()


class TurnRegistration:
    """A running turn. `stop` is called (from the event loop's thread) if the process must end first."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self._id = next(_ids)

    def __enter__(self) -> TurnRegistration:
        with _lock:
            _turns[self._id] = self.stop
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _turns.pop(self._id, None)


def turns_in_flight() -> int:
    with _lock:
        return len(_turns)


async def drain(*, timeout_s: float, store_wait_s: float = STORE_WAIT_S) -> None:
    """Refuse new turns, let running ones finish for `timeout_s`, then stop the rest."""
    _draining.set()
    loop = asyncio.get_running_loop()
    log.info("shutting down: %d turn(s) in flight, waiting up to %.0f s", turns_in_flight(), timeout_s)
    deadline = loop.time() + timeout_s
    while turns_in_flight() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    with _lock:
        stops = list(_turns.values())
    if stops:
        log.warning("shutting down: stopping %d turn(s); their replies are stored as interrupted", len(stops))
        for stop in stops:
            stop()
        deadline = loop.time() + store_wait_s
        while turns_in_flight() and loop.time() < deadline:
            await asyncio.sleep(0.05)
    log.info("shutting down: %d turn(s) still in flight", turns_in_flight())


def shutdown_hook_install(*, timeout_s: float) -> None:
    """Under daphne, drain before the reactor stops. Elsewhere (tests, manage.py) a no-op."""
    if "daphne.server" not in sys.modules:
        return
    from twisted.internet import defer, reactor

    def before_shutdown() -> defer.Deferred[None]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(drain(timeout_s=timeout_s)))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined]
