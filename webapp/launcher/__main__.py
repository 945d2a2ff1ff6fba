"""Command line: `python -m webapp.launcher prepare|run|backup|restore`.

prepare          link the default model into models/, check every model and persona file
run              prepare, start nginx + both apps, print the URL, run until Ctrl-C
backup [--out]   archive the chat store and the search index under VAR_DIR (safe while running)
restore ARCHIVE  put an archive's data back (stack stopped; the current data is moved aside)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

from webapp.chat.personas import PersonaFileError
from webapp.config.env import EnvError, env_load
from webapp.engine.registry import RegistryError, embedding_spec_load
from webapp.launcher.backup import BackupError, backup_create, backup_restore
from webapp.launcher.stack import Stack, StackConfig, StackError, model_files_prepare


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"error: {name} must be a port number (1-65535), got {raw!r}")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.launcher")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="link the default model, check every model and persona file")
    commands.add_parser("run", help="start nginx and both apps until Ctrl-C")
    backup = commands.add_parser("backup", help="archive the data under VAR_DIR (safe while the stack runs)")
    backup.add_argument(
        "--out", type=Path, default=None, help="archive path (default var/backups/personachat-<time>.tar.gz)"
    )
    restore = commands.add_parser("restore", help="restore an archive made by `backup` (stop the stack first)")
    restore.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    if args.command in ("backup", "restore"):
        return _data_command(args)
    config = StackConfig(
        registry=Path(os.environ.get("MODEL_REGISTRY") or StackConfig.registry),
        gateway_port=_int_env("GATEWAY_PORT", 8080),
        office_port=_int_env("OFFICE_PORT", 8001),
        character_port=_int_env("CHARACTER_PORT", 8002),
    )
    try:
        if args.command == "prepare":
            specs = model_files_prepare(config.registry)
            for spec in specs.values():
                print(f"{spec.app}: {spec.alias} <- {spec.path.resolve()}")
            embedding = embedding_spec_load(config.registry)
            print(f"embedding: {embedding.alias} <- {embedding.path.resolve()}")
            return 0
        return _run(config)
    except (RegistryError, PersonaFileError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _data_command(args: argparse.Namespace) -> int:
    """backup or restore the data under VAR_DIR; refusals are one line on stderr and exit code 2."""
    try:
        var_dir = env_load().var_dir
        if args.command == "backup":
            archive = backup_create(var_dir=var_dir, out=args.out)
            print(f"backup written: {archive} ({archive.stat().st_size / 1024:.0f} KiB)")
            print(f"restore it with: make restore BACKUP={archive}")
            return 0
        aside = backup_restore(var_dir=var_dir, archive=args.archive)
        print(f"restored {args.archive} into {var_dir}")
        if aside is not None:
            print(f"the data it replaced was moved to {aside}")
        return 0
    except (BackupError, EnvError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(config: StackConfig) -> int:
    stack = Stack(config)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    try:
        print("starting nginx, office app and character app under supervisord ...", flush=True)
        stack.start()
        setup_url = stack.setup_url()
        first = (
            f"  First, create the admin account (this link works once):\n    {setup_url}\n"
            if setup_url
            else f"  Sign in at {config.url}/accounts/signin\n"
        )
        print(
            f"\n  Persona chat is running ({time.monotonic() - started:.1f}s to ready).\n"
            f"{first}"
            f"  Open {config.url}/\n"
            f"  Office API:    {config.url}/office/docs\n"
            f"  Character API: {config.url}/character/docs\n"
            f"  Logs: {stack.log_dir} (restarts: supervisord.log)\n"
            f"  Processes: {sys.executable} -m supervisor.supervisorctl -c {stack.conf_path} status\n"
            "  Press Ctrl-C to stop.\n",
            flush=True,
        )
        return _watch(stack, lambda: stopping)
    finally:
        print("stopping ...", flush=True)
        stack.stop()


def _watch(stack: Stack, stopping: Callable[[], bool]) -> int:
    """Report what supervisord does (an app crashed and was restarted) until asked to stop.

    supervisord restarts a crashed app by itself; the stack as a whole ends only if
    supervisord does.
    """
    seen: dict[str, tuple[str, int]] = {}
    while not stopping():
        if "supervisord" in stack.exited():
            print(f"error: supervisord stopped unexpectedly:\n{stack.log_tail('supervisord')}", file=sys.stderr)
            return 1
        try:
            states = stack.states()
        except (OSError, xmlrpc.client.Error):
            states = {}
        for name, info in states.items():
            now = (info["statename"], info["pid"])
            before = seen.get(name)
            seen[name] = now
            if before is None or before == now:
                continue
            state, pid = now
            if state == "FATAL":
                print(f"error: {name} could not be started; see {stack.log_dir / (name + '.log')}", file=sys.stderr)
            elif state == "STOPPED":
                print(f"{name}: stopped (supervisorctl)", flush=True)
            elif before[0] == "RUNNING" and state != "RUNNING":
                print(
                    f"{name}: exited unexpectedly; supervisord restarts it. Its log ends:\n{stack.log_tail(name, 5)}",
                    flush=True,
                )
            elif state == "RUNNING" and pid != before[1]:
                print(f"{name}: running again (pid {pid})", flush=True)
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
