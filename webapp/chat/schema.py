"""The OpenAPI description's shared pieces: the error shape, the responses every operation
can give, and what DRF enforces that drf-spectacular does not write down by itself.

The schema at GET /<app>/schema must be true: a client generated from it, or schemathesis
(tests/chat/test_schema.py), must find that every request the schema allows is accepted and
every answer has the documented status, content type, headers and body. So:

- errors: one envelope, {"error": {"code", "message", "field", ...}}; `error_responses`
  gives an operation's own error statuses with it;
- `gateway_responses` (a postprocessing hook) adds what nginx answers for every route: 503
  `app_unavailable` with Retry-After while the app restarts, and 413 for a body over the
  limit; and it documents Retry-After on every 429 and 503;
- `RequestCharFieldExtension`: DRF's CharField refuses "\\0" anywhere and, unless
  allow_blank, a value that is only whitespace (it trims first); the schema says so with a
  pattern, so that schema-valid strings are accepted strings;
- `TurnSerializerExtension`: the Llama bodies name the app's real personas and tools;
- webapp.chat.openai_api.schema_endpoints (a preprocessing hook) documents GET v1/models,
  a plain async view that drf-spectacular can't see (v1/chat/completions is left out on
  purpose: see that module).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from webapp.chat import runtime

# Exactly the characters str.strip() removes (str.isspace), which DRF's trim_whitespace uses.
# Spelled out rather than `\s`, whose meaning differs between regex dialects.
_SPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL_PATTERN = r"^[^\x00]+$"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
STORE_ID_PATTERN = r"^[0-9a-f]{32}$"


# --- errors ---------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable, e.g. `invalid`, `not_found`, `server_busy`")
    message = serializers.CharField(help_text="what went wrong, safe to show")
    field = serializers.CharField(allow_null=True, help_text="the input at fault (dotted path), or null")


class ErrorBodySerializer(ErrorSerializer):
    details = ErrorSerializer(many=True, required=False, help_text="validation errors: every problem found")
    retry_after = serializers.IntegerField(required=False, help_text="seconds to wait (429, and some 503s)")
    queue_size = serializers.IntegerField(required=False, allow_null=True, help_text="server_busy: requests queued")
    endpoints = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="404 for an unknown path: this app's endpoints"
    )


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


class BusyErrorEnvelopeSerializer(ErrorEnvelopeSerializer):
    """429 server_busy also carries the seed design's fields at the top level."""

    detail = serializers.CharField(required=False)
    retry_after = serializers.IntegerField(required=False)
    queue_size = serializers.IntegerField(required=False, allow_null=True)


