"""Free TCP ports for the stacks that tests and benchmarks start, chosen outside the
kernel's ephemeral range.

The usual trick, bind(("127.0.0.1", 0)) and close, returns a port from the ephemeral
range (ip_local_port_range, 32768-60999 on Debian), which the kernel also uses for the
local end of every outgoing connection. An app binds its port only after Django and its
store are up (~3 s here); in between, any connection the test process or nginx opens may
be given that very port, and a keep-alive connection then keeps it for minutes: the app
cannot bind, supervisord restarts it again and again, and the stack reads as "not ready".
Ports below the ephemeral range are never handed to outgoing connections, so a port
chosen there stays free unless something binds it on purpose.

Written here because the rule is the launcher's (it starts what listens on them); the
standard library has no such chooser.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Below the ephemeral range and above the ports services commonly claim.
_LOW = 20000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def ephemeral_low() -> int:
    """The first port the kernel may give an outgoing connection (32768 when unknown)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on now, below the ephemeral range, and not
    handed out before by this process (two stacks of one test run never share one)."""
    high = ephemeral_low()
    if high - _LOW >= 1000:
        for _ in range(200):
            port = random.randrange(_LOW, high)  # noqa: S311 (spreads test runs apart; no secret)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    # A kernel whose ephemeral range starts very low: fall back to the kernel's choice.
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
