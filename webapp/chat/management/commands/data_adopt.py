"""`manage.py data_adopt <user_id> <username>`: give an account the data stored under a
`user_id` label from before accounts existed (when the client's `user_id` was the owner),
so that an upgraded deployment loses nothing: both apps' conversations, and the office's
documents, passages (search index included), notes, approvals and tool audit.

Run it with the stack stopped: each app's embedded store and the SQLite search index serve
one process at a time (the command says so if an app still runs). With MONGO_URL and
QDRANT_URL it can run at any time. Idempotent: a second run finds nothing left to move.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts.identity import owner_key
from webapp.accounts.models import Account
from webapp.retrieval.index import qdrant_owner_rename, sqlite_index_owner_rename
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, StoreInUseError, database_get, database_lock, embedded_claim
from webapp.store.office_store import OfficeStore

_OWNER_KEY = re.compile(r"a[0-9]+(/.*)?")


class Command(BaseCommand):
    help = "Move the data stored under a pre-account user_id label to an account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", help="the label the data is stored under (the old user_id)")
        parser.add_argument("username", help="the account that gets it")

    def handle(self, *args: Any, **options: Any) -> None:
        label, username = options["user_id"], options["username"]
        if _OWNER_KEY.fullmatch(label):
            raise CommandError(f"user_id {label!r} is already an account's key, not a pre-account label")
        account = Account.objects.filter(username=username).first()
        if account is None:
            raise CommandError(f"no account {username!r}")
        owner = owner_key(account.pk)
        env = settings.ENV
        moved: dict[str, int] = {}
        for app in ("office", "character"):
            config = StoreConfig(app=app, mongo_url=env.mongo_url, embedded_dir=env.var_dir / "mongo")
            if config.embedded:
                try:
                    embedded_claim(config)
                except StoreInUseError as exc:
                    raise CommandError(f"{exc} Stop the stack first (Ctrl-C on make run).") from None
            db, lock = database_get(config), database_lock(config)
            chat = ChatStore(db, app=app, embedded=config.embedded, lock=lock)
            moved[f"{app} conversations"] = chat.owner_rename(old=label, new=owner)
            if app == "office":
                office = OfficeStore(db, app=app, lock=lock)
                moved.update({f"office {what}": n for what, n in office.owner_rename(old=label, new=owner).items()})
        if env.qdrant_url:
            from qdrant_client import QdrantClient

            client = QdrantClient(url=env.qdrant_url, timeout=10)
            moved["search index passages"] = qdrant_owner_rename(
                client, collection_prefix="office_chunks_", old=label, new=owner
            )
        else:
            path = env.var_dir / "retrieval" / "office.sqlite3"
            moved["search index passages"] = sqlite_index_owner_rename(path, old=label, new=owner)
        summary = ", ".join(f"{n} {what}" for what, n in moved.items())
        self.stdout.write(f"{label!r} → account {username} ({owner}): {summary}")
