"""Benchmark: the service as `make run` starts it, against llama.cpp's server, in the same run.

perf.serving measures one app tuned like llama-server. This one measures what a user of
`make run` gets: both apps up, with the launcher's CPU settings (the shared CPU budget,
webapp.engine.cpu_share), through nginx, with the same streaming OpenAI client for every
server. Workloads, each run `--repeat` times with the servers alternating:

  one busy     8 conversations x 3 turns on the office app, the character app idle;
               against one llama-server -np 8.
  both busy    4 + 4 conversations x 3 turns on the two apps at once; against two
               llama-servers (-np 4 each, one per model) on the same cores.
  ceiling      the engine alone, in this process, no HTTP: 8 requests x 128 tokens at
               once through llama-cpp-python (what batched decoding can give here).
  long chars   two ~1,000-token characters (written below), 16 conversations arriving
               over 10 s (alternating characters) x 3 turns, max_tokens 96, 8 slots, on the
               character app; against llama-server -np 8 with its prompt cache (on by
               default: cache_prompt and --cache-ram).

Both sides get ~40-token (short) or ~1,000-token (long) system prompts and temperature
0.7. Reported: aggregate completion tokens/s (median of the repeats), TTFT p50/p95 over
all turns (and over first turns for long characters), ratios to llama-server, and the
CPU cores the server used on average (every process of our stack: nginx, both daphne
apps, redis; or the llama-server processes), read from /proc as `top` does: a server
that falls short while using every core spends them elsewhere than in the model.

    .venv/bin/python -m perf.shipped [--repeat 3] [--only one,both,long]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from perf import table_publish
from perf.latency import _percentile
from perf.serving import QUESTIONS, SYSTEM, Endpoint, Turn, bench_stack, chat_stream, peer_build, peer_server
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import registry_load
from webapp.launcher.stack import BENCH_ENV, registry_derive

LONG_MAX_TOKENS = 96
ARRIVAL_S = 10.0


def character_sheet(name: str, town: str, trade: str, seed: int) -> str:
    """A ~1,000-token character definition, as real cards run (written here, not taken)."""
    lines = [
        f"You are {name}, the {trade} of {town}, a harbour town on a cold northern coast.",
        f"Stay in character as {name}: speak in the first person, warmly, in short vivid replies.",
    ]
    places = ["the fish market", "the lighthouse", "the old customs house", "the rope walk", "the chapel"]
    people = ["the harbour master", "a widowed baker", "two orphaned twins", "a retired captain", "the schoolteacher"]
    for i in range(24):
        place, person = places[(i + seed) % len(places)], people[(i * 3 + seed) % len(people)]
        lines.append(
            f"Memory {i + 1}: one winter at {place}, {name} met {person}, who taught {name} a lesson about "
            f"patience that {name} still repeats to every apprentice in {town}."
        )
    lines.append(f"{name} never breaks character and never mentions being an AI.")
    return " ".join(lines)


CHARACTERS = (
    character_sheet("Mara", "Keelhaven", "lamp keeper", 0),
    character_sheet("Osric", "Saltmere", "net mender", 2),
)


@dataclass(frozen=True)
class Run:
    server: str
    workload: str
    wall_s: float
    turns: tuple[Turn, ...]
    cores: float | None = None  # CPU cores the server's processes used on average

    @property
    def tokens_per_s(self) -> float:
        return sum(t.tokens for t in self.turns) / self.wall_s


def conversation(endpoint: Endpoint, system: str, index: int, turns: int, max_tokens: int) -> list[Turn]:
    url, model, headers = endpoint
    messages = [{"role": "system", "content": system}]
    done = []
    for turn in range(turns):
        messages.append({"role": "user", "content": QUESTIONS[(index + turn) % len(QUESTIONS)]})
        text, ttft, total, tokens = chat_stream(
            url, model, messages, seed=1000 * index + turn, headers=headers, max_tokens=max_tokens
        )
        messages.append({"role": "assistant", "content": text})
        done.append(Turn(index, turn + 1, ttft, total, tokens))
    return done


def workload(
    server: str, name: str, jobs: list[tuple[Endpoint, str, float]], turns: int, max_tokens: int, *, processes: str
) -> Run:
    """Every job (endpoint, system prompt, start delay in s) is one conversation; all at once.
    `processes`: a string in the command line of the server's processes (see cpu_seconds)."""

    def one(item: tuple[int, tuple[Endpoint, str, float]]) -> list[Turn]:
        index, (endpoint, system, delay) = item
        time.sleep(delay)
        return conversation(endpoint, system, index, turns, max_tokens)

    cpu_before = cpu_seconds(processes)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(one, enumerate(jobs)))
    wall = time.perf_counter() - started
    cores = (cpu_seconds(processes) - cpu_before) / wall
    return Run(server, name, wall, tuple(t for r in results for t in r), cores)


