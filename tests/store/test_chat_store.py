"""ChatStore over embedded montydb: persistence across restarts, ordering, and its cache.

Every test runs on both message logs: the embedded default (SQLite) and the MongoDB
collection (played by montydb, which speaks MongoDB's API)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from montydb.types.objectid import ObjectId as MontyObjectId

from webapp.config.env import REPO_ROOT
from webapp.store.chat_store import ChatStore, Conversation, MessageDraft
from webapp.store.client import StoreConfig, database_get, database_lock, embedded_claim, message_log_get
from webapp.store.message_log import MessageLog, MongoMessageLog

LOG_KIND = "sqlite"


@pytest.fixture(autouse=True, params=["sqlite", "mongo"])
def fresh_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """database_get is cached per config; start and end each test without cached clients."""
    global LOG_KIND
    LOG_KIND = request.param
    database_get.cache_clear()
    message_log_get.cache_clear()
    yield
    database_get.cache_clear()
    message_log_get.cache_clear()


def log_open(folder: Path, *, app: str = "office") -> MessageLog:
    config = StoreConfig(app=app, mongo_url=None, embedded_dir=folder)
    if LOG_KIND == "sqlite":
        return message_log_get(config)
    return MongoMessageLog(database_get(config)["messages"], app=app, object_id=MontyObjectId)


def store_open(folder: Path, *, app: str = "office", **options: Any) -> ChatStore:
    db = database_get(StoreConfig(app=app, mongo_url=None, embedded_dir=folder))
    store = ChatStore(
        db, app=app, embedded=True, messages=options.pop("messages", None) or log_open(folder, app=app), **options
    )
    store.indexes_ensure()
    return store


def store_reopen(folder: Path, *, app: str = "office", **options: Any) -> ChatStore:
    """What a process restart sees: new clients and an empty cache."""
    database_get.cache_clear()
    message_log_get.cache_clear()
    return store_open(folder, app=app, **options)


def conversation_new(store: ChatStore, db_id: str = "c1", *, user_id: str = "alice") -> Conversation:
    return store.conversation_create(db_id=db_id, user_id=user_id, persona="assistant", title=f"title {db_id}")


def chat_add(store: ChatStore, conversation: Conversation, n: int, *, prefix: str = "m") -> None:
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        store.message_append(conversation, role=role, content=f"{prefix}{i}", persona="assistant")


def test_messages_come_back_in_order(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)

    chat_add(store, conversation, 5)

    recent = store.messages_recent("c1")
    assert [m.content for m in recent] == ["m0", "m1", "m2", "m3", "m4"]
    assert [m.role for m in recent] == ["user", "assistant", "user", "assistant", "user"]
    assert [m.seq for m in recent] == [0, 1, 2, 3, 4]
    assert store.conversation_get("c1").message_count == 5


def test_messages_recent_is_bounded_by_window(tmp_path: Path) -> None:
    store = store_open(tmp_path, window=4)
    conversation = conversation_new(store)

    chat_add(store, conversation, 10)

    assert [m.seq for m in store.messages_recent("c1")] == [6, 7, 8, 9]
    assert len(store.messages_all("c1")) == 10
    # The same bound holds when the window is read from the store rather than the cache.
    assert [m.seq for m in store_reopen(tmp_path, window=4).messages_recent("c1")] == [6, 7, 8, 9]


def test_history_survives_restart(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    store.message_append(conversation, role="user", content="안녕하세요", persona="assistant")
    store.message_append(
        conversation,
        role="assistant",
        content="Hello!",
        persona="writer",
        meta={"tokens": 3, "model": "tiny", "finish_reason": "stop"},
    )
    before_messages = store.messages_recent("c1")
    before_conversation = store.conversation_get("c1")

    restarted = store_reopen(tmp_path)

    after_conversation = restarted.conversation_get("c1")
    after_messages = restarted.messages_recent("c1")
    assert after_conversation == before_conversation
    assert after_conversation.persona == "writer"  # the last reply's persona
    assert after_conversation.message_count == 2
    assert after_messages == before_messages
    assert after_messages[1].meta == {"tokens": 3, "model": "tiny", "finish_reason": "stop"}
    for when in [after_conversation.created_at, after_conversation.updated_at, *(m.created_at for m in after_messages)]:
        assert when.tzinfo is not None
        assert when.utcoffset().total_seconds() == 0


def test_appending_after_restart_continues_the_sequence(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    chat_add(store, conversation_new(store), 3)

    restarted = store_reopen(tmp_path)
    conversation = restarted.conversation_get("c1")
    restarted.messages_recent("c1")  # warm the cache from the store
    restarted.message_append(conversation, role="assistant", content="later", persona="assistant")

    assert [m.seq for m in restarted.messages_all("c1")] == [0, 1, 2, 3]
    assert restarted.messages_recent("c1") == restarted.messages_all("c1")


def test_conversations_for_user_filters_by_user_and_app_newest_first(tmp_path: Path) -> None:
    office = store_open(tmp_path)
    # A second app writing into the same database must stay invisible to this one.
    db = database_get(StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path))
    character = ChatStore(db, app="character", embedded=True, messages=log_open(tmp_path, app="character"))
    first = conversation_new(office, "first")
    time.sleep(0.005)  # timestamps have millisecond resolution
    conversation_new(office, "second")
    time.sleep(0.005)
    conversation_new(office, "third")
    conversation_new(office, "bobs", user_id="bob")
    conversation_new(character, "other-app")
    time.sleep(0.005)
    office.message_append(first, role="user", content="bump", persona="assistant")

    listed = office.conversations_for_user("alice")

    assert [c.db_id for c in listed] == ["first", "third", "second"]
    assert {c.app for c in listed} == {"office"}
    assert [c.db_id for c in office.conversations_for_user("bob")] == ["bobs"]
    assert [c.db_id for c in character.conversations_for_user("alice")] == ["other-app"]
    assert office.conversation_get("other-app") is None
    assert [c.db_id for c in office.conversations_for_user("alice", limit=2)] == ["first", "third"]


def test_conversation_delete_removes_its_messages(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    doomed = conversation_new(store, "doomed")
    kept = conversation_new(store, "kept")
    chat_add(store, doomed, 4)
    chat_add(store, kept, 2, prefix="k")

    store.conversation_delete("doomed")

    assert store.conversation_get("doomed") is None
    assert store.messages_all("doomed") == []
    assert store.messages_recent("doomed") == []
    assert [m.content for m in store.messages_all("kept")] == ["k0", "k1"]
    restarted = store_reopen(tmp_path)
    assert restarted.conversation_get("doomed") is None
    assert restarted.messages_all("doomed") == []
    assert [c.db_id for c in restarted.conversations_for_user("alice")] == ["kept"]


def test_cache_agrees_with_the_store_after_appends(tmp_path: Path) -> None:
    store = store_open(tmp_path, window=8)
    conversation = conversation_new(store)
    chat_add(store, conversation, 3)

    assert store.messages_recent("c1") == store.messages_all("c1")
    message = store.message_append(
        conversation, role="assistant", content="with meta", persona="assistant", meta={"tokens": 2}
    )

    cached = store.messages_recent("c1")
    stored = store.messages_all("c1")
    assert cached == stored
    assert cached[-1] == message
    assert store.conversation_get("c1") == store_reopen(tmp_path).conversation_get("c1")


def test_cache_agrees_with_the_store_after_eviction(tmp_path: Path) -> None:
    store = store_open(tmp_path, cache_size=1)
    a = conversation_new(store, "a")
    b = conversation_new(store, "b")  # evicts "a" from the cache

    chat_add(store, a, 3)
    chat_add(store, b, 2)
    chat_add(store, a, 2, prefix="x")

    assert store.messages_recent("a") == store.messages_all("a")
    assert [m.seq for m in store.messages_all("a")] == [0, 1, 2, 3, 4]
    assert store.conversation_get("a").message_count == 5


def test_concurrent_appends_keep_seq_gap_free(tmp_path: Path) -> None:
    store = store_open(tmp_path, window=200)
    conversation = conversation_new(store)
    n_threads, per_thread = 4, 15
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                store.message_append(conversation, role="user", content=f"t{k}-{i}", persona="assistant")
        except BaseException as exc:  # surfaced below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    total = n_threads * per_thread
    stored = store.messages_all("c1")
    assert [m.seq for m in stored] == list(range(total))
    assert len({m.content for m in stored}) == total
    for k in range(n_threads):  # each writer's messages in the order it wrote them
        mine = [m.content for m in stored if m.content.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(per_thread)]
    assert store.messages_recent("c1") == stored
    assert store.conversation_get("c1").message_count == total
    assert store_reopen(tmp_path).conversation_get("c1").message_count == total


class _AppendDuringRead:
    """The real message log, with a hook that runs after a page is read, before it returns."""

    def __init__(self, real: MessageLog) -> None:
        self._real = real
        self.after_read: Any = None

    def page(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        docs = self._real.page(*args, **kwargs)
        hook, self.after_read = self.after_read, None
        if hook is not None:
            hook()
        return docs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_append_racing_a_cold_read_is_not_lost_from_the_cache(tmp_path: Path) -> None:
    """Two requests on one conversation right after a restart: one reads history, one appends.

    messages_recent reads the store without the cache lock, then installs what it read.
    An append that lands in between sees no cached window (so does not update it) and
    is then hidden by the stale window for as long as the conversation stays cached.
    """
    store = store_open(tmp_path)
    chat_add(store, conversation_new(store), 2)
    messages = _AppendDuringRead(log_open(tmp_path))
    restarted = ChatStore(
        database_get(StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)),
        app="office",
        embedded=True,
        messages=messages,  # type: ignore[arg-type]
    )
    conversation = restarted.conversation_get("c1")  # cached, window not read yet

    writers: list[threading.Thread] = []

    def concurrent_append() -> None:
        writer = threading.Thread(
            target=restarted.message_append,
            kwargs={"conversation": conversation, "role": "user", "content": "racing", "persona": "assistant"},
        )
        writers.append(writer)
        writer.start()
        writer.join(timeout=0.2)  # it waits for the store lock this read still holds

    messages.after_read = concurrent_append
    restarted.messages_recent("c1")
    writers[0].join(timeout=60)  # then it finishes
    assert not writers[0].is_alive()

    assert [m.content for m in restarted.messages_all("c1")] == ["m0", "m1", "racing"]
    assert [m.content for m in restarted.messages_recent("c1")] == ["m0", "m1", "racing"]


def test_two_writers_on_one_store_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Two processes (replicas) on one shared MongoDB, played by two ChatStores on one database,
    each with its own cache: concurrent appends to one conversation get distinct, gap-free
    places, and each store's window shows the other's messages."""
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)
    db, lock = database_get(config), database_lock(config)
    log = log_open(tmp_path)
    first = ChatStore(db, app="office", embedded=True, messages=log, lock=lock, shared=True, window=8)
    second = ChatStore(db, app="office", embedded=True, messages=log, lock=lock, shared=True, window=8)
    conversation = conversation_new(first)
    assert second.conversation_get("c1") == conversation and second.messages_recent("c1") == []

    def writer(store: ChatStore, name: str) -> None:
        for i in range(15):
            store.message_append(conversation, role="user", content=f"{name} {i}", persona="assistant")
            store.messages_recent("c1")  # reads interleave with the other writer's appends

    threads = [threading.Thread(target=writer, args=(store, name)) for store, name in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = first.messages_all("c1")
    assert [m.seq for m in stored] == list(range(30)), "no place given twice, none skipped"
    assert sorted(m.content for m in stored) == sorted([f"a {i}" for i in range(15)] + [f"b {i}" for i in range(15)])
    for store in (first, second):
        assert [m.id for m in store.messages_recent("c1")] == [m.id for m in stored[-8:]]
    # A later append through one is seen by the other's next read.
    last = first.message_append(conversation, role="assistant", content="late", persona="assistant")
    assert second.messages_recent("c1")[-1].id == last.id


def test_a_change_made_through_another_process_is_seen_by_the_next_read(tmp_path: Path) -> None:
    """Replicas on one MongoDB each cache a window of recent messages: an edit, a swipe or a
    deletion made through one is in the other's next read (here, two stores on one database)."""
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)
    db, lock, log = database_get(config), database_lock(config), log_open(tmp_path)
    first = ChatStore(db, app="office", embedded=True, messages=log, lock=lock, shared=True)
    second = ChatStore(db, app="office", embedded=True, messages=log, lock=lock, shared=True)
    conversation = conversation_new(first)
    chat_add(first, conversation, 3)
    assert second.conversation_get("c1") is not None  # active in the second: its window is cached
    user, reply, last = second.messages_recent("c1")

    first.message_edit("c1", user.id, "edited elsewhere")
    assert second.messages_recent("c1")[0].content == "edited elsewhere"
    first.message_swipe_add("c1", reply.id, swipe_key="k", content="another", meta={})
    assert second.messages_recent("c1")[1].content == "another"
    first.message_delete("c1", last.id)
    assert [m.id for m in second.messages_recent("c1")] == [user.id, reply.id]


