"""Environment variables: defaults, parsing, and errors that name the variable and what it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.config.env import REPO_ROOT, Env, EnvError, env_load


def test_defaults_with_an_empty_environment() -> None:
    env = env_load({})

    assert env == Env(
        app_mode="office",
        debug=False,
        secret_key="dev-only-insecure-secret-key",
        allowed_hosts=("localhost", "127.0.0.1", "[::1]"),
        mongo_url=None,
        var_dir=REPO_ROOT / "var",
        model_registry=REPO_ROOT / "models" / "registry.toml",
        personas_dir=REPO_ROOT / "personas",
        log_level="INFO",
        qdrant_url=None,
        searxng_url=None,
        security_mode="development",
        drain_s=20.0,
    )


def test_every_variable_is_read(tmp_path: Path) -> None:
    env = env_load(
        {
            "APP_MODE": "character",
            "DJANGO_DEBUG": "Yes",
            "DJANGO_SECRET_KEY": "s3cret",
            "PRODUCTION": "true",
            "ALLOWED_HOSTS": " chat.example , ,10.0.0.1",
            "MONGO_URL": "mongodb+srv://db.example/",
            "VAR_DIR": str(tmp_path / "a" / ".." / "var"),
            "MODEL_REGISTRY": str(tmp_path / "r.toml"),
            "PERSONAS_DIR": str(tmp_path / "p"),
            "LOG_LEVEL": "warning",
            "QDRANT_URL": "http://qdrant:6333/",
            "SEARXNG_URL": "https://search.example//",
            "SECURITY_MODE": "production",
            "SHUTDOWN_DRAIN_S": "7.5",
        }
    )

    assert env.app_mode == "character" and env.debug is True and env.secret_key == "s3cret"
    assert env.allowed_hosts == ("chat.example", "10.0.0.1")
    assert env.mongo_url == "mongodb+srv://db.example/"
    assert env.var_dir == tmp_path / "var"  # resolved
    assert env.model_registry == tmp_path / "r.toml" and env.personas_dir == tmp_path / "p"
    assert env.log_level == "WARNING"
    assert env.qdrant_url == "http://qdrant:6333" and env.searxng_url == "https://search.example"
    assert env.security_mode == "production"
    assert env.drain_s == 7.5


def test_empty_values_mean_unset_where_there_is_a_default() -> None:
    empty = dict.fromkeys(
        ["DJANGO_DEBUG", "DJANGO_SECRET_KEY", "MONGO_URL", "VAR_DIR", "QDRANT_URL", "SEARXNG_URL", "SHUTDOWN_DRAIN_S"],
        "",
    )
    assert env_load(empty) == env_load({})
    assert env_load({"ALLOWED_HOSTS": ""}).allowed_hosts == ()  # set but empty: no host


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("APP_MODE", "kitchen", "one of office, character"),
        ("APP_MODE", "", "one of office, character"),
        ("DJANGO_DEBUG", "maybe", "a boolean (true/false/1/0)"),
        ("MONGO_URL", "http://db", "mongodb:// or mongodb+srv://"),
        ("LOG_LEVEL", "trace", "DEBUG, INFO, WARNING or ERROR"),
        ("QDRANT_URL", "qdrant:6333", "http:// or https://"),
        ("SEARXNG_URL", "ftp://s", "http:// or https://"),
        ("SECURITY_MODE", "Production", "development or production"),
        ("SHUTDOWN_DRAIN_S", "301", "seconds between 0 and 300"),
        ("SHUTDOWN_DRAIN_S", "-1", "seconds between 0 and 300"),
        ("SHUTDOWN_DRAIN_S", "soon", "seconds between 0 and 300"),
        ("SHUTDOWN_DRAIN_S", "nan", "seconds between 0 and 300"),
    ],
)
def test_bad_value_names_the_variable_and_what_it_accepts(variable: str, value: str, accepts: str) -> None:
    with pytest.raises(EnvError) as excinfo:
        env_load({variable: value})

    message = str(excinfo.value)
    assert message.startswith(f"{variable} must be ")
    assert accepts in message
    assert repr(value) in message


def test_production_needs_a_secret_key() -> None:
    with pytest.raises(EnvError, match="DJANGO_SECRET_KEY must be set when PRODUCTION is true"):
        env_load({"PRODUCTION": "1"})
    with pytest.raises(EnvError, match=r"PRODUCTION must be a boolean \(true/false/1/0\), got 'sure'"):
        env_load({"PRODUCTION": "sure"})

    assert env_load({"PRODUCTION": "true", "DJANGO_SECRET_KEY": "s3cret"}).secret_key == "s3cret"
    assert env_load({"PRODUCTION": "off"}).secret_key == "dev-only-insecure-secret-key"


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(EnvError) as excinfo:
        env_load({"APP_MODE": "kitchen", "LOG_LEVEL": "loud"})

    assert "APP_MODE" in str(excinfo.value) and "LOG_LEVEL" in str(excinfo.value)
