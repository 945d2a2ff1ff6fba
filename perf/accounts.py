"""Benchmark: what knowing who is asking costs a request. Through nginx, on the stack as
`make run` serves it (its own, on free ports, with the benchmark's per-address limits):

- a public endpoint (`GET /office/health`: no authentication) as the peer;
- the same cheap work behind an API key, and behind a session cookie (`GET /office/me`);
- a data endpoint behind a key (`GET /office/conversations`: the key, the limits of nothing,
  a store read);
- the per-turn admission (`TurnLimits.admit` + `release`: the account row, two
  django-ratelimit counters, the running count and the token count in Redis), timed in a
  process beside the stack on its database and Redis.

Requests alternate between the rows so that machine noise hits them alike; the table's
last column is each row's p50 over the public peer's. Prints the table and writes it to
var/perf/accounts.md.

    .venv/bin/python -m perf.accounts [--requests 300] [--admissions 500]
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import tempfile
from pathlib import Path

import requests

from perf import table_publish
from perf.latency import _percentile, _timed
from webapp.config.env import REPO_ROOT
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, LOAD_ACCOUNT_LIMITS, Stack, StackConfig, registry_derive

ADMISSION_SNIPPET = """
import time
from webapp.accounts.identity import principal_of
from webapp.accounts.models import Account
from webapp.accounts.usage import TurnLimits
account = Account.objects.get(username={username!r})
principal = principal_of(account, None)
samples = []
for _ in range({n}):
    started = time.perf_counter()
    gate = TurnLimits(principal, "127.0.0.1")
    gate.admit()
    gate.release(100)
    samples.append((time.perf_counter() - started) * 1000)
print(*samples)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="requests per row")
    parser.add_argument("--admissions", type=int, default=500, help="admit + release rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        registry = registry_derive(REPO_ROOT / "models" / "registry.toml", Path(tmp) / "registry.toml", max_tokens=16)
        config = StackConfig(
            gateway_port=free_port(),
            office_port=free_port(),
            character_port=free_port(),
            var_dir=Path(tmp) / "var",
            registry=registry,
            extra_env=BENCH_ENV,
        )
        stack = Stack(config)
        stack.start()
        try:
            rows = _measure(stack, args.requests, args.admissions)
        finally:
            stack.stop()
    peer = statistics.median(rows[0][1])
    admission = rows.pop()
    lines = [
        f"{args.requests} requests per row through nginx, alternating; {args.admissions} admissions",
        "",
        "| what | n | p50 ms | p95 ms | p50 / public peer |",
        "|---|---|---|---|---|",
    ]
    for name, values in rows:
        lines.append(
            f"| {name} | {len(values)} | {statistics.median(values):.2f} | {_percentile(values, 0.95):.2f} | "
            f"{statistics.median(values) / peer:.2f} |"
        )
    name, values = admission
    lines.append(
        f"| {name} | {len(values)} | {statistics.median(values):.2f} | {_percentile(values, 0.95):.2f} | "
        "(in-process, not over HTTP) |"
    )
    table = "\n".join(lines)
    table_publish("accounts", table)


def _signed_in(base: str, username: str, password: str) -> requests.Session:
    """A session signed in through the sign-in form, as a browser would (CSRF token, Origin)."""
    session = requests.Session()
    page = session.get(f"{base}/accounts/signin", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no CSRF token on the sign-in page"
    answer = session.post(
        f"{base}/accounts/signin",
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {answer.status_code}")
    return session


def _measure(stack: Stack, n: int, admissions: int) -> list[tuple[str, list[float]]]:
    base = f"http://127.0.0.1:{stack.config.gateway_port}"
    username, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    # The load profile as the account's own limits: the admissions below are many turns a minute.
    stack.manage("account_create", username, "--password-stdin", *LOAD_ACCOUNT_LIMITS, stdin=password + "\n")
    key = stack.manage("key_create", username, "--name", "bench").strip()
    cookie_session = _signed_in(base, username, password)
    plain, keyed = requests.Session(), requests.Session()
    keyed.headers["Authorization"] = f"Bearer {key}"
    rows: dict[str, list[float]] = {
        "GET /office/health (public: the peer)": [],
        "GET /office/me with an API key": [],
        "GET /office/me with a session cookie": [],
        "GET /office/conversations with an API key": [],
    }
    calls = [
        lambda: _timed(plain, "GET", f"{base}/office/health"),
        lambda: _timed(keyed, "GET", f"{base}/office/me"),
        lambda: _timed(cookie_session, "GET", f"{base}/office/me"),
        lambda: _timed(keyed, "GET", f"{base}/office/conversations"),
    ]
    for call in calls:  # warm-up
        call()
    for _ in range(n):
        for bucket, call in zip(rows.values(), calls, strict=True):
            bucket.append(call())
    # In a process of its own beside the stack, on its accounts database and Redis.
    out = stack.manage("shell", "-v", "0", "-c", ADMISSION_SNIPPET.format(username=username, n=admissions))
    admission = [float(x) for x in out.split()]
    return [*rows.items(), ("TurnLimits.admit + release (in-process, per turn)", admission)]


if __name__ == "__main__":
    main()
