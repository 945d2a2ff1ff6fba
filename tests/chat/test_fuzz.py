"""Fuzzing the JSON interfaces through nginx with Hypothesis: valid bodies with one field made
hostile (deep nesting, huge or non-finite numbers, lone surrogates, odd keys, wrong types),
and whole hostile bodies. Whatever arrives, the answer is never a 5xx, an error always has
the project's shape, and a WebSocket stays usable.

Seeded (derandomize): the same examples run in every CI run, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import requests
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chat.test_websocket import recv, ws_url

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text that is not all text: lone surrogates (json.dumps writes them as \\udXXX escapes),
# NUL, control characters, Korean, emoji, $-keys and dotted keys.
text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "$where", "a.b", "안녕", "😀", " ", ""]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(10**400),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, text)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)


class Deep(str):
    """Raw JSON text nested `levels` deep: deeper than json.dumps (or json.loads) can recurse."""


def deep(levels: int) -> Deep:
    return Deep('{"a": [' * levels + '"x"' + "]}" * levels)


hostile = st.one_of(values, st.integers(min_value=20, max_value=3000).map(deep))


def raw(value: Any) -> str:
    # ensure_ascii (the default): lone surrogates become \udXXX escapes, NaN stays NaN.
    return str(value) if isinstance(value, Deep) else json.dumps(value)


def body_mutated(base: dict[str, Any], data: st.DataObject) -> bytes:
    """`base` with one field replaced, one added, or the whole body replaced; as raw JSON."""
    how = data.draw(st.sampled_from(["replace", "add", "whole"]))
    if how == "whole":
        return raw(data.draw(hostile)).encode()
    body: dict[str, Any] = dict(base)
    key = data.draw(st.sampled_from(sorted(base))) if how == "replace" else data.draw(text)
    body[key] = data.draw(hostile)
    return ("{" + ", ".join(f"{json.dumps(k)}: {raw(v)}" for k, v in body.items()) + "}").encode()


def assert_clean(response: requests.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        assert error["field"] is None or isinstance(error["field"], str)


def base_bodies(user_id: str) -> dict[str, dict[str, Any]]:
    return {
        "/character/Llama": {
            "input_data": "hi",
            "persona": "captain-rhea",
            "db_id": str(uuid.uuid4()),
            "user_id": user_id,
        },
        "/office/v1/chat/completions": {
            "model": "assistant",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        },
        "/office/documents/search": {"user_id": user_id, "query": "policy", "k": 3},
        "/office/tools/calculator/call": {"user_id": user_id, "arguments": {"expression": "1+2"}},
        "/character/groups": {"user_id": user_id, "members": ["captain-rhea", "seoyeon"], "activation": "list"},
    }


@pytest.mark.parametrize(
    "path",
    [
        "/character/Llama",
        "/office/v1/chat/completions",
        "/office/documents/search",
        "/office/tools/calculator/call",
        "/character/groups",
    ],
)
def test_json_endpoints_never_answer_5xx(gateway, path, auth: dict[str, str]):
    user_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    base = base_bodies(user_id)[path]
    statuses: set[int] = set()

    @FUZZ
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        body = body_mutated(base, data)
        response = requests.post(
            f"{gateway}{path}", data=body, headers={"Content-Type": "application/json", **auth}, timeout=120
        )
        assert_clean(response)
        statuses.add(response.status_code)

    one()
    assert 401 not in statuses, "signed in: the bodies reach the endpoint, not just the authentication"
    assert statuses & {400, 413, 422}, statuses


def test_websocket_frames_never_break_the_socket(gateway, auth: dict[str, str]):
    user_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    base = {
        "type": "message",
        "input_data": "hi",
        "persona": "captain-rhea",
        "db_id": str(uuid.uuid4()),
        "user_id": user_id,
    }

    async def exchange(frames: list[bytes]) -> list[dict[str, Any]]:
        answers = []
        async with websockets.connect(ws_url(gateway, "character"), max_size=2**20, additional_headers=auth) as ws:
            await recv(ws)  # status
            for frame in [*frames, b'{"type": "nonsense"}']:
                await ws.send(frame.decode())
                while True:  # a frame that started a turn is answered by its done (or an error)
                    answer = await recv(ws)
                    if answer["type"] in ("error", "done"):
                        answers.append(answer)
                        break
        return answers

    @FUZZ
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        frames = [body_mutated(base, data) for _ in range(data.draw(st.integers(min_value=1, max_value=3)))]
        answers = asyncio.run(exchange(frames))
        assert all(a.get("code") != "server_error" for a in answers), answers
        assert answers[-1]["code"] == "unknown_type", "the socket still answers after the fuzzed frames"

    one()
