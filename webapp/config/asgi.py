"""ASGI entry point that daphne serves, once per app (APP_MODE=office or character).

Builds the Django app first, then starts loading this app's model in the background so
that the port opens at once and /health reports "loading" until the model is ready.
A missing model file stops the process here with a message naming the path.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings")

from django.core.asgi import get_asgi_application

from webapp.config.env import EnvError

try:
    django_asgi_app = get_asgi_application()
except EnvError as exc:
    raise SystemExit(f"error: {exc}") from None

from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings

from webapp.chat import lifecycle
from webapp.chat.routing import BrowserOriginValidator, websocket_urlpatterns
from webapp.config import wiring
from webapp.config.daphne_body import form_parsing_off
from webapp.engine.registry import RegistryError
from webapp.store.client import StoreInUseError

form_parsing_off()

lifecycle.shutdown_hook_install(timeout_s=settings.ENV.drain_s)

try:
    wiring.startup()
except (RegistryError, StoreInUseError) as exc:
    raise SystemExit(f"error: {exc}") from None

application = ProtocolTypeRouter(
    {
        "http": wiring.http_app(django_asgi_app),
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
