"""REST endpoints. Each class: validate input, call one service or selector, serialize.

The Llama endpoints keep the seed design's (ChatBot AI v1.7) contract: the response body
is the reply text as a JSON string. The ids and measurements of the turn travel in
headers (X-Conversation-Id, X-Message-Id, X-Prompt-Tokens, X-Completion-Tokens,
X-TTFT-Ms, X-Finish-Reason) so that clients of the seed keep working.

These are sync views: under daphne each request's sync code runs on its own thread
(Django wraps every ASGI request in a ThreadSensitiveContext), and the model itself runs
on the engine's thread; the view only waits for the result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, cast

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.accounts.client_ip import client_ip
from webapp.accounts.identity import Principal, request_principal_drf
from webapp.accounts.models import Account, ApiKey, KeyScope, Role
from webapp.accounts.usage import TurnLimits, upload_admit
from webapp.chat import group_chats, runtime, search, selectors, services, transcripts
from webapp.chat.inputs import (
    INPUT_MAX,
    CharacterTurnSerializer,
    OfficeTurnSerializer,
    StrictCharField,
    persona_by_id,
    persona_for_import,
    turn_request,
    user_id_field,
)
from webapp.chat.metrics import prefix_cache_summary, prometheus_text
from webapp.chat.schema import (
    BODY_ERRORS,
    UUID_PATTERN,
    ErrorEnvelopeSerializer,
    error_responses,
    turn_headers,
)
from webapp.chat.services import sampling_params
from webapp.chat.turns import TurnRequest, turn_collect
from webapp.core.errors import PayloadTooLargeError


def unknown_fields_refuse(data: Any, fields: Mapping[str, Any]) -> None:
    """A REST body has exactly its documented fields: an unknown one is a 400 naming it.

    The schema says so (additionalProperties: false, webapp.chat.schema.request_bodies_closed),
    and a misspelt field ("inputdata") is refused instead of silently ignored.
    """
    if not isinstance(data, Mapping):
        return  # the serializer itself refuses a body that is not an object
    unknown = [str(key) for key in data if key not in fields]
    if unknown:
        known = ", ".join(fields)
        detail = ErrorDetail(f"unknown field (this body's fields: {known}).", code="unknown_field")
        raise serializers.ValidationError({unknown[0]: [detail]})


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter: `?limit=` is a 400, as the schema's `integer` says, where
    DRF would read an empty value of an optional field as "left out" and use the default."""

    def get_value(self, dictionary: Any) -> Any:
        if dictionary.get(self.field_name) == "":
            return ""  # to_internal_value refuses it: "A valid integer is required."
        return super().get_value(dictionary)


class BodySerializer(serializers.Serializer):
    """A REST request body: its documented fields and no others (see unknown_fields_refuse)."""

    def to_internal_value(self, data: Any) -> Any:
        unknown_fields_refuse(data, self.fields)
        return super().to_internal_value(data)


LLAMA_ERRORS = error_responses(
    *BODY_ERRORS,
    404,
    429,
    503,
    _404="db_id belongs to another user",
    _429="server busy: the estimated wait for the model is over its limit; nothing was stored",
    _503="model loading (`model_loading`), shutting down (`shutting_down`), or generation failed",
)


class PublicApi(APIView):
    """A view anyone may read, signed in or not: it shows no one's data (health, measurements,
    personas, tool specs). Every other view needs an account (settings.REST_FRAMEWORK)."""

    authentication_classes = ()
    permission_classes = ()


def principal(request: Request) -> Principal:
    """Who an authenticated view acts for (the default permission, CanChat, let it in)."""
    return request_principal_drf(request)


def owner(request: Request, user_id: str | None) -> str:
    """The owner key of the data a request reads or writes: its account's, or with a service
    key one of its end users' (`user_id`); a session or personal key naming another user is a 403."""
    return principal(request).owner_for(user_id)


def query_owner(request: Request) -> str:
    """`owner` for a request whose only query parameter is the optional `user_id` (400 if it is bad)."""
    query = UserQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return owner(request, query.validated_data.get("user_id"))


