"""Routes of one app, mounted under /<APP_MODE>/ by webapp.config.urls."""

from __future__ import annotations

from django.conf import settings
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.chat import apis, openai_api, views

LLAMA_API = {"office": apis.OfficeLlamaApi, "character": apis.CharacterLlamaApi}[settings.APP_MODE]

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("Llama", LLAMA_API.as_view(), name="llama"),
    path("performance", apis.PerformanceApi.as_view(), name="performance"),
    path("metrics", apis.MetricsApi.as_view(), name="metrics"),
    path("health", apis.HealthApi.as_view(), name="health"),
    path("personas", apis.PersonaListApi.as_view(), name="personas"),
    path("conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path("conversations/<uuid:db_id>", apis.ConversationDetailApi.as_view(), name="conversation"),
    path("conversations/<uuid:db_id>/messages", apis.MessageListApi.as_view(), name="messages"),
    path("v1/models", openai_api.models_list, name="openai-models"),
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

if settings.APP_MODE == "office":
    from webapp.office.urls import urlpatterns as office_urlpatterns

    urlpatterns += office_urlpatterns


def endpoint_list() -> list[str]:
    """The real endpoints of this app, for 404 bodies."""
    methods = {
        "llama": "POST",
        "conversation": "DELETE",
        "openai-chat": "POST",
        "documents": "GET|POST",
        "documents-search": "POST",
        "document": "GET|DELETE",
        "tool-call": "POST",
        "approval": "POST",
    }
    placeholders = {
        "<uuid:db_id>": "{db_id}",
        "<str:document_id>": "{id}",
        "<str:name>": "{name}",
        "<str:approval_id>": "{id}",
    }

    def shown(pattern: str) -> str:
        for raw, nice in placeholders.items():
            pattern = pattern.replace(raw, nice)
        return pattern

    routes = [f"{methods.get(p.name, 'GET')} /{settings.APP_MODE}/{shown(str(p.pattern))}" for p in urlpatterns]
    return [*routes, f"WebSocket /{settings.APP_MODE}/ws/chat/"]
