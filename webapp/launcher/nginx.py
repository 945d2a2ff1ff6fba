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


def nginx_config_write(*, prefix: Path, gateway_port: int, office: str, character: str, perf_pages: Path) -> Path:
    """Write nginx.conf and default.conf under `prefix`; return the path of nginx.conf.

    `perf_pages` is the folder of the load-test dashboard, served at /perf/.
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
        },
    )
    main = template_render(
        (GATEWAY_DIR / "nginx.conf.template").read_text(),
        {"PREFIX": str(prefix), "MIME_TYPES": "/etc/nginx/mime.types", "WORKER_USER": getpass.getuser()},
    )
    (prefix / "default.conf").write_text(server)
    (prefix / "nginx.conf").write_text(main)
    return prefix / "nginx.conf"
