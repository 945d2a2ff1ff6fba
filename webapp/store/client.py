"""The one place a MongoDB database handle is built.

With `mongo_url` set, a real MongoDB through pymongo. Without it, montydb: an embedded,
pymongo-compatible engine on SQLite files, one folder per app (two processes never share
an SQLite file). The repository in `chat_store.py` uses only the API both understand.
Messages are the exception: `message_log_get` builds their MessageLog.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webapp.store.message_log import MessageLog, MongoMessageLog, SqliteMessageLog


@dataclass(frozen=True)
class StoreConfig:
    app: str
    mongo_url: str | None
    embedded_dir: Path
    database: str = "personachat"

    @property
    def embedded(self) -> bool:
        return not self.mongo_url


@functools.cache
def database_get(config: StoreConfig) -> Any:
    """Return the database handle for `config`, built once per process. Tests pass their own config."""
    if config.mongo_url:
        import pymongo

        client = pymongo.MongoClient(config.mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000)
        return client[config.database]

    from montydb import MontyClient, set_storage

    folder = config.embedded_dir / config.app
    folder.mkdir(parents=True, exist_ok=True)
    set_storage(str(folder), storage="sqlite")
    return MontyClient(str(folder))[config.database]


@functools.cache
def message_log_get(config: StoreConfig) -> MessageLog:
    """Where `config`'s app keeps its messages, built once per process: an indexed SQLite
    file beside montydb's folder for the embedded store, the `messages` collection with
    MongoDB (see webapp.store.message_log for why)."""
    if config.embedded:
        return SqliteMessageLog(config.embedded_dir / config.app / MESSAGES_FILE, app=config.app)
    from bson import ObjectId

    log = MongoMessageLog(database_get(config)["messages"], app=config.app, object_id=ObjectId)
    log.indexes_ensure()
    return log


MESSAGES_FILE = "messages.sqlite3"


@functools.cache
def database_lock(config: StoreConfig) -> contextlib.AbstractContextManager[Any]:
    """The lock every repository on `config`'s database takes around a call into it.

    montydb's SQLite storage is not safe to drive from several threads at once, so all
    repositories of one embedded database share one lock; pymongo is thread-safe.
    """
    return threading.RLock() if config.embedded else contextlib.nullcontext()


class StoreInUseError(RuntimeError):
    """Another serving process already holds this app's embedded store."""


_claims: dict[Path, Any] = {}


def embedded_claim(config: StoreConfig) -> None:
    """Hold this app's embedded store for this process's lifetime; refuse if another process does.

    montydb on SQLite files serves one process: a second one (a second replica of the app)
    would keep a chat cache the first one contradicts. Serving processes call this at
    start-up; with MongoDB (`mongo_url`) several processes may share the store and it is a
    no-op. The lock is an flock on `<embedded_dir>/<app>.lock`, released when the process
    ends, however it ends.
    """
    if not config.embedded:
        return
    path = config.embedded_dir / f"{config.app}.lock"
    if path in _claims:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreInUseError(
            f"the embedded store of the {config.app} app ({config.embedded_dir / config.app}) is in use by "
            f"{holder}: it serves one process only. Run one process per app, or set MONGO_URL to share a MongoDB."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _claims[path] = handle
