"""An app killed mid-reply (kill -9) through the real stack: supervisord starts it again, the
other app serves throughout, nginx answers for the missing app with a JSON 503, and the reply
the user was watching is in the history, marked interrupted, with everything before it.

Its own stack: long replies (so one is streaming when the kill lands), and a kill must not
disturb the session stack that other tests share.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websockets

from tests.auth import account_create, bearer, key_create
from tests.chat.test_websocket import recv, ws_url
from tests.conftest import stack_running
from webapp.chat.checkpoints import CHECKPOINT_INTERVAL_S
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import Stack, registry_derive

pytestmark = pytest.mark.slow

STORY = "Write a long story about a lighthouse keeper."


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("crash-models") / "registry.toml",
        max_tokens=400,
        ignore_eos=True,
    )
    # A short drain, so that a SIGTERM catches a reply still running (see test_sigterm_...).
    extra_env = {"SHUTDOWN_DRAIN_S": "1"}
    with stack_running(tmp_path_factory.mktemp("crash-var"), registry, extra_env=extra_env) as running:
        yield running


@pytest.fixture(scope="module")
def crash_auth(crash_stack: Stack) -> dict[str, str]:
    return bearer(key_create(crash_stack, account_create(crash_stack), scope="service"))


def gateway_of(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.gateway_port}"


class Watcher(threading.Thread):
    """Polls the other app through nginx until stopped; records every status it got."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                try:
                    self.statuses.append(http.get(self.url, timeout=5).status_code)
                except requests.RequestException:
                    self.statuses.append(0)
                time.sleep(0.1)


def messages_of(gateway: str, app: str, db_id: str, user_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = requests.get(
        f"{gateway}/{app}/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=30, headers=auth
    )
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_a_killed_app_comes_back_and_keeps_what_its_user_saw(crash_stack, crash_auth):
    auth = crash_auth
    gateway = gateway_of(crash_stack)
    user_id, db_id = f"crash-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    first = requests.post(
        f"{gateway}/office/Llama",
        json={"input_data": "Hello.", "db_id": db_id, "user_id": user_id},
        timeout=300,
        headers=auth,
    )
    assert first.status_code == 200, first.text
    earlier = messages_of(gateway, "office", db_id, user_id, auth)
    office_pid = crash_stack.pid("office")
    character_pid = crash_stack.pid("character")
    watcher = Watcher(f"{gateway}/character/health")
    watcher.start()

    async def stream_then_kill() -> tuple[list[tuple[float, str]], float, int | None]:
        """Stream a reply until it has run past a checkpoint, kill the app, return what was seen."""
        seen: list[tuple[float, str]] = []
        async with websockets.connect(ws_url(gateway, "office"), additional_headers=auth) as ws:
            await recv(ws)  # status
            await ws.send(json.dumps({"type": "message", "db_id": db_id, "user_id": user_id, "input_data": STORY}))
            assert (await recv(ws))["type"] == "start"
            text = ""
            while True:
                frame = await recv(ws)
                assert frame["type"] == "token", frame
                text += frame["text"]
                seen.append((time.monotonic(), text))
                if seen[-1][0] - seen[0][0] > 3 * CHECKPOINT_INTERVAL_S:
                    break
            killed_at = time.monotonic()
            os.kill(office_pid, signal.SIGKILL)
            try:
                while True:  # what was already on the wire still arrives; then the socket drops
                    frame = await recv(ws)
                    if frame.get("type") == "token":
                        text += frame["text"]
                        seen.append((time.monotonic(), text))
            except websockets.ConnectionClosed as closed:
                return seen, killed_at, closed.rcvd.code if closed.rcvd else None

    seen, killed_at, close_code = asyncio.run(stream_then_kill())
    assert close_code != 1000, "the client learns that the stream broke"

    # While the office app is down nginx answers for it: JSON and Retry-After for API clients,
    # a page for browsers.
    body = {"input_data": "hi", "db_id": db_id, "user_id": user_id}
    down = requests.post(f"{gateway}/office/Llama", json=body, timeout=10, headers=auth)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "app_unavailable" and int(down.headers["Retry-After"]) > 0
    page = requests.get(f"{gateway}/office/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 503 and 'data-testid="app-unavailable"' in page.text

    # supervisord starts it again; measure how long until it answers through nginx.
    deadline = time.monotonic() + 90
    while True:
        try:
            health = requests.get(f"{gateway}/office/health", timeout=5, headers=auth)
            if health.status_code == 200 and health.json()["status"] == "ready":
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the office app did not come back"
        time.sleep(0.2)
    recovery_s = time.monotonic() - killed_at
    watcher.stop.set()
    watcher.join()
    print(f"office back {recovery_s:.1f} s after kill -9")

    assert crash_stack.pid("office") not in (0, office_pid)
    assert crash_stack.pid("character") == character_pid, "the other app was never restarted"
    assert watcher.statuses and set(watcher.statuses) == {200}, "the character app answered throughout"

    # The history: everything before, the question, and the reply as far as it was checkpointed.
    messages = messages_of(gateway, "office", db_id, user_id, auth)
    assert messages[: len(earlier)] == earlier
    question, reply = messages[len(earlier) :]
    assert question["role"] == "user" and question["content"] == STORY
    assert reply["role"] == "assistant" and reply["meta"]["finish_reason"] == "interrupted"
    final_text = seen[-1][1]
    assert final_text.startswith(reply["content"]), "the stored reply is what the user saw, up to the checkpoint"
    safe = [text for at, text in seen if at <= killed_at - 1.5 * CHECKPOINT_INTERVAL_S]
    assert safe and len(reply["content"]) >= len(safe[-1]), "at most about one interval is lost"

    # The conversation goes on after the crash, on the restarted app.
    after = requests.post(
        f"{gateway}/office/Llama",
        json={"input_data": "Go on.", "db_id": db_id, "user_id": user_id},
        timeout=300,
        headers=auth,
    )
    assert after.status_code == 200, after.text
    assert [m["seq"] for m in messages_of(gateway, "office", db_id, user_id, auth)] == list(range(len(messages) + 2))


def test_sigterm_drains_and_stores_a_running_reply_as_interrupted(crash_stack, crash_auth):
    auth = crash_auth
    gateway = gateway_of(crash_stack)
    user_id, db_id = f"drain-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())

    async def stream_then_stop() -> str:
        async with websockets.connect(ws_url(gateway, "character"), additional_headers=auth) as ws:
            await recv(ws)  # status
            frame = {"type": "message", "db_id": db_id, "user_id": user_id, "input_data": STORY}
            await ws.send(json.dumps({**frame, "persona": "captain-rhea"}))
            assert (await recv(ws))["type"] == "start"
            text = (await recv(ws))["text"]
            # supervisord sends SIGTERM and waits: the app drains (1 s here), stops the reply, stores it.
            stopping = asyncio.get_running_loop().run_in_executor(None, crash_stack.app_stop, "character")
            try:
                while True:
                    frame = await recv(ws)
                    if frame["type"] == "token":
                        text += frame["text"]
            except websockets.ConnectionClosed:
                pass
            await stopping
            return text

    seen = asyncio.run(stream_then_stop())
    crash_stack.app_start("character")
    crash_stack.wait_app_ready("character")
    question, reply = messages_of(gateway, "character", db_id, user_id, auth)
    assert question["content"] == STORY
    assert reply["meta"]["finish_reason"] == "interrupted" and reply["meta"]["stopped_by"] == "shutdown", reply
    assert seen.startswith(reply["content"]) and reply["content"], "stored what was generated before the stop"
    assert reply["meta"]["tokens"] < 400
