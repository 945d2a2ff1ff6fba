"""OpenAI's Responses API (/v1/responses), driven by the official `openai` package through
nginx, on the real model. Function calls are forced by tool_choice, structured output by
its schema; nothing asserts what the model writes."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
import requests
from jsonschema import validate
from openai.types.responses import response_create_params
from pydantic import BaseModel, Field

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)


@pytest.fixture
def client(gateway: str, service_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/office/v1", api_key=service_key, max_retries=0, timeout=120)


def test_text_input_and_instructions(client):
    response = client.responses.create(
        model=MODEL, input="Name three colors.", instructions="Be brief.", max_output_tokens=16, temperature=0
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete") and response.output_text
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert 0 < response.usage.output_tokens <= 16
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_max_output_tokens_makes_it_incomplete(client):
    response = client.responses.create(model=MODEL, input="Tell a long story.", max_output_tokens=3, temperature=0)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3


def test_streaming_equals_the_whole_response_under_greedy_decoding(client):
    kwargs: dict[str, Any] = {"model": MODEL, "input": "Name three colors.", "max_output_tokens": 24, "temperature": 0}
    whole = client.responses.create(**kwargs)
    events = list(client.responses.create(stream=True, **kwargs))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] in (
        "response.completed",
        "response.incomplete",
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == whole.output_text
    assert events[-1].response.output_text == whole.output_text


def test_the_stream_helper_assembles_a_structured_response(client):
    # A structured reply ends where its JSON ends, so the stream completes (a reply cut off
    # by max_output_tokens ends in response.incomplete, which the helper does not take).
    with client.responses.stream(
        model=MODEL, input="Describe a pet.", text_format=Pet, temperature=0, max_output_tokens=100
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text and isinstance(final.output_parsed, Pet)


def test_an_incomplete_stream_ends_in_response_incomplete(client):
    events = list(client.responses.create(model=MODEL, input="Tell a story.", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_messages_as_input_items(client):
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
            {"role": "user", "content": "Name a color."},
        ],
        max_output_tokens=8,
    )
    short = client.responses.create(model=MODEL, input="Name a color.", max_output_tokens=8)
    assert response.usage.input_tokens > short.usage.input_tokens


def test_a_forced_function_call_and_its_output(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    response = client.responses.create(
        model=MODEL, input=ask, tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    )
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    validate(json.loads(call.arguments), WEATHER["parameters"])
    follow = client.responses.create(
        model=MODEL,
        input=[
            *ask,
            *[item.model_dump(exclude_none=True) for item in response.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees, sunny"},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=16,
    )
    assert follow.output[0].type == "message" and follow.output_text


def test_a_streamed_function_call(client):
    events = list(
        client.responses.create(
            model=MODEL, input="Weather in Oslo?", tools=[WEATHER], tool_choice="required", stream=True
        )
    )
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    validate(json.loads(done.arguments), WEATHER["parameters"])
    assert events[-1].response.output[0].type == "function_call"


def test_parse_with_a_pydantic_model(client):
    response = client.responses.parse(
        model=MODEL, input="Describe a pet.", text_format=Pet, temperature=0, max_output_tokens=100
    )
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Pet)


def test_json_object_format(client):
    response = client.responses.create(
        model=MODEL,
        input="Describe a pet.",
        text={"format": {"type": "json_object"}},
        temperature=0,
        max_output_tokens=100,
    )
    assert response.output_text.lstrip().startswith("{")
    if response.status == "completed":
        assert isinstance(json.loads(response.output_text), dict)


HONOURED: dict[str, Any] = {
    "input": "hi",
    "model": MODEL,
    "instructions": "Be brief.",
    "max_output_tokens": 4,
    "max_tool_calls": 1,
    "parallel_tool_calls": False,
    "temperature": 0.5,
    "text": {"format": {"type": "json_object"}},
    "tool_choice": "none",
    "tools": [WEATHER],
    "top_p": 0.9,
    "truncation": "auto",
    "user": "someone",
    "stream_options": {"include_obfuscation": False},
}
REFUSED: dict[str, Any] = {
    "access_programs": {"type": "programmatic_tool_calling"},
    "background": True,
    "background_options": {"continuation_id": "c"},
    "context_management": [{"type": "compaction"}],
    "conversation": "conv_1",
    "image": {"model": "gpt-image-1"},
    "include": ["message.output_text.logprobs"],
    "metadata": {"k": "v"},
    "moderation": {"model": "omni-moderation-latest"},
    "previous_response_id": "resp_1",
    "prompt": {"id": "pmpt_1"},
    "prompt_cache_key": "k",
    "prompt_cache_options": {"mode": "implicit"},
    "prompt_cache_retention": "24h",
    "reasoning": {"effort": "low"},
    "safety_identifier": "someone",
    "service_tier": "flex",
    "store": True,
    "top_logprobs": 2,
}


def test_the_tables_cover_every_parameter_of_the_sdk():
    sdk = set(response_create_params.ResponseCreateParamsBase.__annotations__)
    assert sdk == set(HONOURED) | set(REFUSED), "a new SDK parameter: honour it or refuse it, then list it here"


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_an_honoured_parameter_is_accepted(gateway, auth, name):
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 4, name: HONOURED[name]}
    if name == "stream_options":
        body["stream"] = True
    response = requests.post(f"{gateway}/office/v1/responses", json=body, headers=auth, timeout=120)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_parameter_gets_a_400_naming_it(gateway, auth, name):
    body = {"model": MODEL, "input": "hi", name: REFUSED[name]}
    response = requests.post(f"{gateway}/office/v1/responses", json=body, headers=auth, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name and error["type"] == "invalid_request_error" and name in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0.type",
        ),
        ({"input": [{"type": "web_search_call", "id": "w"}]}, "input.0.type"),
        ({"input": [{"role": "assistant", "content": "hi"}]}, "input"),
        ({"input": [{"role": "user", "content": "hi", "name": "ann"}]}, "input.0.name"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
        ({"truncation": "disabled"}, "truncation"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "string", "format": "email"}}}},
            "text.format.schema.format",
        ),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"model": "nope"}, "model"),
    ],
)
def test_bad_input_is_named(gateway, auth, body, param):
    request = {"model": MODEL, "input": "hi", "max_output_tokens": 4, **body}
    response = requests.post(f"{gateway}/office/v1/responses", json=request, headers=auth, timeout=60)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param


def test_responses_need_an_api_key(gateway):
    response = requests.post(f"{gateway}/office/v1/responses", json={"model": MODEL, "input": "hi"}, timeout=30)
    assert response.status_code == 401
