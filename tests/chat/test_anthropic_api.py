"""Anthropic's Messages API (/v1/messages), driven by the official `anthropic` package
through nginx, on the real model. Nothing here asserts what the model writes: tool use is
forced by tool_choice (a grammar), structured output by its schema, the rest is structure."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
import requests
from anthropic.types import message_create_params
from jsonschema import validate

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"
QUESTION = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"temperature": 0, "top_k": 1}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def client(gateway: str, service_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{gateway}/office", api_key=service_key, max_retries=0, timeout=120)


def test_a_reply_with_a_system_prompt(client):
    message = client.messages.create(
        model=MODEL, max_tokens=16, system="Be brief.", messages=QUESTION, extra_body=GREEDY
    )
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 16 and message.usage.input_tokens > 0


def test_streaming_equals_the_whole_reply_under_greedy_decoding(client):
    whole = client.messages.create(model=MODEL, max_tokens=24, messages=QUESTION, extra_body=GREEDY)
    with client.messages.stream(model=MODEL, max_tokens=24, messages=QUESTION, extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3, "text arrives as deltas"
    assert "".join(pieces) == final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens


def test_stop_sequences_and_max_tokens(client):
    free = client.messages.create(model=MODEL, max_tokens=32, messages=QUESTION, extra_body=GREEDY).content[0].text
    word = next(w for w in free.split()[2:] if len(w) > 2)
    stopped = client.messages.create(
        model=MODEL, max_tokens=32, messages=QUESTION, stop_sequences=[word], extra_body=GREEDY
    )
    assert stopped.content[0].text == free[: free.index(word)]
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    short = client.messages.create(model=MODEL, max_tokens=3, messages=QUESTION, extra_body=GREEDY)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


def test_a_forced_tool_use_and_its_result(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=ask, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    )
    assert message.stop_reason == "tool_use"
    call = message.content[0]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    validate(call.input, WEATHER["input_schema"])
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, sunny"}
    follow = client.messages.create(
        model=MODEL,
        max_tokens=16,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[*ask, {"role": "assistant", "content": message.content}, {"role": "user", "content": [result]}],
    )
    alone = client.messages.create(
        model=MODEL, max_tokens=16, tools=[WEATHER], tool_choice={"type": "none"}, messages=ask
    )
    assert follow.content[0].type == "text" and follow.stop_reason in ("end_turn", "max_tokens")
    assert follow.usage.input_tokens > alone.usage.input_tokens + 10, "the call and its result are in the prompt"


def test_a_streamed_tool_use(client):
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].type == "tool_use"
    validate(final.content[0].input, WEATHER["input_schema"])


def test_structured_output(client):
    schema = {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
        },
        "required": ["color", "count"],
        "additionalProperties": False,
    }
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=QUESTION,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        extra_body=GREEDY,
    )
    assert message.stop_reason == "end_turn", message
    validate(json.loads(message.content[0].text), schema)


def test_a_prefill_is_part_of_the_prompt(client):
    plain = client.messages.create(model=MODEL, max_tokens=4, messages=QUESTION, extra_body=GREEDY)
    prefilled = client.messages.create(
        model=MODEL,
        max_tokens=4,
        messages=[*QUESTION, {"role": "assistant", "content": "The three colors are"}],
        extra_body=GREEDY,
    )
    assert prefilled.usage.input_tokens > plain.usage.input_tokens


# Every request field of the SDK, plus the sampling fields Anthropic's API takes (the SDK's
# typed parameters leave them out; clients such as LangChain send them).
HONOURED: dict[str, Any] = {
    "max_tokens": 4,
    "messages": QUESTION,
    "model": MODEL,
    "metadata": {"user_id": "someone"},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    "service_tier": "standard_only",
    "stop_sequences": ["\n\n"],
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "none"},
    "tools": [WEATHER],
    "cache_control": {"type": "ephemeral"},
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "stream": False,
}
REFUSED: dict[str, Any] = {
    "container": "c1",
    "diagnostics": {"previous_message_id": "msg_1"},
    "inference_geo": "us",
    "speed": "fast",
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "user_profile_id": "p1",
    "workspace_id": "w1",
}


def test_the_tables_cover_every_parameter_of_the_sdk():
    sdk = set(message_create_params.MessageCreateParamsBase.__annotations__)
    assert sdk | {"temperature", "top_p", "top_k", "stream"} == set(HONOURED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_an_honoured_parameter_is_accepted(gateway, auth, name):
    body = {"model": MODEL, "max_tokens": 4, "messages": QUESTION, name: HONOURED[name]}
    response = requests.post(f"{gateway}/office/v1/messages", json=body, headers=auth, timeout=120)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_parameter_gets_a_400_naming_it(gateway, auth, name):
    body = {"model": MODEL, "max_tokens": 4, "messages": QUESTION, name: REFUSED[name]}
    response = requests.post(f"{gateway}/office/v1/messages", json=body, headers=auth, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == name and name in error["message"]


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [IMAGE]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]}]},
            "messages.0.content.0.type",
        ),
        ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, "messages.0.name"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"tools": [{**WEATHER, "input_examples": [{"city": "x"}]}]}, "tools.0.input_examples"),
        ({"tool_choice": {"type": "tool", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
        ({"output_config": {"effort": "high"}}, "output_config.effort"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "number", "minimum": 1}}}},
            "output_config.format.schema.minimum",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": ["a"] * 9}, "stop_sequences"),
        ({"model": "nope"}, "model"),
    ],
)
def test_bad_input_is_named(gateway, auth, body, param):
    request = {"model": MODEL, "max_tokens": 4, "messages": QUESTION, **body}
    response = requests.post(f"{gateway}/office/v1/messages", json=request, headers=auth, timeout=60)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param


def test_the_sdk_reads_our_errors(client, gateway):
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [IMAGE]}])
    assert "image" in str(bad.value)
    keyless = anthropic.Anthropic(base_url=f"{gateway}/office", api_key="pc_not_a_key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        keyless.messages.create(model=MODEL, max_tokens=4, messages=QUESTION)


def test_the_character_app_speaks_it_too(gateway, service_key):
    client = anthropic.Anthropic(base_url=f"{gateway}/character", api_key=service_key, max_retries=0, timeout=120)
    message = client.messages.create(
        model="captain-rhea", max_tokens=8, messages=[{"role": "user", "content": "Hello?"}]
    )
    assert message.content[0].type == "text"
