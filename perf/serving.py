"""Benchmark: this service against llama.cpp's own server, same model, same machine, same run.

The workload: C concurrent conversations of T turns each, a ~40-token persona system
prompt, max_tokens 128, temperature 0.7, streaming through the OpenAI-compatible chat
endpoint (the client keeps the history, as OpenAI clients do). Every server gets the
identical client and the identical questions. Servers:

  ours (nginx)   the whole stack, through nginx, `slots` = C
  llama-server   built from the vendor/llama.cpp tree of the llama-cpp-python sdist on
                 PyPI (the same version as ours), `-np` = C, `-c` = C x 2048
  one-at-a-time  the whole stack with slots = 1 (the seed design's scheduling)

Measured: aggregate completion tokens/s (all tokens / wall time), time to first token
p50/p95, and, in a second phase (8 conversations x 5 turns), the TTFT of turn 1 vs
turn 5. Prints a table with ratios to llama-server and writes it to var/perf/serving.md.

Machine noise on a shared 2-core host is several percent from run to run, so every
configuration runs `--repeat` times, servers alternating; the table shows the median
tokens/s of the repeats and TTFT percentiles over all their turns.

    .venv/bin/python -m perf.serving [--levels 1,4,8,16] [--turns 3] [--repeat 2] [--skip-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from perf import RESULTS_DIR, table_publish
from perf.latency import _percentile
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import APPS, registry_load
from webapp.launcher.ports import free_port
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig, registry_derive

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
PEER_DIR = RESULTS_DIR / "peer"
N_CTX_PER_SLOT = 2048
MAX_TOKENS = 128
TEMPERATURE = 0.7
SYSTEM = (
    "You are Mina, a friendly office assistant at a small design studio. You answer clearly "
    "and briefly, in the user's language, and ask a follow-up question when a request is unclear."
)
QUESTIONS = [
    "Can you help me plan a team meeting for next week?",
    "What should the agenda include?",
    "Write a short reminder email about it.",
    "How do I politely decline a meeting?",
    "회의록을 짧게 요약하는 방법을 알려 주세요.",
    "Give me three tips for a clear presentation.",
    "What is a good way to track tasks in a small team?",
    "How should I prepare for a job interview?",
    "다음 주 일정표를 어떻게 정리하면 좋을까요?",
    "Suggest a name for a new design project.",
    "Explain what a project budget should cover.",
    "How can I give feedback to a colleague kindly?",
]


@dataclass(frozen=True)
class Turn:
    conversation: int
    turn: int
    ttft_s: float
    total_s: float
    tokens: int


@dataclass(frozen=True)
class RunResult:
    server: str
    concurrency: int
    wall_s: float
    turns: list[Turn]

    @property
    def tokens_per_s(self) -> float:
        return sum(t.tokens for t in self.turns) / self.wall_s

    def ttft(self, q: float, turn: int | None = None) -> float:
        values = [t.ttft_s for t in self.turns if turn is None or t.turn == turn]
        return _percentile(values, q)


# --- the client ---------------------------------------------------------------------


def chat_stream(
    url: str,
    model: str,
    messages: list[dict[str, str]],
    seed: int,
    headers: dict[str, str],
    max_tokens: int = MAX_TOKENS,
) -> tuple[str, float, float, int]:
    """One streamed completion: (text, seconds to first content, total seconds, completion tokens)."""
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": TEMPERATURE,
        "seed": seed,
    }
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    tokens = 0
    with requests.post(url, json=body, headers=headers, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    pieces.append(content)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    ended = time.perf_counter()
    return "".join(pieces), (first or ended) - started, ended - started, tokens


def workload_run(server: str, url: str, model: str, headers: dict[str, str], concurrency: int, turns: int) -> RunResult:
    def conversation(index: int) -> list[Turn]:
        messages = [{"role": "system", "content": SYSTEM}]
        done: list[Turn] = []
        for turn in range(turns):
            question = QUESTIONS[(index + turn) % len(QUESTIONS)]
            messages.append({"role": "user", "content": question})
            text, ttft, total, tokens = chat_stream(url, model, messages, seed=1000 * index + turn, headers=headers)
            messages.append({"role": "assistant", "content": text})
            done.append(Turn(index, turn + 1, ttft, total, tokens))
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(conversation, range(concurrency)))
    wall = time.perf_counter() - started
    return RunResult(server, concurrency, wall, [t for turns_ in results for t in turns_])


# --- the servers --------------------------------------------------------------------


Endpoint = tuple[str, str, dict[str, str]]  # an OpenAI chat completions URL, the model, the auth header


@contextmanager
def bench_stack(workdir: Path, tag: str, registry: Path, extra_env: dict[str, str]) -> Iterator[dict[str, Endpoint]]:
    """The whole stack on free ports, under a benchmark account's service key; yields each
    app's OpenAI chat endpoint."""
    config = StackConfig(
        gateway_port=free_port(),
        office_port=free_port(),
        character_port=free_port(),
        var_dir=workdir / f"var-{tag}",
        registry=registry,
        extra_env=extra_env,
    )
    stack = Stack(config)
    stack.start()
    try:
        specs = registry_load(registry)
        auth = {"Authorization": f"Bearer {stack.service_key('bench')}"}  # the SDK's api_key
        base = f"http://127.0.0.1:{config.gateway_port}"
        yield {app: (f"{base}/{app}/v1/chat/completions", specs[app].alias, auth) for app in APPS}
    finally:
        stack.stop()