def _reply(data: dict[str, Any], who: Principal, gate: TurnLimits) -> Response:
    """Run a validated turn through the turn service; answer with the reply text as a JSON string."""
    request = turn_request(
        data,
        owner=who.owner_for(data.get("user_id")),
        user_name=data.get("user_id") or who.username,
        role=who.role,
        gate=gate,
        sampling=sampling_params(runtime.model_spec_get().sampling),
    )
    done = async_to_sync(turn_collect)(request, deps=runtime.turn_deps())
    message, completion = done.message, done.completion
    assert message is not None
    return Response(
        message.content,
        headers={
            "X-Conversation-Id": request.db_id,
            "X-Message-Id": message.id,
            "X-Persona": request.persona.id,
            "X-Prompt-Tokens": str(completion.usage.prompt_tokens),
            "X-Completion-Tokens": str(completion.usage.completion_tokens),
            "X-TTFT-Ms": f"{completion.timings.ttft_ms:.1f}",
            "X-Finish-Reason": completion.finish_reason,
            # How many document sources the reply was grounded on (office); the sources
            # themselves are in GET conversations/{db_id}/messages under meta.sources.
            "X-Sources": str(len(message.meta.get("sources", []))),
        },
    )


class _LlamaApi(APIView):
    """POST /<app>/Llama: one turn, answered when the reply is stored. Counted for /performance."""

    InputSerializer: type[serializers.Serializer]

    def post(self, request: Request) -> Response:
        with runtime.CountedRequest() as counted:
            serializer = self.InputSerializer(data=request.data)
            unknown_fields_refuse(request.data, serializer.fields)
            serializer.is_valid(raise_exception=True)
            who = principal(request)
            response = _reply(serializer.validated_data, who, TurnLimits(who, client_ip(request)))
            counted.succeeded()
            return response


