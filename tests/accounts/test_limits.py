"""Per-account and per-address limits through nginx and the real apps: chat turns (REST,
WebSocket, OpenAI), replies at once, the daily token quota, uploads. Each refusal is a 429
with Retry-After in its interface's shape, stores nothing, and lands in the account's audit.

This module runs its own stack with small limits (daily windows, so that a test never
straddles a window's end), and each test talks from a loopback address of its own
(127.0.0.N: Linux routes the whole 127/8 to lo), so that the per-address count is the test's.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import websockets
from requests.adapters import HTTPAdapter

from tests.auth import PASSWORD, account_create, bearer, key_create, signin
from tests.conftest import stack_running
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import Stack, registry_derive

pytestmark = pytest.mark.slow

LIMITS = {
    "TURN_RATE_PER_ACCOUNT": "3/d",
    "TURN_RATE_PER_IP": "5/d",
    "GENERATIONS_PER_ACCOUNT": "1",
    "DAILY_TOKEN_QUOTA": "0",
    "UPLOAD_RATE_PER_ACCOUNT": "2/d",
    "TOOL_CALL_RATE_PER_ACCOUNT": "3/d",
    # The gateway's outer limits: 1 a minute after a burst of 8, per address.
    "GATEWAY_CHAT_RATE": "1r/m",
    "GATEWAY_CHAT_BURST": "8",
    "GATEWAY_SIGNIN_RATE": "1r/m",
    "GATEWAY_SIGNIN_BURST": "8",
}
STORY = "Write a long story about a dragon who lives in a castle."


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("limits-models") / "registry.toml",
        max_tokens=120,
        ignore_eos=True,  # a reply is 120 tokens on every CPU: long enough to overlap another
    )
    with stack_running(tmp_path_factory.mktemp("limits-var"), registry, extra_env=LIMITS) as stack:
        yield stack


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


_next_address = iter(range(10, 250))


def from_new_address(auth: dict[str, str] | None = None) -> tuple[requests.Session, str]:
    """A requests session whose connections come from a loopback address no other test uses."""
    address = f"127.0.0.{next(_next_address)}"
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    session.headers.update(auth or {})
    return session, address


def gateway_of(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.gateway_port}"


def turn(session: requests.Session, gateway: str, **body: Any) -> requests.Response:
    return session.post(f"{gateway}/office/Llama", json={"input_data": "Hi.", **body}, timeout=120)


def assert_refused(response: requests.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert int(response.headers["Retry-After"]) >= 1 and error["retry_after"] == int(response.headers["Retry-After"])
    return error


def audit_wait(stack: Stack, username: str, needle: str) -> bool:
    """Whether the account's audit gets a rate_limited entry saying `needle` (it is written
    off the request's thread, so it may land a moment later)."""
    for _ in range(20):
        out = stack.manage(
            "shell", "-v", "0", "-c",
            "from webapp.accounts.models import AuthEvent; "
            f"print(*AuthEvent.objects.filter(account__username={username!r}, kind='rate_limited')"
            ".values_list('detail', flat=True), sep='\\n')",
        )  # fmt: skip
        if needle in out:
            return True
        time.sleep(0.2)
    return False


async def ws_ask(gateway: str, address: str, auth: dict[str, str], frame: dict[str, Any]) -> dict[str, Any]:
    """Send one message frame on a new socket from `address`; the first answer frame."""
    url = gateway.replace("http://", "ws://") + "/office/ws/chat/"
    async with websockets.connect(url, additional_headers=auth, local_addr=(address, 0)) as ws:
        assert json.loads(await ws.recv())["type"] == "status"
        await ws.send(json.dumps({"type": "message", **frame}))
        return json.loads(await asyncio.wait_for(ws.recv(), timeout=60))


