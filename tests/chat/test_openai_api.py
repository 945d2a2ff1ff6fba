"""The OpenAI-compatible API, driven by the official `openai` package through nginx."""

from __future__ import annotations

import time

import openai
import pytest
import requests

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def client(gateway: str, service_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/office/v1", api_key=service_key, max_retries=0, timeout=120)


def alias(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_models_lists_the_model_and_every_persona(client):
    ids = [model.id for model in client.models.list().data]
    assert ids[0] == "smollm2-135m-instruct-q4_1"
    assert {"assistant", "writer"} <= set(ids)


def test_streaming_reply_with_usage(client):
    stream = client.chat.completions.create(
        model=alias(client),
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        max_tokens=24,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage

    assert text.strip()
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 3, "tokens arrive as chunks"
    assert finish in (["stop"], ["length"])
    assert usage is not None and chunks[-1].choices == []
    assert 0 < usage.completion_tokens <= 24 and usage.prompt_tokens > 0


def test_non_streaming_equals_streaming_under_greedy_decoding(client):
    kwargs = {"model": alias(client), "messages": QUESTION, "temperature": 0, "max_tokens": 24}
    whole = client.chat.completions.create(**kwargs)
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs) if c.choices
    )
    assert whole.choices[0].message.content == streamed
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_stop_and_max_tokens_are_honoured(client):
    free = client.chat.completions.create(model=alias(client), messages=QUESTION, temperature=0, max_tokens=32)
    text = free.choices[0].message.content
    word = next(w for w in text.split()[2:] if len(w) > 2)
    stopped = client.chat.completions.create(
        model=alias(client), messages=QUESTION, temperature=0, max_tokens=32, stop=[word]
    )
    assert stopped.choices[0].message.content == text[: text.index(word)]
    assert stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model=alias(client), messages=QUESTION, temperature=0, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_a_persona_can_be_chosen_by_model_name(client):
    reply = client.chat.completions.create(
        model="writer", messages=[{"role": "user", "content": "Polish: we will late."}], max_tokens=16, seed=1
    )
    assert reply.model == "writer" and reply.choices[0].message.content


def test_the_character_app_speaks_openai_too(gateway, service_key):
    client = openai.OpenAI(base_url=f"{gateway}/character/v1", api_key=service_key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="captain-rhea", messages=[{"role": "user", "content": "Where are we headed?"}], max_tokens=16
    )
    assert reply.choices[0].message.content


BAD = [
    ({"messages": QUESTION}, "model"),
    ({"model": "nope", "messages": QUESTION}, "model"),
    ({"model": "assistant", "messages": []}, "messages"),
    ({"model": "assistant", "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"model": "assistant", "messages": [{"role": "robot", "content": "hi"}]}, "messages.role"),
    ({"model": "assistant", "messages": QUESTION, "temperature": 5}, "temperature"),
    ({"model": "assistant", "messages": QUESTION, "max_tokens": 0}, "max_tokens"),
    ({"model": "assistant", "messages": QUESTION, "stop": [1]}, "stop"),
    ({"model": "assistant", "messages": QUESTION, "stream": "yes"}, "stream"),
    ({"model": "assistant", "messages": QUESTION, "n": 2}, "n"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_bad_requests_name_the_field(gateway, body, field, auth: dict[str, str]):
    response = requests.post(f"{gateway}/office/v1/chat/completions", json=body, timeout=30, headers=auth)
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["field"] == error["param"]
    assert error["field"].split(".")[0] == field.split(".")[0]
    assert error["message"] and error["type"] == "invalid_request_error"


def test_closing_a_stream_cancels_the_generation(gateway, auth: dict[str, str]):
    with requests.post(
        f"{gateway}/office/v1/chat/completions",
        json={
            "model": "assistant",
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "stream": True,
            "max_tokens": 48,
        },
        stream=True,
        timeout=60,
        headers=auth,
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(line for line in lines if line).startswith(b"data: ")
    deadline = time.monotonic() + 5
    while requests.get(f"{gateway}/office/performance", timeout=10, headers=auth).json()["active_requests"]:
        assert time.monotonic() < deadline, "the stream's generation kept running"
        time.sleep(0.05)
