"""Data from before accounts: set apart once, then given to accounts one label at a time.

Before accounts, data was stored under whatever `user_id` the client sent, with no sign-in:
anyone could have written under a label such as "a1", which today is account 1's owner key
(webapp.accounts.identity.owner_key). So the first `accounts_prepare` of a deployment (the
launcher and docker-compose run it before the apps start) puts "legacy:" in front of every
label its stores hold, once, and records that it did (`Upgrade`): no pre-account data is
ever read as an account's. `manage.py data_adopt <old user_id> <username>` then moves one
label's data to an account. On a fresh deployment the stores are empty and this is a no-op.

Both run with the apps stopped: each app's embedded store and the SQLite search index serve
one process at a time (with MONGO_URL and QDRANT_URL, they may run any time).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from webapp.accounts.identity import owner_key
from webapp.accounts.models import Account, Upgrade
from webapp.retrieval.index import (
    qdrant_labels_prefix,
    qdrant_owner_rename,
    sqlite_index_labels_prefix,
    sqlite_index_owner_rename,
)
from webapp.store.chat_store import ChatStore
from webapp.store.client import (
    StoreConfig,
    StoreInUseError,
    database_get,
    database_lock,
    embedded_claim,
    message_log_get,
)
from webapp.store.office_store import OfficeStore

LEGACY = "legacy:"
QUARANTINE = "legacy_user_ids_set_apart"
APPS = ("office", "character")


class StoresInUse(Exception):
    """An app still runs on its embedded store."""


def _stores(app: str) -> tuple[ChatStore, OfficeStore | None]:
    env = settings.ENV
    config = StoreConfig(app=app, mongo_url=env.mongo_url, embedded_dir=env.var_dir / "mongo")
    if config.embedded:
        try:
            embedded_claim(config)
        except StoreInUseError as exc:
            raise StoresInUse(f"{exc} Stop the stack first (Ctrl-C on make run).") from None
    db, lock = database_get(config), database_lock(config)
    chat = ChatStore(db, app=app, embedded=config.embedded, messages=message_log_get(config), lock=lock)
    return chat, OfficeStore(db, app=app, lock=lock) if app == "office" else None


def _qdrant() -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(url=settings.ENV.qdrant_url, timeout=30)


def legacy_set_apart_once() -> dict[str, int] | None:
    """Prefix every stored label with "legacy:", the first time only; what changed, or None
    when it was done before."""
    if Upgrade.objects.filter(name=QUARANTINE).exists():
        return None
    changed: dict[str, int] = {}
    for app in APPS:
        chat, office = _stores(app)
        changed[f"{app} conversations"] = chat.labels_prefix(LEGACY)
        if office is not None:
            changed.update({f"office {what}": n for what, n in office.labels_prefix(LEGACY).items()})
    if settings.ENV.qdrant_url:
        changed["search index passages"] = qdrant_labels_prefix(
            _qdrant(), collection_prefix="office_chunks_", prefix=LEGACY
        )
    else:
        changed["search index passages"] = sqlite_index_labels_prefix(
            settings.ENV.var_dir / "retrieval" / "office.sqlite3", LEGACY
        )
    Upgrade.objects.create(name=QUARANTINE, detail=", ".join(f"{n} {what}" for what, n in changed.items()))
    return changed


def legacy_adopt(label: str, account: Account) -> dict[str, int]:
    """Move everything stored under the pre-account `label` to `account`; how many of each."""
    old, new = LEGACY + label, owner_key(account.pk)
    moved: dict[str, int] = {}
    for app in APPS:
        chat, office = _stores(app)
        moved[f"{app} conversations"] = chat.owner_rename(old=old, new=new)
        if office is not None:
            moved.update({f"office {what}": n for what, n in office.owner_rename(old=old, new=new).items()})
    if settings.ENV.qdrant_url:
        moved["search index passages"] = qdrant_owner_rename(
            _qdrant(), collection_prefix="office_chunks_", old=old, new=new
        )
    else:
        path = settings.ENV.var_dir / "retrieval" / "office.sqlite3"
        moved["search index passages"] = sqlite_index_owner_rename(path, old=old, new=new)
    return moved
