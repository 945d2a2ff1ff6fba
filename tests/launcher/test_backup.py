"""`python -m webapp.launcher backup|restore` (make backup / make restore).

Through the real stack: data made over HTTP as users make it (chat turns in both apps, an
uploaded document), a backup taken by the real command while the stack runs, more data
after it, the stack stopped, the real restore command, and a new stack on the same VAR_DIR
that serves exactly what existed at backup time. Then the refusals, each of which must
leave the deployment as it was: a tampered or truncated archive, members that would land
outside VAR_DIR, a running stack or another process holding the data open, and a
deployment whose data lives in MongoDB/Qdrant.

No test looks at what the model wrote: states are compared whole, before and after.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.auth import account_create, bearer, key_create
from tests.conftest import stack_running
from tests.office.test_documents import KOREAN_TXT, POLICY_MD, documents_of, search, upload
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import APPS
from webapp.launcher.backup import MANIFEST_NAME
from webapp.launcher.stack import Stack, registry_derive
from webapp.retrieval.index import ChunkRecord, SqliteChunkIndex
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, database_lock, message_log_get

SEARCH_QUERY = "How long do I have to hand in my hotel receipts?"


def launcher(*args: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, as `make backup` / `make restore` run it, against `var_dir`."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MONGO_URL", "QDRANT_URL")}
    return subprocess.run(
        [sys.executable, "-m", "webapp.launcher", *args],
        cwd=REPO_ROOT,
        env={**environ, "VAR_DIR": str(var_dir), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def files_of(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` (relative path -> sha256)."""
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def data_files_of(var_dir: Path) -> dict[str, str]:
    """The files of the deployment's data folders, as a backup sees them."""
    return {
        f"{root}/{rel}": digest
        for root in ("mongo", "retrieval", "accounts")
        for rel, digest in files_of(var_dir / root).items()
    }


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name != MANIFEST_NAME}


def manifest_of(path: Path) -> dict[str, Any]:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile(MANIFEST_NAME).read())


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --- through the real stack ---------------------------------------------------------------


def gateway_of(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.gateway_port}"


def turn(http: requests.Session, gateway: str, app: str, *, user_id: str, db_id: str, **extra: str) -> None:
    body = {"input_data": "Hello there.", "db_id": db_id, "user_id": user_id, **extra}
    response = http.post(f"{gateway}/{app}/Llama", json=body, timeout=300)
    assert response.status_code == 200, response.text


def state_of(http: requests.Session, gateway: str, user_id: str) -> dict[str, Any]:
    """Everything the user has, as the API returns it: conversations, messages, documents, a search."""
    state: dict[str, Any] = {}
    for app in APPS:
        response = http.get(f"{gateway}/{app}/conversations", params={"user_id": user_id}, timeout=30)
        assert response.status_code == 200, response.text
        conversations = response.json()["conversations"]
        messages = {}
        for conversation in conversations:
            url = f"{gateway}/{app}/conversations/{conversation['db_id']}/messages"
            listed = http.get(url, params={"user_id": user_id}, timeout=30)
            assert listed.status_code == 200, listed.text
            messages[conversation["db_id"]] = listed.json()["messages"]
        state[app] = {"conversations": conversations, "messages": messages}
    state["documents"] = documents_of(http, gateway, user_id)
    found = search(http, gateway, user_id, SEARCH_QUERY, k=5)
    assert found.status_code == 200, found.text
    # Which chunks were found, not their float scores (recomputed by a freshly loaded model).
    state["search"] = sorted(
        (hit["document_id"], hit["chunk_id"], hit["heading"], hit["position"], hit["text"])
        for hit in found.json()["results"]
    )
    return state


