"""REST endpoints of the office app's documents and search. Thin: validate, call a service, serialize.

Sync views, like webapp.chat.apis: each request runs on its own thread under daphne, and
the embedding and extraction work happens there (small uploads) or on the indexer thread.

`tool_call_operations` completes the OpenAPI description: POST tools/{name}/call is
documented once per tool, each with that tool's own arguments schema (which OpenAPI can't
tie to a path parameter), and {name} lists the real tools.
"""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.accounts.client_ip import client_ip
from webapp.accounts.models import Role
from webapp.accounts.usage import tool_call_admit, upload_admit
from webapp.chat.apis import (
    BodySerializer,
    PublicApi,
    QueryIntegerField,
    UserQuerySerializer,
    owner,
    principal,
    query_owner,
)
from webapp.chat.inputs import StrictCharField, StrictIntegerField, user_id_field
from webapp.chat.schema import BODY_ERRORS, STORE_ID_PATTERN, error_responses
from webapp.office import documents, mcp_servers, runtime, tool_calls
from webapp.office.errors import FileTooLargeError
from webapp.retrieval.search import SEARCH_MODES
from webapp.tools import Sensitivity, ToolContext, ToolSpec

QUERY_MAX = 1000
K_MAX = 20

DOCUMENT_ID_PARAM = OpenApiParameter(
    "document_id", str, OpenApiParameter.PATH, pattern=STORE_ID_PATTERN, description="the document's id"
)
TOOL_NAME_PARAM = OpenApiParameter("name", str, OpenApiParameter.PATH, description="a tool's name (GET tools)")
APPROVAL_ID_PARAM = OpenApiParameter(
    "approval_id", str, OpenApiParameter.PATH, pattern=STORE_ID_PATTERN, description="from a 202 approval_required"
)


@extend_schema_serializer(component_name="Document")
class DocumentSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    filename = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["indexing", "ready", "failed"])
    chunks = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DocumentListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="DocumentUpload")
    class UploadSerializer(BodySerializer):
        file = serializers.FileField(allow_empty_file=True, error_messages={"required": "attach the file as `file`."})
        user_id = user_id_field()
        title = StrictCharField(required=False, max_length=documents.TITLE_MAX, allow_blank=True)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={
            201: OpenApiResponse(DocumentSerializer, description="indexed now (status ready)"),
            202: OpenApiResponse(DocumentSerializer, description="more than 48 chunks: indexing (status indexing)"),
            **error_responses(
                *BODY_ERRORS,
                413,
                415,
                422,
                503,
                _413="file over 10 MiB, or more than 1,000,000 characters of text (`file_too_large`)",
                _415="not multipart/form-data, or a file type other than .txt .md .html .pdf .docx",
                _422="empty, corrupt, encrypted or image-only file: `code` is empty_file, invalid_file, "
                "encrypted_pdf or no_text",
                _503="indexing failed; nothing was stored (`indexing_failed`)",
            ),
        },
        summary="Upload a document (.txt .md .html .pdf .docx, ≤ 10 MiB) and index it for search",
    )
    def post(self, request: Request) -> Response:
        who = principal(request)
        who.require_role(allowed=(Role.ADMIN, Role.USER), what="documents")  # seed 003: demo is chat only
        upload_admit(who, client_ip(request))
        upload = request.FILES.get("file")
        if upload is not None and upload.size > documents.MAX_UPLOAD_BYTES:
            # Before reading a byte of it, and before validating the rest.
            raise FileTooLargeError(
                f"file is {upload.size:,} bytes; the limit is {documents.MAX_UPLOAD_BYTES:,} bytes (10 MiB)",
                field="file",
            )
        data = self.UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        outcome = documents.document_upload(
            store=runtime.office_store_get(),
            retriever=runtime.retriever_get(),
            indexer=runtime.indexer_get(),
            user_id=who.owner_for(data.validated_data.get("user_id")),
            filename=upload.name or "",
            data=upload.read(),
            title=data.validated_data.get("title") or None,
        )
        return Response(
            DocumentSerializer(outcome.document).data,
            status=status.HTTP_201_CREATED if outcome.indexed_now else status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        operation_id="documents_list",
        parameters=[UserQuerySerializer],
        responses={
            200: inline_serializer("DocumentList", {"documents": DocumentSerializer(many=True)}),
            **error_responses(400),
        },
        summary="A user's documents, newest first",
    )
    def get(self, request: Request) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = runtime.office_store_get().documents_for_user(owner(request, query.validated_data.get("user_id")))
        return Response({"documents": DocumentSerializer(found, many=True).data})


