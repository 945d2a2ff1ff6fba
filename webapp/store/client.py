"""The one place a MongoDB database handle is built.

With `mongo_url` set, a real MongoDB through pymongo. Without it, montydb: an embedded,
pymongo-compatible engine on SQLite files, one folder per app (two processes never share
an SQLite file). The repository in `chat_store.py` uses only the API both understand.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
def database_lock(config: StoreConfig) -> contextlib.AbstractContextManager[Any]:
    """The lock every repository on `config`'s database takes around a call into it.

    montydb's SQLite storage is not safe to drive from several threads at once, so all
    repositories of one embedded database share one lock; pymongo is thread-safe.
    """
    return threading.RLock() if config.embedded else contextlib.nullcontext()