@dataclass
class Restored:
    var_dir: Path
    archive: Path
    user_id: str
    at_backup: dict[str, Any]
    before_restore: dict[str, str]  # the data files just before the restore
    after_restore: dict[str, str]  # the data files just after it, before a stack touched them
    later_db_ids: dict[str, str]
    later_document_id: str
    backup: subprocess.CompletedProcess[str]
    restore: subprocess.CompletedProcess[str]
    stack: Stack  # running again on the restored data
    auth: dict[str, str]  # a service key made before the backup, so restored with it


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restored]:
    """Data, a backup while running, more data, stop, restore, start again on the same VAR_DIR."""
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("backup-models") / "registry.toml",
        max_tokens=16,
        ignore_eos=True,
    )
    var_dir = tmp_path_factory.mktemp("backup-var")
    archive = tmp_path_factory.mktemp("archives") / "deployment.tar.gz"
    user_id = f"backup-{uuid.uuid4().hex[:8]}"
    character_db, office_db = str(uuid.uuid4()), str(uuid.uuid4())
    with requests.Session() as http:
        with stack_running(var_dir, registry) as first:
            gateway = gateway_of(first)
            auth = bearer(key_create(first, account_create(first), scope="service"))
            http.headers.update(auth)
            turn(http, gateway, "character", user_id=user_id, db_id=character_db, persona="captain-rhea")
            turn(http, gateway, "office", user_id=user_id, db_id=office_db)
            uploaded = upload(http, gateway, user_id, "travel.md", POLICY_MD)
            assert uploaded.status_code == 201 and uploaded.json()["status"] == "ready", uploaded.text
            at_backup = state_of(http, gateway, user_id)
            first.manage("account_create", f"{user_id}-before")

            backup = launcher("backup", "--out", str(archive), var_dir=var_dir)  # while the apps run

            later_office_db = str(uuid.uuid4())
            turn(http, gateway, "character", user_id=user_id, db_id=character_db, persona="captain-rhea")
            turn(http, gateway, "office", user_id=user_id, db_id=later_office_db)
            later = upload(http, gateway, user_id, "leave.txt", KOREAN_TXT)
            first.manage("account_create", f"{user_id}-after")
            assert later.status_code == 201, later.text
            assert state_of(http, gateway, user_id) != at_backup
        before_restore = data_files_of(var_dir)
        restore = launcher("restore", str(archive), var_dir=var_dir)
        after_restore = data_files_of(var_dir)
        # Checked here as well as by the tests: starting on a half-restored VAR_DIR would
        # only read as "not ready".
        assert backup.returncode == 0 and restore.returncode == 0, (backup.stderr, restore.stderr)
        with stack_running(var_dir, registry) as second:
            yield Restored(
                var_dir=var_dir,
                archive=archive,
                user_id=user_id,
                at_backup=at_backup,
                before_restore=before_restore,
                after_restore=after_restore,
                later_db_ids={"character": character_db, "office": later_office_db},
                later_document_id=later.json()["id"],
                backup=backup,
                restore=restore,
                stack=second,
                auth=auth,
            )


@pytest.mark.slow
def test_a_backup_taken_while_running_restores_exactly_what_existed(restored, http):
    http.headers.update(restored.auth)
    assert restored.backup.returncode == 0, restored.backup.stderr
    assert str(restored.archive) in restored.backup.stdout
    assert restored.restore.returncode == 0, restored.restore.stderr

    manifest = manifest_of(restored.archive)
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    for app in APPS:
        assert f"mongo/{app}/personachat/conversations.collection" in listed
        assert f"mongo/{app}/messages.sqlite3" in listed  # the message log (webapp.store.message_log)
    assert "retrieval/office.sqlite3" in listed
    assert "accounts/accounts.sqlite3" in listed
    assert not [p for p in listed if not p.startswith(("mongo/", "retrieval/", "accounts/"))], (
        "logs, nginx, run/ aren't data"
    )
    assert restored.after_restore == listed, "the restored files are the archive's, byte for byte"

    state = state_of(http, gateway_of(restored.stack), restored.user_id)
    assert state == restored.at_backup
    usernames = restored.stack.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from webapp.accounts.models import Account; print(*Account.objects.values_list('username', flat=True))",
    ).split()
    assert f"{restored.user_id}-before" in usernames, "accounts are part of the backup"
    assert f"{restored.user_id}-after" not in usernames
    document = restored.at_backup["documents"][0]
    assert state["documents"][0]["status"] == "ready"
    assert state["search"] and {hit[0] for hit in state["search"]} == {document["id"]}


