"""Command line: `python -m webapp.launcher prepare|run`.

prepare  link the default model into models/, check every model and persona file
run      prepare, start nginx + both apps, print the URL, run until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from webapp.chat.personas import PersonaFileError
from webapp.engine.registry import RegistryError, embedding_spec_load
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
    parser.add_argument("command", choices=["prepare", "run"])
    args = parser.parse_args(argv)
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
        print("starting nginx, office app and character app ...", flush=True)
        stack.start()
        print(
            f"\n  Persona chat is running ({time.monotonic() - started:.1f}s to ready).\n"
            f"  Open {config.url}/\n"
            f"  Office API:    {config.url}/office/docs\n"
            f"  Character API: {config.url}/character/docs\n"
            f"  Logs: {stack.log_dir}\n"
            "  Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            dead = stack.exited()
            if dead:
                print(f"error: {', '.join(dead)} stopped unexpectedly:\n{stack.log_tail(dead[0])}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping ...", flush=True)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