class DocumentDetailApi(APIView):
    @extend_schema(
        parameters=[DOCUMENT_ID_PARAM, UserQuerySerializer],
        responses={200: DocumentSerializer, **error_responses(400, 404)},
        summary="One document",
    )
    def get(self, request: Request, document_id: str) -> Response:
        document = documents.document_owned(
            store=runtime.office_store_get(),
            user_id=query_owner(request),
            document_id=document_id,
        )
        return Response(DocumentSerializer(document).data)

    @extend_schema(
        parameters=[DOCUMENT_ID_PARAM, UserQuerySerializer],
        responses={204: OpenApiResponse(description="deleted"), **error_responses(400, 404)},
        summary="Delete a document with its chunks and vectors",
    )
    def delete(self, request: Request, document_id: str) -> Response:
        documents.document_delete(
            store=runtime.office_store_get(),
            retriever=runtime.retriever_get(),
            user_id=query_owner(request),
            document_id=document_id,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_serializer(component_name="SearchResult")
class SearchResultSerializer(serializers.Serializer):
    document_id = serializers.CharField()
    title = serializers.CharField()
    chunk_id = serializers.CharField()
    heading = serializers.CharField(allow_blank=True)
    position = serializers.IntegerField()
    text = serializers.CharField()
    score = serializers.FloatField()


class DocumentSearchApi(APIView):
    @extend_schema_serializer(component_name="DocumentSearch")
    class InputSerializer(BodySerializer):
        user_id = user_id_field()
        query = StrictCharField(
            max_length=QUERY_MAX,
            error_messages={
                "blank": f"must not be empty (1-{QUERY_MAX} characters).",
                "max_length": f"must be at most {QUERY_MAX} characters.",
            },
        )
        k = StrictIntegerField(
            min_value=1,
            max_value=K_MAX,
            default=5,
            error_messages={
                "min_value": f"must be between 1 and {K_MAX}.",
                "max_value": f"must be between 1 and {K_MAX}.",
                "invalid": "must be an integer.",
            },
        )
        mode = serializers.ChoiceField(choices=SEARCH_MODES, default="hybrid")

    @extend_schema(
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "DocumentSearchResults",
                {
                    "mode": serializers.ChoiceField(
                        choices=SEARCH_MODES, help_text="the mode used: a Korean query is ranked lexically"
                    ),
                    "results": SearchResultSerializer(many=True),
                },
            ),
            **error_responses(*BODY_ERRORS),
        },
        summary="Hybrid (BM25 + dense) search over the user's documents, best first",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values: dict[str, Any] = data.validated_data
        outcome = runtime.retriever_get().search(
            user_id=owner(request, values.get("user_id")), query=values["query"], k=values["k"], mode=values["mode"]
        )
        return Response(
            {"mode": outcome.mode, "results": SearchResultSerializer(outcome.hits, many=True).data},
        )


# --- tools, approvals, audit ------------------------------------------------------------


@extend_schema_serializer(component_name="ToolSpec")
class ToolSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    parameters = serializers.DictField(help_text="JSON Schema of the call's `arguments`")
    sensitivity = serializers.ChoiceField(choices=["LOW", "MEDIUM", "HIGH", "CRITICAL"])
    rate_limit = inline_serializer(
        "ToolRateLimit",
        {
            "requests": serializers.IntegerField(),
            "window_s": serializers.FloatField(),
            "burst": serializers.IntegerField(),
        },
    )
    max_concurrent = serializers.IntegerField()
    needs_approval = serializers.BooleanField()


TOOL_CALL_OK = inline_serializer(
    "ToolCallResult",
    {
        "status": serializers.ChoiceField(choices=["ok"]),
        "tool": serializers.CharField(),
        "result": serializers.DictField(help_text="what the tool returned"),
        "approval_id": serializers.CharField(allow_null=True),
        "duration_ms": serializers.FloatField(),
    },
)
TOOL_CALL_WAITS = inline_serializer(
    "ToolCallApprovalRequired",
    {
        "status": serializers.ChoiceField(choices=["approval_required"]),
        "tool": serializers.CharField(),
        "approval_id": serializers.CharField(),
        "reason": serializers.CharField(),
        "approve_url": serializers.CharField(help_text="POST {user_id, decision} here"),
    },
)


