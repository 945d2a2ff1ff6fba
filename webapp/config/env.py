"""Every environment variable the service reads, in one place, typed and validated.

Production differs from development only by these variables. A bad value stops start-up
with an `EnvError` that names the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_MODES = ("office", "character")
_DEV_SECRET = "dev-only-insecure-secret-key"  # noqa: S105 - rejected when DJANGO_DEBUG is off


class EnvError(Exception):
    """An environment variable is missing or malformed."""


@dataclass(frozen=True)
class Env:
    app_mode: str
    debug: bool
    secret_key: str
    allowed_hosts: tuple[str, ...]
    mongo_url: str | None
    var_dir: Path
    model_registry: Path
    personas_dir: Path
    log_level: str
    qdrant_url: str | None = None
    searxng_url: str | None = None
    security_mode: str = "development"
    admin_users: tuple[str, ...] = ()
    drain_s: float = 20.0


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise EnvError(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def _path(environ: Mapping[str, str], name: str, default: Path) -> Path:
    raw = environ.get(name)
    return Path(raw).resolve() if raw else default


def env_load(environ: Mapping[str, str] = os.environ) -> Env:
    app_mode = environ.get("APP_MODE", "office")
    if app_mode not in APP_MODES:
        raise EnvError(f"APP_MODE must be one of {', '.join(APP_MODES)}, got {app_mode!r}")

    mongo_url = environ.get("MONGO_URL") or None
    if mongo_url and not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise EnvError(f"MONGO_URL must start with mongodb:// or mongodb+srv://, got {mongo_url!r}")

    debug = _bool(environ, "DJANGO_DEBUG", False)
    secret_key = environ.get("DJANGO_SECRET_KEY") or _DEV_SECRET
    if secret_key == _DEV_SECRET and _bool(environ, "PRODUCTION", False):
        raise EnvError("DJANGO_SECRET_KEY must be set when PRODUCTION is true")

    log_level = environ.get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise EnvError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    qdrant_url = environ.get("QDRANT_URL") or None
    if qdrant_url and not qdrant_url.startswith(("http://", "https://")):
        raise EnvError(f"QDRANT_URL must start with http:// or https://, got {qdrant_url!r}")
    searxng_url = environ.get("SEARXNG_URL") or None
    if searxng_url and not searxng_url.startswith(("http://", "https://")):
        raise EnvError(f"SEARXNG_URL must start with http:// or https://, got {searxng_url!r}")
    security_mode = environ.get("SECURITY_MODE", "development")
    if security_mode not in ("development", "production"):
        raise EnvError(f"SECURITY_MODE must be development or production, got {security_mode!r}")
    admins = tuple(u.strip() for u in environ.get("OFFICE_ADMINS", "").split(",") if u.strip())

    raw_drain = environ.get("SHUTDOWN_DRAIN_S") or "20"
    try:
        drain_s = float(raw_drain)
    except ValueError:
        drain_s = -1.0
    if not 0 <= drain_s <= 300:
        raise EnvError(f"SHUTDOWN_DRAIN_S must be seconds between 0 and 300, got {raw_drain!r}")

    hosts = tuple(h.strip() for h in environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip())
    var_dir = _path(environ, "VAR_DIR", REPO_ROOT / "var")
    return Env(
        app_mode=app_mode,
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=hosts,
        mongo_url=mongo_url,
        var_dir=var_dir,
        model_registry=_path(environ, "MODEL_REGISTRY", REPO_ROOT / "models" / "registry.toml"),
        personas_dir=_path(environ, "PERSONAS_DIR", REPO_ROOT / "personas"),
        log_level=log_level,
        qdrant_url=qdrant_url.rstrip("/") if qdrant_url else None,
        searxng_url=searxng_url.rstrip("/") if searxng_url else None,
        security_mode=security_mode,
        admin_users=admins,
        drain_s=drain_s,
    )
