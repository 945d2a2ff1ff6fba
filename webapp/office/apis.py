"""REST endpoints of the office app's documents and search. Thin: validate, call a service, serialize.

Sync views, like webapp.chat.apis: each request runs on its own thread under daphne, and
the embedding and extraction work happens there (small uploads) or on the indexer thread.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.chat.apis import ERRORS, UserQuerySerializer
from webapp.chat.inputs import StrictCharField, user_id_field
from webapp.office import documents, runtime, tool_calls
from webapp.office.errors import FileTooLargeError
from webapp.retrieval.search import SEARCH_MODES

QUERY_MAX = 1000
K_MAX = 20

USER_ID_PARAM = OpenApiParameter("user_id", str, required=True, description="the document's owner")
UPLOAD_ERRORS = {
    **ERRORS,
    413: OpenApiResponse(description="file over 10 MiB, or more than 1,000,000 characters of text"),
    415: OpenApiResponse(description="unsupported file type (.txt .md .html .pdf .docx)"),
    422: OpenApiResponse(description="empty, corrupt, encrypted or image-only file; `code` says which"),
}


class DocumentSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    filename = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()
    status = serializers.CharField()
    chunks = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DocumentListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class UploadSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, error_messages={"required": "attach the file as `file`."})
        user_id = user_id_field()
        title = StrictCharField(required=False, max_length=documents.TITLE_MAX, allow_blank=True)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={201: DocumentSerializer, 202: DocumentSerializer, **UPLOAD_ERRORS},
        summary="Upload a document (.txt .md .html .pdf .docx, ≤ 10 MiB) and index it for search",
    )
    def post(self, request: Request) -> Response:
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
            user_id=data.validated_data["user_id"],
            filename=upload.name or "",
            data=upload.read(),
            title=data.validated_data.get("title") or None,
        )
        return Response(
            DocumentSerializer(outcome.document).data,
            status=status.HTTP_201_CREATED if outcome.indexed_now else status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        parameters=[USER_ID_PARAM], responses=DocumentSerializer(many=True), summary="A user's documents, newest first"
    )
    def get(self, request: Request) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = runtime.office_store_get().documents_for_user(query.validated_data["user_id"])
        return Response({"documents": DocumentSerializer(found, many=True).data})


class DocumentDetailApi(APIView):
    @extend_schema(parameters=[USER_ID_PARAM], responses={200: DocumentSerializer, **ERRORS}, summary="One document")
    def get(self, request: Request, document_id: str) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        document = documents.document_owned(
            store=runtime.office_store_get(), user_id=query.validated_data["user_id"], document_id=document_id
        )
        return Response(DocumentSerializer(document).data)

    @extend_schema(
        parameters=[USER_ID_PARAM],
        responses={204: None, **ERRORS},
        summary="Delete a document with its chunks and vectors",
    )
    def delete(self, request: Request, document_id: str) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        documents.document_delete(
            store=runtime.office_store_get(),
            retriever=runtime.retriever_get(),
            user_id=query.validated_data["user_id"],
            document_id=document_id,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SearchResultSerializer(serializers.Serializer):
    document_id = serializers.CharField()
    title = serializers.CharField()
    chunk_id = serializers.CharField()
    heading = serializers.CharField(allow_blank=True)
    position = serializers.IntegerField()
    text = serializers.CharField()
    score = serializers.FloatField()


class DocumentSearchApi(APIView):
    class InputSerializer(serializers.Serializer):
        user_id = user_id_field()
        query = StrictCharField(
            max_length=QUERY_MAX,
            error_messages={
                "blank": f"must not be empty (1-{QUERY_MAX} characters).",
                "max_length": f"must be at most {QUERY_MAX} characters.",
            },
        )
        k = serializers.IntegerField(
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
        responses={200: SearchResultSerializer(many=True), **ERRORS},
        summary="Hybrid (BM25 + dense) search over the user's documents, best first",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values: dict[str, Any] = data.validated_data
        outcome = runtime.retriever_get().search(
            user_id=values["user_id"], query=values["query"], k=values["k"], mode=values["mode"]
        )
        return Response(
            {"mode": outcome.mode, "results": SearchResultSerializer(outcome.hits, many=True).data},
        )


# --- tools, approvals, audit ------------------------------------------------------------


class ToolSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    parameters = serializers.DictField()
    sensitivity = serializers.CharField()
    rate_limit = serializers.DictField()
    max_concurrent = serializers.IntegerField()
    needs_approval = serializers.BooleanField()


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


class ToolListApi(APIView):
    @extend_schema(responses=ToolSpecSerializer(many=True), summary="The tools, their schemas and their rules")
    def get(self, request: Request) -> Response:
        registry = runtime.tool_registry_get()
        return Response(
            {"security_mode": registry.security_mode, "tools": [spec.public() for spec in registry.specs()]}
        )


class ToolDetailApi(APIView):
    @extend_schema(responses={200: ToolSpecSerializer, **ERRORS}, summary="One tool")
    def get(self, request: Request, name: str) -> Response:
        return Response(tool_calls.tool_spec_public(registry=runtime.tool_registry_get(), name=name))


class ToolRateLimitApi(APIView):
    @extend_schema(
        parameters=[USER_ID_PARAM],
        responses={200: OpenApiResponse(description="count, limit, window_s, burst, remaining, reset_at"), **ERRORS},
        summary="Where a user stands against a tool's rate limit",
    )
    def get(self, request: Request, name: str) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            tool_calls.tool_rate_status(
                registry=runtime.tool_registry_get(), name=name, user_id=query.validated_data["user_id"]
            )
        )


class ToolCallApi(APIView):
    class InputSerializer(serializers.Serializer):
        user_id = user_id_field()
        arguments = serializers.JSONField(default=dict)
        source = serializers.ChoiceField(choices=("api", "slash"), default="api")

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OpenApiResponse(description="the tool ran: {status: ok, result}"),
            202: OpenApiResponse(description="needs the user's approval: {status: approval_required, approval_id}"),
            403: OpenApiResponse(description="not allowed for this user in this SECURITY_MODE"),
            429: OpenApiResponse(description="over the rate limit or the concurrency cap; see Retry-After"),
            **ERRORS,
        },
        summary="Call a tool: arguments checked against its schema, rate-limited, audited",
    )
    def post(self, request: Request, name: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = tool_calls.tool_call(
            registry=runtime.tool_registry_get(),
            store=runtime.office_store_get(),
            ctx=runtime.tool_context(data.validated_data["user_id"]),
            name=name,
            arguments=data.validated_data["arguments"],
            source=data.validated_data["source"],
        )
        return _outcome_response(outcome)


class ApprovalDecideApi(APIView):
    class InputSerializer(serializers.Serializer):
        user_id = user_id_field()
        decision = serializers.ChoiceField(
            choices=("approve", "deny"), error_messages={"invalid_choice": "must be 'approve' or 'deny'."}
        )

    @extend_schema(
        request=InputSerializer,
        responses={200: OpenApiResponse(description="{status: approved|denied, result}"), **ERRORS},
        summary="Approve (run) or deny (drop) a tool call that waits for this user",
    )
    def post(self, request: Request, approval_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval, outcome = tool_calls.approval_decide(
            registry=runtime.tool_registry_get(),
            store=runtime.office_store_get(),
            ctx=runtime.tool_context(data.validated_data["user_id"]),
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
        limit = serializers.IntegerField(min_value=1, max_value=500, default=100)

    @extend_schema(
        parameters=[USER_ID_PARAM],
        responses=AuditEntrySerializer(many=True),
        summary="The user's tool calls and approval decisions, newest first",
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = runtime.office_store_get().audit_for_user(
            query.validated_data["user_id"], limit=query.validated_data["limit"]
        )
        return Response({"entries": AuditEntrySerializer(entries, many=True).data})