@contextmanager
def our_stack(slots: int, workdir: Path) -> Iterator[Endpoint]:
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml", workdir / f"registry-{slots}.toml", slots=slots, max_tokens=MAX_TOKENS
    )
    # One model serves, as llama-server does: its threads may spin like llama-server's.
    # (perf.shipped measures both apps with the launcher's own settings.)
    with bench_stack(workdir, str(slots), registry, {"OMP_WAIT_POLICY": "ACTIVE", **BENCH_ENV}) as endpoints:
        yield endpoints["office"]


def peer_build() -> Path:
    """Build llama-server from the llama-cpp-python sdist's vendor/llama.cpp (cached)."""
    source = PEER_DIR / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"
    binary = source / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    sdist = PEER_DIR / "sdist" / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                str(REPO_ROOT / ".venv" / "bin" / "pip"),
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                "-d",
                str(sdist.parent),
            ],
            check=True,
        )
    shutil.unpack_archive(sdist, PEER_DIR)
    print("building llama-server (several minutes on 2 cores) ...", flush=True)
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF"]
    flags += ["-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]
    subprocess.run(["cmake", "-S", str(source), "-B", str(source / "build"), *flags], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "--build", str(source / "build"), "--target", "llama-server", "-j", jobs], check=True)
    return binary


