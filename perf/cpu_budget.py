"""Benchmark: the two apps' models on one CPU, under OpenMP wait settings, with and without
the shared CPU budget (webapp.engine.cpu_share).

Each setting starts two engine processes, the office and the character model as `make
run` loads them, with the environment it names; with the budget they share one budget
file as the launcher sets it up. Then, in each process as a web request would:

  one busy    8 requests x 128 tokens on the office process, the character one idle
              (and the idle one's CPU use meanwhile);
  both busy   8 + 8 requests at once, tokens/s of the two together;
  idle        both idle for 3 s after: CPU use of the character process.

Settings alternate within each repeat (these machines drift); the table gives medians
and ratios to the launcher's setting in the same run. No HTTP: the stack's share is
perf.shipped's.

    .venv/bin/python -m perf.cpu_budget [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from perf import table_publish
from webapp.config.env import REPO_ROOT

LAUNCHER = "budget, libgomp's default wait (make run)"
# name -> (environment, share the budget?)
SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "no budget, OMP_WAIT_POLICY=PASSIVE (before)": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
    LAUNCHER: ({}, True),
    "budget, GOMP_SPINCOUNT=1000000": ({"GOMP_SPINCOUNT": "1000000"}, True),
    "budget, GOMP_SPINCOUNT=10000000": ({"GOMP_SPINCOUNT": "10000000"}, True),
}
REQUESTS = 8
IDLE_S = 3.0


def worker(app: str, member: int, share: str) -> None:
    """One engine process, driven line by line on stdin: busy, mark, quit."""
    from perf.serving import QUESTIONS, SYSTEM
    from webapp.engine.cpu_share import CpuShare
    from webapp.engine.engine import GenerationRequest, SamplingParams
    from webapp.engine.llama import LlamaEngine
    from webapp.engine.prompt import ChatMessage
    from webapp.engine.registry import APPS, registry_load

    spec = registry_load(REPO_ROOT / "models" / "registry.toml")[app]
    spec = dataclasses.replace(spec, slots=REQUESTS, max_wait_s=1e6)
    budget = CpuShare(Path(share), member=member, members=len(APPS), cores=spec.cpu_threads) if share else None
    engine = LlamaEngine(spec, cpu_share=budget)
    sampling = SamplingParams(
        temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=128, ignore_eos=True
    )
    asks = [GenerationRequest([ChatMessage("system", SYSTEM)], (), ChatMessage("user", q), sampling) for q in QUESTIONS]
    engine.submit(asks[0]).result()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "busy":
            started = time.perf_counter()
            done = [h.result() for h in [engine.submit(asks[i % len(asks)]) for i in range(REQUESTS)]]
            tokens = sum(d.usage.completion_tokens for d in done)
            print(json.dumps({"tokens": tokens, "wall": time.perf_counter() - started}), flush=True)
        elif line.strip() == "mark":
            print(json.dumps({"cpu": sum(os.times()[:2]), "at": time.perf_counter()}), flush=True)
        else:
            break
    engine.close()


class Process:
    def __init__(self, app: str, member: int, share: str, environ: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update({"OPENBLAS_NUM_THREADS": "1", **environ})
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "perf.cpu_budget", "--worker", app, str(member), share],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError(f"the {app} engine process did not start")

    def _line(self) -> str:
        out: IO[str] | None = self.popen.stdout
        assert out is not None
        return out.readline().strip()

    def send(self, command: str) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def answer(self) -> dict[str, float]:
        return json.loads(self._line())

    def ask(self, command: str) -> dict[str, float]:
        self.send(command)
        return self.answer()

    def close(self) -> None:
        self.send("quit")
        self.popen.wait(timeout=60)


def cpu_percent(process: Process, during: Callable[[], object]) -> float:
    """The CPU `process` used while `during` ran, in % of one core."""
    before = process.ask("mark")
    during()
    after = process.ask("mark")
    return 100 * (after["cpu"] - before["cpu"]) / (after["at"] - before["at"])


def one_setting(environ: dict[str, str], budget: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        share = str(Path(tmp) / "cpu-share") if budget else ""
        office, character = Process("office", 0, share, environ), Process("character", 1, share, environ)
        try:
            one: dict[str, float] = {}
            idle_during = cpu_percent(character, lambda: one.update(office.ask("busy")))
            office.send("busy")
            character.send("busy")
            a, b = office.answer(), character.answer()
            idle_after = cpu_percent(character, lambda: time.sleep(IDLE_S))
        finally:
            office.close()
            character.close()
    return {
        "one": one["tokens"] / one["wall"],
        "both": (a["tokens"] + b["tokens"]) / max(a["wall"], b["wall"]),
        "idle_during": idle_during,
        "idle_after": idle_after,
    }


def report(results: dict[str, list[dict[str, float]]]) -> str:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    lines = [
        f"Two engine processes, {REQUESTS} x 128 tokens each, medians of {len(results[LAUNCHER])} runs "
        "(settings alternating); ratios to make run's setting.",
        "",
        "| setting | one busy, tokens/s | both busy, tokens/s in all | idle app CPU % while the other is busy "
        "| idle app CPU % after |",
        "|---|---|---|---|---|",
    ]

    def with_ratio(name: str, key: str) -> str:
        value = median(name, key)
        return f"{value:.1f}" if name == LAUNCHER else f"{value:.1f} ({value / median(LAUNCHER, key):.2f}x)"

    for name in results:
        lines.append(
            f"| {name} | {with_ratio(name, 'one')} | {with_ratio(name, 'both')} | "
            f"{median(name, 'idle_during'):.1f} | {median(name, 'idle_after'):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("APP", "MEMBER", "SHARE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        app, member, share = args.worker
        worker(app, int(member), share)
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for repeat in range(args.repeat):
        for name, (environ, budget) in SETTINGS.items():
            run = one_setting(environ, budget)
            results[name].append(run)
            measured = ", ".join(f"{key} {value:.1f}" for key, value in run.items())
            print(f"{repeat + 1}/{args.repeat} {name}: {measured}", flush=True)
    table = report(results)
    table_publish("cpu_budget", table)


if __name__ == "__main__":
    main()
