"""Benchmark: what the client APIs' features cost, each against its peer in the same run.

Starts its own stack (the default model, greedy, replies capped at 48 tokens) and
alternates the requests of each comparison so machine noise hits both alike:

- generation: plain /v1/chat/completions (the peer) vs the same request with logprobs
  (top 5), with a JSON Schema (structured output: the grammar), and the same turn through
  /v1/responses and Anthropic's /v1/messages. A structured reply ends when its JSON does,
  so the comparable number is milliseconds per generated token;
- embeddings: one text vs a batch of 32 (milliseconds per text);
- tools: the calculator through /office/mcp (the `mcp` client, a session per call, as an
  MCP client without a kept session does) vs through REST POST /office/tools/{name}/call,
  paced under the tool's rate limit (both take from the same user's bucket).

Prints a table and writes it to var/perf/client_apis.md.

    .venv/bin/python -m perf.client_apis [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from perf import table_publish
from webapp.config.env import REPO_ROOT
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig, registry_derive

QUESTION = [{"role": "user", "content": "Describe a pet in one sentence."}]
PET = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["cat", "dog", "fish"]},
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
    },
    "required": ["kind", "name", "age"],
    "additionalProperties": False,
}
MODEL = "smollm2-135m-instruct-q4_1"


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = session.post(url, json=body, timeout=300)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def _generation(session: requests.Session, base: str, rounds: int) -> list[tuple[str, list[float]]]:
    """(label, ms per generated token per request) for each variant; the first is the peer."""
    chat = {"model": MODEL, "messages": QUESTION, "max_tokens": 48, "temperature": 0}
    variants: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], int]]] = [
        ("chat completions (peer)", "v1/chat/completions", chat, lambda r: r["usage"]["completion_tokens"]),
        (
            "+ logprobs, top 5",
            "v1/chat/completions",
            {**chat, "logprobs": True, "top_logprobs": 5},
            lambda r: r["usage"]["completion_tokens"],
        ),
        (
            "+ json_schema (grammar)",
            "v1/chat/completions",
            {**chat, "response_format": {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET}}},
            lambda r: r["usage"]["completion_tokens"],
        ),
        (
            "responses",
            "v1/responses",
            {"model": MODEL, "input": QUESTION[0]["content"], "max_output_tokens": 48, "temperature": 0},
            lambda r: r["usage"]["output_tokens"],
        ),
        (
            "anthropic messages",
            "v1/messages",
            {"model": MODEL, "messages": QUESTION, "max_tokens": 48, "temperature": 0},
            lambda r: r["usage"]["output_tokens"],
        ),
    ]
    samples: dict[str, list[float]] = {label: [] for label, *_ in variants}
    for _ in range(rounds):
        for label, path, body, tokens in variants:
            elapsed, reply = _post(session, f"{base}/office/{path}", body)
            samples[label].append(elapsed / max(tokens(reply), 1))
    return list(samples.items())


def _embeddings(session: requests.Session, base: str, rounds: int) -> list[tuple[str, list[float]]]:
    texts = [f"Passage {i}: the quarterly report lists revenue, costs and hiring plans." for i in range(32)]
    one: list[float] = []
    batch: list[float] = []
    for _ in range(rounds):
        elapsed, _ = _post(session, f"{base}/office/v1/embeddings", {"model": "all-minilm-l6-v2", "input": texts[0]})
        one.append(elapsed)
        elapsed, _ = _post(session, f"{base}/office/v1/embeddings", {"model": "all-minilm-l6-v2", "input": texts})
        batch.append(elapsed / len(texts))
    return [("embeddings, one text (peer)", one), ("embeddings, 32 texts", batch)]


async def _mcp_call(base: str, key: str) -> float:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    started = time.perf_counter()
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        streamable_http_client(f"{base}/office/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        result = await session.call_tool("calculator", {"expression": "6*7"})
    if result.is_error:
        raise RuntimeError(f"the MCP call failed: {result}")
    return (time.perf_counter() - started) * 1000


def _tools(session: requests.Session, base: str, key: str, rounds: int) -> list[tuple[str, list[float]]]:
    rest: list[float] = []
    mcp: list[float] = []
    for _ in range(rounds):
        elapsed, _ = _post(session, f"{base}/office/tools/calculator/call", {"arguments": {"expression": "6*7"}})
        rest.append(elapsed)
        mcp.append(asyncio.run(_mcp_call(base, key)))
        time.sleep(2.1)  # both calls take from one bucket (10, then 1 a second): stay under it
    return [("calculator via REST (peer)", rest), ("calculator via /office/mcp", mcp)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8, help="requests per variant")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        registry = registry_derive(
            REPO_ROOT / "models" / "registry.toml", Path(tmp) / "registry.toml", max_tokens=48, temperature=0.0
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
        stack.start()
        try:
            key = stack.service_key("bench")
            base = f"http://127.0.0.1:{config.gateway_port}"
            with requests.Session() as session:
                session.headers["Authorization"] = f"Bearer {key}"
                _post(session, f"{base}/office/v1/embeddings", {"model": "all-minilm-l6-v2", "input": "warm up"})
                groups = [
                    ("ms per generated token", _generation(session, base, args.rounds)),
                    ("ms per text", _embeddings(session, base, args.rounds)),
                    ("ms per call", _tools(session, base, key, args.rounds)),
                ]
        finally:
            stack.stop()

    lines = ["| what | unit | n | p50 | p95 | p50 ratio to the peer |", "|---|---|---|---|---|---|"]
    for unit, rows in groups:
        peer = statistics.median(rows[0][1])
        for label, values in rows:
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            lines.append(
                f"| {label} | {unit} | {len(values)} | {statistics.median(values):.2f} | {p95:.2f} | "
                f"{statistics.median(values) / peer:.2f} |"
            )
    table_publish("client_apis", "\n".join(lines))


if __name__ == "__main__":
    main()
