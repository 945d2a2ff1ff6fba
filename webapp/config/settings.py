"""Django settings for both apps. Everything that varies comes from `webapp.config.env`."""

from __future__ import annotations

from webapp.config.env import REPO_ROOT, env_load

ENV = env_load()

APP_MODE = ENV.app_mode
DEBUG = ENV.debug
SECRET_KEY = ENV.secret_key
ALLOWED_HOSTS = list(ENV.allowed_hosts)
BASE_DIR = REPO_ROOT

INSTALLED_APPS = [
    "daphne",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "webapp.chat",
]

MIDDLEWARE = [
    "webapp.chat.middleware.RequestIdMiddleware",
    "webapp.chat.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "webapp.config.urls"
# What this app adds to the chat (office: documents, grounding, tools): see webapp.config.wiring.
APP_WIRING = "webapp.config.wiring.install"
ASGI_APPLICATION = "webapp.config.asgi.application"
APPEND_SLASH = False

# Chat history lives in MongoDB (webapp.store); Django's ORM is not used.
DATABASES: dict[str, dict[str, str]] = {}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# Each app serves its own static files under its own prefix, so nginx needs no extra route.
STATIC_URL = f"/{APP_MODE}/static/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["webapp.chat.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "webapp.chat.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": f"Persona chat — {APP_MODE}",
    "DESCRIPTION": (
        'REST API of the persona chat service. Errors always have the shape {"error": {"code", "message", "field"}} '
        "(validation errors add `details`; a body field this schema does not list is a 400 `unknown_field`). "
        "A method a path does not list is answered 405 in that shape, with an `Allow` header (TRACE excepted: "
        "the gateway refuses it itself). Behind the gateway every operation can also answer 503 `app_unavailable` "
        "(with Retry-After) while the app restarts, and 413 for a body over the gateway's limit. "
        "The OpenAI-compatible `POST v1/chat/completions` follows OpenAI's API reference and is not described "
        "here (see webapp/chat/openai_api.py for why); `GET v1/models` is."
        "\n\n" + (REPO_ROOT / "webapp" / "chat" / "websocket_protocol.md").read_text()
    ),
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own: they say what DRF refuses (blank strings,
    # files as binary), which the responses' components must not.
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["webapp.chat.openai_api.schema_endpoints"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        *(["webapp.office.apis.tool_call_operations"] if APP_MODE == "office" else []),
        "webapp.chat.schema.request_bodies_closed",
        "webapp.chat.schema.gateway_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": ENV.log_level},
}
