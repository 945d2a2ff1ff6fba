"""The chat WebSocket consumer, in process, with the real default model and a real store.

Channels' WebsocketCommunicator drives the consumer through the same ASGI stack that
daphne serves (origin check, URL router). Every test disconnects and checks that no
stray frame arrived. End-to-end WebSocket tests through nginx live in test_websocket.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from webapp.accounts.identity import Principal
from webapp.chat import consumers, resume, runtime, services
from webapp.chat.routing import BrowserOriginValidator, websocket_urlpatterns
from webapp.chat.turns import TurnDeps, TurnRequest, turn_collect
from webapp.engine.llama import LlamaEngine
from webapp.engine.registry import ModelSpec, SamplingDefaults, registry_load
from webapp.store.chat_store import ChatStore
from webapp.store.client import StoreConfig, database_get, message_log_get

pytestmark = pytest.mark.slow

PATH = "/office/ws/chat/"
STORY = "Write a long story about a dragon who lives in a castle."
TIMEOUT = 60


@pytest.fixture(scope="module")
def spec(test_registry: Path) -> ModelSpec:
    return registry_load(test_registry)["office"]


@pytest.fixture(scope="module")
def engine(spec: ModelSpec) -> Iterator[LlamaEngine]:
    running = LlamaEngine(spec)
    yield running
    running.close()


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    config = StoreConfig(app="office", mongo_url=None, embedded_dir=tmp_path)
    return ChatStore(database_get(config), app="office", embedded=True, messages=message_log_get(config))


@pytest.fixture
def max_tokens(monkeypatch: pytest.MonkeyPatch, spec: ModelSpec) -> Callable[[int], None]:
    """Serve replies of at most n tokens (long ones make cancellation measurable)."""

    def use(n: int) -> None:
        sampling = dataclasses.replace(spec.sampling, max_tokens=n)
        patched = dataclasses.replace(spec, sampling=sampling)
        monkeypatch.setattr(runtime, "model_spec_get", lambda: patched)

    return use


# Who the sockets of this module speak for. Authentication itself is tested through nginx
# with real accounts (tests/accounts); here the consumer gets a principal without a database:
# a service key's, so each test's `user_id` is an end user of its own (stored as OWNER + it).
PRINCIPAL = Principal(account_id=1, username="tester", role="user", via="service")
OWNER = f"{PRINCIPAL.owner}/"


@pytest.fixture(autouse=True)
def signed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "socket_principal", lambda scope: PRINCIPAL)
    # No account limits here (they read the accounts database this module has none of):
    # tests/accounts/test_limits.py checks them over the real WebSocket.
    monkeypatch.setattr(consumers, "TurnLimits", lambda principal, ip: None)


@pytest.fixture(autouse=True)
def served(
    monkeypatch: pytest.MonkeyPatch, engine: LlamaEngine, store: ChatStore, max_tokens: Callable[[int], None]
) -> Iterator[None]:
    """The consumer talks to this module's real engine and a store in a temp folder."""
    max_tokens(32)
    monkeypatch.setattr(runtime, "chat_store_get", lambda: store)
    runtime.engine_override(engine)
    yield
    runtime.engine_override(None)


def application() -> Any:
    return BrowserOriginValidator(URLRouter(websocket_urlpatterns))


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=TIMEOUT * 2))


async def connected(headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application(), PATH, headers=headers or [])
    ok, _ = await communicator.connect()
    assert ok
    status = await communicator.receive_json_from()
    assert status == {"type": "status", "state": "ready", "model": runtime.model_spec_get().alias}
    return communicator


async def closed(communicator: WebsocketCommunicator) -> None:
    assert await communicator.receive_nothing(timeout=0.3), "a stray frame arrived"
    await communicator.disconnect()


async def turn(communicator: WebsocketCommunicator, **frame: Any) -> tuple[dict, list[str], dict]:
    """Send one frame (a message, unless `type` says otherwise); return (start, token texts, done)."""
    await communicator.send_json_to({"type": "message", **frame})
    start = await communicator.receive_json_from(timeout=TIMEOUT)
    assert start["type"] == "start", start
    texts: list[str] = []
    while True:
        frame_in = await communicator.receive_json_from(timeout=TIMEOUT)
        if frame_in["type"] != "token":
            assert frame_in["type"] == "done", frame_in
            return start, texts, frame_in
        texts.append(frame_in["text"])


