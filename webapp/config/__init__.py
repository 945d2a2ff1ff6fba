"""Django project configuration: environment, settings, URLs and the ASGI entry point."""
