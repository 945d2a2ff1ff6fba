"""An upgraded deployment keeps its data, and nobody inherits it by accident.

A deployment from before accounts stored data under whatever `user_id` clients sent, with no
sign-in. Its first `accounts_prepare` sets all of it apart ("legacy:" labels), so a label that
looks like an owner key ("a7") never becomes account 7's; `manage.py data_adopt <old user_id>
<username>` then gives one label's data to an account, in both apps and the search index,
with the stack stopped (and refuses while it runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.auth import account_create, bearer, key_create
from tests.conftest import stack_running
from tests.office.test_documents import POLICY_MD
from webapp.launcher.stack import Stack, StackError
from webapp.retrieval.index import sqlite_index_owner_rename
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, database_lock, message_log_get
from webapp.store.office_store import OfficeStore

pytestmark = pytest.mark.slow


def relabel(var_dir: Path, *, old: str, new: str) -> None:
    """Store `old`'s data under `new`, as the version before accounts would have."""
    for app in ("office", "character"):
        config = StoreConfig(app=app, mongo_url=None, embedded_dir=var_dir / "mongo")
        db, lock = database_get(config), database_lock(config)
        ChatStore(db, app=app, embedded=True, messages=message_log_get(config), lock=lock).owner_rename(
            old=old, new=new
        )
        if app == "office":
            OfficeStore(db, app=app, lock=lock).owner_rename(old=old, new=new)
    sqlite_index_owner_rename(var_dir / "retrieval" / "office.sqlite3", old=old, new=new)


def pk_of(stack: Stack, username: str) -> str:
    return stack.manage(
        "shell", "-v", "0", "-c",
        f"from webapp.accounts.models import Account; print(Account.objects.get(username={username!r}).pk)",
    ).strip()  # fmt: skip


def test_pre_account_data_is_set_apart_then_adopted_by_the_account_named(tmp_path: Path, test_registry: Path) -> None:
    var_dir = tmp_path / "var"
    with stack_running(var_dir, test_registry) as stack:
        gateway = f"http://127.0.0.1:{stack.config.gateway_port}"
        writer, heir = account_create(stack), account_create(stack)
        service = bearer(key_create(stack, writer, scope="service"))
        chats = {}
        for label in ("jun", "planted"):
            response = requests.post(
                f"{gateway}/character/Llama",
                json={"input_data": "Hi.", "persona": "captain-rhea", "user_id": label},
                headers=service,
                timeout=120,
            )
            assert response.status_code == 200, response.text
            chats[label] = response.headers["X-Conversation-Id"]
        upload = requests.post(
            f"{gateway}/office/documents",
            files={"file": ("travel.md", POLICY_MD)},
            data={"user_id": "jun"},
            headers=service,
            timeout=120,
        )
        assert upload.status_code == 201, upload.text
        writer_pk, heir_pk = pk_of(stack, writer), pk_of(stack, heir)
        with pytest.raises(StackError, match="Stop the stack first"):
            stack.manage("data_adopt", "jun", heir)

    # As the version before accounts left it: bare labels, one of them shaped like the heir's
    # owner key (anyone could write under any label then), and no record of the set-apart step.
    relabel(var_dir, old=f"a{writer_pk}/jun", new="jun")
    relabel(var_dir, old=f"a{writer_pk}/planted", new=f"a{heir_pk}")
    stack.manage("shell", "-v", "0", "-c", "from webapp.accounts.models import Upgrade; Upgrade.objects.all().delete()")
    prepared = stack.manage("accounts_prepare")
    assert "data from before accounts set apart" in prepared and "2 character conversations" in prepared, prepared
    assert "set apart" not in stack.manage("accounts_prepare"), "once only"

    heir_key = key_create(stack, heir)
    with stack_running(var_dir, test_registry) as running:
        gateway = f"http://127.0.0.1:{running.config.gateway_port}"
        listed = requests.get(f"{gateway}/character/conversations", headers=bearer(heir_key), timeout=30).json()
        assert listed["conversations"] == [], "a planted label shaped like an owner key is nobody's"

    out = stack.manage("data_adopt", "jun", heir)
    assert "1 character conversations" in out and "1 office documents" in out, out
    assert "0 search index passages" not in out
    again = stack.manage("data_adopt", "jun", heir)
    assert "0 character conversations" in again and "0 office documents" in again, "nothing left to move"

    with stack_running(var_dir, test_registry) as running:
        gateway = f"http://127.0.0.1:{running.config.gateway_port}"
        mine = bearer(heir_key)
        conversations = requests.get(f"{gateway}/character/conversations", headers=mine, timeout=30).json()
        assert [c["db_id"] for c in conversations["conversations"]] == [chats["jun"]]
        documents = requests.get(f"{gateway}/office/documents", headers=mine, timeout=30).json()["documents"]
        assert [d["id"] for d in documents] == [upload.json()["id"]]
        found = requests.post(
            f"{gateway}/office/documents/search", json={"query": "hotel receipts"}, headers=mine, timeout=60
        ).json()["results"]
        assert found and found[0]["document_id"] == upload.json()["id"]