class OfficeLlamaApi(_LlamaApi):
    InputSerializer = OfficeTurnSerializer

    @extend_schema(
        request=InputSerializer,
        responses={200: OpenApiResponse(OpenApiTypes.STR, description="the assistant's reply text"), **LLAMA_ERRORS},
        parameters=turn_headers(),
        summary="Ask the office assistant (one turn of conversation db_id)",
        description=(
            "When the user has documents, the reply is grounded on them (their sources are in "
            "GET conversations/{db_id}/messages, meta.sources; X-Sources counts them). "
            "google_access: true also runs the web_search tool (SearxNG, when SEARXNG_URL is set); "
            "when it can't run, the reply starts with a note saying why. Without db_id a new "
            "conversation starts (its id is in X-Conversation-Id)."
        ),
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class CharacterLlamaApi(_LlamaApi):
    InputSerializer = CharacterTurnSerializer

    @extend_schema(
        request=InputSerializer,
        responses={200: OpenApiResponse(OpenApiTypes.STR, description="the character's reply text"), **LLAMA_ERRORS},
        parameters=turn_headers(),
        summary="Talk to a character: a stored persona, or one described inline",
        description=(
            "Give `persona` (a character id from GET personas), or describe one inline with "
            "`character_name` and `context` (and optionally `greeting`), not both. Without db_id a "
            "new conversation starts (its id is in X-Conversation-Id)."
        ),
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


@extend_schema_serializer(component_name="PrefixCache")
class PrefixCacheSerializer(serializers.Serializer):
    entries = serializers.IntegerField(help_text="persona prefixes whose KV state is kept")
    bytes = serializers.IntegerField(help_text="host memory they take")
    limit_bytes = serializers.IntegerField(help_text="the registry's prefix_cache_mib")
    hits = serializers.IntegerField(help_text="requests that started from a kept prefix")
    misses = serializers.IntegerField(help_text="requests that evaluated a prefix not kept")
    hit_ratio = serializers.FloatField(help_text="hits / (hits + misses), 0..1")
    evictions = serializers.IntegerField()
    tokens_restored = serializers.IntegerField(help_text="prompt tokens copied instead of evaluated")
    restore_ms_per_token = serializers.FloatField(help_text="copy time into a slot, per token")
    save_ms = serializers.FloatField(help_text="total time spent copying prefixes out of slots")


class PerformanceApi(PublicApi):
    @extend_schema_serializer(component_name="Performance")
    class OutputSerializer(serializers.Serializer):
        total_requests = serializers.IntegerField()
        successful_requests = serializers.IntegerField()
        failed_requests = serializers.IntegerField()
        active_requests = serializers.IntegerField()
        queue_size = serializers.IntegerField()
        avg_response_time = serializers.FloatField(help_text="mean seconds of successful requests")
        success_rate = serializers.FloatField(help_text="successful / finished, 0..1")
        uptime_seconds = serializers.FloatField()
        slots = serializers.IntegerField(help_text="sequences the engine decodes together")
        busy_slots = serializers.IntegerField()
        tokens_per_second = serializers.FloatField(help_text="measured decode rate of the whole batch")
        ttft_p50_ms = serializers.FloatField(help_text="time to first token, last 1000 requests")
        ttft_p95_ms = serializers.FloatField()
        prefix_cache_hit_ratio = serializers.FloatField(help_text="prompt tokens found in the KV cache / all, 0..1")
        prefix_cache = PrefixCacheSerializer(
            allow_null=True, help_text="the persona prefix cache; null while loading or when it is off"
        )
        estimated_wait_s = serializers.FloatField(help_text="estimated wait for a slot; over the limit means 429")
        requests_refused = serializers.IntegerField(help_text="answered 429 (server busy)")
        service_type = serializers.CharField(help_text="which app answered: office or character (seed design)")
        active_connections = serializers.IntegerField(help_text="open chat WebSockets of this app (seed design)")

    @extend_schema(
        responses={200: OutputSerializer}, summary="What this app measured: requests, engine, time to first token"
    )
    def get(self, request: Request) -> Response:
        snapshot = runtime.request_stats_get().snapshot()
        state, _ = runtime.engine_status()
        engine = runtime.engine_get().stats() if state == "ready" else None
        return Response(
            self.OutputSerializer(
                {
                    **snapshot.__dict__,
                    "queue_size": engine.queue_depth if engine else 0,
                    "slots": engine.slots if engine else 0,
                    "busy_slots": engine.busy_slots if engine else 0,
                    "tokens_per_second": engine.tokens_per_s if engine else 0.0,
                    "ttft_p50_ms": engine.ttft_p50_ms if engine else 0.0,
                    "ttft_p95_ms": engine.ttft_p95_ms if engine else 0.0,
                    "prefix_cache_hit_ratio": (
                        round(engine.prompt_tokens_reused / engine.prompt_tokens, 4)
                        if engine and engine.prompt_tokens
                        else 0.0
                    ),
                    "prefix_cache": prefix_cache_summary(engine) if engine else None,
                    "estimated_wait_s": engine.estimated_wait_s if engine else 0.0,
                    "requests_refused": engine.requests_refused if engine else 0,
                    "service_type": settings.APP_MODE,
                    "active_connections": runtime.websockets_open(),
                }
            ).data
        )


class MetricsApi(PublicApi):
    @extend_schema(
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format 0.0.4")},
        summary="The same measurements for Prometheus, plus HTTP request counts and durations",
    )
    def get(self, request: Request) -> HttpResponse:
        state, _ = runtime.engine_status()
        text = prometheus_text(
            app=settings.APP_MODE,
            model=runtime.model_spec_get().alias,
            stats=runtime.request_stats_get().snapshot(),
            engine=runtime.engine_get() if state == "ready" else None,
            http=runtime.http_metrics_get(),
        )
        return HttpResponse(text, content_type="text/plain; version=0.0.4; charset=utf-8")


@extend_schema_serializer(component_name="Health")
class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["idle", "loading", "ready", "failed"])
    app = serializers.ChoiceField(choices=["office", "character"])
    model = serializers.CharField(help_text="the model's alias")
    error = serializers.CharField(required=False, help_text="why the model failed to load (status failed)")


class HealthApi(PublicApi):
    @extend_schema(
        responses={
            200: OpenApiResponse(HealthSerializer, description="the model is loaded"),
            503: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="HealthUnavailable",
                    serializers=[HealthSerializer, ErrorEnvelopeSerializer],
                    resource_type_field_name=None,
                ),
                description="the model is loading or failed to load; or the app is down (the gateway's error)",
            ),
        },
        summary="Ready only when this app's model is loaded",
    )
    def get(self, request: Request) -> Response:
        state, failure = runtime.engine_status()
        spec = runtime.model_spec_get()
        body = {"status": state, "app": spec.app, "model": spec.alias}
        if failure:
            body["error"] = failure
        return Response(body, status=status.HTTP_200_OK if state == "ready" else status.HTTP_503_SERVICE_UNAVAILABLE)


