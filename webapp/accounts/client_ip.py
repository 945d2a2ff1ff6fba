"""The client's IP address as the gateway saw it.

nginx sets X-Real-IP and X-Forwarded-For to the address that connected to it (never
passing on a client's own); daphne's --proxy-headers makes the latter REMOTE_ADDR. X-Real-IP
is believed only when the request reached the app from a loopback or private address:
the apps listen on 127.0.0.1 (make run) or on the compose network, never on a public
address, so such a peer is the gateway; anyone else could write the header themselves.
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest


def _from_gateway(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def client_ip(request: HttpRequest) -> str:
    peer = request.META.get("REMOTE_ADDR") or ""
    forwarded = request.META.get("HTTP_X_REAL_IP", "").strip()
    if forwarded and _from_gateway(peer):
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            return peer
    return peer
