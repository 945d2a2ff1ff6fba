"""The character app's own records in MongoDB (or montydb): characters and user personas.

Documents:
  characters     {_id: character id, app, owner, card: JSON text of {"data": the card's V3
                  `data` object, "extra": its unknown top-level fields}, source ("v1" | "v2" |
                  "v3" | "editor" | "copy"), avatar: the avatar's version (None: no avatar),
                  created_at, updated_at}
                 The card is JSON text, not a subdocument: fields this service does not know
                 must survive a round trip exactly, as the card specs require, and MongoDB
                 would refuse (or we would have to escape) keys such as "$ref" or "a.b" in
                 other tools' extensions. Nothing queries inside a card.
                 `lorebooks`: ids of standalone lorebooks attached to the character.
  lorebooks      {_id: lorebook id, app, owner, name, entries (how many), file: the file's
                  JSON text as it came (V3 lorebook_v3, a character_book, or SillyTavern's
                  world info), created_at}
  user_personas  {_id: "<app>:<owner>", app, owner, name, description, updated_at}
                 who the user is in role-play: fills {{user}} and is placed in the prompt.

Avatars are files beside the store (webapp.characters.avatars), not documents: montydb
decodes a whole collection for every lookup (measured: 0.37 s for one of 100 avatars of
300 KB), and an avatar is read on every page that shows the character.

A character and its user's persona are read on every turn. With the embedded store (one
process, see webapp.store.client.embedded_claim) every character and user persona is read
once, at first use, with one scan, and kept in memory, updated on every write: no scan on
the chat's hot path. With
MongoDB (`shared`), replicas may write, so reads go to the database (a lookup by _id,
which MongoDB indexes).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webapp.store.chat_store import owner_matches
from webapp.store.safe import readable, records_decode, storable

CHARACTER_ID_PREFIX = "c-"
LOREBOOK_ID_PREFIX = "l-"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def character_id_new() -> str:
    """A new character's id: it never collides with a built-in persona's (they have no "c-" ids
    of this length) and matches the persona id pattern the chat accepts."""
    return CHARACTER_ID_PREFIX + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class CharacterRecord:
    id: str
    owner: str
    data: dict[str, Any]
    extra: dict[str, Any]
    source: str
    avatar: str | None
    created_at: datetime
    updated_at: datetime
    lorebooks: tuple[str, ...] = ()

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CharacterRecord:
        card = json.loads(doc["card"])
        return cls(
            id=doc["_id"],
            owner=doc["owner"],
            data=card["data"],
            extra=card.get("extra") or {},
            source=doc.get("source", "editor"),
            avatar=doc.get("avatar"),
            created_at=_utc(doc["created_at"]),
            updated_at=_utc(doc["updated_at"]),
            lorebooks=tuple(doc.get("lorebooks") or ()),
        )


@dataclass(frozen=True)
class LorebookRecord:
    id: str
    owner: str
    name: str
    entries: int
    file: str  # the file's JSON text, as it came
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LorebookRecord:
        return cls(
            id=doc["_id"],
            owner=doc["owner"],
            name=doc.get("name", ""),
            entries=int(doc.get("entries", 0)),
            file=doc["file"],
            created_at=_utc(doc["created_at"]),
        )


@dataclass(frozen=True)
class UserPersona:
    owner: str
    name: str
    description: str


def _user_persona_of(doc: dict[str, Any]) -> UserPersona:
    return UserPersona(owner=doc["owner"], name=doc.get("name", ""), description=doc.get("description", ""))


def _card_text(data: dict[str, Any], extra: dict[str, Any]) -> str:
    # The card check (webapp.characters.cards) refused lone surrogates and NaN: this always encodes.
    return json.dumps({"data": data, "extra": extra}, ensure_ascii=False, allow_nan=False)


class CharacterStore:
    """Repository of one app's characters and user personas. Thread-safe."""

    def __init__(
        self,
        db: Any,
        *,
        app: str,
        shared: bool,
        lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self._db = db
        self._app = app
        self._shared = shared
        self._db_lock: contextlib.AbstractContextManager[Any] = lock or threading.RLock()
        self._cache_lock = threading.RLock()
        self._cache: dict[str, CharacterRecord] | None = None  # embedded only; None until first read
        self._personas: dict[str, UserPersona] | None = None  # the same, for user personas
        self._lorebooks: dict[str, LorebookRecord] | None = None  # and for lorebooks

    def indexes_ensure(self) -> None:
        with self._db_lock:
            self._db.characters.create_index([("app", 1), ("owner", 1)])

    # --- characters ------------------------------------------------------------------------

    def _all(self) -> dict[str, CharacterRecord]:
        """Every character of this app (embedded: the in-memory copy). Call with `_cache_lock`."""
        if self._cache is None:
            with self._db_lock:
                docs = list(self._db.characters.find({"app": self._app}))
            self._cache = {r.id: r for r in records_decode(docs, CharacterRecord.from_doc)}
        return self._cache

    def character_get(self, character_id: str) -> CharacterRecord | None:
        if self._shared:
            with self._db_lock:
                doc = self._db.characters.find_one({"_id": character_id, "app": self._app})
            return CharacterRecord.from_doc(doc) if doc else None
        with self._cache_lock:
            return self._all().get(character_id)

    def characters_for(self, owner: str) -> list[CharacterRecord]:
        """`owner`'s characters (exactly that owner: an account's end users have their own), newest first."""
        if self._shared:
            with self._db_lock:
                docs = list(self._db.characters.find({"app": self._app, "owner": owner}))
            records = records_decode(docs, CharacterRecord.from_doc)
        else:
            with self._cache_lock:
                records = [r for r in self._all().values() if r.owner == owner]
        return sorted(records, key=lambda r: r.updated_at, reverse=True)

    def character_create(
        self,
        *,
        owner: str,
        data: dict[str, Any],
        extra: dict[str, Any],
        source: str,
        avatar: str | None = None,
    ) -> CharacterRecord:
        now = _now()
        doc = {
            "_id": character_id_new(),
            "app": self._app,
            "owner": owner,
            "card": _card_text(data, extra),
            "source": source,
            "avatar": avatar,
            "created_at": now,
            "updated_at": now,
        }
        record = CharacterRecord.from_doc(doc)
        with self._cache_lock:
            with self._db_lock:
                self._db.characters.insert_one(doc)
            if self._cache is not None:
                self._cache[record.id] = record
        return record

    def character_update(
        self,
        record: CharacterRecord,
        *,
        data: dict[str, Any] | None = None,
        avatar: str | None = None,
        lorebooks: tuple[str, ...] | None = None,
    ) -> CharacterRecord:
        """Replace the card data, the avatar version and/or the attached lorebooks of `record`;
        the updated record."""
        changes: dict[str, Any] = {"updated_at": _now()}
        if lorebooks is not None:
            changes["lorebooks"] = list(lorebooks)
        if data is not None:
            changes["card"] = _card_text(data, record.extra)
        if avatar is not None:
            changes["avatar"] = avatar
        with self._cache_lock:
            with self._db_lock:
                self._db.characters.update_one({"_id": record.id, "app": self._app}, {"$set": changes})
            updated = CharacterRecord(
                id=record.id,
                owner=record.owner,
                data=data if data is not None else record.data,
                extra=record.extra,
                source=record.source,
                avatar=changes.get("avatar", record.avatar),
                created_at=record.created_at,
                updated_at=changes["updated_at"],
                lorebooks=lorebooks if lorebooks is not None else record.lorebooks,
            )
            if self._cache is not None:
                self._cache[record.id] = updated
        return updated

    def character_delete(self, character_id: str) -> None:
        with self._cache_lock:
            with self._db_lock:
                self._db.characters.delete_one({"_id": character_id, "app": self._app})
            if self._cache is not None:
                self._cache.pop(character_id, None)

    # --- standalone lorebooks -------------------------------------------------------------

    def _lorebooks_all(self) -> dict[str, LorebookRecord]:
        """Every lorebook of this app (embedded: in memory). Call with `_cache_lock`."""
        if self._lorebooks is None:
            with self._db_lock:
                docs = list(self._db.lorebooks.find({"app": self._app}))
            self._lorebooks = {r.id: r for r in records_decode(docs, LorebookRecord.from_doc)}
        return self._lorebooks

    def lorebook_get(self, lorebook_id: str) -> LorebookRecord | None:
        if self._shared:
            with self._db_lock:
                doc = self._db.lorebooks.find_one({"_id": lorebook_id, "app": self._app})
            return LorebookRecord.from_doc(doc) if doc else None
        with self._cache_lock:
            return self._lorebooks_all().get(lorebook_id)

    def lorebooks_for(self, owner: str) -> list[LorebookRecord]:
        """`owner`'s lorebooks, newest first."""
        if self._shared:
            with self._db_lock:
                docs = list(self._db.lorebooks.find({"app": self._app, "owner": owner}))
            records = records_decode(docs, LorebookRecord.from_doc)
        else:
            with self._cache_lock:
                records = [r for r in self._lorebooks_all().values() if r.owner == owner]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def lorebook_create(self, *, owner: str, name: str, entries: int, file: str) -> LorebookRecord:
        doc = {
            "_id": LOREBOOK_ID_PREFIX + uuid.uuid4().hex[:20],
            "app": self._app,
            "owner": owner,
            "name": storable(name),
            "entries": entries,
            "file": file,
            "created_at": _now(),
        }
        record = LorebookRecord.from_doc(doc)
        with self._cache_lock:
            with self._db_lock:
                self._db.lorebooks.insert_one(doc)
            if self._lorebooks is not None:
                self._lorebooks[record.id] = record
        return record

    def lorebook_delete(self, lorebook_id: str) -> None:
        with self._cache_lock:
            with self._db_lock:
                self._db.lorebooks.delete_one({"_id": lorebook_id, "app": self._app})
            if self._lorebooks is not None:
                self._lorebooks.pop(lorebook_id, None)

    # --- user personas ---------------------------------------------------------------------

    def _personas_all(self) -> dict[str, UserPersona]:
        """Every user persona of this app (embedded: in memory, like the characters). Call
        with `_cache_lock`."""
        if self._personas is None:
            with self._db_lock:
                docs = list(self._db.user_personas.find({"app": self._app}))
            self._personas = {p.owner: p for p in records_decode(docs, _user_persona_of)}
        return self._personas

    def user_persona_get(self, owner: str) -> UserPersona | None:
        """Read at every turn of a character chat: from memory with the embedded store."""
        if self._shared:
            with self._db_lock:
                doc = self._db.user_personas.find_one({"_id": f"{self._app}:{owner}"})
            return _user_persona_of(readable(doc)) if doc else None
        with self._cache_lock:
            return self._personas_all().get(owner)

    def user_persona_set(self, *, owner: str, name: str, description: str) -> UserPersona:
        key = f"{self._app}:{owner}"
        doc = {"app": self._app, "owner": owner, "name": storable(name), "description": storable(description)}
        persona = _user_persona_of(doc)
        with self._cache_lock:
            with self._db_lock:
                self._db.user_personas.update_one({"_id": key}, {"$set": {**doc, "updated_at": _now()}}, upsert=True)
            if self._personas is not None:
                self._personas[owner] = persona
        return persona

    # --- accounts ----------------------------------------------------------------------------

    def owner_purge(self, owner: str) -> tuple[dict[str, int], list[CharacterRecord]]:
        """Delete the characters, lorebooks and user personas of `owner` and its end users. Returns how
        many of each went, and the deleted characters (whose avatar files the caller removes).
        A scan: for deleting an account only."""
        with self._cache_lock:
            with self._db_lock:
                docs = list(self._db.characters.find({"app": self._app}, {"_id": 1, "owner": 1, "avatar": 1}))
            gone = [d for d in docs if owner_matches(str(d.get("owner", "")), owner)]
            records = [self.character_get(d["_id"]) for d in gone]
            with self._db_lock:
                if gone:
                    self._db.characters.delete_many({"_id": {"$in": [d["_id"] for d in gone]}})
                personas = list(self._db.user_personas.find({"app": self._app}, {"_id": 1, "owner": 1}))
                persona_ids = [p["_id"] for p in personas if owner_matches(str(p.get("owner", "")), owner)]
                if persona_ids:
                    self._db.user_personas.delete_many({"_id": {"$in": persona_ids}})
                books = list(self._db.lorebooks.find({"app": self._app}, {"_id": 1, "owner": 1}))
                book_ids = [b["_id"] for b in books if owner_matches(str(b.get("owner", "")), owner)]
                if book_ids:
                    self._db.lorebooks.delete_many({"_id": {"$in": book_ids}})
            if self._cache is not None:
                for d in gone:
                    self._cache.pop(d["_id"], None)
            if self._personas is not None:
                for key in [k for k in self._personas if owner_matches(k, owner)]:
                    del self._personas[key]
            if self._lorebooks is not None:
                for book_id in book_ids:
                    self._lorebooks.pop(book_id, None)
        return (
            {"characters": len(gone), "lorebooks": len(book_ids), "user_personas": len(persona_ids)},
            [r for r in records if r is not None],
        )
