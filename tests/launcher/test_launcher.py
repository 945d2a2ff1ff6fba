"""Start-up errors are clear messages naming what is wrong, never tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import stack_running
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import StackError


def registry_with_missing_model(tmp_path: Path) -> Path:
    missing = tmp_path / "nowhere" / "missing-model.gguf"
    text = "\n".join(f'[{app}]\nalias = "x"\npath = "{missing}"\nn_ctx = 512\n' for app in ("office", "character"))
    registry = tmp_path / "registry.toml"
    registry.write_text(text)
    return registry


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_daphne_app_with_missing_model_exits_naming_the_path(tmp_path):
    registry = registry_with_missing_model(tmp_path)
    result = run(
        [sys.executable, "-c", "import webapp.config.asgi"],
        {"APP_MODE": "office", "MODEL_REGISTRY": str(registry), "VAR_DIR": str(tmp_path / "var")},
    )
    assert result.returncode != 0
    assert str(tmp_path / "nowhere" / "missing-model.gguf") in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_gguf_file_is_refused(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    registry = tmp_path / "registry.toml"
    registry.write_text(
        "\n".join(f'[{a}]\nalias = "x"\npath = "{fake}"\nn_ctx = 512\n' for a in ("office", "character"))
    )
    result = run(
        [sys.executable, "-c", "import webapp.config.asgi"],
        {"APP_MODE": "character", "MODEL_REGISTRY": str(registry), "VAR_DIR": str(tmp_path / "var")},
    )
    assert result.returncode != 0
    assert "not a GGUF file" in result.stderr and str(fake) in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_environment_variable_is_named(tmp_path):
    result = run(
        [sys.executable, "-c", "import webapp.config.asgi"],
        {"APP_MODE": "kitchen", "VAR_DIR": str(tmp_path / "var")},
    )
    assert result.returncode != 0
    assert "APP_MODE" in result.stderr
    assert "Traceback" not in result.stderr


def test_launcher_with_missing_model_exits_naming_the_path(tmp_path):
    registry = registry_with_missing_model(tmp_path)
    result = run([sys.executable, "-m", "webapp.launcher", "prepare"], {"MODEL_REGISTRY": str(registry)})
    assert result.returncode == 2
    assert str(tmp_path / "nowhere" / "missing-model.gguf") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_replica_on_the_embedded_store_refuses_to_start(stack):
    """montydb serves one process: a second character app on the running stack's store exits, naming why."""
    result = run(
        [sys.executable, "-c", "import webapp.config.asgi"],
        {
            "APP_MODE": "character",
            "VAR_DIR": str(stack.config.var_dir),
            "MODEL_REGISTRY": str(stack.config.registry),
        },
    )
    assert result.returncode != 0
    assert "embedded store of the character app" in result.stderr and "MONGO_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_both_apps_on_the_cpu_split_it_through_the_launchers_share_file(stack, http, gateway, user_id):
    """make run's two CPU apps each keep a record in the CPU budget's file (webapp.engine.cpu_share),
    written by the app's own process as it decodes; the launcher sets no wait policy."""
    import struct

    for app, persona in (("office", {}), ("character", {"persona": "captain-rhea"})):
        body = {"input_data": "Hi", "user_id": user_id, **persona}
        reply = http.post(f"{gateway}/{app}/Llama", json=body, timeout=120)
        assert reply.status_code == 200, reply.text
    assert stack.cpu_share_path.parent == stack.config.var_dir / "run"
    records = stack.cpu_share_path.read_bytes()
    pids = [struct.unpack_from("<qqd", records, 24 * member)[0] for member in range(2)]
    assert pids == [stack.pid("office"), stack.pid("character")]
    environ = Path(f"/proc/{stack.pid('office')}/environ").read_bytes().split(b"\0")
    assert f"CPU_SHARE_FILE={stack.cpu_share_path}".encode() in environ
    assert "OMP_WAIT_POLICY" not in stack._cpu_sharing_env()


def test_a_model_that_fails_to_load_stops_the_start_at_once_with_its_reason(tmp_path, test_registry):
    """A GGUF header on a cut-off file passes the file check, then fails in llama.cpp on the
    loader thread: the app stays up saying "failed" on /health. The launcher must say so
    and why, at once, rather than wait out its timeout with "not ready"."""
    data = tomllib.loads(test_registry.read_text())
    cut = tmp_path / "cut-off.gguf"
    cut.write_bytes(Path(data["character"]["path"]).read_bytes()[: 1 << 20])
    data["character"]["path"] = str(cut)
    registry = tmp_path / "registry.toml"
    registry.write_text(tomli_w.dumps(data))
    started = time.monotonic()
    with pytest.raises(StackError) as refused, stack_running(tmp_path / "var", registry):
        pass
    assert time.monotonic() - started < 60, "waited out the start timeout instead of reporting the failure"
    assert "character/health: the model failed to load" in str(refused.value)
    assert str(cut) in str(refused.value)