@pytest.mark.slow
def test_data_written_after_the_backup_is_gone_after_a_restore(restored, http):
    http.headers.update(restored.auth)
    gateway = gateway_of(restored.stack)
    office = restored.later_db_ids["office"]
    response = http.get(
        f"{gateway}/office/conversations/{office}/messages", params={"user_id": restored.user_id}, timeout=30
    )
    assert response.status_code == 404
    character = restored.later_db_ids["character"]
    before = len(restored.at_backup["character"]["messages"][character])
    response = http.get(
        f"{gateway}/character/conversations/{character}/messages", params={"user_id": restored.user_id}, timeout=30
    )
    assert response.status_code == 200 and len(response.json()["messages"]) == before
    response = http.get(
        f"{gateway}/office/documents/{restored.later_document_id}", params={"user_id": restored.user_id}, timeout=30
    )
    assert response.status_code == 404


@pytest.mark.slow
def test_restore_moves_the_replaced_data_aside_and_deletes_nothing(restored):
    asides = sorted((restored.var_dir / "backups").glob("before-restore-*"))
    assert len(asides) == 1 and re.fullmatch(r"before-restore-\d{8}T\d{6}Z", asides[0].name)
    assert str(asides[0]) in restored.restore.stdout
    assert data_files_of(asides[0]) == restored.before_restore
    assert "retrieval/office.sqlite3" in restored.before_restore


@pytest.mark.slow
def test_restore_is_refused_while_the_stack_runs(restored, http):
    http.headers.update(restored.auth)
    asides = sorted((restored.var_dir / "backups").glob("before-restore-*"))
    mongo_inode = (restored.var_dir / "mongo").stat().st_ino
    result = launcher("restore", str(restored.archive), var_dir=restored.var_dir)
    refused(result, "running", "supervisorctl")
    assert sorted((restored.var_dir / "backups").glob("before-restore-*")) == asides
    assert (restored.var_dir / "mongo").stat().st_ino == mongo_inode, "nothing was moved"
    assert state_of(http, gateway_of(restored.stack), restored.user_id) == restored.at_backup


# --- refusals, on a small deployment made with the stores themselves ----------------------


def deployment_make(var_dir: Path) -> None:
    """A conversation in each app's embedded store and a chunk in the office search index."""
    for app in APPS:
        config = StoreConfig(app=app, mongo_url=None, embedded_dir=var_dir / "mongo")
        store = ChatStore(
            database_get(config), app=app, embedded=True, messages=message_log_get(config), lock=database_lock(config)
        )
        store.indexes_ensure()
        conversation = store.conversation_create(db_id=str(uuid.uuid4()), user_id="u", persona="p", title="t")
        store.message_append(conversation, role="user", content="hello", persona="p")
        message_log_get(config).close()  # as a stopped app leaves it: no -wal or -shm beside it
        message_log_get.cache_clear()
    index = SqliteChunkIndex(var_dir / "retrieval" / "office.sqlite3", dim=4)
    vector = np.array([1, 0, 0, 0], dtype=np.float32)
    index.chunks_add([ChunkRecord("c1", "u", "d1", "Title", "Heading", 0, "some text", ("text",), vector)])
    index.close()


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[Path, Path]:
    """A VAR_DIR with data, and a good archive of it (outside VAR_DIR)."""
    var_dir = tmp_path / "var"
    deployment_make(var_dir)
    archive = tmp_path / "good.tar.gz"
    made = launcher("backup", "--out", str(archive), var_dir=var_dir)
    assert made.returncode == 0, made.stderr
    return var_dir, archive