def test_turns_per_account_on_rest_websocket_and_openai_then_429_storing_nothing(limited: Stack) -> None:
    gateway, name = gateway_of(limited), account_create(limited)
    auth = bearer(key_create(limited, name))
    session, address = from_new_address(auth)
    db_id = str(uuid.uuid4())
    for _ in range(3):
        assert turn(session, gateway, db_id=db_id).status_code == 200
    stored = session.get(f"{gateway}/office/conversations/{db_id}/messages", timeout=30).json()["messages"]

    error = assert_refused(turn(session, gateway, db_id=db_id), "rate_limited")
    assert "this account" in error["message"] and "3 per d" in error["message"]
    frame = asyncio.run(ws_ask(gateway, address, auth, {"db_id": db_id, "input_data": "Hi."}))
    assert frame["type"] == "error" and frame["code"] == "rate_limited" and frame["retry_after"] >= 1
    completion = session.post(
        f"{gateway}/office/v1/chat/completions",
        json={"model": "assistant", "messages": [{"role": "user", "content": "Hi."}]},
        timeout=60,
    )
    assert_refused(completion, "rate_limited")
    assert completion.json()["error"]["type"] == "rate_limit_error"

    after = session.get(f"{gateway}/office/conversations/{db_id}/messages", timeout=30).json()["messages"]
    assert after == stored, "a refused turn stores nothing"
    assert audit_wait(limited, name, "turn rate per account")


def test_turns_per_address_count_every_account_from_it(limited: Stack) -> None:
    gateway = gateway_of(limited)
    first, second = account_create(limited), account_create(limited)
    session, _ = from_new_address(bearer(key_create(limited, first)))
    for _ in range(3):
        assert turn(session, gateway).status_code == 200
    other, _ = from_new_address(bearer(key_create(limited, second)))
    other.mount("http://", session.get_adapter("http://"))  # the same address, another account
    for _ in range(2):
        assert turn(other, gateway).status_code == 200
    error = assert_refused(turn(other, gateway), "rate_limited")
    assert "this address" in error["message"]
    # A third account's first turn from that address: refused for the address, not the account.
    third, _ = from_new_address(bearer(key_create(limited, account_create(limited))))
    third.mount("http://", session.get_adapter("http://"))
    assert "this address" in assert_refused(turn(third, gateway), "rate_limited")["message"]


def account_page_number(browser: requests.Session, gateway: str, testid: str) -> int:
    """A number on the account page of the signed-in `browser` session."""
    page = browser.get(f"{gateway}/accounts/", timeout=30).text
    shown = re.search(rf'data-testid="{testid}">(\d+)<', page)
    assert shown, page
    return int(shown.group(1))


def wait_for_page_number(browser: requests.Session, gateway: str, testid: str, wanted: Callable[[int], bool]) -> int:
    """The account page's number `testid` once `wanted` holds (the turn service releases and
    counts just after a reply ends)."""
    for _ in range(100):
        value = account_page_number(browser, gateway, testid)
        if wanted(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"{testid} stayed at {value}")


def test_one_reply_at_a_time_per_account_then_the_next_one_goes(limited: Stack) -> None:
    gateway, name = gateway_of(limited), account_create(limited)
    auth = bearer(key_create(limited, name))
    session, address = from_new_address(auth)
    url = gateway.replace("http://", "ws://") + "/office/ws/chat/"

    async def scenario() -> None:
        async with websockets.connect(url, additional_headers=auth, local_addr=(address, 0)) as ws:
            assert json.loads(await ws.recv())["type"] == "status"
            await ws.send(json.dumps({"type": "message", "input_data": STORY}))
            assert json.loads(await ws.recv())["type"] == "start"
            assert json.loads(await ws.recv())["type"] in ("token", "queued")
            busy = await asyncio.to_thread(turn, session, gateway)  # while the story is being written
            assert_refused(busy, "too_many_generations")
            while json.loads(await asyncio.wait_for(ws.recv(), timeout=120))["type"] != "done":
                pass

    asyncio.run(scenario())
    with signin(gateway, name) as browser:
        wait_for_page_number(browser, gateway, "running", lambda running: running == 0)
    response = turn(session, gateway)
    assert response.status_code == 200, response.text


