"""Render the gateway's nginx templates for a local run (docker-compose renders them itself)."""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping
from pathlib import Path

from webapp.config.env import REPO_ROOT

GATEWAY_DIR = REPO_ROOT / "gateway"
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class TemplateVariableError(KeyError):
    pass


def template_render(text: str, values: Mapping[str, str]) -> str:
    """Substitute ${NAME} like the nginx image's envsubst does; a name without a value is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateVariableError(f"no value for template variable {name}")
        return values[name]

    return _VARIABLE.sub(value, text)


# The gateway's outer per-address limits (see the template); the environment may set each.
GATEWAY_LIMITS = {
    "GATEWAY_SIGNIN_RATE": "20r/m",
    "GATEWAY_SIGNIN_BURST": "10",
    "GATEWAY_CHAT_RATE": "120r/m",
    "GATEWAY_CHAT_BURST": "60",
}
_RATE = re.compile(r"[1-9][0-9]{0,6}r/[sm]")
_BURST = re.compile(r"[0-9]{1,7}")


def gateway_limits(env: Mapping[str, str]) -> dict[str, str]:
    """GATEWAY_LIMITS as `env` sets them; a malformed one is a TemplateVariableError naming it."""
    limits = {name: env.get(name) or default for name, default in GATEWAY_LIMITS.items()}
    for name, value in limits.items():
        pattern = _RATE if name.endswith("_RATE") else _BURST
        if not pattern.fullmatch(value):
            accepts = "a rate like 120r/m or 5r/s" if name.endswith("_RATE") else "a whole number"
            raise TemplateVariableError(f"{name} must be {accepts}, got {value!r}")
    return limits


def nginx_config_write(
    *,
    prefix: Path,
    gateway_port: int,
    office: str,
    character: str,
    perf_pages: Path,
    limits: Mapping[str, str] | None = None,
) -> Path:
    """Write nginx.conf and default.conf under `prefix`; return the path of nginx.conf.

    `perf_pages` is the folder of the load-test dashboard, served at /perf/; `limits` the
    gateway's outer limits (gateway_limits; default GATEWAY_LIMITS).
    """
    prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    server = template_render(
        (GATEWAY_DIR / "templates" / "default.conf.template").read_text(),
        {
            "GATEWAY_PORT": str(gateway_port),
            "OFFICE_UPSTREAM": office,
            "CHARACTER_UPSTREAM": character,
            "GATEWAY_PAGES": str(GATEWAY_DIR / "pages"),
            "PERF_PAGES": str(perf_pages),
            **(limits or GATEWAY_LIMITS),
        },
    )
    main = template_render(
        (GATEWAY_DIR / "nginx.conf.template").read_text(),
        {"PREFIX": str(prefix), "MIME_TYPES": "/etc/nginx/mime.types", "WORKER_USER": getpass.getuser()},
    )
    (prefix / "default.conf").write_text(server)
    (prefix / "nginx.conf").write_text(main)
    return prefix / "nginx.conf"