def cpu_seconds(marker: str) -> float:
    """User + system CPU seconds so far of every live process whose command line contains
    `marker`, and of all their descendants (supervisord's apps, nginx's workers)."""
    clock = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    roots = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parents[pid], used[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / clock
        if marker in command:
            roots.add(pid)

    def under_a_root(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(seconds for pid, seconds in used.items() if under_a_root(pid))


@contextmanager
def shipped_stack(workdir: Path, tag: str) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Both apps as `make run` starts them (8 slots each, the registry's settings), through nginx."""
    registry = registry_derive(REPO_ROOT / "models" / "registry.toml", workdir / f"registry-{tag}.toml")
    # No thread settings of its own: the launcher's, as with make run.
    with bench_stack(workdir, tag, registry, BENCH_ENV) as endpoints:
        yield endpoints["office"], endpoints["character"]


def ceiling() -> Run:
    """8 x 128 tokens straight through the engine (both apps' processes are stopped)."""
    import dataclasses

    from webapp.engine.engine import GenerationRequest, SamplingParams
    from webapp.engine.llama import LlamaEngine
    from webapp.engine.prompt import ChatMessage

    spec = registry_load(REPO_ROOT / "models" / "registry.toml")["office"]
    engine = LlamaEngine(dataclasses.replace(spec, slots=8, max_wait_s=1e6))
    sampling = SamplingParams(
        temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=128, ignore_eos=True
    )
    try:
        ask = [
            GenerationRequest([ChatMessage("system", SYSTEM)], (), ChatMessage("user", q), sampling) for q in QUESTIONS
        ]
        engine.submit(ask[0]).result()
        started = time.perf_counter()
        done = [h.result() for h in [engine.submit(ask[i]) for i in range(8)]]
        wall = time.perf_counter() - started
    finally:
        engine.close()
    turns = tuple(
        Turn(i, 1, c.timings.ttft_ms / 1000, c.timings.total_ms / 1000, c.usage.completion_tokens)
        for i, c in enumerate(done)
    )
    return Run("engine, no HTTP", "ceiling", wall, turns)


def warm(*endpoints: Endpoint) -> None:
    for url, model, headers in endpoints:
        chat_stream(url, model, [{"role": "user", "content": "Hi"}], seed=1, headers=headers, max_tokens=8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="ceiling,one,both,long", help="workloads, comma-separated")
    args = parser.parse_args()
    only = set(args.only.split(","))
    binary = peer_build()
    runs: list[Run] = []

    def keep(run: Run) -> None:
        runs.append(run)
        first = [t.ttft_s for t in run.turns if t.turn == 1]
        cores = "" if run.cores is None else f"  {run.cores:.2f} cores"
        print(
            f"{run.workload:>9} {run.server:<16} {run.tokens_per_s:7.1f} tokens/s  "
            f"TTFT p50 {_percentile([t.ttft_s for t in run.turns], 0.5):.2f} s  "
            f"first-turn p50 {_percentile(first, 0.5):.2f} s{cores}",
            flush=True,
        )

    short = [(SYSTEM, 0.0)] * 8
    long_jobs = [(CHARACTERS[i % 2], ARRIVAL_S * i / 16) for i in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for repeat in range(args.repeat):
            if "ceiling" in only:
                keep(ceiling())
            tag = f"r{repeat}"
            ours = str(work / f"var-{tag}")  # in supervisord's command line: the stack's processes
            with shipped_stack(work, tag) as (office, character):
                warm(office, character)
                if "one" in only:
                    jobs = [(office, s, d) for s, d in short]
                    keep(workload("ours (make run)", "one busy", jobs, 3, 128, processes=ours))
                if "both" in only:
                    jobs = [(office if i % 2 else character, s, d) for i, (s, d) in enumerate(short)]
                    keep(workload("ours (make run)", "both busy", jobs, 3, 128, processes=ours))
                if "long" in only:
                    jobs = [(character, s, d) for s, d in long_jobs]
                    keep(workload("ours (make run)", "long chars", jobs, 3, 96, processes=ours))
            peer_processes = str(binary)
            if "one" in only:
                with peer_server(binary, 8, work) as peer:
                    warm(peer)
                    jobs = [(peer, s, d) for s, d in short]
                    keep(workload("llama-server", "one busy", jobs, 3, 128, processes=peer_processes))
            if "both" in only:
                with ExitStack() as servers:
                    peers = [servers.enter_context(peer_server(binary, 4, work, tag=f"b{i}")) for i in range(2)]
                    warm(*peers)
                    jobs = [(peers[i % 2], s, d) for i, (s, d) in enumerate(short)]
                    keep(workload("2 llama-servers", "both busy", jobs, 3, 128, processes=peer_processes))
            if "long" in only:
                with peer_server(binary, 8, work, n_ctx_per_slot=4096) as peer:
                    warm(peer)
                    jobs = [(peer, s, d) for s, d in long_jobs]
                    keep(workload("llama-server", "long chars", jobs, 3, 96, processes=peer_processes))

    table = report(runs, args.repeat)
    table_publish("shipped", table)


def report(runs: list[Run], repeat: int) -> str:
    lines = [
        f"Medians of {repeat} runs per row (servers alternating); TTFT percentiles over every run's turns.",
        "",
        "| workload | server | tokens/s | TTFT p50 s | TTFT p95 s | first-turn TTFT p50 s "
        "| tokens/s vs peer | first-turn TTFT p50 vs peer | server CPU cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        rows.setdefault((run.workload, run.server), []).append(run)

    def summary(group: list[Run]) -> tuple[float, float, float, float]:
        turns = [t for r in group for t in r.turns]
        first = [t.ttft_s for t in turns if t.turn == 1]
        return (
            statistics.median(r.tokens_per_s for r in group),
            _percentile([t.ttft_s for t in turns], 0.5),
            _percentile([t.ttft_s for t in turns], 0.95),
            _percentile(first, 0.5),
        )

    for (name, server), group in rows.items():
        tps, p50, p95, first = summary(group)
        peers = [g for (w, s), g in rows.items() if w == name and s != server and not s.startswith("ours")]
        ratio = first_ratio = "-"
        if server.startswith("ours") and peers:
            peer_tps, _, _, peer_first = summary(peers[0])
            ratio, first_ratio = f"{tps / peer_tps:.2f}", f"{first / peer_first:.2f}"
        measured = [r.cores for r in group if r.cores is not None]
        cores = f"{statistics.median(measured):.2f}" if measured else "-"
        cells = [name, server, f"{tps:.1f}", f"{p50:.2f}", f"{p95:.2f}", f"{first:.2f}", ratio, first_ratio, cores]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