def _tool_context(request: Request, user_id: str | None) -> ToolContext:
    """The tool rules' view of the caller: its data's owner key and what its role may call."""
    who = principal(request)
    return runtime.tool_context(who.owner_for(user_id), who.role)


def _outcome_response(outcome: tool_calls.ToolCallOutcome) -> Response:
    if outcome.status == "approval_required":
        body = {
            "status": "approval_required",
            "tool": outcome.tool,
            "approval_id": outcome.approval_id,
            "reason": outcome.reason,
            "approve_url": f"/office/approvals/{outcome.approval_id}",
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)
    body = {
        "status": "ok",
        "tool": outcome.tool,
        "result": outcome.result,
        "approval_id": outcome.approval_id,
        "duration_ms": round(outcome.duration_ms, 2),
    }
    return Response(body)


class ToolListApi(PublicApi):
    @extend_schema(
        operation_id="tools_list",
        responses={
            200: inline_serializer(
                "ToolList",
                {
                    "security_mode": serializers.ChoiceField(choices=["development", "production"]),
                    "tools": ToolSpecSerializer(many=True),
                },
            )
        },
        summary="The tools, their schemas and their rules",
    )
    def get(self, request: Request) -> Response:
        registry = runtime.tool_registry_get()
        return Response(
            {"security_mode": registry.security_mode, "tools": [spec.public() for spec in registry.specs()]}
        )


