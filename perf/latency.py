"""Benchmark: what nginx adds. Start-up time, and latency through nginx vs direct to daphne.

Starts its own stack (the default model, greedy and capped replies so every request does
the same work) on free ports, then alternates requests between the two paths so machine
noise hits both alike. Rows: a health check, a whole REST chat turn, and over WebSocket
the time to first token (send → first token frame, as the client sees it) and the gap
between token frames (which shows whether anything on the way buffers them). Prints a
table and writes it to var/perf/latency.md.

    .venv/bin/python -m perf.latency [--requests 200] [--chat-requests 12] [--ws-turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests
import websockets

from perf import table_publish
from webapp.config.env import REPO_ROOT
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig, registry_derive


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(session: requests.Session, method: str, url: str, **kwargs: object) -> float:
    started = time.perf_counter()
    response = session.request(method, url, timeout=120, **kwargs)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="health requests per path")
    parser.add_argument("--chat-requests", type=int, default=12, help="chat requests per path")
    parser.add_argument("--ws-turns", type=int, default=20, help="WebSocket turns per path")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        registry = registry_derive(
            REPO_ROOT / "models" / "registry.toml", Path(tmp) / "registry.toml", max_tokens=32, temperature=0.0
        )
        config = StackConfig(
            gateway_port=free_port(),
            office_port=free_port(),
            character_port=free_port(),
            var_dir=Path(tmp) / "var",
            registry=registry,
            extra_env=BENCH_ENV,
        )
        stack = Stack(config)
        started = time.perf_counter()
        stack.start()
        startup_s = time.perf_counter() - started
        try:
            auth = {"Authorization": f"Bearer {stack.service_key('bench')}"}
            rows = _measure(config, auth, args.requests, args.chat_requests)
            rows += asyncio.run(_measure_ws(config, auth, args.ws_turns))
        finally:
            stack.stop()

    lines = [
        f"Start-up (spawn nginx + 2 daphne apps, both models loaded): {startup_s:.2f} s",
        "",
        "| request | path | n | p50 ms | p95 ms | p50 ratio nginx/direct |",
        "|---|---|---|---|---|---|",
    ]
    for name, direct, gateway in rows:
        ratio = statistics.median(gateway) / statistics.median(direct)
        for label, values in (("direct", direct), ("nginx", gateway)):
            lines.append(
                f"| {name} | {label} | {len(values)} | {statistics.median(values):.2f} | "
                f"{_percentile(values, 0.95):.2f} | {ratio:.3f} |"
            )
    table = "\n".join(lines)
    table_publish("latency", table)


def _measure(
    config: StackConfig, auth: dict[str, str], n_health: int, n_chat: int
) -> list[tuple[str, list[float], list[float]]]:
    direct_base = f"http://127.0.0.1:{config.office_port}"
    gateway_base = f"http://127.0.0.1:{config.gateway_port}"
    rows = []
    with requests.Session() as session:
        session.headers.update(auth)
        direct: list[float] = []
        gateway: list[float] = []
        for _ in range(n_health):
            direct.append(_timed(session, "GET", f"{direct_base}/office/health"))
            gateway.append(_timed(session, "GET", f"{gateway_base}/office/health"))
        rows.append(("GET /office/health", direct, gateway))

        direct, gateway = [], []
        for _ in range(n_chat):
            # A new conversation each time, same text: the same prompt and (greedy) the same reply.
            for base, bucket in ((direct_base, direct), (gateway_base, gateway)):
                body = {"input_data": "Name three colors.", "db_id": str(uuid.uuid4()), "user_id": "bench"}
                bucket.append(_timed(session, "POST", f"{base}/office/Llama", json=body))
        rows.append(("POST /office/Llama (32 tokens max, greedy)", direct, gateway))
    return rows


WS_QUESTIONS = [
    "Name three colors.",
    "What is a good name for a cat?",
    "Give me one tip for a job interview.",
    "회의록을 짧게 요약하는 방법을 알려 주세요.",
    "How many days are in a leap year?",
]


async def _ws_turn(ws: websockets.ClientConnection, text: str) -> tuple[float, list[float]]:
    """One turn in a new conversation: (ms to the first token frame, ms between token frames)."""
    await ws.send(json.dumps({"type": "message", "db_id": str(uuid.uuid4()), "user_id": "bench", "input_data": text}))
    sent = time.perf_counter()
    arrivals: list[float] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
        if frame["type"] == "token":
            arrivals.append(time.perf_counter())
        elif frame["type"] == "done":
            break
        elif frame["type"] == "error":
            raise RuntimeError(f"benchmark turn failed: {frame}")
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    return (arrivals[0] - sent) * 1000, gaps


async def _measure_ws(
    config: StackConfig, auth: dict[str, str], n_turns: int
) -> list[tuple[str, list[float], list[float]]]:
    paths = {
        "direct": f"ws://127.0.0.1:{config.office_port}/office/ws/chat/",
        "nginx": f"ws://127.0.0.1:{config.gateway_port}/office/ws/chat/",
    }
    ttft: dict[str, list[float]] = {name: [] for name in paths}
    gaps: dict[str, list[float]] = {name: [] for name in paths}
    async with (
        websockets.connect(paths["direct"], additional_headers=auth) as direct,
        websockets.connect(paths["nginx"], additional_headers=auth) as gateway,
    ):
        sockets = {"direct": direct, "nginx": gateway}
        for ws in sockets.values():
            await ws.recv()  # the status frame
        for i in range(n_turns):
            # Every turn is a new question (the persona prefix stays cached, as for real
            # users); a ticket number keeps the two paths from reusing each other's prompt.
            # The order alternates so neither path always runs right after the other.
            order = list(sockets.items()) if i % 2 == 0 else list(sockets.items())[::-1]
            for j, (name, ws) in enumerate(order):
                text = f"{WS_QUESTIONS[i % len(WS_QUESTIONS)]} (ticket {2 * i + j:03d})"
                first, between = await _ws_turn(ws, text)
                ttft[name].append(first)
                gaps[name].extend(between)
    return [
        ("WebSocket time to first token (new question each turn)", ttft["direct"], ttft["nginx"]),
        ("WebSocket gap between token frames", gaps["direct"], gaps["nginx"]),
    ]


if __name__ == "__main__":
    main()
