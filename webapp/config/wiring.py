"""Which app this process is, and what it wires in: the one place that decides by APP_MODE.

The chat app (webapp.chat) runs turns, conversations and the chat UI for either app; the
office app (webapp.office) builds on it with documents, grounding and tools, and the
character app (webapp.characters) with a character library: cards, lorebooks, macros. Chat never
imports office: `install` hands the office's grounder and tool runner to the chat's
runtime (webapp.chat.runtime.AppWiring), and `app_urlpatterns` and `startup` add the
office's routes and start-up work. Django runs `install` once, from the chat app's
AppConfig.ready (settings.APP_WIRING).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path

from webapp.chat import apis, inputs, purge, runtime


def install() -> None:
    if settings.APP_MODE == "office":
        from webapp.office import runtime as office

        runtime.wiring_install(
            runtime.AppWiring(
                ui="office",
                llama_view=apis.OfficeLlamaApi,
                turn_serializer=inputs.OfficeTurnSerializer,
                regenerate_serializer=inputs.OfficeRegenerateSerializer,
                grounder_get=office.grounder_get,
                tools_get=office.chat_tool_runner_get,
                owner_purge=office.owner_data_purge,
                models_extra=office.models_extra,
            )
        )
    else:
        from webapp.characters import library

        runtime.wiring_install(
            runtime.AppWiring(
                ui="character",
                llama_view=apis.CharacterLlamaApi,
                turn_serializer=inputs.CharacterTurnSerializer,
                regenerate_serializer=inputs.CharacterRegenerateSerializer,
                owner_purge=library.owner_purge,
                persona_get=library.persona_for,
            )
        )


def app_urlpatterns() -> list[Any]:
    """The app's routes under /<app>/: the chat's, its Llama endpoint, and the office's own."""
    from webapp.chat.urls import urlpatterns as chat_urlpatterns

    patterns = [*chat_urlpatterns, path("Llama", runtime.wiring_get().llama_view.as_view(), name="llama")]
    if settings.APP_MODE == "office":
        from webapp.office.urls import urlpatterns as office_urlpatterns

        patterns += office_urlpatterns
    else:
        from webapp.characters.urls import urlpatterns as character_urlpatterns

        patterns += character_urlpatterns
    return patterns


def http_app(django_app: Any) -> Any:
    """The process's ASGI app for HTTP: Django's, and in the office app the MCP endpoint at
    /office/mcp in front of it (an ASGI app of the `mcp` package, not a Django view)."""
    if settings.APP_MODE != "office":
        return django_app
    from webapp.office.mcp_server import mcp_routed

    return mcp_routed(django_app, path="/office/mcp")


def startup() -> None:
    """Work a serving process starts at once (asgi.py): the model, and the office's search models."""
    runtime.engine_start_loading()
    runtime.message_indexer_get().start()  # conversation search: indexes new and changed messages
    purge.purger_start()
    if settings.APP_MODE == "office":
        from webapp.office.runtime import retrieval_start_loading

        retrieval_start_loading()
