"""OpenAI function calling through nginx with the official `openai` package and the real
model: grammar-constrained tool_calls whose arguments parse and match their schema."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
import requests

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What's the weather like in Seoul today?"}]


@pytest.fixture
def client(gateway: str, service_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/office/v1", api_key=service_key, max_retries=0, timeout=120)


def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_returns_tool_calls_with_valid_arguments(client, tool_choice):
    reply = client.chat.completions.create(
        model=model(client),
        messages=ASK,
        tools=[WEATHER, CALCULATOR],
        tool_choice=tool_choice,
        temperature=0,
        max_tokens=96,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "calculator")
    if isinstance(tool_choice, dict):
        assert call.function.name == "get_weather"
    schema = {"get_weather": WEATHER, "calculator": CALCULATOR}[call.function.name]["function"]["parameters"]
    jsonschema.validate(json.loads(call.function.arguments), schema)  # raises if the grammar let anything through


def test_the_tool_result_goes_back_for_a_final_answer(client):
    first = client.chat.completions.create(
        model=model(client), messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=96
    )
    call = first.choices[0].message.tool_calls[0]
    followup = client.chat.completions.create(
        model=model(client),
        messages=[
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "clear"})},
        ],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_tokens=48,
    )
    assert followup.choices[0].finish_reason in ("stop", "length")
    assert followup.choices[0].message.content
    assert not followup.choices[0].message.tool_calls


def test_streaming_a_forced_call_gives_one_tool_call_delta(client):
    stream = client.chat.completions.create(
        model=model(client),
        messages=[{"role": "user", "content": "Compute 12 * 7 for me."}],
        tools=[CALCULATOR],
        tool_choice="required",
        temperature=0,
        max_tokens=64,
        stream=True,
    )
    chunks = list(stream)
    calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices]
    assert len(calls) == 1 and calls[0].function.name == "calculator"
    assert isinstance(json.loads(calls[0].function.arguments)["expression"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_auto_may_answer_in_plain_text(client):
    reply = client.chat.completions.create(
        model=model(client),
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[CALCULATOR],
        temperature=0,
        max_tokens=32,
    )
    message = reply.choices[0].message
    # Either shape is valid for "auto"; whichever it is must be well-formed.
    if message.tool_calls:
        assert reply.choices[0].finish_reason == "tool_calls"
        json.loads(message.tool_calls[0].function.arguments)
    else:
        assert message.content and not message.content.lstrip().startswith("{")


BAD_TOOLS = [
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_TOOLS)
def test_bad_tools_are_a_400_naming_the_field(gateway, extra, field, auth: dict[str, str]):
    body = {"model": "assistant", "messages": ASK, **extra}
    response = requests.post(f"{gateway}/office/v1/chat/completions", json=body, timeout=30, headers=auth)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"].split(".")[0] == field and error["param"] == error["field"]
