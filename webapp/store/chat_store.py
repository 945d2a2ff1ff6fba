"""Conversations and messages in MongoDB (or montydb), behind a write-through cache.

Documents:
  conversations  {_id: "<app>:<db_id>", app, db_id, user_id, persona, title, greeting,
                  lorebooks, message_count, created_at, updated_at, parent?, group?}
                 `parent` {db_id, message_id, seq}: a branch, forked from that message.
                 `group` {members, muted, activation}: a group chat (character app) of
                 these personas; each reply's `speaker` says which one wrote it.
                 `changes` (shared stores) counts changes to its stored messages.
                 `greeting`: which of the persona's greetings the chat started with;
                 `lorebooks`: standalone lorebooks attached to the chat (character app).
  messages       {_id, app, conversation_id: db_id, seq, role, content,
                  created_at, tokens, model, finish_reason, stopped_by, regenerates,
                  timings, prompt, sources}
                 kept in a MessageLog (webapp.store.message_log): an indexed SQLite file
                 for the embedded store, the `messages` collection with MongoDB.
                 `swipes` [{id, content, created_at, meta}] are a reply's alternatives and
                 `swipe_id` the one shown: its text and metadata are also the document's own,
                 so prompts read `content` alone. `edits` [{content, until}] are earlier
                 texts; `edited_at` the last edit; `rev` counts changes (compare-and-set).
                 `regenerates` (written before swipes) names the assistant message this one
                 replaced; the old one stays stored and is left out of prompts and the UI.
                 `sources` (office) lists the document chunks the reply was grounded on.
                 `speaker` (a group chat's reply) is the persona that wrote it.
  checkpoints    {_id: message id, app, conversation_id, persona, content, meta, updated_at}
                 a reply while it streams, rewritten every second or so and deleted once
                 the reply is stored. One left behind means the process died mid-reply: at
                 start-up `checkpoints_recover` stores it as the reply, finish_reason
                 "interrupted". Only replies in flight are here, so scanning it is cheap.

The chat hot path needs only the conversation and its last few messages. montydb has no
real indexes (every `find` decodes the whole collection), so messages live in the
MessageLog, read by pages, and the store keeps the active conversations and their recent
messages in memory: read once on first use, updated on every write.

Several writers. A message's `seq` is reserved in the database, by one atomic
`find_one_and_update` that increments the conversation's `message_count`, never taken
from this process's cache, so two processes (replicas of an app on one MongoDB) never
give two messages the same place. With `shared` (the default with MongoDB), the cached
window is checked against the stored `message_count` on every read (one lookup by _id)
and read again when another process wrote since; a change to a stored message (an edit,
a swipe, a deletion) counts up the conversation's `changes`, which the check compares
too. The embedded store (montydb on SQLite
files) serves one process only: webapp.store.client.embedded_claim makes a second
serving process refuse to start, so its cache is authoritative.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from webapp.store.message_log import MessageLog, MongoMessageLog, messages_copy
from webapp.store.safe import readable, records_decode, storable

log = logging.getLogger(__name__)


def _utc(value: datetime) -> datetime:
    # montydb (and pymongo without tz_aware) hand back naive datetimes that are UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    # BSON stores milliseconds; truncate so the cache and the store agree exactly.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _object_id_class(embedded: bool) -> type:
    # montydb has its own ObjectId type and cannot store bson's; MongoDB wants bson's.
    if embedded:
        from montydb.types.objectid import ObjectId as MontyObjectId

        return MontyObjectId
    from bson import ObjectId

    return ObjectId


@dataclass(frozen=True)
class Conversation:
    db_id: str
    app: str
    user_id: str
    persona: str
    title: str
    message_count: int
    created_at: datetime
    updated_at: datetime
    greeting: int = 0  # which of the persona's greetings it started with (0: the first message)
    lorebooks: tuple[str, ...] = ()  # the character app's standalone lorebooks attached to this chat
    parent_id: str = ""  # a branch: the conversation it was forked from ("" for none)
    parent_message_id: str = ""  # and the message there it shares the history up to
    members: tuple[str, ...] = ()  # a group chat's personas, in the group's order (() for a 1:1 chat)
    muted: tuple[str, ...] = ()  # members never picked to speak (the user can still make one speak)
    activation: str = ""  # a group's way of picking speakers: natural | list | manual

    @property
    def is_group(self) -> bool:
        return bool(self.members)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Conversation:
        return cls(
            db_id=doc["db_id"],
            app=doc["app"],
            user_id=doc["user_id"],
            persona=doc.get("persona", ""),
            title=doc.get("title", ""),
            message_count=int(doc.get("message_count", 0)),
            created_at=_utc(doc["created_at"]),
            updated_at=_utc(doc["updated_at"]),
            greeting=int(doc.get("greeting", 0)),
            lorebooks=tuple(str(x) for x in doc.get("lorebooks") or ()),
            parent_id=str((doc.get("parent") or {}).get("db_id", "")),
            parent_message_id=str((doc.get("parent") or {}).get("message_id", "")),
            members=tuple(str(x) for x in (doc.get("group") or {}).get("members") or ()),
            muted=tuple(str(x) for x in (doc.get("group") or {}).get("muted") or ()),
            activation=str((doc.get("group") or {}).get("activation", "")),
        )


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    role: str
    content: str
    created_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Message:
        meta_keys = (
            "interrupted_at",
            "tokens",
            "model",
            "finish_reason",
            "stopped_by",
            "regenerates",
            "timings",
            "prompt",
            "sources",
            "tool_calls",
            "lore",
            "swipes",
            "swipe_id",
            "edits",
            "edited_at",
            "speaker",
            "continued",
        )
        return cls(
            id=str(doc["_id"]),
            conversation_id=doc["conversation_id"],
            seq=int(doc["seq"]),
            role=doc["role"],
            content=doc["content"],
            created_at=_utc(doc["created_at"]),
            meta={k: doc[k] for k in meta_keys if doc.get(k) is not None},
        )


@dataclass(frozen=True)
class MessageDraft:
    """A message to store in a batch (an import): what it says, who said it, and when."""

    role: str
    content: str
    created_at: datetime | None = None  # aware; None: now
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Active:
    conversation: Conversation
    recent: deque[Message] | None = None  # None until first read
    changes: int = 0  # shared stores: the conversation's `changes` when `recent` was read


EDITS_KEPT = 50  # earlier texts of a message kept after edits
CHANGE_ATTEMPTS = 8
# What belongs to one alternative (swipe) of a reply, besides its text.
SWIPE_META = (
    "interrupted_at",
    "tokens",
    "model",
    "finish_reason",
    "stopped_by",
    "timings",
    "prompt",
    "sources",
    "tool_calls",
    "lore",
)


def _alternative_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A reply document's shown text and metadata as one alternative (swipe)."""
    created = doc.get("created_at")
    return {
        "id": str(doc["_id"]),
        "content": doc.get("content", ""),
        "created_at": _utc(created).isoformat() if isinstance(created, datetime) else str(created or ""),
        "meta": {k: doc[k] for k in SWIPE_META if doc.get(k) is not None},
    }


