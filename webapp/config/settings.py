"""Django settings for both apps. Everything that varies comes from `webapp.config.env`."""

from __future__ import annotations

import dj_database_url

from webapp.config.env import REPO_ROOT, env_load

ENV = env_load()

APP_MODE = ENV.app_mode
DEBUG = ENV.debug
SECRET_KEY = ENV.secret_key
ALLOWED_HOSTS = list(ENV.allowed_hosts)
BASE_DIR = REPO_ROOT

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_ratelimit",
    "webapp.accounts",
    "webapp.chat",
]

MIDDLEWARE = [
    "webapp.chat.middleware.RequestIdMiddleware",
    "webapp.chat.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Outside the session and CSRF middlewares: it sees the cookies they set.
    "webapp.chat.middleware.SecureCookiesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "webapp.config.urls"
# What this app adds to the chat (office: documents, grounding, tools): see webapp.config.wiring.
APP_WIRING = "webapp.config.wiring.install"
ASGI_APPLICATION = "webapp.config.asgi.application"
APPEND_SLASH = False

# Accounts and sessions live in Django's ORM database, shared by both apps: a SQLite file
# under VAR_DIR by default (WAL, so the two processes read while one writes), PostgreSQL
# via DATABASE_URL. Chat history lives in MongoDB (webapp.store).
if ENV.database_url:
    DATABASES = {"default": dj_database_url.parse(ENV.database_url, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ENV.var_dir / "accounts" / "accounts.sqlite3",
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.Account"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
LOGIN_URL = "/accounts/signin"
LOGIN_REDIRECT_URL = "/"

# One session for both apps and the landing page: the cookie's path is "/", and both apps
# read the same session table with the same secret key. 8 hours from sign-in; HttpOnly;
# SameSite=Lax; Secure whenever the request came over TLS (webapp.accounts.middleware).
SESSION_ENGINE = "webapp.accounts.sessions"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "webapp.chat.errors.csrf_failure"
# nginx sets X-Forwarded-Proto; the apps listen on loopback (or the compose network) only.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Each app serves its own static files under its own prefix, so nginx needs no extra route.
STATIC_URL = f"/{APP_MODE}/static/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Sign-in limits (django-ratelimit) count in a cache that every process shares: Redis, which
# make run starts for the stack (a unix socket) and docker-compose runs. Django's own
# RedisCache increments atomically; django-ratelimit only lists django-redis's as
# "officially supported" (W001). Without REDIS_URL (a bare manage.py), counts stay in the
# process: fine for one-off commands, which is the only place that happens.
if ENV.redis_url:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": ENV.redis_url,
            "KEY_PREFIX": "personachat",
        }
    }
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

REST_FRAMEWORK = {
    # Every view needs a signed-in account (session or API key) unless it says it is public
    # (webapp.chat.apis.PublicApi: health, performance, metrics, personas, tool specs).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.accounts.identity.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["webapp.accounts.identity.CanChat"],
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
    "PREPROCESSING_HOOKS": [
        "webapp.chat.openai_api.schema_endpoints",
        "webapp.office.openai_embeddings.schema_endpoints",
    ],
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
