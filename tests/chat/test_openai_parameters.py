"""/v1/chat/completions honours or refuses every parameter of the official `openai` package,
through nginx: structured outputs (response_format, `parse()` with pydantic), logprobs,
logit bias and penalties, and a 400 naming the field for everything else.

No test asserts what the model writes: structured replies are forced by the grammar, and
logprobs are checked against each other.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
import requests
from openai.types.chat import completion_create_params
from pydantic import BaseModel, Field

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Describe a pet."}]
MODEL = "smollm2-135m-instruct-q4_1"


@pytest.fixture
def client(gateway: str, service_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/office/v1", api_key=service_key, max_retries=0, timeout=120)


# Every request field of the SDK, with a value that asks for something. Honoured ones get a
# 200 (each has its own test of what it does); the others a 400 naming the field.
HONOURED: dict[str, Any] = {
    "messages": QUESTION,
    "model": MODEL,
    "frequency_penalty": 0.5,
    "presence_penalty": 0.5,
    "logit_bias": {"42": 1},
    "logprobs": True,
    "top_logprobs": 2,
    "max_completion_tokens": 4,
    "max_tokens": 4,
    "n": 1,
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "seed": 7,
    "stop": ["\n\n"],
    "stream_options": {"include_usage": True},
    "temperature": 0.5,
    "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "top_p": 0.9,
    "user": "someone",
}
REFUSED: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "mp3"},
    "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "metadata": {"k": "v"},
    "modalities": ["text", "audio"],
    "moderation": {"model": "omni-moderation-latest"},
    "prediction": {"type": "content", "content": "x"},
    "prompt_cache_key": "k",
    "prompt_cache_options": {"mode": "auto"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "safety_identifier": "someone",
    "service_tier": "priority",
    "store": True,
    "verbosity": "low",
    "web_search_options": {},
}


def test_the_tables_cover_every_parameter_of_the_sdk():
    sdk = set(completion_create_params.CompletionCreateParamsBase.__annotations__)
    assert sdk == set(HONOURED) | set(REFUSED), "a new SDK parameter: honour it or refuse it, then list it here"


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_an_honoured_parameter_is_accepted(gateway, auth, name):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 4, name: HONOURED[name]}
    if name == "stream_options":
        body["stream"] = True
    if name == "top_logprobs":
        body["logprobs"] = True
    response = requests.post(f"{gateway}/office/v1/chat/completions", json=body, headers=auth, timeout=120)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_parameter_gets_a_400_naming_it(gateway, auth, name):
    body = {"model": MODEL, "messages": QUESTION, name: REFUSED[name]}
    response = requests.post(f"{gateway}/office/v1/chat/completions", json=body, headers=auth, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name and error["type"] == "invalid_request_error"
    assert error["code"] == "unsupported_parameter" and name in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"best_of": 2}, "best_of"),
        ({"stream_options": {"include_obfuscation": True}, "stream": True}, "stream_options.include_obfuscation"),
        ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, "messages.0.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "x": 1}}]}, "tools.0.function.x"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"a": 1}}, "logit_bias"),
        ({"logit_bias": {"1": 101}}, "logit_bias.1"),
        ({"logit_bias": {"999999999": 1}}, "logit_bias"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
    ],
)
def test_an_unknown_or_bad_field_is_named(gateway, auth, body, param):
    response = requests.post(
        f"{gateway}/office/v1/chat/completions",
        json={"model": MODEL, "messages": QUESTION, "max_tokens": 4, **body},
        headers=auth,
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def wide(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {} for i in range(n)}}


def exploding(levels: int) -> dict[str, Any]:
    defs = {
        f"d{i}": {
            "type": "object",
            "properties": {"a": {"$ref": f"#/$defs/d{i + 1}"}, "b": {"$ref": f"#/$defs/d{i + 1}"}},
        }
        for i in range(levels)
    }
    return {"$defs": {**defs, f"d{levels}": {"type": "string"}}, "$ref": "#/$defs/d0"}


HOSTILE_SCHEMAS = [
    ("deep", deep(40), "response_format.json_schema.schema"),
    ("huge", wide(2100), "response_format.json_schema.schema"),
    ("exponential references", exploding(24), "response_format.json_schema.schema"),
    (
        "recursive",
        {"$defs": {"n": {"type": "object", "properties": {"k": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
        "response_format.json_schema.schema.$defs.n.properties.k.$ref",
    ),
    ("undefined reference", {"$ref": "#/$defs/nope"}, "response_format.json_schema.schema.$ref"),
    ("remote reference", {"$ref": "https://example.com/s.json"}, "response_format.json_schema.schema.$ref"),
    ("not enforceable", {"type": "number", "minimum": 0}, "response_format.json_schema.schema.minimum"),
    ("unknown format", {"type": "string", "format": "email"}, "response_format.json_schema.schema.format"),
    (
        "huge array",
        {"type": "array", "items": {"type": "integer"}, "maxItems": 20000},
        "response_format.json_schema.schema",
    ),
    ("catastrophic pattern", {"type": "string", "pattern": "(a{1,9999})"}, "response_format.json_schema.schema"),
    ("invalid schema", {"type": "object", "required": "a"}, "response_format.json_schema.schema"),
    ("not an object", ["a"], "response_format.json_schema.schema"),
]


@pytest.mark.parametrize(("label", "schema", "param"), HOSTILE_SCHEMAS, ids=[h[0] for h in HOSTILE_SCHEMAS])
def test_a_hostile_schema_is_refused_and_the_app_lives(gateway, auth, label, schema, param):
    body = {
        "model": MODEL,
        "messages": QUESTION,
        "max_tokens": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    response = requests.post(f"{gateway}/office/v1/chat/completions", json=body, headers=auth, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith(param), response.json()["error"]
    health = requests.get(f"{gateway}/office/health", timeout=10)
    assert health.status_code == 200


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)
    friendly: bool


def test_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(
        model=MODEL, messages=QUESTION, response_format=Pet, temperature=0, max_tokens=120
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    pet = choice.message.parsed
    assert isinstance(pet, Pet) and 0 <= pet.age <= 30 and len(pet.name) <= 12


def test_a_sampled_structured_reply_validates_too(client):
    for seed in (1, 2, 3):
        completion = client.chat.completions.parse(
            model=MODEL, messages=QUESTION, response_format=Pet, temperature=1.0, seed=seed, max_tokens=120
        )
        assert isinstance(completion.choices[0].message.parsed, Pet)


def test_json_object_is_an_object(client):
    completion = client.chat.completions.create(
        model=MODEL, messages=QUESTION, response_format={"type": "json_object"}, temperature=0, max_tokens=120
    )
    content = completion.choices[0].message.content
    assert content.lstrip().startswith("{")
    if completion.choices[0].finish_reason == "stop":  # else cut off by max_tokens, as OpenAI's
        assert isinstance(json.loads(content), dict)


def test_structured_output_streams_and_parses(client):
    with client.chat.completions.stream(
        model=MODEL, messages=QUESTION, response_format=Pet, temperature=0, max_tokens=120
    ) as stream:
        deltas = [event for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) >= 3, "the JSON streams as it is written"
    assert isinstance(final.choices[0].message.parsed, Pet)


def test_a_tool_call_or_a_structured_answer(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "strict": True,
                "parameters": {"type": "object", "properties": {"q": {"type": "string", "maxLength": 20}}},
            },
        }
    ]
    completion = client.chat.completions.parse(
        model=MODEL, messages=QUESTION, response_format=Pet, tools=tools, temperature=0, max_tokens=120
    )
    message = completion.choices[0].message
    assert (message.tool_calls and message.tool_calls[0].function.name == "lookup") or isinstance(message.parsed, Pet)


def test_logprobs_describe_the_reply(client):
    completion = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, top_logprobs=2
    )
    choice = completion.choices[0]
    tokens = choice.logprobs.content
    assert len(tokens) == completion.usage.completion_tokens
    # A reply cut by max_tokens may end inside a character: the text has U+FFFD for it, as here.
    assert bytes(b for t in tokens for b in t.bytes).decode(errors="replace") == choice.message.content
    for token in tokens:
        assert len(token.top_logprobs) == 2 and token.logprob <= 0
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
        assert token.top_logprobs[0].logprob >= token.logprob - 1e-6


def test_logprobs_stream_with_the_finish(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, top_logprobs=1, stream=True
    )
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert bytes(b for t in tokens for b in t.bytes).decode(errors="replace") == text


def test_without_logprobs_there_are_none(client):
    completion = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
    assert completion.choices[0].logprobs is None


def test_langchain_structured_output(gateway, service_key):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=f"{gateway}/office/v1", api_key=service_key, model=MODEL, temperature=0, max_tokens=120, max_retries=0
    )
    pet = chat.with_structured_output(Pet).invoke("Describe a pet.")
    assert isinstance(pet, Pet)