@contextmanager
def peer_server(
    binary: Path, parallel: int, workdir: Path, *, tag: str = "", n_ctx_per_slot: int = N_CTX_PER_SLOT
) -> Iterator[tuple[str, str, dict[str, str]]]:
    spec = registry_load(registry_derive(REPO_ROOT / "models" / "registry.toml", workdir / "peer.toml"))["office"]
    port = free_port()
    log = (workdir / f"llama-server-{parallel}{tag}.log").open("wb")
    command = [str(binary), "-m", str(spec.path), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-np", str(parallel), "-c", str(parallel * n_ctx_per_slot), "-t", str(os.cpu_count() or 2)]
    command += ["--alias", spec.alias, "--jinja"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start; see {log.name}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1/chat/completions", spec.alias, {}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# --- the run ------------------------------------------------------------------------


def measure(
    name: str, server: Callable[[], object], concurrency: int, turns: int, results: list[RunResult]
) -> RunResult:
    with server() as (url, model, headers):  # type: ignore[attr-defined]
        chat_stream(url, model, [{"role": "user", "content": "Hi"}], seed=1, headers=headers)  # warm up
        result = workload_run(name, url, model, headers, concurrency, turns)
    results.append(result)
    print(
        f"  {name:<14} c={concurrency:<3} {result.tokens_per_s:7.1f} tok/s   "
        f"TTFT p50 {result.ttft(0.5):.2f} s  p95 {result.ttft(0.95):.2f} s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,8,16", help="concurrent conversations, comma-separated")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each configuration (median reported)")
    parser.add_argument("--skip-peer", action="store_true", help="only this service (no llama-server build)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    binary = None if args.skip_peer else peer_build()

    results: list[RunResult] = []
    turn_phase: list[RunResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for _ in range(args.repeat):
            for c in levels:
                measure("ours (nginx)", lambda c=c: our_stack(c, work), c, args.turns, results)
                if binary:
                    measure("llama-server", lambda c=c: peer_server(binary, c, work), c, args.turns, results)
                if c == 8 or (8 not in levels and c == max(levels)):
                    measure("one-at-a-time", lambda: our_stack(1, work), c, args.turns, results)
        print("turn 1 vs turn 5 (8 conversations x 5 turns):", flush=True)
        for _ in range(args.repeat):
            measure("ours (nginx)", lambda: our_stack(8, work), 8, 5, turn_phase)
            if binary:
                measure("llama-server", lambda: peer_server(binary, 8, work), 8, 5, turn_phase)

    table = report(merge(results), merge(turn_phase), args.turns, args.repeat)
    table_publish("serving", table)


@dataclass(frozen=True)
class Merged(RunResult):
    """Repeats of one configuration: median tokens/s, turns pooled."""

    rates: tuple[float, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return statistics.median(self.rates)


def merge(results: list[RunResult]) -> list[RunResult]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.server, r.concurrency), []).append(r)
    return [
        Merged(
            server=server,
            concurrency=c,
            wall_s=sum(r.wall_s for r in runs),
            turns=[t for r in runs for t in r.turns],
            rates=tuple(r.tokens_per_s for r in runs),
        )
        for (server, c), runs in groups.items()
    ]


def report(results: list[RunResult], turn_phase: list[RunResult], turns: int, repeat: int) -> str:
    peer = {r.concurrency: r for r in results if r.server == "llama-server"}
    lines = [
        f"Workload: C conversations x {turns} turns, ~40-token system prompt, max_tokens {MAX_TOKENS}, "
        f"temperature {TEMPERATURE}, streaming, same model and machine; {repeat} runs each, servers alternating "
        "(median tokens/s; TTFT over all runs' turns).",
        "",
        "| server | C | tokens/s | TTFT p50 s | TTFT p95 s | tokens/s vs llama-server | TTFT p95 vs llama-server |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = peer.get(r.concurrency)
        tps_ratio = f"{r.tokens_per_s / base.tokens_per_s:.2f}" if base else "-"
        ttft_ratio = f"{r.ttft(0.95) / base.ttft(0.95):.2f}" if base else "-"
        lines.append(
            f"| {r.server} | {r.concurrency} | {r.tokens_per_s:.1f} | {r.ttft(0.5):.2f} | {r.ttft(0.95):.2f} "
            f"| {tps_ratio} | {ttft_ratio} |"
        )
    ours8 = next((r for r in results if r.server == "ours (nginx)" and r.concurrency == 8), None)
    one8 = next((r for r in results if r.server == "one-at-a-time" and r.concurrency == 8), None)
    if ours8 and one8:
        lines += ["", f"ours / one-at-a-time at C=8: {ours8.tokens_per_s / one8.tokens_per_s:.2f}x tokens/s"]
    lines += [
        "",
        "| server (8 x 5 turns) | TTFT p50 turn 1 s | TTFT p50 turn 5 s | turn 5 / turn 1 |",
        "|---|---|---|---|",
    ]
    for r in turn_phase:
        first, fifth = statistics.median(_ttfts(r, 1)), statistics.median(_ttfts(r, 5))
        lines.append(f"| {r.server} | {first:.2f} | {fifth:.2f} | {fifth / first:.2f} |")
    return "\n".join(lines)


def _ttfts(result: RunResult, turn: int) -> list[float]:
    return [t.ttft_s for t in result.turns if t.turn == turn]


if __name__ == "__main__":
    main()
