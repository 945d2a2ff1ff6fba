"""The character app's own routes, appended to webapp.chat.urls when APP_MODE=character."""

from __future__ import annotations

from django.urls import path

from webapp.characters import apis

urlpatterns = [
    path("characters", apis.CharacterListApi.as_view(), name="characters"),
    path("characters/import", apis.CharacterImportApi.as_view(), name="characters-import"),
    path("characters/<str:character_id>", apis.CharacterDetailApi.as_view(), name="character"),
    path("characters/<str:character_id>/duplicate", apis.CharacterDuplicateApi.as_view(), name="character-duplicate"),
    path("characters/<str:character_id>/export", apis.CharacterExportApi.as_view(), name="character-export"),
    path("characters/<str:character_id>/avatar", apis.CharacterAvatarApi.as_view(), name="character-avatar"),
    path("lorebooks", apis.LorebookListApi.as_view(), name="lorebooks"),
    path("lorebooks/<str:lorebook_id>", apis.LorebookDetailApi.as_view(), name="lorebook"),
    path("lorebooks/<str:lorebook_id>/export", apis.LorebookExportApi.as_view(), name="lorebook-export"),
    path("groups", apis.GroupListApi.as_view(), name="groups"),
    path("groups/<uuid:db_id>", apis.GroupDetailApi.as_view(), name="group"),
    path("groups/<uuid:db_id>/messages", apis.GroupMessageApi.as_view(), name="group-messages"),
    path("groups/<uuid:db_id>/speak", apis.GroupSpeakApi.as_view(), name="group-speak"),
    path("user-persona", apis.UserPersonaApi.as_view(), name="user-persona"),
    path(
        "conversations/<uuid:db_id>/lorebooks", apis.ConversationLorebooksApi.as_view(), name="conversation-lorebooks"
    ),
]