class PersonaListApi(PublicApi):
    @extend_schema_serializer(component_name="Persona")
    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField()
        name = serializers.CharField()
        description = serializers.CharField()
        greeting = serializers.CharField(help_text="the persona's first message; may be empty")
        language = serializers.CharField()

    @extend_schema(
        operation_id="personas_list",
        responses={
            200: inline_serializer(
                "PersonaList",
                {
                    "default": serializers.CharField(help_text="the persona used when a turn names none"),
                    "personas": OutputSerializer(many=True),
                },
            )
        },
        summary="This app's personas",
    )
    def get(self, request: Request) -> Response:
        catalog = runtime.personas_get()
        return Response(
            {
                "default": catalog.default_id,
                "personas": self.OutputSerializer(catalog.personas.values(), many=True).data,
            }
        )


class UserQuerySerializer(serializers.Serializer):
    user_id = user_id_field()


@extend_schema_serializer(component_name="Conversation")
class ConversationSerializer(serializers.Serializer):
    db_id = serializers.UUIDField()
    persona = serializers.CharField()
    title = serializers.CharField()
    message_count = serializers.IntegerField()
    greeting = serializers.IntegerField(help_text="which of the persona's greetings it started with (0: the first)")
    lorebooks = serializers.ListField(
        child=serializers.CharField(), help_text="lorebooks attached to this chat (character app)"
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    parent_id = serializers.CharField(
        allow_blank=True, help_text="a branch: the conversation it was forked from ('' for none)"
    )
    parent_message_id = serializers.CharField(
        allow_blank=True, help_text="a branch: the message there whose history it shares ('' for none)"
    )
    members = serializers.ListField(
        child=serializers.CharField(), help_text="a group chat's characters, in order ([] for a one-to-one chat)"
    )
    muted = serializers.ListField(child=serializers.CharField(), help_text="a group's members never picked to speak")
    activation = serializers.CharField(
        allow_blank=True, help_text="a group's way of picking who speaks: natural | list | manual ('' for none)"
    )


DB_ID_PARAM = OpenApiParameter(
    "db_id", OpenApiTypes.UUID, OpenApiParameter.PATH, pattern=UUID_PATTERN, description="the conversation's id"
)


class ConversationListApi(APIView):
    class QuerySerializer(UserQuerySerializer):
        limit = QueryIntegerField(min_value=1, max_value=500, default=100)

    @extend_schema(
        operation_id="conversations_list",
        parameters=[QuerySerializer],
        responses={
            200: inline_serializer("ConversationList", {"conversations": ConversationSerializer(many=True)}),
            **error_responses(400),
        },
        summary="A user's conversations, newest first",
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        conversations = selectors.conversations_list(
            store=runtime.chat_store_get(),
            user_id=owner(request, query.validated_data.get("user_id")),
            limit=query.validated_data["limit"],
        )
        return Response({"conversations": ConversationSerializer(conversations, many=True).data})


class ConversationDetailApi(APIView):
    @extend_schema(
        parameters=[DB_ID_PARAM, UserQuerySerializer],
        responses={
            204: OpenApiResponse(description="deleted, with its messages"),
            **error_responses(400, 404, _404="no such conversation for this user"),
        },
        summary="Delete a conversation and its messages",
    )
    def delete(self, request: Request, db_id: str) -> Response:
        services.conversation_delete(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            user_id=query_owner(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


MESSAGE_PAGE_DEFAULT = 100
MESSAGE_PAGE_MAX = 500
SEQ_MAX = 2**40  # far beyond any chat; bounded so that SQLite's 64-bit integers always hold it


class MessageListApi(APIView):
    @extend_schema_serializer(component_name="Message")
    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField()
        seq = serializers.IntegerField()
        role = serializers.CharField()
        content = serializers.CharField(allow_blank=True)
        created_at = serializers.DateTimeField()
        meta = serializers.DictField()

    class QuerySerializer(UserQuerySerializer):
        before = QueryIntegerField(
            required=False,
            min_value=0,
            max_value=SEQ_MAX,
            help_text="only messages before this place (seq): the page further back; the previous page's `before`",
        )
        limit = QueryIntegerField(min_value=1, max_value=MESSAGE_PAGE_MAX, default=MESSAGE_PAGE_DEFAULT)

    @extend_schema(
        operation_id="conversations_messages_list",
        parameters=[DB_ID_PARAM, QuerySerializer],
        responses={
            200: inline_serializer(
                "MessageList",
                {
                    "db_id": serializers.UUIDField(),
                    "messages": OutputSerializer(many=True),
                    "before": serializers.IntegerField(
                        allow_null=True,
                        help_text="pass as `before` to read the page further back; null: this page starts the chat",
                    ),
                },
            ),
            **error_responses(400, 404, _404="no such conversation for this user"),
        },
        summary="A page of a conversation's messages (the newest, or those before `before`), oldest first",
    )
    def get(self, request: Request, db_id: str) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.messages_page(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            user_id=owner(request, query.validated_data.get("user_id")),
            before=query.validated_data.get("before"),
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "db_id": str(db_id),
                "messages": self.OutputSerializer(page.messages, many=True).data,
                "before": page.before,
            }
        )


MESSAGE_ID_PATTERN = r"^[0-9a-f]{24}$"
MESSAGE_ID_PARAM = OpenApiParameter(
    "message_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=MESSAGE_ID_PATTERN,
    description="the message's id (`id` in GET messages)",
)
MESSAGE_EDIT_MAX = 20_000


class MessageDetailApi(APIView):
    class PatchSerializer(BodySerializer):
        content = serializers.CharField(
            required=False,
            max_length=MESSAGE_EDIT_MAX,
            trim_whitespace=False,
            help_text="the message's new text; what it said before is kept in meta.edits",
        )
        swipe_id = serializers.IntegerField(
            required=False, min_value=0, max_value=10_000, help_text="which of a reply's alternatives to show"
        )

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            if len(data) != 1:
                raise serializers.ValidationError(
                    {"content": ["give exactly one of content (edit the text) and swipe_id (choose an alternative)."]}
                )
            if "content" in data and not data["content"].strip():
                raise serializers.ValidationError({"content": ["must not be blank."]})
            return data

    @extend_schema(
        operation_id="conversations_messages_update",
        parameters=[DB_ID_PARAM, MESSAGE_ID_PARAM, UserQuerySerializer],
        request=PatchSerializer,
        responses={200: MessageListApi.OutputSerializer, **error_responses(*BODY_ERRORS, 404)},
        summary="Edit a message's text, or choose which of a reply's alternatives (swipes) is shown",
    )
    def patch(self, request: Request, db_id: str, message_id: str) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = self.PatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        where = {
            "store": runtime.chat_store_get(),
            "db_id": str(db_id),
            "user_id": owner(request, query.validated_data.get("user_id")),
            "message_id": message_id,
        }
        if "swipe_id" in body.validated_data:
            message = services.message_swipe_choose(**where, swipe_id=body.validated_data["swipe_id"])
        else:
            message = services.message_edit(**where, content=body.validated_data["content"])
        return Response(MessageListApi.OutputSerializer(message).data)

    @extend_schema(
        operation_id="conversations_messages_delete",
        parameters=[DB_ID_PARAM, MESSAGE_ID_PARAM, UserQuerySerializer],
        responses={204: OpenApiResponse(description="deleted"), **error_responses(400, 404)},
        summary="Delete one message",
    )
    def delete(self, request: Request, db_id: str, message_id: str) -> Response:
        services.message_delete(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            user_id=query_owner(request),
            message_id=message_id,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _reply_again(request: Request, db_id: str, message_id: str, *, continues: bool) -> Response:
    """Run a turn on a stored reply (another answer to it, or the rest of it) and answer
    with the reply as stored. Counted for /performance, as a Llama turn is."""
    with runtime.CountedRequest() as counted:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        who = principal(request)
        user_id = owner(request, query.validated_data.get("user_id"))
        store = runtime.chat_store_get()
        conversation = selectors.conversation_owned(store=store, db_id=str(db_id), user_id=user_id)
        user_name = query.validated_data.get("user_id") or who.username
        gate = TurnLimits(who, client_ip(request))
        sampling = sampling_params(runtime.model_spec_get().sampling)
        if conversation.is_group and not continues:  # the member who wrote the reply answers again
            reply = store.message_get(str(db_id), message_id)
            speaker = str(reply.meta.get("speaker", "")) if reply is not None else ""
            turn = group_chats.speak_request(
                {"db_id": str(db_id), "speaker": speaker or conversation.persona, "message_id": message_id},
                owner=user_id,
                user_name=user_name,
                role=who.role,
                gate=gate,
                sampling=sampling,
            )
        else:
            turn = TurnRequest(
                user_id=user_id,
                user_name=user_name,
                role=who.role,
                gate=gate,
                db_id=str(db_id),
                persona=persona_by_id(conversation.persona, owner=user_id),
                sampling=sampling,
                swipe_of=message_id,
                continues=continues,
            )
        done = async_to_sync(turn_collect)(turn, deps=runtime.turn_deps())
        assert done.message is not None
        counted.succeeded()
        return Response(MessageListApi.OutputSerializer(done.message).data)


def _reply_errors(conflict: str) -> dict[Any, Any]:
    return error_responses(
        400,
        404,
        409,
        429,
        503,
        _404="no such conversation for this user",
        _409=conflict,
        _429="server busy: the estimated wait for the model is over its limit; nothing was stored",
        _503="model loading (`model_loading`), shutting down (`shutting_down`), or generation failed",
    )


class MessageSwipeApi(APIView):
    """POST .../messages/{message_id}/swipes: answer the question of reply `message_id`
    again (any reply: an earlier one from the history before it, as it was then); the new
    answer becomes the reply's newest alternative, shown."""

    @extend_schema(
        operation_id="conversations_messages_swipe",
        parameters=[DB_ID_PARAM, MESSAGE_ID_PARAM, UserQuerySerializer],
        request=None,
        responses={
            200: MessageListApi.OutputSerializer,
            **_reply_errors("a group chat's reply that is not its last message"),
        },
        summary="Generate another answer (a swipe) for a reply",
    )
    def post(self, request: Request, db_id: str, message_id: str) -> Response:
        return _reply_again(request, db_id, message_id, continues=False)


class MessageContinueApi(APIView):
    """POST .../messages/{message_id}/continue: the model goes on writing the conversation's
    last reply from where it ends (a reply cut at the length limit, or stopped); the text is
    added to it (its shown alternative), `meta.continued` counts the continuations."""

    @extend_schema(
        operation_id="conversations_messages_continue",
        parameters=[DB_ID_PARAM, MESSAGE_ID_PARAM, UserQuerySerializer],
        request=None,
        responses={
            200: MessageListApi.OutputSerializer,
            **_reply_errors("message_id is not the conversation's last reply"),
        },
        summary="Continue the last reply: the model writes more of it",
    )
    def post(self, request: Request, db_id: str, message_id: str) -> Response:
        return _reply_again(request, db_id, message_id, continues=True)


class ConversationBranchApi(APIView):
    class InputSerializer(BodySerializer):
        from_message_id = serializers.RegexField(
            MESSAGE_ID_PATTERN,
            help_text="the message the branch shares the history up to (and including)",
            error_messages={"invalid": "must be a message id: 24 lowercase hex digits."},
        )
        content = StrictCharField(
            required=False,
            max_length=INPUT_MAX,
            trim_whitespace=False,
            help_text="edit and send again: the branch's copy of from_message_id (your message) says this "
            "instead (the old text in its edits), and the branch ends on it; a regenerate frame on the "
            "WebSocket then asks for its reply",
        )

    @extend_schema(
        operation_id="conversations_branch",
        parameters=[DB_ID_PARAM, UserQuerySerializer],
        request=InputSerializer,
        responses={201: ConversationSerializer, **error_responses(*BODY_ERRORS, 404)},
        summary="Fork a conversation at a message: a new conversation sharing its history up to there",
    )
    def post(self, request: Request, db_id: str) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        branch = services.conversation_branch(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            user_id=owner(request, query.validated_data.get("user_id")),
            from_message_id=body.validated_data["from_message_id"],
            content=body.validated_data.get("content"),
        )
        return Response(ConversationSerializer(branch).data, status=status.HTTP_201_CREATED)


class ConversationImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(BodySerializer):
        file = serializers.FileField(
            allow_empty_file=True,
            help_text="SillyTavern's chat JSONL, or this service's JSON export (personachat.conversation)",
            error_messages={"required": "attach the file as `file`."},
        )
        persona = serializers.CharField(
            required=False, max_length=100, help_text="who the chat is with (default: the file's, else the app's)"
        )
        title = serializers.CharField(required=False, max_length=200, help_text="default: the file's")
        user_id = user_id_field()

    @extend_schema(
        operation_id="conversations_import",
        request={"multipart/form-data": InputSerializer},
        responses={
            201: inline_serializer(
                "ConversationImport",
                {
                    "conversation": ConversationSerializer(),
                    "imported": serializers.IntegerField(help_text="messages stored"),
                    "skipped": serializers.IntegerField(help_text="SillyTavern system lines left out"),
                },
            ),
            **error_responses(
                *BODY_ERRORS,
                413,
                429,
                _400="a malformed chat file (`invalid_chat_file`: the message names the line or field), "
                "or an unknown persona",
                _413="file over 32 MiB (`file_too_large`)",
            ),
        },
        summary="Import a chat: SillyTavern's chat JSONL (swipes kept) or this service's JSON export",
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is not None and upload.size > transcripts.MAX_FILE_BYTES:
            raise PayloadTooLargeError(
                f"file is {upload.size:,} bytes; the limit is {transcripts.MAX_FILE_BYTES:,} bytes (32 MiB)",
                field="file",
                code="file_too_large",
            )
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        who = principal(request)
        user_id = owner(request, body.validated_data.get("user_id"))
        upload_admit(who, client_ip(request))
        parsed = transcripts.chat_file_parse(body.validated_data["file"].read())
        persona = persona_for_import(
            chosen=body.validated_data.get("persona"),
            file_persona=parsed.persona,
            character_name=parsed.character_name,
            owner=user_id,
        )
        conversation = runtime.chat_store_get().conversation_import(
            db_id=str(uuid.uuid4()),
            user_id=user_id,
            persona=persona.id,
            title=body.validated_data.get("title") or parsed.title,
            messages=parsed.messages,
        )
        runtime.message_indexer_get().wake()  # index the imported messages for search now
        return Response(
            {
                "conversation": ConversationSerializer(conversation).data,
                "imported": len(parsed.messages),
                "skipped": parsed.skipped,
            },
            status=status.HTTP_201_CREATED,
        )


class ConversationExportApi(APIView):
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # `?format=` is this endpoint's own parameter (the file's format), not DRF's renderer
        # override, which would answer ?format=md with a 404: errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    class QuerySerializer(UserQuerySerializer):
        format = serializers.ChoiceField(
            choices=transcripts.EXPORT_FORMATS,
            default="jsonl",
            error_messages={"invalid_choice": "must be jsonl, json or md."},
        )

    @extend_schema(
        operation_id="conversations_export",
        parameters=[DB_ID_PARAM, QuerySerializer],
        responses={
            (200, "application/jsonl"): OpenApiResponse(
                OpenApiTypes.STR, description="SillyTavern's chat file: a header line, then a line per message"
            ),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="this service's own format (personachat.conversation, version 1)"
            ),
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description="a readable transcript"),
            **error_responses(400, 404, _404="no such conversation for this user"),
        },
        summary="Export a conversation as a file (SillyTavern JSONL, JSON or Markdown)",
    )
    def get(self, request: Request, db_id: str) -> HttpResponse:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        who = principal(request)
        kind = query.validated_data["format"]
        conversation, messages = selectors.conversation_whole(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            user_id=owner(request, query.validated_data.get("user_id")),
        )
        persona = runtime.personas_get().get(conversation.persona)
        names: dict[str, Any] = {
            "user_name": who.username,
            "character_name": persona.name if persona else conversation.persona,
        }
        if conversation.is_group:  # each reply under its member's name; the file under the group's
            names["character_name"] = conversation.title
            names["speaker_names"] = group_chats.member_names(conversation, owner=conversation.user_id)
        if kind == "json":
            body = json.dumps(
                transcripts.transcript_json(conversation=conversation, messages=messages), ensure_ascii=False
            )
            content_type = "application/json"
        elif kind == "md":
            body = transcripts.transcript_markdown(conversation=conversation, messages=messages, **names)
            content_type = "text/markdown; charset=utf-8"
        else:
            body = transcripts.transcript_jsonl(conversation=conversation, messages=messages, **names)
            content_type = "application/jsonl; charset=utf-8"
        response = HttpResponse(body.encode(), content_type=content_type)
        filename = f"{slugify(conversation.title)[:60] or 'chat'}-{str(db_id)[:8]}.{kind}"
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
        return response


class SearchApi(APIView):
    class QuerySerializer(UserQuerySerializer):
        q = serializers.CharField(
            max_length=search.QUERY_MAX,
            help_text="words to find: a message matches when it has every one (Korean by morphemes, so particles "
            "and endings don't matter; English by word, plurals folded)",
        )
        limit = QueryIntegerField(min_value=1, max_value=search.RESULTS_MAX, default=20)

    @extend_schema_serializer(component_name="SearchHit")
    class HitSerializer(serializers.Serializer):
        db_id = serializers.UUIDField(source="conversation.db_id")
        title = serializers.CharField(source="conversation.title", help_text="the conversation's title")
        persona = serializers.CharField(source="conversation.persona")
        message_id = serializers.CharField(source="message.id")
        seq = serializers.IntegerField(source="message.seq", help_text="the message's place: open the chat there")
        role = serializers.CharField(source="message.role")
        created_at = serializers.DateTimeField(source="message.created_at")
        snippet = serializers.CharField(help_text="the message's text around the first match")

    @extend_schema(
        operation_id="search",
        parameters=[QuerySerializer],
        responses={
            200: inline_serializer(
                "SearchResults",
                {
                    "q": serializers.CharField(),
                    "terms": serializers.ListField(child=serializers.CharField(), help_text="what was searched for"),
                    "results": HitSerializer(many=True),
                    "pending": serializers.IntegerField(
                        help_text="your messages not indexed yet, so not searched (after a large import); retry shortly"
                    ),
                },
            ),
            **error_responses(400),
        },
        summary="Find messages in your own conversations, newest first",
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = search.messages_search(
            store=runtime.chat_store_get(),
            terms_of=runtime.term_extractor_get().terms,
            user_id=owner(request, query.validated_data.get("user_id")),
            q=query.validated_data["q"],
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "q": query.validated_data["q"],
                "terms": found.terms,
                "results": self.HitSerializer(found.hits, many=True).data,
                "pending": found.pending,
            }
        )


class MeApi(APIView):
    """Who the request authenticates as, on either app: the session cookie that /accounts/
    set, or a personal API key."""

    permission_classes = (IsAuthenticated,)  # a pending account may ask who it is

    @extend_schema(
        operation_id="me",
        summary="Who am I",
        description="The account this request authenticates as: a session cookie or `Authorization: Bearer <API key>`.",
        responses={
            200: inline_serializer(
                "Me",
                {
                    "username": serializers.CharField(),
                    "role": serializers.ChoiceField(choices=Role.choices),
                    "auth": serializers.ChoiceField(choices=["session", "api_key"]),
                    "key": inline_serializer(
                        "MeKey",
                        {"name": serializers.CharField(), "scope": serializers.ChoiceField(choices=KeyScope.choices)},
                        allow_null=True,
                    ),
                },
            ),
            **error_responses(401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        account = cast(Account, request.user)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        return Response(
            {
                "username": account.username,
                "role": account.role,
                "auth": "api_key" if key else "session",
                "key": {"name": key.name, "scope": key.scope} if key else None,
            }
        )
