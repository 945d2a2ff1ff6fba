"""Bounded admission through the real stack: 429 + Retry-After in REST, WebSocket and the
OpenAI API alike, and recovery after.

This module runs its own stack with one slot and a wait limit shorter than one reply, so
while one long reply is generated every other request is refused, whatever the
machine's speed. (Queue positions are tested in test_consumer.py and the engine tests.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
import websockets

from tests.auth import account_create, bearer, key_create
from tests.conftest import stack_running
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import Stack, registry_derive

pytestmark = pytest.mark.slow

STORY = "Write a long story about a dragon who lives in a castle."


@pytest.fixture(scope="module")
def busy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("busy-models") / "registry.toml",
        max_tokens=200,
        slots=1,
        max_wait_s=0.5,
        ignore_eos=True,  # a story is 200 tokens long on every CPU: it holds the one slot
    )
    with stack_running(tmp_path_factory.mktemp("busy-var"), registry) as stack:
        yield stack


@pytest.fixture(scope="module")
def busy_auth(busy_stack: Stack) -> dict[str, str]:
    return bearer(key_create(busy_stack, account_create(busy_stack), scope="service"))


@pytest.fixture(scope="module")
def busy_gateway(busy_stack: Stack, busy_auth: dict[str, str]) -> str:
    gateway = f"http://127.0.0.1:{busy_stack.config.gateway_port}"
    # One turn first, so the engine has measured its decode rate: the wait estimate
    # (and so who is queued and who is refused) then doesn't depend on a cold start.
    warm = {"input_data": "Hi", "db_id": str(uuid.uuid4()), "user_id": "warm-up"}
    assert requests.post(f"{gateway}/office/Llama", json=warm, headers=busy_auth, timeout=120).ok
    return gateway


async def flood(gateway: str, auth: dict[str, str], n: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Open n sockets and ask a long question on each; return the first answer frames
    (queued / start / error) and the open sockets."""
    url = gateway.replace("http://", "ws://") + "/office/ws/chat/"
    sockets = [await websockets.connect(url, additional_headers=auth) for _ in range(n)]
    for ws in sockets:
        await ws.recv()  # status
    for ws in sockets:
        frame = {"type": "message", "db_id": str(uuid.uuid4()), "user_id": "flood", "input_data": STORY}
        await ws.send(json.dumps(frame))
    answers = []
    for ws in sockets:
        frames = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            frames.append(frame)
            if frame["type"] in ("error", "token", "done") or (frame["type"] == "queued"):
                break
        answers.append(frames)
    return answers, sockets


def test_overload_gets_429_with_retry_after_everywhere_then_recovers(busy_gateway, busy_auth):
    async def scenario() -> None:
        answers, sockets = await flood(busy_gateway, busy_auth, 4)
        kinds = [frames[-1]["type"] for frames in answers]
        errors = [frames[-1] for frames in answers if frames[-1]["type"] == "error"]

        assert kinds.count("token") + kinds.count("done") == 1, answers
        assert len(errors) == 3, answers
        for error in errors:
            assert error["code"] == "server_busy" and error["retry_after"] >= 1 and error["queue_size"] in (0, 1)

        # While the queue is full, REST and the OpenAI API refuse the same way.
        rest = requests.post(
            f"{busy_gateway}/office/Llama",
            json={"input_data": "Hi", "db_id": str(uuid.uuid4()), "user_id": "late"},
            headers=busy_auth,
            timeout=30,
        )
        assert rest.status_code == 429, rest.text
        assert int(rest.headers["Retry-After"]) >= 1
        body = rest.json()["error"]
        assert body["code"] == "server_busy" and body["retry_after"] == int(rest.headers["Retry-After"])

        client = openai.OpenAI(
            base_url=f"{busy_gateway}/office/v1",
            api_key=busy_auth["Authorization"].removeprefix("Bearer "),
            max_retries=0,
            timeout=30,
        )
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "Hi"}])
        assert int(refused.value.response.headers["Retry-After"]) >= 1

        for ws in sockets:
            await ws.close()

    asyncio.run(scenario())

    # Closed sockets cancel their turns; the service is free again at once.
    performance = {}
    for _ in range(100):
        performance = requests.get(f"{busy_gateway}/office/performance", timeout=10, headers=busy_auth).json()
        if performance["active_requests"] == 0 and performance["queue_size"] == 0:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert performance["queue_size"] == 0
    ok = requests.post(
        f"{busy_gateway}/office/Llama",
        json={"input_data": "Hi", "db_id": str(uuid.uuid4()), "user_id": "after"},
        headers=busy_auth,
        timeout=120,
    )
    assert ok.status_code == 200, ok.text
