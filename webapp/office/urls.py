"""The office app's own routes, appended to webapp.chat.urls when APP_MODE=office."""

from __future__ import annotations

from django.urls import path

from webapp.chat.urls import methods_only
from webapp.office import apis, openai_embeddings

urlpatterns = [
    path("documents", apis.DocumentListApi.as_view(), name="documents"),
    path("documents/search", apis.DocumentSearchApi.as_view(), name="documents-search"),
    path("documents/<str:document_id>", apis.DocumentDetailApi.as_view(), name="document"),
    path("tools", apis.ToolListApi.as_view(), name="tools"),
    path("tools/<str:name>", apis.ToolDetailApi.as_view(), name="tool"),
    path("tools/<str:name>/rate-limit", apis.ToolRateLimitApi.as_view(), name="tool-rate-limit"),
    path("tools/<str:name>/call", apis.ToolCallApi.as_view(), name="tool-call"),
    path("approvals/<str:approval_id>", apis.ApprovalDecideApi.as_view(), name="approval"),
    path("audit", apis.AuditListApi.as_view(), name="audit"),
    path("mcp-servers", apis.McpServerListApi.as_view(), name="mcp-servers"),
    path("mcp-servers/<str:name>", apis.McpServerDetailApi.as_view(), name="mcp-server"),
    path("v1/embeddings", methods_only("POST")(openai_embeddings.embeddings), name="openai-embeddings"),
]