def test_the_daily_token_quota_refuses_with_when_it_resets_and_the_account_page_shows_it(limited: Stack) -> None:
    gateway = gateway_of(limited)
    name = f"quota-{uuid.uuid4().hex[:8]}"
    limited.manage("account_create", name, "--password-stdin", "--daily-token-quota", "50", stdin=PASSWORD + "\n")
    session, _ = from_new_address(bearer(key_create(limited, name)))
    first = turn(session, gateway)
    assert first.status_code == 200
    used = int(first.headers["X-Prompt-Tokens"]) + int(first.headers["X-Completion-Tokens"])
    assert used > 50  # the prompt alone is longer: the next turn is over the quota
    browser = signin(gateway, name)
    assert wait_for_page_number(browser, gateway, "tokens-today", lambda tokens: tokens > 0) == used
    refused = turn(session, gateway)
    error = assert_refused(refused, "quota_exceeded")
    assert error["quota"] == 50 and error["used"] >= used and "00:00 UTC" in error["message"]
    assert int(refused.headers["Retry-After"]) <= 24 * 3600
    assert account_page_number(browser, gateway, "daily-tokens") == 50
    assert account_page_number(browser, gateway, "tokens-today") == error["used"]


def test_uploads_per_account(limited: Stack) -> None:
    gateway, name = gateway_of(limited), account_create(limited)
    session, _ = from_new_address(bearer(key_create(limited, name)))

    def upload() -> requests.Response:
        return session.post(
            f"{gateway}/office/documents", files={"file": ("n.txt", b"A short note about receipts.")}, timeout=60
        )

    assert [upload().status_code for _ in range(2)] == [201, 201]
    error = assert_refused(upload(), "rate_limited")
    assert error["field"] == "file"
    documents = session.get(f"{gateway}/office/documents", timeout=30).json()["documents"]
    assert len(documents) == 2


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/office/Llama", {"input_data": "Hi."}),
        ("/character/v1/chat/completions", {"model": "captain-rhea", "messages": [{"role": "user", "content": "Hi"}]}),
        ("/accounts/signin", None),
    ],
)
def test_the_gateway_answers_a_flood_with_429_json_and_retry_after(limited: Stack, path: str, body: Any) -> None:
    """nginx's outer limit: past the burst it answers itself (the apps never see the request),
    with 429, Retry-After and the error shape; a browser gets a page."""
    session, _ = from_new_address()
    statuses = []
    for _ in range(12):
        if body is None:
            response = session.post(gateway_of(limited) + path, data={"username": "x", "password": "y"}, timeout=30)
        else:
            response = session.post(gateway_of(limited) + path, json=body, timeout=30)
        statuses.append(response.status_code)
        if response.status_code == 429 and response.headers.get("Server", "").startswith("nginx"):
            break
    assert statuses[:9] == [statuses[0]] * 9 and statuses[0] in (401, 403), statuses  # the app answered those
    assert response.status_code == 429 and response.headers["Server"].startswith("nginx"), statuses
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "rate_limited" and response.headers["Retry-After"] == "10"
    page = session.post(gateway_of(limited) + path, headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 429 and page.headers["Content-Type"].startswith("text/html")
    assert 'data-testid="rate-limited"' in page.text and page.headers["Retry-After"] == "10"


def test_tool_calls_per_account_whichever_end_user_a_service_key_names(limited: Stack) -> None:
    """Each tool has its own allowance per user; the account as a whole is capped too, so a
    service key rotating its end users gains nothing past TOOL_CALL_RATE_PER_ACCOUNT."""
    gateway, name = gateway_of(limited), account_create(limited)
    session, _ = from_new_address(bearer(key_create(limited, name, scope="service")))

    def clock(user_id: str) -> requests.Response:
        return session.post(
            f"{gateway}/office/tools/current_time/call", json={"arguments": {}, "user_id": user_id}, timeout=30
        )

    assert [clock(f"end-{i}").status_code for i in range(3)] == [200, 200, 200]
    error = assert_refused(clock("end-99"), "rate_limited")
    assert "tool calls from this account" in error["message"]
