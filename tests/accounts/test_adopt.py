"""An upgraded deployment keeps its data: `manage.py data_adopt <user_id> <username>` gives an
account what was stored under a pre-account `user_id` label, in both apps and the search
index, while the stack is stopped (and refuses while it runs)."""

from __future__ import annotations

import pytest
import requests

from tests.auth import account_create, bearer, key_create
from tests.conftest import stack_running
from tests.office.test_documents import POLICY_MD
from webapp.launcher.stack import StackError
from webapp.retrieval.index import sqlite_index_owner_rename
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, database_lock
from webapp.store.office_store import OfficeStore

pytestmark = pytest.mark.slow


def relabel(var_dir, *, old: str, new: str) -> None:
    """Make the data of `old` look as the version before accounts stored it: under a bare label."""
    for app in ("office", "character"):
        config = StoreConfig(app=app, mongo_url=None, embedded_dir=var_dir / "mongo")
        db, lock = database_get(config), database_lock(config)
        ChatStore(db, app=app, embedded=True, lock=lock).owner_rename(old=old, new=new)
        if app == "office":
            OfficeStore(db, app=app, lock=lock).owner_rename(old=old, new=new)
    sqlite_index_owner_rename(var_dir / "retrieval" / "office.sqlite3", old=old, new=new)


def test_data_under_an_old_user_id_moves_to_an_account(tmp_path, test_registry) -> None:
    var_dir = tmp_path / "var"
    with stack_running(var_dir, test_registry) as stack:
        gateway = f"http://127.0.0.1:{stack.config.gateway_port}"
        writer = account_create(stack)
        service = bearer(key_create(stack, writer, scope="service"))
        legacy = {"user_id": "jun"}
        chat = requests.post(
            f"{gateway}/character/Llama",
            json={"input_data": "Hi.", "persona": "captain-rhea", **legacy},
            headers=service,
            timeout=120,
        )
        assert chat.status_code == 200, chat.text
        upload = requests.post(
            f"{gateway}/office/documents",
            files={"file": ("travel.md", POLICY_MD)},
            data=legacy,
            headers=service,
            timeout=120,
        )
        assert upload.status_code == 201, upload.text
        owner_id = stack.manage(
            "shell", "-v", "0", "-c",
            f"from webapp.accounts.models import Account; print(Account.objects.get(username={writer!r}).pk)",
        ).strip()  # fmt: skip
        heir = account_create(stack)
        with pytest.raises(StackError, match="Stop the stack first"):
            stack.manage("data_adopt", "jun", heir)

    relabel(var_dir, old=f"a{owner_id}/jun", new="jun")  # as the version before accounts wrote it
    out = stack.manage("data_adopt", "jun", heir)
    assert "1 character conversations" in out and "1 office documents" in out, out
    assert "0 search index passages" not in out
    again = stack.manage("data_adopt", "jun", heir)
    assert "0 character conversations" in again and "0 office documents" in again, "nothing left to move"
    with pytest.raises(StackError, match="already an account's key"):
        stack.manage("data_adopt", f"a{owner_id}", heir)

    with stack_running(var_dir, test_registry) as stack:
        gateway = f"http://127.0.0.1:{stack.config.gateway_port}"
        mine = bearer(key_create(stack, heir))
        conversations = requests.get(f"{gateway}/character/conversations", headers=mine, timeout=30).json()
        assert [c["db_id"] for c in conversations["conversations"]] == [chat.headers["X-Conversation-Id"]]
        documents = requests.get(f"{gateway}/office/documents", headers=mine, timeout=30).json()["documents"]
        assert [d["id"] for d in documents] == [upload.json()["id"]]
        found = requests.post(
            f"{gateway}/office/documents/search", json={"query": "hotel receipts"}, headers=mine, timeout=60
        ).json()["results"]
        assert found and found[0]["document_id"] == upload.json()["id"]
