"""The character app's long-lived collaborators, each built once: its store and its avatar files.

Built in one place like `webapp.chat.runtime`; tests clear the caches to rebuild them.
"""

from __future__ import annotations

from django.conf import settings

from webapp.characters.avatars import AvatarStore
from webapp.chat.runtime import _built_once, store_config
from webapp.store.character_store import CharacterStore
from webapp.store.client import database_get, database_lock


@_built_once
def character_store_get() -> CharacterStore:
    config = store_config()
    store = CharacterStore(
        database_get(config), app=settings.APP_MODE, shared=not config.embedded, lock=database_lock(config)
    )
    store.indexes_ensure()
    return store


@_built_once
def avatars_get() -> AvatarStore:
    return AvatarStore.in_folder(str(settings.ENV.var_dir / "avatars" / settings.APP_MODE))