def test_a_second_serving_process_on_the_embedded_store_is_refused(tmp_path: Path) -> None:
    config = StoreConfig(app="character", mongo_url=None, embedded_dir=tmp_path)
    embedded_claim(config)
    embedded_claim(config)  # the same process again: fine
    claim = (
        "from pathlib import Path\n"
        "from webapp.store.client import StoreConfig, embedded_claim\n"
        f"embedded_claim(StoreConfig(app='character', mongo_url=None, embedded_dir=Path({str(tmp_path)!r})))"
    )
    other = subprocess.run([sys.executable, "-c", claim], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0
    assert "is in use by pid" in other.stderr and "MONGO_URL" in other.stderr


def test_an_import_is_one_batch_and_reads_back_by_pages(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    drafts = [
        MessageDraft(role="user" if i % 2 == 0 else "assistant", content=f"m{i}", created_at=when, meta={"tokens": i})
        for i in range(250)
    ]

    imported = store.conversation_import(db_id="big", user_id="alice", persona="assistant", title="t", messages=drafts)

    assert imported.message_count == 250 and imported.created_at == when
    newest = store.messages_page("big", before=None, limit=100)
    assert [m.seq for m in newest] == list(range(150, 250))
    assert [m.seq for m in store.messages_page("big", before=newest[0].seq, limit=100)] == list(range(50, 150))
    assert store.messages_all("big")[7].meta == {"tokens": 7} and store.messages_all("big")[7].created_at == when
    after = store.message_append(imported, role="user", content="next", persona="assistant")
    assert after.seq == 250
    assert store_reopen(tmp_path).conversation_get("big").message_count == 251


def test_an_import_onto_an_existing_conversation_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    chat_add(store, conversation, 3)
    before = store.messages_all("c1")

    with pytest.raises(KeyError):
        store.conversation_import(
            db_id="c1", user_id="alice", persona="p", title="t", messages=[MessageDraft("user", "x")]
        )

    assert store.messages_all("c1") == before


def test_an_import_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    drafts = [MessageDraft("user", f"m{i}") for i in range(5)]
    failing = _FailingConversations(store)

    with pytest.raises(RuntimeError, match="disk full"):
        store.conversation_import(db_id="lost", user_id="alice", persona="p", title="t", messages=drafts)

    failing.restore()
    assert store.conversation_get("lost") is None
    assert store.messages_all("lost") == [], "the messages written before the failure were removed"
    assert store.conversations_for_user("alice") == []


class _FailingConversations:
    """The store's conversations collection, failing every insert (a full disk, a lost server)."""

    def __init__(self, store: ChatStore) -> None:
        self._store = store
        self._real = store._conversations
        store._conversations = self

    def insert_one(self, doc: Any) -> None:
        raise RuntimeError("disk full")

    def restore(self) -> None:
        self._store._conversations = self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def reply_of(store: ChatStore, conversation: Conversation, text: str = "first") -> Any:
    store.message_append(conversation, role="user", content="hi", persona="assistant")
    return store.message_append(
        conversation, role="assistant", content=text, persona="assistant", meta={"tokens": 1, "model": "m"}
    )


def test_a_swipe_is_a_new_alternative_of_the_same_message_and_is_shown(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    store.messages_recent("c1")  # cached: a swipe must not leave the cache stale
    before = store.conversation_get("c1")
    time.sleep(0.002)  # the store keeps milliseconds: let the clock pass one

    swiped = store.message_swipe_add("c1", reply.id, swipe_key="k2", content="second", meta={"tokens": 2})

    touched = store.conversation_get("c1")
    assert before is not None and touched is not None and touched.updated_at > before.updated_at
    assert store_reopen(tmp_path).conversation_get("c1").updated_at == touched.updated_at, "a new answer is activity"

    assert swiped is not None and swiped.id == reply.id and swiped.seq == reply.seq
    assert swiped.content == "second" and swiped.meta["swipe_id"] == 1 and swiped.meta["tokens"] == 2
    assert "model" not in swiped.meta, "the shown alternative's metadata, not the first one's"
    assert [(s["id"], s["content"], s["meta"]) for s in swiped.meta["swipes"]] == [
        (reply.id, "first", {"tokens": 1, "model": "m"}),
        ("k2", "second", {"tokens": 2}),
    ]
    assert store.messages_recent("c1")[-1] == swiped
    assert store_reopen(tmp_path).messages_all("c1")[-1] == swiped
    assert store.message_swipe_add("c1", reply.id, swipe_key="k2", content="again", meta={}) == swiped, "once"


def test_a_continuation_is_added_to_the_reply_and_its_shown_swipe_once(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    store.message_swipe_add("c1", reply.id, swipe_key="k2", content="second", meta={"tokens": 2})
    store.messages_recent("c1")

    more = store.message_continue(
        "c1", reply.id, key="c", text=" and more", meta={"tokens": 3, "finish_reason": "stop"}
    )

    assert more is not None and more.content == "second and more" and more.meta["continued"] == 1
    assert more.meta["tokens"] == 5 and more.meta["finish_reason"] == "stop"
    assert [s["content"] for s in more.meta["swipes"]] == ["first", "second and more"], "the shown alternative grows"
    assert more.meta["swipes"][1]["id"] == "k2" and more.meta["swipes"][1]["meta"]["tokens"] == 5
    assert store.messages_recent("c1")[-1] == more
    assert store.message_continue("c1", reply.id, key="c", text=" twice", meta={}) == more, "once per key"
    assert store.message_continue("c1", "0" * 24, key="d", text="x", meta={}) is None


def test_choosing_a_swipe_changes_what_later_reads_see_and_nothing_else(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    store.message_swipe_add("c1", reply.id, swipe_key="k2", content="second", meta={})
    store.message_swipe_add("c1", reply.id, swipe_key="k3", content="third", meta={})
    before = store.messages_all("c1")

    chosen = store.message_swipe_choose("c1", reply.id, 0)

    assert chosen is not None and chosen.content == "first" and chosen.meta["model"] == "m"
    assert [m.content for m in store.messages_recent("c1")] == ["hi", "first"]
    assert store.messages_all("c1")[0] == before[0]
    assert len(chosen.meta["swipes"]) == 3
    with pytest.raises(IndexError):
        store.message_swipe_choose("c1", reply.id, 3)
    assert store.message_swipe_choose("c1", "0" * 24, 0) is None


def test_an_edit_keeps_the_earlier_text_and_edits_the_shown_swipe(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    store.message_swipe_add("c1", reply.id, swipe_key="k2", content="second", meta={})

    edited = store.message_edit("c1", reply.id, "second, edited")
    edited = store.message_edit("c1", reply.id, "second, edited twice")

    assert edited is not None and edited.content == "second, edited twice"
    assert [e["content"] for e in edited.meta["edits"]] == ["second", "second, edited"]
    assert edited.meta["swipes"][1]["content"] == "second, edited twice"
    assert store.message_swipe_choose("c1", reply.id, 0).content == "first"  # type: ignore[union-attr]
    assert store.message_swipe_choose("c1", reply.id, 1).content == "second, edited twice"  # type: ignore[union-attr]
    user = store.messages_all("c1")[0]
    assert store.message_edit("c1", user.id, "hello").content == "hello"  # type: ignore[union-attr]
    assert [m.content for m in store_reopen(tmp_path).messages_recent("c1")] == ["hello", "second, edited twice"]


def test_deleting_a_message_removes_it_alone(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    chat_add(store, conversation, 4)
    doomed = store.messages_all("c1")[1]
    store.messages_recent("c1")

    assert store.message_delete("c1", doomed.id) is True
    assert store.message_delete("c1", doomed.id) is False
    assert [m.content for m in store.messages_recent("c1")] == ["m0", "m2", "m3"]
    assert store.message_append(conversation, role="user", content="m4", persona="assistant").seq == 4
    assert store.message_get("other", store.messages_all("c1")[0].id) is None, "only within its conversation"


def test_two_writers_changing_one_message_lose_nothing(tmp_path: Path) -> None:
    """Swipes added from two threads at once (two replicas, say): every one is kept."""
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)

    def writer(name: str) -> None:
        for i in range(6):
            store.message_swipe_add("c1", reply.id, swipe_key=f"{name}{i}", content=f"{name}{i}", meta={})

    threads = [threading.Thread(target=writer, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    swipes = store.message_get("c1", reply.id).meta["swipes"]  # type: ignore[union-attr]
    assert sorted(s["id"] for s in swipes[1:]) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)])


def test_a_checkpoint_of_a_new_alternative_is_recovered_as_its_swipe_once(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    swipe_key = store.message_id_new()
    store.checkpoint_save(
        conversation=conversation,
        message_id=swipe_key,
        persona="assistant",
        content="half an ans",
        meta={"regenerates": reply.id},
    )

    restarted = store_reopen(tmp_path)
    (recovered,) = restarted.checkpoints_recover()

    assert recovered.id == reply.id and recovered.content == "half an ans"
    assert recovered.meta["finish_reason"] == "interrupted" and recovered.meta["swipe_id"] == 1
    assert [s["id"] for s in recovered.meta["swipes"]] == [reply.id, swipe_key]
    assert [m.id for m in restarted.messages_all("c1")] == [m.id for m in store.messages_all("c1")]
    assert store_reopen(tmp_path).checkpoints_recover() == [], "recovered once"


def test_a_checkpoint_of_a_continuation_is_recovered_into_its_reply_once(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    reply = reply_of(store, conversation)
    key = store.message_id_new()
    store.checkpoint_save(
        conversation=conversation,
        message_id=key,
        persona="assistant",
        content=" and then",
        meta={"continues": reply.id},
    )

    restarted = store_reopen(tmp_path)
    (recovered,) = restarted.checkpoints_recover()

    assert recovered.id == reply.id and recovered.content == "first and then"
    assert recovered.meta["finish_reason"] == "interrupted" and recovered.meta["continued"] == 1
    assert len(restarted.messages_all("c1")) == 2, "no message of its own"
    assert store_reopen(tmp_path).checkpoints_recover() == [], "recovered once"


def test_a_branch_copies_the_path_and_no_change_reaches_the_other_branch(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    chat_add(store, conversation, 2)  # m0 (user), m1 (assistant)
    reply = store.messages_all("c1")[1]
    store.message_swipe_add("c1", reply.id, swipe_key="k2", content="m1 again", meta={"tokens": 3})
    chat_add(store, conversation, 2, prefix="later")
    parent_before = store.messages_all("c1")

    branch = store.conversation_branch("c1", message_id=reply.id, new_db_id="b1")

    assert branch is not None and (branch.parent_id, branch.parent_message_id) == ("c1", reply.id)
    assert branch.user_id == "alice" and branch.persona == conversation.persona and branch.message_count == 2
    copied = store.messages_all("b1")
    assert [(m.seq, m.role, m.content, m.created_at) for m in copied] == [
        (m.seq, m.role, m.content, m.created_at) for m in parent_before[:2]
    ]
    assert copied[1].meta["swipes"] == parent_before[1].meta["swipes"] and copied[1].meta["swipe_id"] == 1
    assert {m.id for m in copied}.isdisjoint({m.id for m in parent_before}), "copies, not shared documents"

    store.message_edit("b1", copied[0].id, "edited in the branch")
    store.message_swipe_choose("b1", copied[1].id, 0)
    store.message_append(branch, role="user", content="only in the branch", persona="assistant")
    store.message_delete("c1", parent_before[0].id)

    assert store.messages_all("c1") == parent_before[1:], "the branch's changes never reach the parent"
    assert [m.content for m in store.messages_all("b1")] == ["edited in the branch", "m1", "only in the branch"]
    reopened = store_reopen(tmp_path).conversation_get("b1")
    assert reopened is not None and reopened.parent_id == "c1"
    assert store.conversation_branch("c1", message_id="0" * 24, new_db_id="b2") is None
    assert store.conversation_branch("nope", message_id=reply.id, new_db_id="b3") is None


def test_edit_and_send_again_branches_with_the_edited_message_last(tmp_path: Path) -> None:
    store = store_open(tmp_path)
    conversation = conversation_new(store)
    chat_add(store, conversation, 4)  # m0 (user), m1, m2 (user), m3
    before = store.messages_all("c1")

    branch = store.conversation_branch("c1", message_id=before[2].id, new_db_id="b1", content="m2, said better")

    assert branch is not None and branch.message_count == 3
    copied = store.messages_all("b1")
    assert [m.content for m in copied] == ["m0", "m1", "m2, said better"]
    assert [e["content"] for e in copied[2].meta["edits"]] == ["m2"] and copied[2].meta["edited_at"]
    assert store.messages_all("c1") == before, "the past stays as it was"