def archive_write(path: Path, members: dict[str, bytes], *, manifest: dict[str, Any] | None = None) -> None:
    """An archive in the backup's format; the manifest lists `members` with their true checksums unless given."""
    if manifest is None:
        manifest = {
            "format": "personachat-backup",
            "format_version": 1,
            "created_at": "2026-01-01T00:00:00+00:00",
            "files": [
                {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in members.items()
            ],
        }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {MANIFEST_NAME: json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_backup_defaults_to_a_timestamped_private_archive_under_var_backups(tmp_path):
    var_dir = tmp_path / "var"
    deployment_make(var_dir)
    result = launcher("backup", var_dir=var_dir)
    assert result.returncode == 0, result.stderr
    (archive,) = (var_dir / "backups").iterdir()
    assert re.fullmatch(r"personachat-\d{8}T\d{6}Z\.tar\.gz", archive.name)
    assert str(archive) in result.stdout
    assert archive.stat().st_mode & 0o777 == 0o600, "it holds every conversation"
    manifest = manifest_of(archive)
    assert manifest["format"] == "personachat-backup" and manifest["format_version"] == 1
    files = data_files_of(var_dir)
    assert {f["path"] for f in manifest["files"]} == set(files)
    # SQLite files are copied page by page (their bytes may differ); the others as they are.
    assert all(f["sha256"] == files[f["path"]] for f in manifest["files"] if not f["sqlite"])
    assert {f["path"] for f in manifest["files"] if f["sqlite"]} == {
        *(f"mongo/{app}/personachat/conversations.collection" for app in APPS),
        *(f"mongo/{app}/messages.sqlite3" for app in APPS),
        "retrieval/office.sqlite3",
    }


def test_restore_into_an_empty_var_dir_needs_nothing_moved_aside(deployment, tmp_path):
    _, archive = deployment
    fresh = tmp_path / "fresh-var"
    result = launcher("restore", str(archive), var_dir=fresh)
    assert result.returncode == 0, result.stderr
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in archive_members(archive).items()}
    assert data_files_of(fresh) == digests
    assert not list((fresh / "backups").glob("before-restore-*"))


@pytest.mark.parametrize("damage", ["one byte changed", "a file changed, manifest kept", "truncated"])
def test_a_damaged_archive_is_refused_and_changes_nothing(deployment, tmp_path, damage):
    var_dir, archive = deployment
    bad = tmp_path / "bad.tar.gz"
    raw = archive.read_bytes()
    if damage == "one byte changed":
        middle = len(raw) // 2  # inside the compressed data, not the gzip header's timestamp
        bad.write_bytes(raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1 :])
        needles: tuple[str, ...] = ("refused",)
    elif damage == "a file changed, manifest kept":
        manifest = manifest_of(archive)
        members = archive_members(archive)
        name = "retrieval/office.sqlite3"
        members[name] = members[name][:-1] + bytes([members[name][-1] ^ 0x01])
        archive_write(bad, members, manifest=manifest)
        needles = ("checksum", name)
    else:
        bad.write_bytes(raw[: len(raw) // 2])
        needles = ("damaged or truncated",)
    before = files_of(var_dir)
    refused(launcher("restore", str(bad), var_dir=var_dir), *needles)
    assert files_of(var_dir) == before


@pytest.mark.parametrize("name", ["../evil", "mongo/../../evil", "/tmp/personachat-evil", "retrieval/./x"])
def test_an_archive_member_outside_var_dir_is_refused_and_changes_nothing(deployment, tmp_path, name):
    var_dir, archive = deployment
    evil = tmp_path / "evil.tar.gz"
    archive_write(evil, {**archive_members(archive), name: b"pwned"})
    before, around = files_of(var_dir), sorted(p.name for p in tmp_path.iterdir())
    refused(launcher("restore", str(evil), var_dir=var_dir), "refused", repr(name))
    assert files_of(var_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == around
    assert not Path("/tmp/personachat-evil").exists()


def test_restore_is_refused_while_another_process_has_the_data_open(deployment):
    var_dir, archive = deployment
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1]); db.execute('select count(*) from sqlite_master').fetchall()\n"
            "print('open', flush=True); time.sleep(120)",
            str(var_dir / "retrieval" / "office.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        before = files_of(var_dir)
        refused(launcher("restore", str(archive), var_dir=var_dir), "in use", f"pid {holder.pid}")
        assert files_of(var_dir) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("command", "env", "needle"),
    [
        ("backup", {"MONGO_URL": "mongodb://mongo:27017"}, "mongodump"),
        ("restore", {"MONGO_URL": "mongodb://mongo:27017"}, "mongorestore"),
        ("backup", {"QDRANT_URL": "http://qdrant:6333"}, "snapshots"),
        ("restore", {"QDRANT_URL": "http://qdrant:6333"}, "snapshots"),
    ],
)
def test_with_mongodb_or_qdrant_both_commands_refuse_and_name_their_tools(deployment, command, env, needle):
    var_dir, archive = deployment
    before = files_of(var_dir)
    args = ("restore", str(archive)) if command == "restore" else ("backup",)
    refused(launcher(*args, var_dir=var_dir, **env), next(iter(env)), needle)
    assert files_of(var_dir) == before