def message_frame(db_id: str, user_id: str, text: str = "Say hello in one short sentence.") -> dict[str, str]:
    return {"db_id": db_id, "user_id": user_id, "input_data": text}


def test_a_turn_streams_tokens_and_stores_the_reply_before_done(store: ChatStore) -> None:
    db_id, user_id = str(uuid.uuid4()), "ws-user"

    async def scenario() -> None:
        communicator = await connected()
        start, texts, done = await turn(communicator, **message_frame(db_id, user_id))
        # Persist, then publish: the reply is in the store when "done" arrives.
        stored = store.messages_all(db_id)
        await closed(communicator)

        assert start["db_id"] == db_id and start["persona"] == "assistant" and start["regenerates"] is None
        assert len(texts) >= 2, "tokens should arrive as separate frames"
        assert [(m.role, m.id) for m in stored] == [
            ("user", start["user_message_id"]),
            ("assistant", done["message_id"]),
        ]
        assert done["message_id"] == start["message_id"]
        assert stored[1].content == "".join(texts)
        assert done["finish_reason"] in ("stop", "length")
        assert done["usage"]["completion_tokens"] == stored[1].meta["tokens"] > 0
        assert done["usage"]["prompt_tokens"] > 0
        assert done["timings"]["ttft_ms"] > 0 and done["timings"]["tokens_per_s"] > 0

    run(scenario)


