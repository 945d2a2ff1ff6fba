"""The chat's routes of one app, mounted under /<APP_MODE>/ with the app's own ones by
webapp.config.wiring.app_urlpatterns (which adds POST Llama, and the office's routes)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse
from django.urls import path, register_converter
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.chat import anthropic_api, apis, openai_api, openai_responses, views
from webapp.chat.errors import openai_error
from webapp.core.errors import ApplicationError

AsyncView = Callable[..., Awaitable[HttpResponse]]


class MessageIdConverter:
    """A message id in a path: an ObjectId's 24 lowercase hex digits (anything else is a 404)."""

    regex = "[0-9a-f]{24}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MessageIdConverter, "message_id")


def methods_only(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """405 with `Allow` (RFC 9110) for any other method, in OpenAI's error envelope: the
    OpenAI views are plain Django views, which DRF's method dispatch does not cover.

    The guarded view is exempt from Django's CSRF middleware, which would otherwise answer
    an unknown method with 403 before this 405: these are API views for clients with keys,
    like DRF's (which are exempt too)."""
    allow = ", ".join(methods)

    def wrap(view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                error = ApplicationError(
                    f"method {request.method} is not allowed here; use {allow}", code="method_not_allowed", status=405
                )
                response = openai_error(error)
                response["Allow"] = allow
                return response
            return await view(request, *args, **kwargs)

        return csrf_exempt(guarded)

    return wrap


urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("performance", apis.PerformanceApi.as_view(), name="performance"),
    path("metrics", apis.MetricsApi.as_view(), name="metrics"),
    path("health", apis.HealthApi.as_view(), name="health"),
    path("me", apis.MeApi.as_view(), name="me"),
    path("personas", apis.PersonaListApi.as_view(), name="personas"),
    path("conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path("conversations/import", apis.ConversationImportApi.as_view(), name="conversations-import"),
    path("conversations/<uuid:db_id>", apis.ConversationDetailApi.as_view(), name="conversation"),
    path("conversations/<uuid:db_id>/messages", apis.MessageListApi.as_view(), name="messages"),
    path(
        "conversations/<uuid:db_id>/messages/<message_id:message_id>", apis.MessageDetailApi.as_view(), name="message"
    ),
    path(
        "conversations/<uuid:db_id>/messages/<message_id:message_id>/swipes",
        apis.MessageSwipeApi.as_view(),
        name="message-swipes",
    ),
    path(
        "conversations/<uuid:db_id>/messages/<message_id:message_id>/continue",
        apis.MessageContinueApi.as_view(),
        name="message-continue",
    ),
    path("conversations/<uuid:db_id>/branches", apis.ConversationBranchApi.as_view(), name="conversation-branches"),
    path("conversations/<uuid:db_id>/export", apis.ConversationExportApi.as_view(), name="conversation-export"),
    path("search", apis.SearchApi.as_view(), name="search"),
    path("v1/models", methods_only("GET")(openai_api.models_list), name="openai-models"),
    path("v1/chat/completions", methods_only("POST")(openai_api.chat_completions), name="openai-chat"),
    path("v1/messages", methods_only("POST")(anthropic_api.messages), name="anthropic-messages"),
    path("v1/responses", methods_only("POST")(openai_responses.responses), name="openai-responses"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]
