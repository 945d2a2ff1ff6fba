"""One command for a bounded, headless load test and its dashboard.

    .venv/bin/python -m perf.load [--users 6] [--spawn-rate 2] [--duration 60]
                                  [--host http://127.0.0.1:8080] [--weights ws_office=3,...]
                                  [--think 1,3] [--out-dir var/perf]

Uses the running stack at --host, or starts the whole stack (on the default ports) when
nothing answers there and stops it afterwards. Runs perf/locustfile.py headless for the
given users, spawn rate and duration, writes the run's requests.csv and settings.json
under <out-dir>/runs/<run id>/, then builds <out-dir>/dashboard/index.html, which nginx
serves at /perf/. Load only goes to loopback, and users and duration are capped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import requests

from perf import dashboard
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import BENCH_ENV, Stack, StackConfig

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_USERS = 200  # the locustfile enforces the same cap for its web UI
MAX_DURATION_S = 1800


def stack_answers(host: str) -> bool:
    try:
        return requests.get(f"{host}/office/health", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def stack_ensured(host: str, config: StackConfig | None = None) -> Iterator[bool]:
    """Use the stack at `host`; start one (`config`, default ports) if nothing answers there.

    Yields whether it started the stack (which it stops afterwards).
    """
    config = config or StackConfig(extra_env=BENCH_ENV)
    if stack_answers(host):
        yield False
        return
    if urlparse(host).port != config.gateway_port:
        raise SystemExit(f"error: nothing answers at {host}, and a stack can only be started on the default port")
    print(f"nothing answers at {host}: starting the stack ...", flush=True)
    stack = Stack(config)
    stack.start()
    try:
        yield True
    finally:
        stack.stop()


def load_key(config: StackConfig | None = None) -> str:
    """The key the load users act through: LOAD_API_KEY when set (a service key you made), else
    the service key of a new load account, made by the project's own code in the accounts
    database of the stack that `config` describes (default: `make run`'s, under var/)."""
    return os.environ.get("LOAD_API_KEY") or Stack(config or StackConfig()).service_key("load")


def locust_run(
    *,
    host: str,
    users: int,
    spawn_rate: float,
    duration_s: int,
    run_dir: Path,
    api_key: str,
    weights: str = "",
    think: str = "1,3",
    stop_timeout_s: int = 30,
) -> None:
    """Run perf/locustfile.py headless against `host`; its rows go to `run_dir`/requests.csv.

    At the end of `duration_s`, users finish the turn they are in for up to `stop_timeout_s`.
    The users act through `api_key` (a service key: each user is one of its end users).
    """
    env = {
        **os.environ,
        "LOAD_API_KEY": api_key,
        "LOAD_RUN_DIR": str(run_dir),
        "LOAD_WEIGHTS": weights,
        "LOAD_THINK": think,
        "LOAD_MAX_SECONDS": str(duration_s + stop_timeout_s + 30),
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "perf" / "locustfile.py"), "--headless",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{duration_s}s", "--stop-timeout", str(stop_timeout_s),
        "--host", host, "--only-summary",
    ]  # fmt: skip
    # Locust exits 1 when any request failed (429s are expected under load): the CSV says what happened.
    subprocess.run(command, env=env, cwd=REPO_ROOT, check=False)


def run_settings(
    *,
    run_id: str,
    started: datetime,
    ended: datetime,
    host: str,
    users: int,
    spawn_rate: float,
    duration_s: int,
    weights: str,
    think: str,
) -> dict[str, object]:
    """The run's settings.json: what was asked for, and what the stack at `host` serves."""
    models, slots = {}, {}
    for app in ("office", "character"):
        try:
            models[app] = requests.get(f"{host}/{app}/health", timeout=5).json().get("model")
            slots[app] = requests.get(f"{host}/{app}/performance", timeout=5).json().get("slots")
        except (requests.RequestException, ValueError):
            pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)

    return {
        "run_id": run_id,
        "started_at": started.isoformat(timespec="seconds"),
        "ended_at": ended.isoformat(timespec="seconds"),
        "users": users,
        "spawn_rate": spawn_rate,
        "duration_s": duration_s,
        "host": host,
        "weights": weights or "default",
        "think_time_s": [float(x) for x in think.split(",")],
        "model": models,
        "slots": slots,
        "commit": commit.stdout.strip() or None,
        # Not `import locust`: that monkey-patches this process for gevent.
        "locust_version": importlib.metadata.version("locust"),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--spawn-rate", type=float, default=2.0)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument("--host", default="http://127.0.0.1:8080")
    parser.add_argument("--weights", default="", help="e.g. rest_office=1,ws_office=3,openai_office=0")
    parser.add_argument("--think", default="1,3", help="think time range in seconds, e.g. 1,3")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "var" / "perf")
    args = parser.parse_args(argv)
    if urlparse(args.host).hostname not in LOOPBACK:
        parser.error(f"--host must be a loopback address ({', '.join(sorted(LOOPBACK))}); got {args.host}")
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be 1-{MAX_USERS}")
    if not 1 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be 1-{MAX_DURATION_S} seconds")

    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with stack_ensured(args.host):
        print(f"load test {run_id}: {args.users} users for {args.duration} s against {args.host}", flush=True)
        locust_run(
            host=args.host, users=args.users, spawn_rate=args.spawn_rate, duration_s=args.duration,
            run_dir=run_dir, weights=args.weights, think=args.think, api_key=load_key(),
        )  # fmt: skip
        ended = datetime.now(UTC)
        settings = run_settings(
            run_id=run_id, started=started, ended=ended, host=args.host, users=args.users,
            spawn_rate=args.spawn_rate, duration_s=args.duration, weights=args.weights, think=args.think,
        )  # fmt: skip
        (run_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    if not (run_dir / "requests.csv").exists():
        raise SystemExit(f"error: the load test wrote no {run_dir / 'requests.csv'}")
    out = dashboard.build(args.out_dir / "runs", args.out_dir / "dashboard" / "index.html", run_id=run_id)
    print(f"requests: {run_dir / 'requests.csv'}\ndashboard: {out}\nserved at {args.host}/perf/ (while the stack runs)")
    return out


if __name__ == "__main__":
    main()
