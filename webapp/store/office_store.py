"""The office app's own records in MongoDB (or montydb): documents, chunks, notes, approvals, audit.

Documents:
  documents  {_id: document_id, app, user_id, title, filename, kind, size, status
              ("indexing" | "ready" | "failed"), error, chunks, created_at, updated_at}
  chunks     {_id: chunk_id, app, user_id, document_id, position, heading, text}
             The canonical copy of each chunk; the search index (webapp.retrieval.index)
             holds the vectors and a copy of the text so that searches never read here.
  notes      {_id, app, user_id, title, text, created_at}
  approvals  {_id: approval_id, app, user_id, tool, arguments, status ("pending" |
              "approved" | "denied" | "expired"), reason, result, created_at, decided_at}
  audit      {_id, app, user_id, tool, arguments, outcome, status, approval_id,
              duration_ms, error, source ("api" | "chat" | "slash" | "mcp"), created_at}
  mcp_servers {_id: name, app, url, token, sensitivity, needs_approval, tools: [{name,
              remote, description, parameters_json}], created_by, created_at}
             External MCP servers an admin registered (webapp.office.mcp_servers); not
             per user. A schema is kept as JSON text: MongoDB refuses keys like "$ref".

Every read filters on user_id (and app): a record of another user reads as missing.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from webapp.store.chat_store import owner_matches
from webapp.store.safe import records_decode, storable


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    user_id: str
    title: str
    filename: str
    kind: str
    size: int
    status: str
    chunks: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    error_code: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DocumentRecord:
        return cls(
            id=doc["_id"],
            user_id=doc["user_id"],
            title=doc["title"],
            filename=doc["filename"],
            kind=doc["kind"],
            size=int(doc["size"]),
            status=doc["status"],
            chunks=int(doc.get("chunks", 0)),
            created_at=_utc(doc["created_at"]),
            updated_at=_utc(doc["updated_at"]),
            error=doc.get("error"),
            error_code=doc.get("error_code"),
        )


@dataclass(frozen=True)
class ChunkDoc:
    id: str
    document_id: str
    position: int
    heading: str
    text: str


@dataclass(frozen=True)
class Approval:
    id: str
    user_id: str
    tool: str
    arguments: dict[str, Any]
    status: str
    created_at: datetime
    source: str = "api"
    decided_at: datetime | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Approval:
        return cls(
            id=doc["_id"],
            user_id=doc["user_id"],
            tool=doc["tool"],
            arguments=doc.get("arguments", {}),
            status=doc["status"],
            created_at=_utc(doc["created_at"]),
            source=doc.get("source", "api"),
            decided_at=_utc(doc["decided_at"]) if doc.get("decided_at") else None,
            result=doc.get("result"),
            reason=doc.get("reason"),
        )


@dataclass(frozen=True)
class AuditEntry:
    id: str
    user_id: str
    tool: str
    arguments: dict[str, Any]
    outcome: str  # "ok" | "error" | "denied" | "approval_requested" | "rate_limited" | ...
    duration_ms: float
    created_at: datetime
    source: str
    approval_id: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AuditEntry:
        return cls(
            id=doc["_id"],
            user_id=doc["user_id"],
            tool=doc["tool"],
            arguments=doc.get("arguments", {}),
            outcome=doc["outcome"],
            duration_ms=float(doc.get("duration_ms", 0.0)),
            created_at=_utc(doc["created_at"]),
            source=doc.get("source", "api"),
            approval_id=doc.get("approval_id"),
            error=doc.get("error"),
        )


class OfficeStore:
    """Repository for the office app's documents, chunks, notes, approvals and audit log."""

    def __init__(self, db: Any, *, app: str, lock: contextlib.AbstractContextManager[Any]) -> None:
        self._db = db
        self._app = app
        self._lock = lock

    def indexes_ensure(self) -> None:
        with self._lock:
            self._db["documents"].create_index([("app", 1), ("user_id", 1), ("created_at", -1)])
            self._db["chunks"].create_index([("app", 1), ("document_id", 1), ("position", 1)])
            self._db["notes"].create_index([("app", 1), ("user_id", 1), ("created_at", -1)])
            self._db["audit"].create_index([("app", 1), ("user_id", 1), ("created_at", -1)])

    # --- documents --------------------------------------------------------------------

    def document_create(
        self, *, document_id: str, user_id: str, title: str, filename: str, kind: str, size: int, status: str
    ) -> DocumentRecord:
        now = _now()
        doc = {
            "_id": document_id,
            "app": self._app,
            "user_id": user_id,
            "title": title,
            "filename": filename,
            "kind": kind,
            "size": size,
            "status": status,
            "chunks": 0,
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            self._db["documents"].insert_one(doc)
        return DocumentRecord.from_doc(doc)

    def document_update(self, document_id: str, **fields: Any) -> None:
        with self._lock:
            self._db["documents"].update_one(
                {"_id": document_id, "app": self._app}, {"$set": {**fields, "updated_at": _now()}}
            )

    def document_get(self, *, user_id: str, document_id: str) -> DocumentRecord | None:
        with self._lock:
            doc = self._db["documents"].find_one({"_id": document_id, "app": self._app, "user_id": user_id})
        return DocumentRecord.from_doc(doc) if doc else None

    def documents_for_user(self, user_id: str, *, limit: int = 500) -> list[DocumentRecord]:
        with self._lock:
            docs = list(
                self._db["documents"].find({"app": self._app, "user_id": user_id}).sort("created_at", -1).limit(limit)
            )
        return records_decode(docs, DocumentRecord.from_doc)

    def document_delete(self, *, user_id: str, document_id: str) -> None:
        """Delete the document and its chunks (the caller removes its vectors first)."""
        with self._lock:
            self._db["chunks"].delete_many({"app": self._app, "document_id": document_id, "user_id": user_id})
            self._db["documents"].delete_one({"_id": document_id, "app": self._app, "user_id": user_id})

    def chunks_insert(self, *, user_id: str, document_id: str, chunks: list[ChunkDoc]) -> None:
        if not chunks:
            return
        docs = [
            {
                "_id": c.id,
                "app": self._app,
                "user_id": user_id,
                "document_id": document_id,
                "position": c.position,
                "heading": c.heading,
                "text": c.text,
            }
            for c in chunks
        ]
        with self._lock:
            self._db["chunks"].insert_many(docs)

    def documents_indexing(self) -> list[DocumentRecord]:
        """Documents of every user still marked "indexing" (at start-up: interrupted ones)."""
        with self._lock:
            docs = list(self._db["documents"].find({"app": self._app, "status": "indexing"}))
        return records_decode(docs, DocumentRecord.from_doc)

    def chunks_delete(self, *, user_id: str, document_id: str) -> None:
        with self._lock:
            self._db["chunks"].delete_many({"app": self._app, "document_id": document_id, "user_id": user_id})

    def chunks_for_document(self, *, user_id: str, document_id: str) -> list[ChunkDoc]:
        with self._lock:
            docs = list(
                self._db["chunks"]
                .find({"app": self._app, "document_id": document_id, "user_id": user_id})
                .sort("position", 1)
            )
        return [ChunkDoc(d["_id"], d["document_id"], int(d["position"]), d["heading"], d["text"]) for d in docs]

    # --- notes ------------------------------------------------------------------------

    def note_create(self, *, user_id: str, title: str, text: str) -> dict[str, Any]:
        doc = {"_id": new_id(), "app": self._app, "user_id": user_id, "title": storable(title), "text": storable(text)}
        doc["created_at"] = _now()
        with self._lock:
            self._db["notes"].insert_one(doc)
        return _note_public(doc)

    def notes_for_user(self, user_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            docs = list(
                self._db["notes"].find({"app": self._app, "user_id": user_id}).sort("created_at", -1).limit(limit)
            )
        return records_decode(docs, _note_public)

    # --- approvals --------------------------------------------------------------------

    def approval_create(self, *, user_id: str, tool: str, arguments: dict[str, Any], source: str) -> Approval:
        doc = {
            "_id": new_id(),
            "app": self._app,
            "user_id": user_id,
            "tool": tool,
            "arguments": storable(arguments),
            "status": "pending",
            "source": source,
            "created_at": _now(),
        }
        with self._lock:
            self._db["approvals"].insert_one(doc)
        return Approval.from_doc(doc)

    def approval_get(self, *, user_id: str, approval_id: str) -> Approval | None:
        with self._lock:
            doc = self._db["approvals"].find_one({"_id": approval_id, "app": self._app, "user_id": user_id})
        return Approval.from_doc(doc) if doc else None

    def approval_decide(
        self, approval_id: str, *, status: str, result: dict[str, Any] | None, reason: str | None
    ) -> bool:
        """Move a pending approval to `status`; False when it was no longer pending (decided twice)."""
        with self._lock:
            outcome = self._db["approvals"].update_one(
                {"_id": approval_id, "app": self._app, "status": "pending"},
                {"$set": {"status": status, "result": storable(result), "reason": reason, "decided_at": _now()}},
            )
        return outcome.modified_count == 1

    # --- audit ------------------------------------------------------------------------

    def audit_append(
        self,
        *,
        user_id: str,
        tool: str,
        arguments: dict[str, Any],
        outcome: str,
        duration_ms: float,
        source: str,
        approval_id: str | None = None,
        error: str | None = None,
    ) -> AuditEntry:
        doc = {
            "_id": new_id(),
            "app": self._app,
            "user_id": user_id,
            "tool": tool,
            "arguments": storable(arguments),
            "outcome": outcome,
            "duration_ms": round(duration_ms, 2),
            "source": source,
            "approval_id": approval_id,
            "error": storable(error),
            "created_at": _now(),
        }
        with self._lock:
            self._db["audit"].insert_one(doc)
        return AuditEntry.from_doc(doc)

    # --- external MCP servers (admin registrations, shared by every user) ------------

    def mcp_server_create(self, record: dict[str, Any]) -> bool:
        """Store a registration named record["name"]; False if that name is taken."""
        doc = {**record, "_id": record["name"], "app": self._app, "created_at": _now()}
        doc.pop("name")
        with self._lock:
            if self._db["mcp_servers"].find_one({"_id": doc["_id"], "app": self._app}) is not None:
                return False
            self._db["mcp_servers"].insert_one(doc)
        return True

    def mcp_servers(self) -> list[dict[str, Any]]:
        """Every registration, by name (a handful: read at start-up and by the admin API)."""
        with self._lock:
            docs = list(self._db["mcp_servers"].find({"app": self._app}))
        return sorted(
            ({**{k: v for k, v in d.items() if k != "_id"}, "name": d["_id"]} for d in docs), key=lambda d: d["name"]
        )

    def mcp_server_delete(self, name: str) -> bool:
        with self._lock:
            return bool(self._db["mcp_servers"].delete_one({"_id": name, "app": self._app}).deleted_count)

    def owner_purge(self, owner: str) -> dict[str, int]:
        """Delete the notes, approvals and tool audit of `owner` and its end users (documents
        go with their index entries: webapp.office.documents.documents_purge). A scan: for
        deleting an account only."""
        removed = {}
        for collection in ("notes", "approvals", "audit"):
            with self._lock:
                docs = list(self._db[collection].find({"app": self._app}, {"_id": 1, "user_id": 1}))
                ids = [d["_id"] for d in docs if owner_matches(str(d.get("user_id", "")), owner)]
                if ids:
                    self._db[collection].delete_many({"_id": {"$in": ids}})
            removed[collection] = len(ids)
        return removed

    def owner_rename(self, *, old: str, new: str) -> dict[str, int]:
        """Move the documents, passages, notes, approvals and tool audit stored under user_id
        `old` to `new` (adopting a pre-account label's data); how many of each moved."""
        moved = {}
        for collection in ("documents", "chunks", "notes", "approvals", "audit"):
            with self._lock:
                result = self._db[collection].update_many(
                    {"app": self._app, "user_id": old}, {"$set": {"user_id": new}}
                )
            moved[collection] = int(result.modified_count)
        return moved

    def labels_prefix(self, prefix: str) -> dict[str, int]:
        """Put `prefix` in front of every user_id that lacks it, in every collection (see
        ChatStore.labels_prefix); how many changed in each."""
        changed = {}
        for collection in ("documents", "chunks", "notes", "approvals", "audit"):
            with self._lock:
                docs = list(self._db[collection].find({"app": self._app}, {"_id": 1, "user_id": 1}))
                n = 0
                for doc in docs:
                    label = str(doc.get("user_id", ""))
                    if not label.startswith(prefix):
                        self._db[collection].update_one({"_id": doc["_id"]}, {"$set": {"user_id": prefix + label}})
                        n += 1
            changed[collection] = n
        return changed

    def document_owners(self, owner: str) -> list[tuple[str, str]]:
        """(user_id, document_id) of every document of `owner` and its end users."""
        with self._lock:
            docs = list(self._db["documents"].find({"app": self._app}, {"_id": 1, "user_id": 1}))
        return [(str(d["user_id"]), str(d["_id"])) for d in docs if owner_matches(str(d.get("user_id", "")), owner)]

    def audit_for_user(self, user_id: str, *, limit: int = 100) -> list[AuditEntry]:
        with self._lock:
            docs = list(
                self._db["audit"].find({"app": self._app, "user_id": user_id}).sort("created_at", -1).limit(limit)
            )
        return records_decode(docs, AuditEntry.from_doc)


def _note_public(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "title": doc["title"],
        "text": doc["text"],
        "created_at": _utc(doc["created_at"]).isoformat(),
    }