ERROR_DESCRIPTIONS = {
    400: "invalid input: `field` names it, `details` lists every problem",
    401: "no valid session or API key: sign in, or send `Authorization: Bearer <API key>`",
    403: "not allowed for this account: its role, a pending account, a `user_id` that is not its own, or CSRF",
    404: "no such resource for this user (another user's id is a 404 too)",
    409: "conflict with the resource's state",
    413: "request body too large",
    415: 'unsupported Content-Type (`field: "Content-Type"`)',
    422: "the content can't be processed; `code` says why",
    429: "refused for now; come back after Retry-After seconds",
    502: "a service this operation depends on failed",
    503: "the app or its model can't answer now",
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """The operation's own error statuses, each with the one envelope; `descriptions` by
    status as `_404="..."` (keyword names can't be numbers)."""
    own = {int(key.lstrip("_")): text for key, text in descriptions.items()}
    return {
        status: OpenApiResponse(
            BusyErrorEnvelopeSerializer if status == 429 else ErrorEnvelopeSerializer,
            description=own.get(status, ERROR_DESCRIPTIONS[status]),
        )
        for status in statuses
    }


# Every JSON body of a DRF view can be refused as JSON that isn't (400) or isn't JSON (415).
BODY_ERRORS = (400, 415)


def gateway_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: what nginx (gateway/templates) answers on every route, and the
    401/403 of every operation that needs an account.

    503 `app_unavailable` with Retry-After while the app is down or restarting; 413 for a
    body over the gateway's limit (64 KiB; 11 MiB for POST /office/documents). Retry-After
    is documented on every 429 (always sent) and 503 (sent when a retry can be timed).
    """
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            if "503" not in responses:
                responses["503"] = {
                    "content": {"application/json": {"schema": envelope}},
                    "description": "the app is restarting or stopped (`app_unavailable`, from the gateway)",
                }
            if operation.get("security"):  # an authenticated operation (public ones list none)
                for status in ("401", "403"):
                    responses.setdefault(
                        status,
                        {
                            "content": {"application/json": {"schema": envelope}},
                            "description": ERROR_DESCRIPTIONS[int(status)],
                        },
                    )
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {
                    "content": {"application/json": {"schema": envelope}},
                    "description": "request body over the gateway's limit (`body_too_large`)",
                }
            for status, required in (("429", True), ("503", False)):
                if status in responses:
                    responses[status].setdefault("headers", {})["Retry-After"] = {
                        "schema": {"type": "integer", "minimum": 1},
                        "required": required,
                        "description": "seconds to wait before retrying",
                    }
    return result


def request_bodies_closed(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: a request body has exactly the documented fields
    (additionalProperties: false).

    The views refuse an unknown field (400 `unknown_field`: webapp.chat.apis.unknown_fields_refuse).
    Ignoring it instead could not be described truthfully: every JSON body goes through the
    bounded parser first (webapp.core.json_input), which refuses numbers over 19 digits,
    deep nesting and lone surrogates anywhere, an ignored field included.
    """
    schemas = result.get("components", {}).get("schemas", {})
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                if schema.get("type") == "object":
                    schema["additionalProperties"] = False
    return result


# --- what DRF enforces ----------------------------------------------------------------------


class RequestCharFieldExtension(OpenApiSerializerFieldExtension):
    """CharField in a request: DRF refuses NUL anywhere and, unless allow_blank, a value that
    is empty once trimmed. minLength 1 alone would admit " "; this pattern does not.

    With allow_blank, drf-spectacular adds "" as a second oneOf branch of its own, so the
    pattern itself must not match "" (`+`, not `*`), or "" would match both branches.
    """

    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        field = self.target
        if direction == "request" and not field.read_only and "enum" not in schema and "format" not in schema:
            trimmed_blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = NOT_BLANK_PATTERN if trimmed_blank_refused else NO_NUL_PATTERN
        return schema


class RequestListFieldExtension(OpenApiSerializerFieldExtension):
    """ListField(allow_empty=False) in a request refuses [] (drf-spectacular leaves minItems out)."""

    target_class = "rest_framework.fields.ListField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and not self.target.allow_empty:
            schema["minItems"] = max(1, schema.get("minItems", 0))
        return schema


def persona_property() -> dict[str, Any]:
    """A turn's `persona`: one of this app's personas (any other id is a 400), or, where the
    app has a character library, also one of the user's own characters."""
    if runtime.wiring_get().persona_get is not None:
        return {"type": "string", "maxLength": 64, "description": "a character id from GET characters"}
    return {
        "type": "string",
        "enum": sorted(runtime.personas_get().personas),
        "description": "a persona id from GET personas",
    }


def tool_names() -> list[str]:
    """The tools the model may be offered (office); none where the app has no tools."""
    runner = runtime.wiring_get().tools_get()
    return sorted(name for name, _, _ in runner.offered(None)) if runner is not None else []


class TurnSerializerExtension(OpenApiSerializerExtension):
    """POST /office/Llama's body: `persona` is one of the app's personas, and with `tools`
    ("auto" or "required") every name in `tool_names` must be a real tool (without `tools`,
    `tool_names` is not looked at)."""

    target_class = "webapp.chat.inputs.OfficeTurnSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["properties"]["persona"] = persona_property()
        names = tool_names()
        if names:
            # Either no tools are asked for (`tools` absent or null: `tool_names` is ignored),
            # or every name is a real tool.
            schema["anyOf"] = [
                {"not": {"required": ["tools"], "properties": {"tools": {"type": "string"}}}},
                {"properties": {"tool_names": {"items": {"type": "string", "enum": names}}}},
            ]
        return schema


class CharacterTurnSerializerExtension(OpenApiSerializerExtension):
    """POST /character/Llama's body: a stored character (`persona`), or one described inline
    (`character_name` and `context`, optional `greeting`), never both."""

    target_class = "webapp.chat.inputs.CharacterTurnSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["properties"]["persona"] = persona_property()
        schema["oneOf"] = [
            {
                "required": ["persona"],
                "not": {"anyOf": [{"required": [name]} for name in ("character_name", "greeting", "context")]},
            },
            {"required": ["character_name", "context"], "not": {"required": ["persona"]}},
        ]
        return schema


# --- headers of the Llama endpoints ---------------------------------------------------------


def turn_headers() -> list[OpenApiParameter]:
    """The Llama endpoints' 200 headers: the turn's ids and measurements (the body is the text)."""

    def header(name: str, kind: Any, description: str) -> OpenApiParameter:
        return OpenApiParameter(
            name, kind, OpenApiParameter.HEADER, required=True, description=description, response=[200]
        )

    return [
        header("X-Conversation-Id", OpenApiTypes.UUID, "the conversation (db_id; new when none was sent)"),
        header("X-Message-Id", str, "the stored reply's id"),
        header("X-Persona", str, "the persona that answered"),
        header("X-Prompt-Tokens", int, "tokens in the prompt"),
        header("X-Completion-Tokens", int, "tokens in the reply"),
        header("X-TTFT-Ms", float, "time to first token, milliseconds"),
        header(
            "X-Finish-Reason",
            {"type": "string", "enum": ["stop", "length", "deadline", "cancelled"]},
            "why the reply ended: its end, max_tokens, the time limit, or cancelled by a shutdown",
        ),
        header("X-Sources", int, "document and web sources the reply was grounded on (office; 0 for character)"),
    ]


class ApiKeySchemeExtension(OpenApiAuthenticationExtension):
    """The API key scheme (webapp.accounts.identity.ApiKeyAuthentication) as OpenAPI's bearer auth."""

    target_class = "webapp.accounts.identity.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal or service API key (pc_…), created on /accounts/",
        }


def schema_only_endpoint(
    endpoints: list[tuple[Any, ...]], *, url_name: str, method: str, view: Any
) -> list[tuple[Any, ...]]:
    """For a PREPROCESSING_HOOK: `endpoints` plus the route named `url_name` described by
    `view`, a schema-only APIView standing in for a plain async Django view (which
    drf-spectacular can't see). Unchanged where this app has no such route."""
    from django.urls import NoReverseMatch, reverse

    try:
        path = reverse(url_name)
    except NoReverseMatch:
        return endpoints
    return [*endpoints, (path, f"^{path.lstrip('/')}$", method, view.as_view())]
