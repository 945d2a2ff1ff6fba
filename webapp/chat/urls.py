"""The chat's routes of one app, mounted under /<APP_MODE>/ with the app's own ones by
webapp.config.wiring.app_urlpatterns (which adds POST Llama, and the office's routes)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.chat import apis, openai_api, views

urlpatterns = [
    path("", views.chat_page, name="chat"),
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
