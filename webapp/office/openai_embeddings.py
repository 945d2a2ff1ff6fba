"""OpenAI's POST /office/v1/embeddings, served by the office app's embedding model.

The model is the one document search uses (the registry's [embedding] table); its alias
is listed by /office/v1/models. As with /v1/chat/completions every request field is
honoured or refused with a 400 naming it:

- `input`: a string or a list of at most INPUTS_MAX strings, none empty, none longer than
  the model reads (its max_tokens; OpenAI refuses an over-long input too, rather than cut
  it). Token arrays are refused: their ids would be some other tokenizer's.
- `encoding_format`: "float" or "base64" (little-endian float32, what the SDK asks for by
  default and decodes).
- `dimensions`: only the model's own (it is not a Matryoshka model: cutting its vectors
  would make them worse, not shorter versions of the same thing).
- `user`: as for chat, a service key's end user; it is checked, and nothing else depends
  on it.

A plain async Django view like the other OpenAI endpoints; the embedding runs on a worker
thread (numpy BERT, about 10 ms a short text on these CPUs).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from webapp.accounts.identity import ApiKeyAuthentication, request_principal
from webapp.chat import runtime
from webapp.chat.errors import openai_error
from webapp.chat.openai_tools import KnownFieldsMixin
from webapp.chat.schema import error_responses, schema_only_endpoint
from webapp.chat.stateless import json_body
from webapp.core.errors import ApplicationError, NotFoundError
from webapp.office import runtime as office_runtime
from webapp.retrieval.embedding import Embedder

INPUTS_MAX = 256
INPUT_CHARS_MAX = 16_000
NOT_BLANK = r"\S"  # an input must hold something besides white space


class EmbeddingSerializer(KnownFieldsMixin, serializers.Serializer):
    model = serializers.CharField(max_length=128)
    input = serializers.JSONField()
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], required=False, default="float")
    dimensions = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    user = serializers.CharField(required=False, max_length=128)

    def validate_input(self, value: Any) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts:
            raise serializers.ValidationError("must be a string or a non-empty list of strings.")
        if len(texts) > INPUTS_MAX:
            raise serializers.ValidationError(f"may hold at most {INPUTS_MAX} texts.")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise serializers.ValidationError(
                    {str(i): "must be a string (token arrays are not accepted: send the text)."}
                )
            if not text.strip():
                raise serializers.ValidationError({str(i): "must not be empty."})
            if len(text) > INPUT_CHARS_MAX:
                raise serializers.ValidationError({str(i): f"must be at most {INPUT_CHARS_MAX} characters."})
        return texts


def _embedder() -> Embedder:
    return office_runtime.retriever_get().embedder  # waits while it loads, as document search does


def _embed(texts: list[str], embedder: Embedder) -> tuple[np.ndarray, int]:
    """The vectors of `texts` and how many tokens they were; 400 naming one that is too long."""
    counts = [embedder.token_count(text) for text in texts]
    for i, count in enumerate(counts):
        if count > embedder.max_tokens:
            raise ApplicationError(
                f"input.{i}: is {count} tokens; {embedder.alias} reads at most {embedder.max_tokens}",
                field=f"input.{i}",
                code="context_length_exceeded",
            )
    return embedder.embed(texts), sum(counts)


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _request_schema() -> dict[str, Any]:
    """The request body in JSON Schema, as exact as the serializer (the model's alias, its dimensions)."""
    from django.conf import settings

    from webapp.engine.registry import embedding_spec_load

    alias = embedding_spec_load(settings.ENV.model_registry).alias
    text = {"type": "string", "minLength": 1, "maxLength": INPUT_CHARS_MAX, "pattern": NOT_BLANK}
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string", "enum": [alias]},
            "input": {"oneOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": INPUTS_MAX}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"},
            # Only the model's own (known once it is loaded): another is refused, see the docstring.
            "dimensions": {"type": "integer", "minimum": 1, "nullable": True},
            "user": {"type": "string", "maxLength": 128},
        },
        "required": ["model", "input"],
        "additionalProperties": False,
    }


class EmbeddingsSchema(APIView):
    """The OpenAPI description of POST v1/embeddings (`embeddings`, a plain async view that
    drf-spectacular can't see; `schema_endpoints` adds this class in its place). Never routed.
    Its authentication is the view's own: an API key, never a session."""

    authentication_classes = (ApiKeyAuthentication,)

    @extend_schema(
        operation_id="v1_embeddings_create",
        tags=["v1"],
        request={"application/json": _request_schema()},
        responses={
            200: inline_serializer(
                "EmbeddingList",
                {
                    "object": serializers.ChoiceField(choices=["list"]),
                    "data": inline_serializer(
                        "Embedding",
                        {
                            "object": serializers.ChoiceField(choices=["embedding"]),
                            "index": serializers.IntegerField(),
                            "embedding": serializers.JSONField(help_text="floats, or base64 of little-endian float32"),
                        },
                        many=True,
                    ),
                    "model": serializers.CharField(),
                    "usage": inline_serializer(
                        "EmbeddingUsage",
                        {"prompt_tokens": serializers.IntegerField(), "total_tokens": serializers.IntegerField()},
                    ),
                },
            ),
            **error_responses(400, 404, _400="an invalid field, or an input longer than the model reads"),
        },
        summary="OpenAI: embed texts with the office's embedding model (the one document search uses)",
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError("schema only: POST v1/embeddings is served by embeddings")


def schema_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular PREPROCESSING_HOOK: add POST v1/embeddings through EmbeddingsSchema (office only)."""
    return schema_only_endpoint(endpoints, url_name="openai-embeddings", method="POST", view=EmbeddingsSchema)


async def embeddings(request: HttpRequest) -> HttpResponse:
    """POST v1/embeddings (method checked by the route's `methods_only`)."""
    with runtime.CountedRequest() as counted:
        try:
            who = await sync_to_async(request_principal)(request)
            serializer = EmbeddingSerializer(data=json_body(request))  # refuses unknown fields itself
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            who.owner_for(data.get("user"))  # a personal key may only name itself
            embedder = await sync_to_async(_embedder)()
            if data["model"] != embedder.alias:
                raise NotFoundError(
                    f"model: unknown embedding model '{data['model']}' (known: {embedder.alias})",
                    field="model",
                    code="model_not_found",
                )
            if data.get("dimensions") not in (None, embedder.dim):
                raise ApplicationError(
                    f"dimensions: {embedder.alias} has {embedder.dim} dimensions and can't be shortened",
                    field="dimensions",
                    code="unsupported_parameter",
                )
            vectors, tokens = await sync_to_async(_embed, thread_sensitive=False)(data["input"], embedder)
        except Exception as exc:
            return openai_error(exc)
        counted.succeeded()
    items = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, data["encoding_format"])}
        for i, vector in enumerate(vectors)
    ]
    return JsonResponse(
        {
            "object": "list",
            "data": items,
            "model": embedder.alias,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