def test_stop_ends_the_turn_and_stores_the_partial_reply(store: ChatStore, max_tokens) -> None:
    max_tokens(400)
    db_id, user_id = str(uuid.uuid4()), "ws-user"

    async def scenario() -> None:
        communicator = await connected()
        await communicator.send_json_to({"type": "message", **message_frame(db_id, user_id, STORY)})
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "start"
        first = await communicator.receive_json_from(timeout=TIMEOUT)
        assert first["type"] == "token"
        await communicator.send_json_to({"type": "stop"})
        texts = [first["text"]]
        while (frame := await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "token":
            texts.append(frame["text"])
        await closed(communicator)

        assert frame["type"] == "done" and frame["finish_reason"] == "stopped"
        assert frame["usage"]["completion_tokens"] < 100
        reply = store.messages_all(db_id)[-1]
        assert reply.id == frame["message_id"]
        assert reply.content == "".join(texts)
        assert reply.meta["finish_reason"] == "stopped" and reply.meta["stopped_by"] == "user"

    run(scenario)


def test_disconnect_cancels_generation_at_once(store: ChatStore, engine: LlamaEngine, max_tokens) -> None:
    max_tokens(400)  # ~5 s of generation if it were not cancelled
    db_id, user_id = str(uuid.uuid4()), "ws-user"

    async def scenario() -> float:
        communicator = await connected()
        await communicator.send_json_to({"type": "message", **message_frame(db_id, user_id, STORY)})
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "start"
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "token"
        await communicator.disconnect()
        return time.perf_counter()

    left_at = asyncio.run(scenario())
    while engine.active_requests() or engine.queue_depth():
        assert time.perf_counter() - left_at < 1.0, "the engine kept generating for a client that left"
        time.sleep(0.01)

    reply = store.messages_all(db_id)[-1]
    assert reply.role == "assistant"
    assert reply.meta["finish_reason"] == "stopped" and reply.meta["stopped_by"] == "disconnect"
    assert reply.meta["tokens"] < 100


def test_a_dropped_socket_nobody_resumes_is_stopped_after_the_grace_period(
    store: ChatStore, engine: LlamaEngine, max_tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_tokens(400)
    monkeypatch.setattr(resume, "RESUME_GRACE_S", 0.5)
    db_id, user_id = str(uuid.uuid4()), "ws-user"

    async def scenario() -> tuple[float, bool]:
        communicator = await connected()
        await communicator.send_json_to({"type": "message", **message_frame(db_id, user_id, STORY)})
        start = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "token"
        await communicator.disconnect(code=1006)  # the network, not the user: resumable for a while
        dropped_at = time.perf_counter()
        await asyncio.sleep(0.2)
        still_running = (
            engine.active_requests() > 0 and resume.stream_find(start["message_id"], OWNER + user_id) is not None
        )
        while engine.active_requests() or engine.queue_depth():
            assert time.perf_counter() - dropped_at < 120, "the turn never ended"
            await asyncio.sleep(0.05)
        # Its reply is being stored: wait for it (a fixed sleep was a bet on the CPU's speed).
        while not (stored := store.messages_all(db_id)) or stored[-1].role != "assistant":
            assert time.perf_counter() - dropped_at < 120, "the stopped reply was never stored"
            await asyncio.sleep(0.05)
        return dropped_at, still_running

    _, still_running = asyncio.run(scenario())
    assert still_running, "within the grace period the turn goes on, waiting for a resume"
    reply = store.messages_all(db_id)[-1]
    assert reply.meta["finish_reason"] == "stopped" and reply.meta["stopped_by"] == "disconnect"
    assert reply.meta["tokens"] < 400


BAD_FRAMES = [
    ("not json", "malformed_json", None),
    ("[1, 2]", "malformed_json", None),
    ('{"input_data": "hi"}', "unknown_type", "type"),
    ('{"type": "shout"}', "unknown_type", "type"),
    (json.dumps({"type": "message", "db_id": "DB", "user_id": "u"}), "required", "input_data"),
    (json.dumps({"type": "message", "db_id": "DB", "user_id": "u", "input_data": ""}), "blank", "input_data"),
    (
        json.dumps({"type": "message", "db_id": "DB", "user_id": "u", "input_data": "x" * 501}),
        "max_length",
        "input_data",
    ),
    (json.dumps({"type": "message", "db_id": "DB", "user_id": "u", "input_data": 7}), "invalid", "input_data"),
    (json.dumps({"type": "message", "db_id": "nope", "user_id": "u", "input_data": "hi"}), "invalid", "db_id"),
    (json.dumps({"type": "message", "db_id": "DB", "user_id": 5, "input_data": "hi"}), "invalid", "user_id"),
    (
        json.dumps({"type": "message", "db_id": "DB", "user_id": "u", "input_data": "hi", "persona": "x"}),
        "invalid",
        "persona",
    ),
    (
        json.dumps({"type": "message", "db_id": "DB", "user_id": "u", "input_data": "a" * 17000}),
        "frame_too_large",
        None,
    ),
    (json.dumps({"type": "regenerate", "db_id": "DB", "user_id": "u"}), "not_found", "db_id"),
]


@pytest.mark.parametrize(("raw", "code", "field"), BAD_FRAMES)
def test_bad_frames_get_an_error_and_the_socket_stays_usable(store: ChatStore, raw: str, code: str, field: str) -> None:
    db_id = str(uuid.uuid4())

    async def scenario() -> None:
        communicator = await connected()
        await communicator.send_to(text_data=raw.replace("DB", db_id))
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        assert error["type"] == "error"
        assert (error["code"], error["field"]) == (code, field), error
        assert error["message"]
        assert store.conversation_get(db_id) is None, "a refused frame must store nothing"

        _, texts, done = await turn(communicator, **message_frame(str(uuid.uuid4()), "u"))
        assert texts and done["finish_reason"] in ("stop", "length")
        await closed(communicator)

    run(scenario)


def test_one_generation_at_a_time_per_socket() -> None:
    async def scenario() -> None:
        communicator = await connected()
        await communicator.send_json_to({"type": "message", **message_frame(str(uuid.uuid4()), "u")})
        await communicator.send_json_to({"type": "message", **message_frame(str(uuid.uuid4()), "u")})
        frames = []
        while not frames or frames[-1]["type"] != "done":
            frames.append(await communicator.receive_json_from(timeout=TIMEOUT))
        await closed(communicator)

        errors = [f for f in frames if f["type"] == "error"]
        assert [e["code"] for e in errors] == ["generation_in_progress"]
        assert [f["type"] for f in frames].count("start") == 1

    run(scenario)


def test_regenerate_adds_a_swipe_to_the_last_reply_and_keeps_the_old_one(store: ChatStore) -> None:
    db_id, user_id = str(uuid.uuid4()), "ws-user"

    async def scenario() -> None:
        communicator = await connected()
        first_start, _, _ = await turn(communicator, **message_frame(db_id, user_id, "Hi! Who are you?"))
        second_start, _, second_done = await turn(communicator, **message_frame(db_id, user_id, "Tell me a fun fact."))
        await communicator.send_json_to({"type": "regenerate", "db_id": db_id, "user_id": user_id})
        start = await communicator.receive_json_from(timeout=TIMEOUT)
        while (frame := await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "token":
            pass
        # An earlier reply is answered again too, from the history before it.
        await communicator.send_json_to(
            {"type": "regenerate", "db_id": db_id, "user_id": user_id, "message_id": first_start["message_id"]}
        )
        earlier = await communicator.receive_json_from(timeout=TIMEOUT)
        while (earlier_done := await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "token":
            pass
        # Naming a user message is refused; nothing runs.
        await communicator.send_json_to(
            {"type": "regenerate", "db_id": db_id, "user_id": user_id, "message_id": first_start["user_message_id"]}
        )
        refused = await communicator.receive_json_from(timeout=TIMEOUT)
        await closed(communicator)

        assert (refused["type"], refused["code"], refused["field"]) == ("error", "not_a_reply", "message_id")
        assert earlier["regenerates"] == first_start["message_id"] and earlier_done["type"] == "done"
        assert earlier_done["message_id"] == first_start["message_id"]
        first = store.message_get(db_id, first_start["message_id"])
        assert first is not None and len(first.meta["swipes"]) == 2 and first.meta["swipe_id"] == 1
        assert first.meta["prompt"]["history_message_ids"] == [], "as it was then: nothing before its question"
        assert start["type"] == "start" and frame["type"] == "done"
        assert start["regenerates"] == second_start["message_id"]
        assert start["user_message_id"] == second_start["user_message_id"]
        assert frame["message_id"] == second_start["message_id"], "the answer lands in the same message"
        stored = store.messages_all(db_id)
        assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
        reply = stored[3]
        assert reply.id == second_start["message_id"] and reply.meta["swipe_id"] == 1
        swipes = reply.meta["swipes"]
        assert [s["id"] for s in swipes] == [second_start["message_id"], start["message_id"]]
        assert swipes[0]["meta"]["timings"] and swipes[1]["meta"]["timings"], "each alternative keeps its timings"
        assert reply.content == swipes[1]["content"]
        # The new answer saw the same question with only the first exchange as history.
        assert reply.meta["prompt"]["history_message_ids"] == [stored[0].id, first_start["message_id"]]
        assert second_done["message_id"] == reply.id

    run(scenario)


def test_history_is_shared_with_the_rest_service(store: ChatStore, engine: LlamaEngine, spec: ModelSpec) -> None:
    """A conversation started the way REST runs a turn (turn_collect) continues over WebSocket."""
    db_id, user_id = str(uuid.uuid4()), "ws-user"
    request = TurnRequest(
        user_id=OWNER + user_id,
        db_id=db_id,
        persona=runtime.personas_get().default,
        sampling=services.sampling_params(SamplingDefaults(**{**spec.sampling.__dict__, "max_tokens": 16})),
        text="My name is Minji.",
    )
    rest_done = async_to_sync(turn_collect)(request, deps=TurnDeps(engine=engine, store=store))
    rest_turn = [m.id for m in store.messages_all(db_id)]
    assert rest_done.message is not None and rest_turn[1] == rest_done.message.id

    async def scenario() -> None:
        communicator = await connected()
        _, _, done = await turn(communicator, **message_frame(db_id, user_id, "What is my name?"))
        await closed(communicator)
        reply = store.messages_all(db_id)[-1]
        assert reply.id == done["message_id"]
        assert reply.meta["prompt"]["history_message_ids"] == rest_turn

    run(scenario)


def test_another_users_conversation_is_not_found(store: ChatStore) -> None:
    db_id = str(uuid.uuid4())

    async def scenario() -> None:
        communicator = await connected()
        await turn(communicator, **message_frame(db_id, "owner"))
        await communicator.send_json_to({"type": "message", **message_frame(db_id, "intruder")})
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        await closed(communicator)
        assert (error["type"], error["code"], error["field"]) == ("error", "not_found", "db_id")
        assert len(store.messages_all(db_id)) == 2

    run(scenario)


def test_a_message_while_the_model_loads_gets_model_loading() -> None:
    runtime.engine_override(None)

    async def scenario() -> None:
        communicator = WebsocketCommunicator(application(), PATH)
        assert (await communicator.connect())[0]
        status = await communicator.receive_json_from()
        await communicator.send_json_to({"type": "message", **message_frame(str(uuid.uuid4()), "u")})
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        await closed(communicator)
        assert status["state"] != "ready"
        assert error["code"] == "model_loading"

    run(scenario)


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(None, True), (b"http://localhost:8080", True), (b"http://127.0.0.1:9", True), (b"https://evil.example", False)],
)
def test_cross_site_pages_are_refused(origin: bytes | None, accepted: bool) -> None:
    async def scenario() -> None:
        headers = [(b"origin", origin)] if origin else []
        communicator = WebsocketCommunicator(application(), PATH, headers=headers)
        ok, _ = await communicator.connect()
        assert ok is accepted
        if ok:
            assert (await communicator.receive_json_from())["type"] == "status"
            await closed(communicator)

    run(scenario)


def test_a_waiting_client_learns_its_queue_position(spec: ModelSpec, max_tokens) -> None:
    max_tokens(300)
    one_slot = LlamaEngine(dataclasses.replace(spec, slots=1, max_wait_s=1000.0))
    runtime.engine_override(one_slot)

    async def scenario() -> None:
        first, second = await connected(), await connected()
        await first.send_json_to({"type": "message", **message_frame(str(uuid.uuid4()), "u", STORY)})
        assert (await first.receive_json_from(timeout=TIMEOUT))["type"] == "start"
        assert (await first.receive_json_from(timeout=TIMEOUT))["type"] == "token"
        await second.send_json_to({"type": "message", **message_frame(str(uuid.uuid4()), "u")})
        assert (await second.receive_json_from(timeout=TIMEOUT))["type"] == "start"
        assert await second.receive_json_from(timeout=TIMEOUT) == {"type": "queued", "position": 1}
        await first.send_json_to({"type": "stop"})  # frees the slot: the second is served
        while (frame := await second.receive_json_from(timeout=TIMEOUT))["type"] != "done":
            assert frame["type"] == "token"
        while (await first.receive_json_from(timeout=TIMEOUT))["type"] != "done":
            pass
        await closed(first)
        await closed(second)

    try:
        run(scenario)
    finally:
        one_slot.close()


def test_continue_adds_the_rest_to_the_last_reply(store: ChatStore, max_tokens: Callable[[int], None]) -> None:
    """A reply cut at the length limit goes on from where it ends: the streamed text is
    added to the same stored message, and its token count adds up."""
    db_id, user_id = str(uuid.uuid4()), "ws-user"
    max_tokens(8)

    async def scenario() -> None:
        communicator = await connected()
        start, _, done = await turn(communicator, **message_frame(db_id, user_id, "Tell me a long story."))
        before = store.message_get(db_id, done["message_id"])
        more = await turn(communicator, type="continue", db_id=db_id, user_id=user_id, message_id=done["message_id"])
        await communicator.send_json_to(
            {"type": "continue", "db_id": db_id, "user_id": user_id, "message_id": start["user_message_id"]}
        )
        refused = await communicator.receive_json_from(timeout=TIMEOUT)
        await closed(communicator)

        again_start, texts, again_done = more
        assert before is not None and before.meta["finish_reason"] == "length"
        assert again_start["continues"] == done["message_id"] and again_done["message_id"] == done["message_id"]
        stored = store.messages_all(db_id)
        assert [m.role for m in stored] == ["user", "assistant"], "no new message: the same reply, longer"
        reply = stored[1]
        assert reply.content == before.content + "".join(texts) and len(reply.content) > len(before.content)
        assert reply.meta["continued"] == 1
        assert reply.meta["tokens"] == before.meta["tokens"] + again_done["usage"]["completion_tokens"]
        assert (refused["type"], refused["code"], refused["field"]) == ("error", "not_the_last_reply", "message_id")

    run(scenario)
