"""/office/v1/embeddings with the official `openai` package, through nginx, on the office
app's real embedding model (all-MiniLM-L6-v2)."""

from __future__ import annotations

import math

import openai
import pytest
import requests
from openai.types import embedding_create_params

pytestmark = pytest.mark.slow

MODEL = "all-minilm-l6-v2"


@pytest.fixture
def client(gateway: str, service_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/office/v1", api_key=service_key, max_retries=0, timeout=120)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_embedding_model_is_listed(client):
    assert MODEL in [model.id for model in client.models.list().data]


def test_a_batch_in_order_unit_length_and_the_same_in_both_encodings(client):
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue grew by 4%."]
    as_base64 = client.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 and decodes it
    as_floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in as_base64.data] == [0, 1, 2]
    for encoded, floats in zip(as_base64.data, as_floats.data, strict=True):
        assert len(encoded.embedding) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in floats.embedding)), 1.0, abs_tol=1e-4)
        assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(encoded.embedding, floats.embedding, strict=True))
    assert as_base64.usage.prompt_tokens > len(texts) and as_base64.model == MODEL
    single = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert cosine(single.data[0].embedding, as_floats.data[0].embedding) > 0.9999, "alone or batched, the same"


def test_the_vectors_are_the_ones_document_search_uses(client):
    # The same text is the same vector however often it comes, and two paraphrases are closer
    # than an unrelated text (a property of the embedding model, not of its wording).
    rows = client.embeddings.create(
        model=MODEL, input=["cats sleep", "cats sleep", "kittens nap", "tax law"], encoding_format="float"
    ).data
    assert cosine(rows[0].embedding, rows[1].embedding) > 0.9999
    assert cosine(rows[0].embedding, rows[2].embedding) > cosine(rows[0].embedding, rows[3].embedding)


def test_every_sdk_parameter_is_honoured_or_refused(gateway, auth):
    sdk = set(embedding_create_params.EmbeddingCreateParams.__annotations__)
    assert sdk == {"input", "model", "encoding_format", "dimensions", "user"}
    url = f"{gateway}/office/v1/embeddings"
    ok = requests.post(
        url, json={"model": MODEL, "input": "x", "dimensions": 384, "user": "u1"}, headers=auth, timeout=60
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": "x"}, 400, "model"),
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"model": MODEL}, 400, "input"),
        ({"model": MODEL, "input": []}, 400, "input"),
        ({"model": MODEL, "input": [1, 2, 3]}, 400, "input.0"),
        ({"model": MODEL, "input": [[1, 2]]}, 400, "input.0"),
        ({"model": MODEL, "input": ["ok", " "]}, 400, "input.1"),
        ({"model": MODEL, "input": ["ok", "word " * 400]}, 400, "input.1"),
        ({"model": MODEL, "input": ["x"] * 257}, 400, "input"),
        ({"model": MODEL, "input": "x", "dimensions": 64}, 400, "dimensions"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": MODEL, "input": "x", "truncate": True}, 400, "truncate"),
    ],
)
def test_bad_input_is_named(gateway, auth, body, status, param):
    response = requests.post(f"{gateway}/office/v1/embeddings", json=body, headers=auth, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_embeddings_need_an_api_key(gateway):
    response = requests.post(f"{gateway}/office/v1/embeddings", json={"model": MODEL, "input": "x"}, timeout=30)
    assert response.status_code == 401


def test_the_character_app_has_no_embeddings(gateway, auth):
    response = requests.post(
        f"{gateway}/character/v1/embeddings", json={"model": MODEL, "input": "x"}, headers=auth, timeout=30
    )
    assert response.status_code == 404


def test_the_openapi_description_is_the_endpoints(gateway, auth):
    from jsonschema import Draft202012Validator

    schema = requests.get(f"{gateway}/office/schema?format=json", timeout=30).json()
    operation = schema["paths"]["/office/v1/embeddings"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator(body)
    good = {"model": MODEL, "input": ["a", "b"], "encoding_format": "float"}
    assert validator.is_valid(good)
    assert requests.post(f"{gateway}/office/v1/embeddings", json=good, headers=auth, timeout=60).status_code == 200
    for bad in ({"model": MODEL}, {"model": "nope", "input": "a"}, {"model": MODEL, "input": " "}, {**good, "x": 1}):
        assert not validator.is_valid(bad)
        refused = requests.post(f"{gateway}/office/v1/embeddings", json=bad, headers=auth, timeout=60)
        assert refused.status_code in (400, 404)
    assert {"200", "400", "401"} <= set(operation["responses"])
