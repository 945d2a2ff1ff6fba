"""Django app config for the chat app: installs the app's wiring (settings.APP_WIRING) once ready."""

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import import_string


class ChatConfig(AppConfig):
    name = "webapp.chat"
    label = "chat"

    def ready(self) -> None:
        # A dotted path, not an import: the chat app must not import the office app.
        import_string(settings.APP_WIRING)()
