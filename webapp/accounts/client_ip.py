"""The client's IP address as the gateway saw it: REMOTE_ADDR.

nginx sets X-Forwarded-For to the address that connected to it (never passing on a
client's own), and daphne runs with --proxy-headers (the launcher and the image both),
which makes that REMOTE_ADDR. The apps listen on 127.0.0.1 or the compose network only,
so nothing but the gateway (or a local process) can set the header. Nothing else is read:
a second header (X-Real-IP) believed under conditions was a second way to be wrong.
"""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or ""