class ToolDetailApi(PublicApi):
    @extend_schema(
        parameters=[TOOL_NAME_PARAM],
        responses={200: ToolSpecSerializer, **error_responses(404, _404="no such tool")},
        summary="One tool",
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(tool_calls.tool_spec_public(registry=runtime.tool_registry_get(), name=name))


class ToolRateLimitApi(APIView):
    @extend_schema(
        parameters=[TOOL_NAME_PARAM, UserQuerySerializer],
        responses={
            200: inline_serializer(
                "ToolRateStatus",
                {
                    "tool": serializers.CharField(),
                    "user_id": serializers.CharField(),
                    "count": serializers.IntegerField(help_text="calls in the current window"),
                    "limit": serializers.IntegerField(),
                    "window_s": serializers.FloatField(),
                    "burst": serializers.IntegerField(),
                    "remaining": serializers.IntegerField(),
                    "reset_at": serializers.DateTimeField(),
                    "reset_in_s": serializers.FloatField(),
                },
            ),
            **error_responses(400, 404, _404="no such tool"),
        },
        summary="Where a user stands against a tool's rate limit",
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(
            tool_calls.tool_rate_status(
                registry=runtime.tool_registry_get(),
                name=name,
                user_id=query_owner(request),
            )
        )


class ToolCallApi(APIView):
    @extend_schema_serializer(component_name="ToolCall")
    class InputSerializer(BodySerializer):
        user_id = user_id_field()
        arguments = serializers.JSONField(default=dict)
        source = serializers.ChoiceField(choices=("api", "slash"), default="api")

    @extend_schema(
        operation_id="tools_call",
        parameters=[TOOL_NAME_PARAM],
        request=InputSerializer,
        responses={
            200: OpenApiResponse(TOOL_CALL_OK, description="the tool ran"),
            202: OpenApiResponse(TOOL_CALL_WAITS, description="the call waits for the user's approval"),
            **error_responses(
                *BODY_ERRORS,
                403,
                404,
                429,
                502,
                503,
                _400="invalid body, or `arguments` not valid for the tool (`field` names the argument)",
                _403="not allowed for this user in this SECURITY_MODE",
                _404="no such tool",
                _429="over the tool's rate limit (`rate_limited`) or concurrency cap (`tool_busy`)",
                _502="the tool's backend failed (`tool_failed`, `search_failed`)",
                _503="the tool is not configured on this server (`not_configured`)",
            ),
        },
        summary="Call a tool: arguments checked against its schema, rate-limited, audited",
    )
    def post(self, request: Request, name: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ctx = _tool_context(request, data.validated_data.get("user_id"))  # 403 before anything counts
        tool_call_admit(principal(request), client_ip(request))
        outcome = tool_calls.tool_call(
            registry=runtime.tool_registry_get(),
            store=runtime.office_store_get(),
            ctx=ctx,
            name=name,
            arguments=data.validated_data["arguments"],
            source=data.validated_data["source"],
        )
        return _outcome_response(outcome)


class ApprovalDecideApi(APIView):
    @extend_schema_serializer(component_name="ApprovalDecision")
    class InputSerializer(BodySerializer):
        user_id = user_id_field()
        decision = serializers.ChoiceField(
            choices=("approve", "deny"), error_messages={"invalid_choice": "must be 'approve' or 'deny'."}
        )

    @extend_schema(
        parameters=[APPROVAL_ID_PARAM],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "ApprovalOutcome",
                {
                    "approval_id": serializers.CharField(),
                    "tool": serializers.CharField(),
                    "status": serializers.ChoiceField(choices=["approved", "denied"]),
                    "result": serializers.DictField(allow_null=True, help_text="what the tool returned (approved)"),
                },
            ),
            **error_responses(
                *BODY_ERRORS,
                403,
                404,
                409,
                429,
                502,
                503,
                _404="no such approval for this user (or the approved call's target is gone)",
                _409="already decided, or expired (`approval_closed`)",
                _429="the tool's concurrency cap is full (`tool_busy`)",
                _502="the approved call's backend failed",
                _503="the tool is not configured on this server",
            ),
        },
        summary="Approve (run) or deny (drop) a tool call that waits for this user",
    )
    def post(self, request: Request, approval_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval, outcome = tool_calls.approval_decide(
            registry=runtime.tool_registry_get(),
            store=runtime.office_store_get(),
            ctx=_tool_context(request, data.validated_data.get("user_id")),
            approval_id=approval_id,
            approve=data.validated_data["decision"] == "approve",
        )
        return Response(
            {
                "approval_id": approval.id,
                "tool": approval.tool,
                "status": approval.status,
                "result": outcome.result if outcome else None,
            }
        )


@extend_schema_serializer(component_name="AuditEntry")
class AuditEntrySerializer(serializers.Serializer):
    id = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.DictField()
    outcome = serializers.CharField()
    duration_ms = serializers.FloatField()
    source = serializers.CharField()
    approval_id = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class AuditListApi(APIView):
    class QuerySerializer(UserQuerySerializer):
        limit = QueryIntegerField(min_value=1, max_value=500, default=100)

    @extend_schema(
        operation_id="audit_list",
        parameters=[QuerySerializer],
        responses={
            200: inline_serializer("AuditList", {"entries": AuditEntrySerializer(many=True)}),
            **error_responses(400),
        },
        summary="The user's tool calls and approval decisions, newest first",
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = runtime.office_store_get().audit_for_user(
            owner(request, query.validated_data.get("user_id")), limit=query.validated_data["limit"]
        )
        return Response({"entries": AuditEntrySerializer(entries, many=True).data})


# --- the OpenAPI description of the tools ---------------------------------------------------


def _arguments_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool's JSON Schema as an OpenAPI 3.0 schema (which refuses an empty `required`)."""
    schema = copy.deepcopy(parameters)
    if not schema.get("required"):
        schema.pop("required", None)
    return schema


def _tool_call_statuses(spec: ToolSpec, *, production: bool) -> set[str]:
    """What POST tools/<spec.name>/call can answer (webapp.tools.registry.ToolRegistry.decide)."""
    always_approval = spec.needs_approval or (production and spec.sensitivity >= Sensitivity.HIGH)
    statuses = {"400", "413", "415", "429", "503"}
    statuses |= {"202"} if always_approval else {"200", "502"}
    if production and spec.sensitivity == Sensitivity.CRITICAL:
        statuses.add("403")
    return statuses


def tool_call_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOK (office): {name} lists the real tools, and POST tools/{name}/call
    becomes one operation per tool whose `arguments` are that tool's own JSON Schema.

    A call's arguments are checked against the named tool's schema: in OpenAPI that is only
    true path by path. What a schema can't say stays a 400 naming the argument (an
    expression the calculator can't evaluate, a time zone that does not exist).
    """
    registry = runtime.tool_registry_get()
    specs = registry.specs()
    paths = result.get("paths", {})
    for path, item in list(paths.items()):
        if "{name}" not in path:
            continue
        if path.endswith("/{name}/call"):
            del paths[path]
            generic = item["post"]
            body = generic["requestBody"]["content"]["application/json"]["schema"]
            component = result["components"]["schemas"].pop(body["$ref"].rsplit("/", 1)[-1])
            for spec in specs:
                operation = copy.deepcopy(generic)
                operation["operationId"] = f"tools_{spec.name}_call"
                operation["summary"] = f"Call {spec.name}: {generic['summary'].split(': ', 1)[-1]}"
                operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] != "name"]
                if not operation["parameters"]:
                    del operation["parameters"]
                operation["responses"] = {
                    status: response
                    for status, response in operation["responses"].items()
                    if status in _tool_call_statuses(spec, production=registry.security_mode == "production")
                }
                arguments = _arguments_schema(spec.parameters)
                properties = {**component["properties"], "arguments": arguments}
                required = [*component.get("required", []), *(["arguments"] if arguments.get("required") else [])]
                operation["requestBody"] = {
                    "content": {
                        "application/json": {"schema": {**component, "properties": properties, "required": required}}
                    },
                    "required": True,
                }
                paths[path.replace("{name}", spec.name)] = {"post": operation}
        else:
            for operation in item.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "name" and parameter["in"] == "path":
                        parameter["schema"] = {"type": "string", "enum": sorted(spec.name for spec in specs)}
    return result


class McpServerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="2-20 of a-z and 0-9; its tools are named <name>_<tool>")
    url = serializers.CharField(help_text="the server's streamable HTTP endpoint")
    has_token = serializers.BooleanField(help_text="whether a bearer token is sent (it is never shown)")
    sensitivity = serializers.ChoiceField(choices=[s.name for s in Sensitivity])
    needs_approval = serializers.BooleanField()
    tools = inline_serializer(
        "McpServerTool",
        {"name": serializers.CharField(), "remote": serializers.CharField(), "description": serializers.CharField()},
        many=True,
    )


def _admin(request: Request) -> Any:
    who = principal(request)
    who.require_role(allowed=(Role.ADMIN,), what="MCP servers")
    return who


class McpServerListApi(APIView):
    """External MCP servers whose tools the office assistant may call (admins only)."""

    @extend_schema_serializer(component_name="McpServerCreate")
    class InputSerializer(BodySerializer):
        name = StrictCharField(max_length=20)
        url = StrictCharField(max_length=2000)
        token = StrictCharField(required=False, allow_blank=True, max_length=4000, help_text="sent as Bearer")
        tools = serializers.ListField(
            child=StrictCharField(max_length=128), min_length=1, max_length=mcp_servers.TOOLS_MAX
        )
        sensitivity = serializers.ChoiceField(choices=[s.name for s in Sensitivity], default="MEDIUM")
        needs_approval = serializers.BooleanField(default=False)

    @extend_schema(
        responses={200: inline_serializer("McpServerList", {"servers": McpServerSerializer(many=True)})},
        summary="The registered external MCP servers (admins)",
    )
    def get(self, request: Request) -> Response:
        _admin(request)
        servers = runtime.office_store_get().mcp_servers()
        return Response({"servers": [mcp_servers.server_public(s) for s in servers]})

    @extend_schema(
        request=InputSerializer,
        responses={
            201: McpServerSerializer,
            **error_responses(
                *BODY_ERRORS,
                403,
                409,
                _400="invalid body, a tool the server does not offer (`tools.<i>`), or no server at `url`",
                _403="not an admin account",
                _409="the name is taken",
            ),
        },
        summary="Register an MCP server and the tools of it the assistant may call (admins)",
    )
    def post(self, request: Request) -> Response:
        who = _admin(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        record = mcp_servers.server_add(
            runtime.tool_registry_get(),
            runtime.office_store_get(),
            name=body["name"],
            url=body["url"],
            token=body.get("token", ""),
            tools=body["tools"],
            sensitivity=body["sensitivity"],
            needs_approval=body["needs_approval"],
            created_by=who.owner,
        )
        return Response(record, status=status.HTTP_201_CREATED)


class McpServerDetailApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)],
        responses={204: None, **error_responses(403, 404, _404="no such MCP server")},
        summary="Remove an MCP server and its tools (admins)",
    )
    def delete(self, request: Request, name: str) -> Response:
        _admin(request)
        mcp_servers.server_remove(runtime.tool_registry_get(), runtime.office_store_get(), name)
        return Response(status=status.HTTP_204_NO_CONTENT)
