"""Accounts on a real PostgreSQL server (Debian's), as docker-compose keeps them: both apps
of a stack share one database through DATABASE_URL, sessions and keys included.

The server is a throwaway cluster in a temp folder on a free port (initdb + pg_ctl), run
as the `postgres` user when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.auth import PASSWORD, account_create, form_post, key_create
from tests.conftest import TEST_LIMITS, free_port, stack_running
from webapp.launcher.stack import Stack

pytestmark = pytest.mark.slow

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    if not PG_BINS:
        pytest.skip("Debian's postgresql is missing: `make test-deps` installs it")
    bin_dir = PG_BINS[-1]
    folder = Path(tempfile.mkdtemp(prefix="personachat-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run(_as_postgres(list(command)), check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "personachat")
        yield f"postgres://postgres@127.0.0.1:{port}/personachat"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, test_registry: Path, database_url: str) -> Iterator[Stack]:
    extra_env = {"DATABASE_URL": database_url, **TEST_LIMITS}
    with stack_running(tmp_path_factory.mktemp("pg-var"), test_registry, extra_env=extra_env) as running:
        yield running


def _psql(database_url: str, sql: str) -> str:
    psql = str(PG_BINS[-1] / "psql")
    result = subprocess.run(
        [psql, database_url, "-At", "-c", sql], check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout


def test_sign_in_on_postgres_is_one_session_for_both_apps(pg_stack: Stack, database_url: str) -> None:
    gateway = f"http://127.0.0.1:{pg_stack.config.gateway_port}"
    username = account_create(pg_stack)
    with requests.Session() as session:
        signed_in = form_post(session, gateway, "/accounts/signin", {"username": username, "password": PASSWORD})
        assert signed_in.status_code == 302
        for app in ("office", "character"):
            assert session.get(f"{gateway}/{app}/me", timeout=30).json()["username"] == username
    assert int(_psql(database_url, "SELECT count(*) FROM django_session")) >= 1
    assert not (pg_stack.config.var_dir / "accounts" / "accounts.sqlite3").exists(), "no SQLite file beside PostgreSQL"


def test_keys_on_postgres_are_hashed_and_revoked_at_once(pg_stack: Stack, database_url: str) -> None:
    gateway = f"http://127.0.0.1:{pg_stack.config.gateway_port}"
    username = account_create(pg_stack)
    secret = key_create(pg_stack, username)
    headers = {"Authorization": f"Bearer {secret}"}
    assert requests.get(f"{gateway}/character/me", headers=headers, timeout=30).status_code == 200
    stored = _psql(database_url, "SELECT digest || ' ' || prefix FROM accounts_api_key").split()
    assert hashlib.sha256(secret.encode()).hexdigest() in stored and secret not in stored
    _psql(database_url, "UPDATE accounts_api_key SET revoked_at = now()")
    assert requests.get(f"{gateway}/office/me", headers=headers, timeout=30).status_code == 401


def test_preparing_again_is_a_no_op_that_issues_a_new_setup_token(pg_stack: Stack, database_url: str) -> None:
    before = _psql(database_url, "SELECT count(*) FROM django_migrations")
    output = pg_stack.manage("accounts_prepare")
    assert output.startswith("setup-token ")
    assert _psql(database_url, "SELECT count(*) FROM django_migrations") == before
    assert int(_psql(database_url, "SELECT count(*) FROM accounts_setup_token")) == 1


@pytest.mark.parametrize("cookie", ['sessionid="\\000aaaaaaaa"', "sessionid=" + "\u00ff" * 32, "sessionid=" + "A" * 32])
def test_a_session_cookie_django_never_made_is_no_session(pg_stack: Stack, cookie: str) -> None:
    """A NUL in a key reached PostgreSQL as an error (a 500); now such a key is no session."""
    gateway = f"http://127.0.0.1:{pg_stack.config.gateway_port}"
    for path in ("/office/me", "/character/me"):
        response = requests.get(gateway + path, headers={"Cookie": cookie.encode("latin-1")}, timeout=30)
        assert response.status_code == 401, (path, response.text[:200])
    landing = requests.get(
        gateway + "/", headers={"Cookie": cookie.encode("latin-1"), "Accept": "text/html"}, timeout=30
    )
    assert landing.status_code == 200
