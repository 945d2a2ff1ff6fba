"""Hostile JSON Schemas on every path that builds a llama.cpp grammar from a client's
schema: a 400 naming the field, and the app still serving. Through nginx on the session
stack (a crash of the native grammar parser would take the app down: the next request
would get the gateway's 503)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"


def deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


SCHEMAS: dict[str, dict[str, Any]] = {
    "deep": deep(60),
    "huge": {"type": "object", "properties": {f"p{i}": {} for i in range(2500)}},
    "recursive": {
        "type": "object",
        "$defs": {"n": {"type": "object", "properties": {"k": {"$ref": "#/$defs/n"}}}},
        "properties": {"root": {"$ref": "#/$defs/n"}},
    },
    "huge array": {"type": "object", "properties": {"a": {"type": "array", "items": {}, "maxItems": 20000}}},
    "catastrophic pattern": {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a{1,5000})+"}}},
}

Body = Callable[[dict[str, Any]], dict[str, Any]]
# (endpoint, how the schema goes into a request, the field a refusal names)
PATHS: dict[str, tuple[str, Body, str]] = {
    "chat response_format": (
        "v1/chat/completions",
        lambda s: {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": s}},
        },
        "response_format",
    ),
    "chat tools": (
        "v1/chat/completions",
        lambda s: {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": s}}],
        },
        "tools",
    ),
    "responses text.format": (
        "v1/responses",
        lambda s: {
            "model": MODEL,
            "input": "hi",
            "text": {"format": {"type": "json_schema", "name": "x", "schema": s}},
        },
        "text.format",
    ),
    "responses tools": (
        "v1/responses",
        lambda s: {"model": MODEL, "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": s}]},
        "tools",
    ),
    "messages tools": (
        "v1/messages",
        lambda s: {
            "model": MODEL,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": s}],
        },
        "tools",
    ),
    "messages output_config": (
        "v1/messages",
        lambda s: {
            "model": MODEL,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": s}},
        },
        "output_config.format",
    ),
}


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_a_hostile_schema_is_a_400_naming_the_field(gateway, auth, path_name, schema_name):
    endpoint, body, field = PATHS[path_name]
    for app in ("office", "character"):
        response = requests.post(
            f"{gateway}/{app}/{endpoint}", json=body(SCHEMAS[schema_name]), headers=auth, timeout=60
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"].startswith(field), response.json()
        assert requests.get(f"{gateway}/{app}/health", timeout=10).status_code == 200
