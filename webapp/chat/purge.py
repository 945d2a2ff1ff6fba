"""This app's share of deleting accounts (webapp.accounts.deletion): a thread that looks for
purges asked of this app every few seconds, removes what the stores hold for the account
(conversations and messages; through AppWiring.owner_purge the office adds documents,
passages, vectors, notes, approvals and tool audit, and the character app characters,
avatars and user personas), and records what it removed.

A thread of its own rather than a request: the account is deleted by whichever app serves
/accounts/, but each app's embedded store can only be written by that app's process; and a
purge asked while an app was down is done when it starts.
"""

from __future__ import annotations

import logging
import threading

from django import db
from django.conf import settings

from webapp.accounts.deletion import purge_finish, purges_pending
from webapp.accounts.identity import owner_key
from webapp.chat import runtime

log = logging.getLogger(__name__)

POLL_S = 2.0
_started = threading.Event()


def purges_run() -> int:
    """Do every purge asked of this app; how many were done."""
    done = 0
    for purge in purges_pending(settings.APP_MODE):
        owner = owner_key(purge.account_id)
        removed: dict[str, int] = {}
        try:
            removed.update(runtime.chat_store_get().owner_purge(owner))
            extra = runtime.wiring_get().owner_purge
            if extra is not None:
                removed.update(extra(owner))
        except Exception as exc:  # recorded for the admin (Django admin lists purges), not retried forever
            log.exception("purge of %s's data failed", purge.username)
            purge_finish(purge, removed=removed, error=f"{type(exc).__name__}: {exc}")
        else:
            log.info("removed %s's data: %s", purge.username, removed)
            purge_finish(purge, removed=removed)
        done += 1
    return done


def _loop() -> None:
    while True:
        try:
            purges_run()
        except Exception:  # the accounts database unreachable for a moment: try again later
            log.warning("could not look for account purges", exc_info=True)
        finally:
            db.close_old_connections()
        threading.Event().wait(POLL_S)


def purger_start() -> None:
    """Start the purge thread once per process (webapp.config.wiring.startup)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_loop, name="account-purge", daemon=True).start()
