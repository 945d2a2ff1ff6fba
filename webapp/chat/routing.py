"""WebSocket routes of one app, under /<APP_MODE>/ like its HTTP routes."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.generic.websocket import WebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path, re_path

from webapp.chat.consumers import ChatConsumer


class NoSocketHere(WebsocketConsumer):
    """A WebSocket handshake on any other path (a REST path, a typo) is refused (403), not a 500."""

    def connect(self) -> None:
        self.close()


websocket_urlpatterns = [
    path(f"{settings.APP_MODE}/ws/chat/", ChatConsumer.as_asgi(), name="ws-chat"),
    re_path(r"", NoSocketHere.as_asgi()),
]


class BrowserOriginValidator(OriginValidator):
    """Refuse cross-site browser pages; let non-browser clients (no Origin header) in.

    Browsers always send Origin on a WebSocket handshake, so the check stops another
    site's page from using a visitor's browser. Scripts and load tests send none and
    gain nothing by forging one, so requiring it would only break them.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, list(settings.ALLOWED_HOSTS))

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)
