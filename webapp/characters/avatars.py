"""Character avatars as files, through Django's storage API.

An avatar is read on every page that shows its character, and montydb would decode a
whole collection to find one (webapp.store.character_store), so avatars are files, as
Django keeps media: `FileSystemStorage` under var/avatars/<app>/ (docker-compose gives it
a volume); a deployment with several hosts can swap in another Django storage backend.

Only images this service re-encoded are written here (webapp.characters.cards.image_reencode),
so what is served is always a clean PNG. A file's name carries a version (a hash of its
bytes): a new avatar is a new file, so caches never serve an old one under a new page.
"""

from __future__ import annotations

import hashlib
import re

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage

_VERSION = re.compile(r"^[0-9a-f]{16}$")


class AvatarStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    @classmethod
    def in_folder(cls, folder: str) -> AvatarStore:
        return cls(FileSystemStorage(location=folder))

    @staticmethod
    def _name(character_id: str, version: str) -> str:
        if not _VERSION.match(version):
            raise ValueError(f"not an avatar version: {version!r}")
        return f"{character_id}-{version}.png"

    def save(self, character_id: str, png: bytes) -> str:
        """Store a re-encoded PNG for `character_id`; its version (what the record keeps)."""
        version = hashlib.sha256(png).hexdigest()[:16]
        name = self._name(character_id, version)
        if not self._storage.exists(name):
            self._storage.save(name, ContentFile(png))
        return version

    def read(self, character_id: str, version: str) -> bytes | None:
        name = self._name(character_id, version)
        try:
            with self._storage.open(name, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def delete(self, character_id: str, version: str | None) -> None:
        if version:
            self._storage.delete(self._name(character_id, version))