def _swipe_show(doc: dict[str, Any], index: int) -> dict[str, Any]:
    """`doc` showing its alternative `index`: that one's text and metadata at the top level."""
    shown = {k: v for k, v in doc.items() if k not in SWIPE_META}
    chosen = doc["swipes"][index]
    shown.update(chosen.get("meta") or {})
    shown["content"] = chosen.get("content", "")
    shown["swipe_id"] = index
    return shown


def owner_matches(user_id: str, owner: str) -> bool:
    """Whether data stored under `user_id` belongs to `owner`: its own, or one of its end users'."""
    return user_id == owner or user_id.startswith(owner + "/")


class ChatStore:
    """Repository for one app's conversations. Thread-safe."""

    def __init__(
        self,
        db: Any,
        *,
        app: str,
        embedded: bool,
        messages: MessageLog,
        cache_size: int = 512,
        window: int = 64,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        shared: bool | None = None,
    ) -> None:
        self._shared = (not embedded) if shared is None else shared  # other processes write too
        self._conversations = db["conversations"]
        self._log = messages
        self._legacy_messages = db["messages"]  # where messages were kept before the MessageLog
        self._checkpoints = db["checkpoints"]
        self._app = app
        self._object_id = _object_id_class(embedded)
        self._window = window
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Active] = OrderedDict()
        self._cache_lock = threading.RLock()
        # montydb's SQLite storage is not safe to drive from several threads at once;
        # `lock` is shared with the other repositories on the same database.
        self._db_lock: contextlib.AbstractContextManager[Any] = lock or (
            threading.RLock() if embedded else contextlib.nullcontext()
        )

    def indexes_ensure(self) -> None:
        with self._db_lock:
            self._conversations.create_index([("app", 1), ("user_id", 1), ("updated_at", -1)])

    # --- conversations ----------------------------------------------------------------

    def conversation_get(self, db_id: str) -> Conversation | None:
        """The conversation with this id in this app, whoever owns it (callers check)."""
        with self._cache_lock:
            active = self._cache.get(db_id)
            if active is not None:
                self._cache.move_to_end(db_id)
                return active.conversation
        with self._db_lock:
            doc = self._conversations.find_one({"_id": self._key(db_id)})
        if doc is None:
            return None
        conversation = Conversation.from_doc(doc)
        with self._cache_lock:
            self._remember(_Active(conversation))
        return conversation

    def conversation_create(
        self,
        *,
        db_id: str,
        user_id: str,
        persona: str,
        title: str,
        greeting: int = 0,
        group: dict[str, Any] | None = None,
    ) -> Conversation:
        """A new, empty conversation; with `group` ({members, muted, activation}) a group chat."""
        now = _now()
        doc = self._conversation_doc(
            db_id=db_id, user_id=user_id, persona=persona, title=title, greeting=greeting, count=0, times=(now, now)
        )
        if group is not None:
            doc["group"] = storable(group)
        with self._db_lock:
            self._conversations.insert_one(doc)
        conversation = Conversation.from_doc(doc)
        with self._cache_lock:
            self._remember(_Active(conversation, recent=deque(maxlen=self._window)))
        return conversation

    def conversation_import(
        self,
        *,
        db_id: str,
        user_id: str,
        persona: str,
        title: str,
        messages: Sequence[MessageDraft],
        greeting: int = 0,
        lorebooks: tuple[str, ...] = (),
        parent: dict[str, Any] | None = None,
        group: dict[str, Any] | None = None,
    ) -> Conversation:
        """A new conversation holding `messages` (oldest first), written as one batch.

        The messages go first and the conversation last: until its document exists no
        read can reach them, so an import that fails part-way leaves nothing visible (and
        what it wrote is removed). SQLite writes the batch in one transaction; MongoDB
        has no multi-document transactions on a standalone server, hence this order.
        """
        now = _now()
        docs = [
            {
                "_id": self.message_id_new(),
                "app": self._app,
                "conversation_id": db_id,
                "seq": seq,
                "role": draft.role,
                "content": storable(draft.content),
                "created_at": draft.created_at or now,
                **storable(draft.meta),
            }
            for seq, draft in enumerate(messages)
        ]
        first = min((d["created_at"] for d in docs), default=now)
        last = max((d["created_at"] for d in docs), default=now)
        doc = self._conversation_doc(
            db_id=db_id,
            user_id=user_id,
            persona=persona,
            title=title,
            greeting=greeting,
            count=len(docs),
            times=(first, last),
        )
        if lorebooks:
            doc["lorebooks"] = list(lorebooks)
        if parent:
            doc["parent"] = parent
        if group:
            doc["group"] = storable(group)
        if self.conversation_get(db_id) is not None:
            raise KeyError(f"conversation {db_id} exists already")
        with self._db_lock:
            try:
                self._log.insert(docs)
                self._conversations.insert_one(doc)
            except BaseException:
                self._log.delete([d["_id"] for d in docs])  # only what this import wrote
                raise
        return Conversation.from_doc(doc)

    def conversation_branch(
        self, db_id: str, *, message_id: str, new_db_id: str, content: str | None = None
    ) -> Conversation | None:
        """A new conversation sharing `db_id`'s history up to and including `message_id`,
        linked to it (`parent_id`, `parent_message_id`), owned by the same user: a copy of
        that path (each message with its swipes, edits and metadata), so nothing done in
        one branch can change another. With `content`, the branch's copy of `message_id`
        says that instead (the old text in its `edits`), in the same batch: editing a
        message and sending it again goes on in a branch. None if either is gone."""
        source = self.conversation_get(db_id)
        fork = self.message_get(db_id, message_id) if source is not None else None
        if source is None or fork is None:
            return None
        with self._db_lock:
            docs = self._log.upto(db_id, seq=fork.seq)
        own = {"_id", "app", "conversation_id", "seq", "role", "content", "created_at", "rev"}
        drafts = [
            MessageDraft(
                role=str(doc["role"]),
                content=str(doc.get("content", "")),
                created_at=doc["created_at"],
                meta={k: v for k, v in readable(doc).items() if k not in own},
            )
            for doc in docs
        ]
        if content is not None and drafts:
            last, now = drafts[-1], _now().isoformat()
            edits = [*(last.meta.get("edits") or []), {"content": last.content, "until": now}]
            meta = {**last.meta, "edits": edits[-EDITS_KEPT:], "edited_at": now}
            drafts[-1] = replace(last, content=content, meta=meta)
        return self.conversation_import(
            db_id=new_db_id,
            user_id=source.user_id,
            persona=source.persona,
            title=source.title,
            messages=drafts,
            greeting=source.greeting,
            lorebooks=source.lorebooks,
            parent={"db_id": db_id, "message_id": message_id, "seq": fork.seq},
            group=(
                {"members": list(source.members), "muted": list(source.muted), "activation": source.activation}
                if source.is_group
                else None
            ),
        )

    def conversation_lorebooks_set(self, conversation: Conversation, lorebooks: tuple[str, ...]) -> Conversation:
        """Attach these lorebooks (ids; the character app checks them) to the conversation."""
        with self._cache_lock:
            with self._db_lock:
                self._conversations.update_one(
                    {"_id": self._key(conversation.db_id)}, {"$set": {"lorebooks": list(lorebooks)}}
                )
            active = self._cache.get(conversation.db_id)
            current = active.conversation if active is not None else conversation
            updated = replace(current, lorebooks=lorebooks)
            if active is not None:
                active.conversation = updated
            return updated

    def conversation_group_set(self, conversation: Conversation, group: dict[str, Any]) -> Conversation:
        """Change a group chat's settings ({members, muted, activation}, and `title`); the
        conversation as it is now."""
        title = group.get("title")
        settings = {k: group[k] for k in ("members", "muted", "activation")}
        changes: dict[str, Any] = {"group": storable(settings)}
        if title is not None:
            changes["title"] = storable(title)
        with self._cache_lock:
            with self._db_lock:
                self._conversations.update_one({"_id": self._key(conversation.db_id)}, {"$set": changes})
            active = self._cache.get(conversation.db_id)
            current = active.conversation if active is not None else conversation
            updated = replace(
                current,
                members=tuple(settings["members"]),
                muted=tuple(settings["muted"]),
                activation=settings["activation"],
                title=title if title is not None else current.title,
            )
            if active is not None:
                active.conversation = updated
            return updated

    def conversations_for_user(self, user_id: str, *, limit: int = 100) -> list[Conversation]:
        with self._db_lock:
            docs = list(
                self._conversations.find({"app": self._app, "user_id": user_id}).sort("updated_at", -1).limit(limit)
            )
        return records_decode(docs, Conversation.from_doc)

    def conversation_delete(self, db_id: str) -> None:
        """Delete the conversation and all its messages."""
        with self._db_lock:
            self._log.conversation_drop(db_id)
            self._conversations.delete_one({"_id": self._key(db_id)})
        with self._cache_lock:
            self._cache.pop(db_id, None)

    def owner_purge(self, owner: str) -> dict[str, int]:
        """Delete every conversation (with its messages) of `owner` and of its end users
        (`owner/…`: a service key's); how many of each went. Scans the collection: for
        deleting an account, never on a request's path."""
        with self._db_lock:
            docs = list(self._conversations.find({"app": self._app}, {"db_id": 1, "user_id": 1}))
        owned = [d["db_id"] for d in docs if owner_matches(str(d.get("user_id", "")), owner)]
        messages = 0
        for db_id in owned:
            with self._db_lock:
                messages += self._log.count(db_id)
            self.conversation_delete(db_id)
        return {"conversations": len(owned), "messages": messages}

    def owner_rename(self, *, old: str, new: str) -> int:
        """Move every conversation stored under user_id `old` to `new` (adopting the data of
        a pre-account label); how many moved. For a stopped app's store (a management command)."""
        with self._db_lock:
            moved = self._conversations.update_many({"app": self._app, "user_id": old}, {"$set": {"user_id": new}})
        with self._cache_lock:
            self._cache.clear()
        return int(moved.modified_count)

    def labels_prefix(self, prefix: str) -> int:
        """Put `prefix` in front of every conversation's user_id that lacks it (setting apart
        the data of a deployment from before accounts); how many changed. A scan, once."""
        with self._db_lock:
            docs = list(self._conversations.find({"app": self._app}, {"_id": 1, "user_id": 1}))
            changed = 0
            for doc in docs:
                label = str(doc.get("user_id", ""))
                if not label.startswith(prefix):
                    self._conversations.update_one({"_id": doc["_id"]}, {"$set": {"user_id": prefix + label}})
                    changed += 1
        with self._cache_lock:
            self._cache.clear()
        return changed

    # --- messages ---------------------------------------------------------------------

    def message_append(
        self,
        conversation: Conversation,
        *,
        role: str,
        content: str,
        persona: str,
        meta: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Message:
        """Store one message at the end of the conversation and return it.

        `message_id` (from `self.message_id_new()`) lets a caller announce the id before the
        message exists, as the WebSocket stream does in its start frame.
        """
        with self._cache_lock:
            current = self.conversation_get(conversation.db_id) or conversation
            now = _now()
            with self._db_lock:
                # The place in the conversation is reserved atomically in the database: another
                # process appending at the same moment gets the next one.
                counted = self._conversations.find_one_and_update(
                    {"_id": self._key(conversation.db_id)},
                    {"$set": {"updated_at": now, "persona": persona}, "$inc": {"message_count": 1}},
                    return_document=True,
                )
                if counted is None:
                    raise KeyError(f"conversation {conversation.db_id} does not exist (deleted meanwhile?)")
                doc: dict[str, Any] = {
                    "_id": message_id or self.message_id_new(),
                    "app": self._app,
                    "conversation_id": conversation.db_id,
                    "seq": int(counted["message_count"]) - 1,
                    "role": role,
                    "content": storable(content),
                    "created_at": now,
                    **storable(meta or {}),
                }
                self._log.insert([doc])
            message = Message.from_doc(doc)
            updated = replace(current, message_count=message.seq + 1, updated_at=now, persona=persona)
            active = self._cache.get(conversation.db_id)
            if active is None:
                self._remember(_Active(updated))
            else:
                active.conversation = updated
                if active.recent is not None:
                    previous = active.recent[-1].seq if active.recent else -1
                    if previous == message.seq - 1:
                        active.recent.append(message)
                    else:
                        active.recent = None  # another process wrote in between: read the window again
            return message

    def messages_recent(self, db_id: str) -> list[Message]:
        """The last `window` messages, oldest first. Served from memory after the first call.

        The cold read holds the cache lock, as `message_append` does, so an append can't
        land between the read and the filling of the cache and be missing from it.
        """
        with self._cache_lock:
            active = self._cache.get(db_id)
            stored = self._window_stored(db_id)
            if active is not None and active.recent is not None and self._window_current(active, stored):
                return list(active.recent)
            with self._db_lock:
                docs = self._log.page(db_id, before=None, limit=self._window)
            recent = deque(records_decode(reversed(docs), Message.from_doc), maxlen=self._window)
            if active is not None:
                active.recent, active.changes = recent, stored[1]
            return list(recent)

    def _window_stored(self, db_id: str) -> tuple[int, int]:
        """Shared stores: the conversation's (message_count, changes) as stored now (one
        lookup by _id); (0, 0) for single-process stores, which need not ask."""
        if not self._shared:
            return 0, 0
        with self._db_lock:
            doc = self._conversations.find_one({"_id": self._key(db_id)}, {"message_count": 1, "changes": 1})
        return (int(doc.get("message_count", 0)), int(doc.get("changes", 0))) if doc else (0, 0)

    def _window_current(self, active: _Active, stored: tuple[int, int]) -> bool:
        """Whether the cached window is what is stored. Single-process stores (embedded) know
        it is; shared ones compare where it ends with the stored count, and the count of
        changes to stored messages (edits, swipes, deletions by any process) with the one
        it was read at."""
        if not self._shared:
            return True
        recent = active.recent or deque()
        return (recent[-1].seq + 1 if recent else 0) == stored[0] and active.changes == stored[1]

    def messages_page(self, db_id: str, *, before: int | None, limit: int) -> list[Message]:
        """Up to `limit` messages with seq < `before` (the newest when None), oldest first.
        An indexed read of just those messages, whatever the conversation's length."""
        with self._db_lock:
            docs = self._log.page(db_id, before=before, limit=limit)
        return records_decode(reversed(docs), Message.from_doc)

    def messages_all(self, db_id: str) -> list[Message]:
        """Every message, oldest first: for exports and tests, never a request's hot path."""
        with self._db_lock:
            docs = self._log.upto(db_id, seq=2**62)
        return records_decode(docs, Message.from_doc)

    def messages_adopt(self) -> int:
        """Move this app's messages from where they were kept before the MessageLog (the
        database's `messages` collection) into the log; how many moved. Call at start-up,
        before serving. Copy first, then delete what was copied: a run cut short is
        finished by the next. A message the log refuses (its place is taken) stays where it
        was, logged, rather than being lost. Nothing to do with MongoDB, whose log is that
        collection."""
        if isinstance(self._log, MongoMessageLog):
            return 0
        with self._db_lock:
            docs = list(self._legacy_messages.find({"app": self._app}))
        if not docs:
            return 0
        kept: list[Any] = []
        try:
            messages_copy(docs, self._log)
        except sqlite3.IntegrityError:  # one by one, to find the ones that can't move
            for doc in docs:
                try:
                    messages_copy([doc], self._log)
                except sqlite3.IntegrityError:
                    log.error("message %s can't move to the message log (its place is taken); kept", doc["_id"])
                    kept.append(doc["_id"])
        with self._db_lock:
            # One scan each: montydb finds a document by _id by reading them all.
            if kept:
                self._legacy_messages.delete_many({"app": self._app, "_id": {"$nin": kept}})
            else:
                self._legacy_messages.delete_many({"app": self._app})
        with self._cache_lock:
            self._cache.clear()
        return len(docs) - len(kept)

    # --- search -----------------------------------------------------------------------

    def terms_index(
        self, terms_of: Callable[[str], list[str]], *, limit: int, conversation_ids: list[str] | None = None
    ) -> int:
        """Index up to `limit` pending messages (stored or changed since they were last
        indexed; of these conversations only, when given) under the terms `terms_of` finds
        in their shown text; how many were read (fewer than `limit`: none are left). The
        terms are made outside every lock; a message that changes meanwhile stays pending."""
        docs = self._log.terms_pending(limit, conversation_ids=conversation_ids)
        if docs:
            self._log.terms_set([(doc, terms_of(str(doc.get("content", "")))) for doc in docs])
        return len(docs)

    def terms_pending_count(self, *, conversation_ids: list[str] | None = None) -> int:
        """How many messages (of these conversations, when given) wait for `terms_index`."""
        return self._log.terms_pending_count(conversation_ids=conversation_ids)

    def conversations_all(self, user_id: str) -> dict[str, Conversation]:
        """Every conversation of `user_id` by id (a scan on montydb, like the conversation list)."""
        with self._db_lock:
            docs = list(self._conversations.find({"app": self._app, "user_id": user_id}))
        return {c.db_id: c for c in records_decode(docs, Conversation.from_doc)}

    def messages_search(
        self, conversations: dict[str, Conversation], terms: list[str], *, limit: int
    ) -> list[tuple[Conversation, Message]]:
        """Up to `limit` indexed messages of `conversations` (one user's, from
        `conversations_all`) that have every one of `terms`, newest first, each with its
        conversation: one indexed query of the message log."""
        found = self._log.search(list(conversations), terms, limit=limit)
        return [(conversations[m.conversation_id], m) for m in records_decode(found, Message.from_doc)]

    # --- changing stored messages: swipes, edits, deletion ----------------------------

    def message_get(self, db_id: str, message_id: str) -> Message | None:
        """The stored message `message_id` of conversation `db_id`, or None."""
        with self._db_lock:
            doc = self._log.get(message_id)
        if doc is None or doc.get("conversation_id") != db_id:
            return None
        found = records_decode([doc], Message.from_doc)
        return found[0] if found else None

    def message_swipe_add(
        self, db_id: str, message_id: str, *, swipe_key: str, content: str, meta: dict[str, Any]
    ) -> Message | None:
        """Add an alternative (a swipe) to a stored reply and show it; None if the message is
        gone. The message keeps its id and place; its first text becomes swipe 0. Adding the
        same `swipe_key` twice adds it once (a recovered checkpoint may repeat a write)."""
        now = _now().isoformat()

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            swipes = list(doc.get("swipes") or [_alternative_of(doc)])
            if any(swipe.get("id") == swipe_key for swipe in swipes):
                return None
            swipes.append({"id": swipe_key, "content": storable(content), "created_at": now, "meta": storable(meta)})
            return _swipe_show({**doc, "swipes": swipes}, len(swipes) - 1)

        message = self._message_change(db_id, message_id, change)
        if message is not None:
            self._conversation_touch(db_id)  # a new answer is the chat's latest activity: it goes up the list
        return message

    def message_continue(
        self, db_id: str, message_id: str, *, key: str, text: str, meta: dict[str, Any]
    ) -> Message | None:
        """The model went on writing a reply: `text` is added to the end of its shown text
        (and shown alternative). `meta` (the continuation's finish_reason, timings, …)
        replaces the reply's, its `tokens` add up, and `continued` counts the continuations.
        Adding the same `key` twice adds it once (a recovered checkpoint may repeat a write).
        None if the message is gone."""

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            keys = list(doc.get("continued_keys") or [])
            if key in keys:
                return None
            extra = storable(meta)
            merged = {
                **doc,
                **extra,
                "content": storable(str(doc.get("content", "")) + text),
                "tokens": int(doc.get("tokens") or 0) + int(extra.get("tokens") or 0),
                "continued": int(doc.get("continued") or 0) + 1,
                "continued_keys": [*keys, key][-EDITS_KEPT:],
            }
            if doc.get("swipes"):
                swipes = [dict(swipe) for swipe in doc["swipes"]]
                shown = int(doc.get("swipe_id", 0))
                swipes[shown] = {**_alternative_of(merged), "id": swipes[shown].get("id", message_id)}
                swipes[shown]["created_at"] = doc["swipes"][shown].get("created_at", swipes[shown]["created_at"])
                merged["swipes"] = swipes
            return merged

        message = self._message_change(db_id, message_id, change)
        if message is not None:
            self._conversation_touch(db_id)
        return message

    def _conversation_touch(self, db_id: str) -> None:
        now = _now()
        with self._cache_lock:
            with self._db_lock:
                self._conversations.update_one({"_id": self._key(db_id)}, {"$set": {"updated_at": now}})
            active = self._cache.get(db_id)
            if active is not None:
                active.conversation = replace(active.conversation, updated_at=now)

    def message_swipe_choose(self, db_id: str, message_id: str, index: int) -> Message | None:
        """Show alternative `index` of a reply: later prompts see it. IndexError if it has no
        such alternative; None if the message is gone."""

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            swipes = doc.get("swipes") or [_alternative_of(doc)]
            if not 0 <= index < len(swipes):
                raise IndexError(f"this message has {len(swipes)} alternative(s): 0 to {len(swipes) - 1}")
            if int(doc.get("swipe_id", 0)) == index:
                return None
            return _swipe_show({**doc, "swipes": swipes}, index)

        return self._message_change(db_id, message_id, change)

    def message_edit(self, db_id: str, message_id: str, content: str) -> Message | None:
        """Replace a message's text, keeping what it said before in `edits` (the newest
        EDITS_KEPT). A reply's shown alternative is edited with it. None if it is gone."""
        now = _now().isoformat()

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            text = storable(content)
            if text == doc.get("content"):
                return None
            edits = [*(doc.get("edits") or []), {"content": doc.get("content", ""), "until": now}]
            doc = {**doc, "content": text, "edited_at": now, "edits": edits[-EDITS_KEPT:]}
            if doc.get("swipes"):
                swipes = [dict(swipe) for swipe in doc["swipes"]]
                swipes[int(doc.get("swipe_id", 0))]["content"] = text
                doc["swipes"] = swipes
            return doc

        return self._message_change(db_id, message_id, change)

    def message_delete(self, db_id: str, message_id: str) -> bool:
        """Delete one message (its place stays unused); whether it existed."""
        with self._cache_lock:
            if self.message_get(db_id, message_id) is None:
                return False
            with self._db_lock:
                gone = self._log.delete([message_id])
            self._window_forget(db_id)
            self._changes_count(db_id)
            return gone == 1

    def _message_change(
        self, db_id: str, message_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> Message | None:
        """Write `change(document)` over a stored message: compare-and-set on its `rev`,
        read again and retried when another writer got there first. `change` returns None
        for "nothing to change". None if the message is gone."""
        for _ in range(CHANGE_ATTEMPTS):
            with self._db_lock:
                doc = self._log.get(message_id)
            if doc is None or doc.get("conversation_id") != db_id:
                return None
            rev = int(doc.get("rev", 0))
            changed = change(readable(doc))
            if changed is None:
                return Message.from_doc(readable(doc))
            changed["rev"] = rev + 1
            with self._cache_lock:
                with self._db_lock:
                    written = self._log.replace(changed, rev=rev)
                if written:
                    self._window_forget(db_id)
                    self._changes_count(db_id)
                    return Message.from_doc(changed)
        raise RuntimeError(f"message {message_id} kept changing under {CHANGE_ATTEMPTS} attempts to change it")

    def _changes_count(self, db_id: str) -> None:
        """A stored message of `db_id` changed: other processes sharing the store read their
        cached window again (see _window_current). Single-process stores need not count."""
        if self._shared:
            with self._db_lock:
                self._conversations.update_one({"_id": self._key(db_id)}, {"$inc": {"changes": 1}})

    def _window_forget(self, db_id: str) -> None:
        """The cached recent messages of `db_id` are stale: read them again next time."""
        with self._cache_lock:
            active = self._cache.get(db_id)
            if active is not None:
                active.recent = None

    # --- checkpoints of replies in flight ---------------------------------------------

    def checkpoint_save(
        self, *, conversation: Conversation, message_id: str, persona: str, content: str, meta: dict[str, Any]
    ) -> None:
        """Keep what a reply has so far, so that a crash can't lose what its user already saw."""
        doc = {
            "_id": message_id,
            "app": self._app,
            "conversation_id": conversation.db_id,
            "persona": persona,
            "content": storable(content),
            "meta": storable(meta),
            "updated_at": _now(),
        }
        with self._db_lock:
            self._checkpoints.replace_one({"_id": message_id}, doc, upsert=True)

    def checkpoint_clear(self, message_id: str) -> None:
        with self._db_lock:
            self._checkpoints.delete_one({"_id": message_id})

    def checkpoints_recover(self) -> list[Message]:
        """Store every reply this app's last process left unfinished as "interrupted"; return them.

        Call once at start-up, before serving: the process that wrote them is gone. A
        checkpoint whose reply was stored after all (the crash fell between the two writes)
        is only deleted; one of a new alternative (`regenerates` names the reply) becomes
        that reply's swipe, and one of a continuation (`continues`) is added to its reply.
        """
        with self._db_lock:
            docs = list(self._checkpoints.find({"app": self._app}))
        recovered = []
        for doc in docs:
            message_id = str(doc["_id"])
            with self._db_lock:
                stored = self._log.get(message_id) is not None
            conversation = self.conversation_get(doc.get("conversation_id", ""))
            if not stored and conversation is not None:
                saved = doc.get("updated_at")
                meta = {
                    **doc.get("meta", {}),
                    "finish_reason": "interrupted",
                    "interrupted_at": _utc(saved).isoformat() if isinstance(saved, datetime) else None,
                }
                target = str(meta.pop("regenerates", "") or "")
                continued = str(meta.pop("continues", "") or "")
                # A new alternative of a stored reply becomes its swipe, and the rest of a
                # continued reply is added to it (once, whatever was written before the
                # crash); otherwise the reply is a message of its own.
                swiped = None
                if target:
                    swiped = self.message_swipe_add(
                        conversation.db_id, target, swipe_key=message_id, content=doc.get("content", ""), meta=meta
                    )
                elif continued:
                    swiped = self.message_continue(
                        conversation.db_id, continued, key=message_id, text=doc.get("content", ""), meta=meta
                    )
                recovered.append(
                    swiped
                    or self.message_append(
                        conversation,
                        role="assistant",
                        content=doc.get("content", ""),
                        persona=doc.get("persona", conversation.persona),
                        meta=meta,
                        message_id=message_id,
                    )
                )
            self.checkpoint_clear(message_id)
        return recovered

    def message_id_new(self) -> str:
        """A fresh message id, unique without asking the database."""
        return str(self._object_id())

    # --- helpers ----------------------------------------------------------------------

    def _conversation_doc(
        self,
        *,
        db_id: str,
        user_id: str,
        persona: str,
        title: str,
        greeting: int,
        count: int,
        times: tuple[datetime, datetime],
    ) -> dict[str, Any]:
        """A conversation's document; `times`: (created_at, updated_at)."""
        return {
            "_id": self._key(db_id),
            "app": self._app,
            "db_id": db_id,
            "user_id": user_id,
            "persona": persona,
            "title": storable(title),
            "greeting": greeting,
            "message_count": count,
            "created_at": times[0],
            "updated_at": times[1],
        }

    def _key(self, db_id: str) -> str:
        return f"{self._app}:{db_id}"

    def _remember(self, active: _Active) -> None:
        """Insert into the LRU cache. Call with `_cache_lock` held."""
        self._cache[active.conversation.db_id] = active
        self._cache.move_to_end(active.conversation.db_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
