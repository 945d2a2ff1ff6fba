"""Where a conversation's messages are kept: one Protocol, two backends.

A chat reads its messages by pages (the newest screen, then one page further back at a
time) and a turn reads only the last few; nothing needs a whole conversation at once.
That needs an index on (app, conversation, seq), and the embedded store has none:
montydb decodes every document of a collection for any query, `_id` lookups included,
and accepts `create_index` without using it. Measured with `python -m perf.large_chat`
(the newest 50 of a 5,000-message conversation, with 50,000 other messages stored):
montydb takes over a second a page, an indexed SQLite table about a millisecond.

- `SqliteMessageLog`: the embedded default. One SQLite file per app beside montydb's
  folder (`<VAR_DIR>/mongo/<app>/messages.sqlite3`, so backups take it with the rest), in
  WAL mode, with a unique index on the message's place. The document is kept as JSON
  with `created_at` in its own column; SQLite's transactions make a batch of inserts
  (an import, a branch) all or nothing.
- `MongoMessageLog`: a MongoDB collection (docker-compose's MongoDB, where the compound
  index is real). Tests run it on montydb, which speaks the same API.

Each backend also keeps the search index of the messages' shown text (`terms_*`,
`search`). The terms come from the caller (Kiwi morphemes, in the chat layer) and are
written off the request path: a stored or changed message is pending until an indexer
gives its terms, and the index never holds the terms of a text the message no longer
has. SQLite: an FTS5 table in the same file, kept in step by triggers (a changed or
deleted message loses its terms in the same statement). MongoDB: `terms` and `indexed`
fields on the message itself, reset by every replace.

Written by hand because the layout is the store's own: it is the chat store's seam, not
a general document database (montydb and pymongo stay the API for everything else).
Callers hold the chat store's locks; each backend is also safe on its own across threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


class MessageLog(Protocol):
    """Messages as documents: `_id` (str or ObjectId), `app`, `conversation_id`, `seq`,
    `created_at` (aware datetime) and any other fields. `seq` is unique per conversation."""

    def insert(self, docs: list[dict[str, Any]]) -> None:
        """Store these documents, all or none (SQLite); a duplicate `_id` or place raises."""

    def page(self, conversation_id: str, *, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` documents with seq < `before` (all when None), newest first."""

    def upto(self, conversation_id: str, *, seq: int) -> list[dict[str, Any]]:
        """Every document with seq <= `seq`, oldest first."""

    def get(self, message_id: str) -> dict[str, Any] | None: ...

    def count(self, conversation_id: str) -> int: ...

    def conversation_drop(self, conversation_id: str) -> int:
        """Delete every message of the conversation; how many went."""

    def delete(self, message_ids: list[str]) -> int:
        """Delete these messages; how many went."""

    def terms_pending(self, limit: int, *, conversation_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Up to `limit` messages whose text is not in the search index yet (of these
        conversations only, when given)."""

    def terms_pending_count(self, *, conversation_ids: list[str] | None = None) -> int: ...

    def terms_set(self, indexed: list[tuple[dict[str, Any], list[str]]]) -> int:
        """Index each message (a document from `terms_pending`) under its terms, unless it
        changed since it was read (its `rev` moved on: it stays pending); how many were indexed."""

    def search(self, conversation_ids: list[str], terms: list[str], *, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` indexed messages of these conversations that have every one of
        `terms`, newest first."""

    def replace(self, doc: dict[str, Any], *, rev: int) -> bool:
        """Write `doc` over the stored message with its `_id` if that one's `rev` (0 when it
        has none) is still `rev`; whether it was written. `doc` carries `rev + 1`. One
        document, all or nothing: the compare-and-set that lets edits and swipes from two
        processes never overwrite each other."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# The search index beside the messages. `message_terms` (FTS5) holds a message's terms
# under the rowid of its `message_search` row (an INTEGER PRIMARY KEY, so VACUUM keeps
# it). The triggers drop a message's terms when it is deleted or its document changes,
# and mark it pending again; `terms_set` indexes only a message whose document is the
# one its terms were made from.
_SEARCH_SCHEMA = """
CREATE INDEX IF NOT EXISTS messages_pending ON messages (indexed) WHERE indexed = 0;
CREATE TABLE IF NOT EXISTS message_search (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS message_search_conversation ON message_search (conversation_id);
CREATE VIRTUAL TABLE IF NOT EXISTS message_terms USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0');
CREATE TRIGGER IF NOT EXISTS message_deleted AFTER DELETE ON messages BEGIN
    DELETE FROM message_terms WHERE rowid IN (SELECT num FROM message_search WHERE id = old.id);
    DELETE FROM message_search WHERE id = old.id;
END;
CREATE TRIGGER IF NOT EXISTS message_changed AFTER UPDATE OF doc ON messages BEGIN
    DELETE FROM message_terms WHERE rowid IN (SELECT num FROM message_search WHERE id = old.id);
    DELETE FROM message_search WHERE id = old.id;
    UPDATE messages SET indexed = 0 WHERE id = new.id;
END;
"""


def fts_query(terms: list[str]) -> str:
    """An FTS5 query matching rows that have every term, each as a quoted string (no term
    can be read as an operator)."""
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


class SqliteMessageLog:
    """MessageLog on one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, *, app: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._app = app
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS messages (
                id TEXT PRIMARY KEY,
                app TEXT NOT NULL,
                conversation_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                doc TEXT NOT NULL
            );
            CREATE UNIQUE INDEX IF NOT EXISTS messages_place ON messages (app, conversation_id, seq);
            """
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "indexed" not in columns:  # a log from before search: every message is pending
            self._db.execute("ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0")
        self._db.executescript(_SEARCH_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, docs: list[dict[str, Any]]) -> None:
        rows = [self._row(doc) for doc in docs]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO messages (id, app, conversation_id, seq, created_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def page(self, conversation_id: str, *, before: int | None, limit: int) -> list[dict[str, Any]]:
        bound = before if before is not None else 2**62
        return self._select(
            "WHERE app = ? AND conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (self._app, conversation_id, bound, limit),
        )

    def upto(self, conversation_id: str, *, seq: int) -> list[dict[str, Any]]:
        return self._select(
            "WHERE app = ? AND conversation_id = ? AND seq <= ? ORDER BY seq", (self._app, conversation_id, seq)
        )

    def get(self, message_id: str) -> dict[str, Any] | None:
        found = self._select("WHERE id = ? AND app = ?", (message_id, self._app))
        return found[0] if found else None

    def count(self, conversation_id: str) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT count(*) FROM messages WHERE app = ? AND conversation_id = ?", (self._app, conversation_id)
            ).fetchone()
        return int(n)

    def conversation_drop(self, conversation_id: str) -> int:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM messages WHERE app = ? AND conversation_id = ?", (self._app, conversation_id)
            )
        return int(cursor.rowcount)

    def delete(self, message_ids: list[str]) -> int:
        with self._lock:
            cursor = self._db.executemany(
                "DELETE FROM messages WHERE id = ? AND app = ?", [(i, self._app) for i in message_ids]
            )
        return int(cursor.rowcount)

    def replace(self, doc: dict[str, Any], *, rev: int) -> bool:
        row = self._row(doc)
        with self._lock:
            cursor = self._db.execute(
                "UPDATE messages SET doc = ?, created_at = ? WHERE id = ? AND app = ? "
                "AND coalesce(json_extract(doc, '$.rev'), 0) = ?",
                (row[5], row[4], row[0], self._app, rev),
            )
        return cursor.rowcount == 1

    def terms_pending(self, limit: int, *, conversation_ids: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = self._pending_where(conversation_ids)
        return self._select(f"{where} LIMIT ?", (*params, limit))

    def terms_pending_count(self, *, conversation_ids: list[str] | None = None) -> int:
        where, params = self._pending_where(conversation_ids)
        with self._lock:
            (n,) = self._db.execute(f"SELECT count(*) FROM messages {where}", params).fetchone()  # noqa: S608
        return int(n)

    def _pending_where(self, conversation_ids: list[str] | None) -> tuple[str, tuple[Any, ...]]:
        """The clause (literal text; values as parameters) of pending messages, maybe of some conversations."""
        if conversation_ids is None:
            return "WHERE indexed = 0 AND app = ?", (self._app,)
        scope = "conversation_id IN (SELECT value FROM json_each(?))"
        return f"WHERE indexed = 0 AND app = ? AND {scope}", (self._app, json.dumps(conversation_ids))

    def terms_set(self, indexed: list[tuple[dict[str, Any], list[str]]]) -> int:
        done = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for doc, terms in indexed:
                    claimed = self._db.execute(
                        "UPDATE messages SET indexed = 1 WHERE id = ? AND app = ? AND indexed = 0 "
                        "AND coalesce(json_extract(doc, '$.rev'), 0) = ?",
                        (str(doc["_id"]), self._app, int(doc.get("rev") or 0)),
                    )
                    if claimed.rowcount != 1:
                        continue  # changed (or deleted) since it was read: it stays pending
                    _, _, conversation_id, seq, created_at, _ = self._row(doc)
                    row = self._db.execute(
                        "INSERT INTO message_search (id, conversation_id, created_at, seq) VALUES (?, ?, ?, ?)",
                        (str(doc["_id"]), conversation_id, created_at, seq),
                    )
                    self._db.execute(
                        "INSERT INTO message_terms (rowid, terms) VALUES (?, ?)", (row.lastrowid, " ".join(terms))
                    )
                    done += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return done

    def search(self, conversation_ids: list[str], terms: list[str], *, limit: int) -> list[dict[str, Any]]:
        if not conversation_ids or not terms:
            return []
        # From the terms' matches to the newest `limit` of them, ordered within the search
        # table, and only then to those messages' documents. CROSS JOIN keeps SQLite in that
        # order: left to itself it scans every message of the app and tests each.
        query = (
            "SELECT m.id, m.conversation_id, m.seq, m.created_at, m.doc FROM ("
            "SELECT s.id AS id FROM message_terms CROSS JOIN message_search s ON s.num = message_terms.rowid "
            "WHERE message_terms MATCH ? AND s.conversation_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY s.created_at DESC, s.seq DESC LIMIT ?"
            ") hit CROSS JOIN messages m ON m.id = hit.id WHERE m.app = ? ORDER BY m.created_at DESC, m.seq DESC"
        )
        with self._lock:
            found = self._db.execute(query, (fts_query(terms), json.dumps(conversation_ids), limit, self._app))
            rows = found.fetchall()
        return [self._doc(row) for row in rows]

    def _select(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._lock:
            # `where` is one of this class's literal clauses; values travel as parameters.
            query = f"SELECT id, conversation_id, seq, created_at, doc FROM messages {where}"  # noqa: S608
            rows = self._db.execute(query, params)
            found = rows.fetchall()
        return [self._doc(row) for row in found]

    def _row(self, doc: dict[str, Any]) -> tuple[Any, ...]:
        rest = {k: v for k, v in doc.items() if k not in ("_id", "app", "conversation_id", "seq", "created_at")}
        created = _aware(doc["created_at"]).astimezone(UTC).isoformat(timespec="milliseconds")
        body = json.dumps(rest, ensure_ascii=False, separators=(",", ":"), default=_json_default)
        return (str(doc["_id"]), self._app, doc["conversation_id"], int(doc["seq"]), created, body)

    def _doc(self, row: tuple[Any, ...]) -> dict[str, Any]:
        message_id, conversation_id, seq, created, body = row
        return {
            **json.loads(body),
            "_id": message_id,
            "app": self._app,
            "conversation_id": conversation_id,
            "seq": seq,
            "created_at": datetime.fromisoformat(created),
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    return str(value)  # an ObjectId, say: stored as its text


_SEARCH_FIELDS = ("terms", "indexed")  # the search index's fields on a MongoDB message


def _aware_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the log hands it out: without the search fields, its date aware
    (montydb, and pymongo without tz_aware, hand back naive datetimes that are UTC)."""
    out = {k: v for k, v in doc.items() if k not in _SEARCH_FIELDS}
    created = out.get("created_at")
    if isinstance(created, datetime):
        out["created_at"] = _aware(created)
    return out


class MongoMessageLog:
    """MessageLog on a MongoDB (or montydb) collection shared by the apps, filtered by `app`."""

    def __init__(self, collection: Any, *, app: str, object_id: type) -> None:
        self._messages = collection
        self._app = app
        self._object_id = object_id

    def indexes_ensure(self) -> None:
        self._messages.create_index([("app", 1), ("conversation_id", 1), ("seq", 1)], unique=True)
        self._messages.create_index([("app", 1), ("indexed", 1)])
        self._messages.create_index([("app", 1), ("terms", 1), ("created_at", -1)])

    def insert(self, docs: list[dict[str, Any]]) -> None:
        if docs:
            self._messages.insert_many([self._unindexed({**doc, "_id": self._key(doc["_id"])}) for doc in docs])

    def page(self, conversation_id: str, *, before: int | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"app": self._app, "conversation_id": conversation_id}
        if before is not None:
            query["seq"] = {"$lt": before}
        return [_aware_doc(d) for d in self._messages.find(query).sort("seq", -1).limit(limit)]

    def upto(self, conversation_id: str, *, seq: int) -> list[dict[str, Any]]:
        query = {"app": self._app, "conversation_id": conversation_id, "seq": {"$lte": seq}}
        return [_aware_doc(d) for d in self._messages.find(query).sort("seq", 1)]

    def get(self, message_id: str) -> dict[str, Any] | None:
        try:
            key = self._object_id(message_id)
        except Exception:  # not an ObjectId's text: no message has it
            return None
        doc = self._messages.find_one({"_id": key, "app": self._app})
        return _aware_doc(doc) if doc is not None else None

    def count(self, conversation_id: str) -> int:
        return int(self._messages.count_documents({"app": self._app, "conversation_id": conversation_id}))

    def conversation_drop(self, conversation_id: str) -> int:
        result = self._messages.delete_many({"app": self._app, "conversation_id": conversation_id})
        return int(result.deleted_count)

    def delete(self, message_ids: list[str]) -> int:
        keys = [self._key(i) for i in message_ids]
        return int(self._messages.delete_many({"_id": {"$in": keys}, "app": self._app}).deleted_count)

    def replace(self, doc: dict[str, Any], *, rev: int) -> bool:
        key = self._key(doc["_id"])
        current: dict[str, Any] = {"rev": rev} if rev else {"rev": {"$exists": False}}
        result = self._messages.replace_one(
            {"_id": key, "app": self._app, **current}, self._unindexed({**doc, "_id": key})
        )
        return int(result.modified_count) == 1

    def terms_pending(self, limit: int, *, conversation_ids: list[str] | None = None) -> list[dict[str, Any]]:
        return [_aware_doc(d) for d in self._messages.find(self._pending(conversation_ids)).limit(limit)]

    def terms_pending_count(self, *, conversation_ids: list[str] | None = None) -> int:
        return int(self._messages.count_documents(self._pending(conversation_ids)))

    def _pending(self, conversation_ids: list[str] | None) -> dict[str, Any]:
        query: dict[str, Any] = {"app": self._app, "indexed": {"$ne": True}}
        if conversation_ids is not None:
            query["conversation_id"] = {"$in": conversation_ids}
        return query

    def terms_set(self, indexed: list[tuple[dict[str, Any], list[str]]]) -> int:
        done = 0
        for doc, terms in indexed:
            rev = int(doc.get("rev") or 0)
            current: dict[str, Any] = {"rev": rev} if rev else {"rev": {"$exists": False}}
            result = self._messages.update_one(
                {"_id": self._key(doc["_id"]), "app": self._app, "indexed": {"$ne": True}, **current},
                {"$set": {"terms": sorted(set(terms)), "indexed": True}},
            )
            done += int(result.modified_count)
        return done

    def search(self, conversation_ids: list[str], terms: list[str], *, limit: int) -> list[dict[str, Any]]:
        if not conversation_ids or not terms:
            return []
        query = {"app": self._app, "conversation_id": {"$in": conversation_ids}, "terms": {"$all": terms}}
        found = self._messages.find(query).sort([("created_at", -1), ("seq", -1)]).limit(limit)
        return [_aware_doc(d) for d in found]

    @staticmethod
    def _unindexed(doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` as a message whose text is not indexed yet (a new text has no terms)."""
        return {**{k: v for k, v in doc.items() if k not in _SEARCH_FIELDS}, "indexed": False}

    def _key(self, message_id: Any) -> Any:
        return self._object_id(message_id) if isinstance(message_id, str) else message_id


def messages_copy(docs: Iterable[dict[str, Any]], log: MessageLog, *, batch: int = 1000) -> int:
    """Insert `docs` into `log` in batches, skipping any whose id is there already; how many
    were new. For moving a store's messages from one backend to another: a copy cut short
    is finished by running it again."""
    copied = 0
    pending: list[dict[str, Any]] = []
    for doc in docs:
        if log.get(str(doc["_id"])) is None:
            pending.append({**doc, "_id": str(doc["_id"])})
        if len(pending) >= batch:
            log.insert(pending)
            copied += len(pending)
            pending = []
    if pending:
        log.insert(pending)
        copied += len(pending)
    return copied
