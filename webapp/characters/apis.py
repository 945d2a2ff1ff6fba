"""REST endpoints of the character library. Thin: validate, call webapp.characters.library, serialize.

Every endpoint acts for the authenticated account (or, with a service key, one of its end
users named by `user_id`), like the chat's own endpoints. Card data is checked by
webapp.characters.cards, whose errors name the field and the rule (`data.tags[3]`).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.accounts.client_ip import client_ip
from webapp.accounts.identity import Principal
from webapp.accounts.models import Role
from webapp.accounts.usage import TurnLimits, upload_admit
from webapp.characters import cards, library
from webapp.chat import group_chats, runtime
from webapp.chat.apis import (
    DB_ID_PARAM,
    LLAMA_ERRORS,
    BodySerializer,
    ConversationSerializer,
    MessageListApi,
    UserQuerySerializer,
    principal,
    query_owner,
    unknown_fields_refuse,
)
from webapp.chat.inputs import StrictCharField, user_id_field
from webapp.chat.schema import BODY_ERRORS, error_responses
from webapp.chat.services import sampling_params
from webapp.chat.turns import turn_collect

CHARACTER_ID_PARAM = OpenApiParameter(
    "character_id", str, OpenApiParameter.PATH, description="a character's id (GET characters)"
)


@extend_schema_serializer(component_name="Character")
class CharacterSerializer(serializers.Serializer):
    id = serializers.CharField()
    builtin = serializers.BooleanField(help_text="a built-in character: read-only, shared by everyone")
    source = serializers.CharField(help_text="v1 | v2 | v3 (imported), editor, copy, builtin")
    data = serializers.DictField(help_text="the Character Card V3 `data` object, unknown fields included")
    avatar_url = serializers.CharField(allow_null=True)
    lorebooks = serializers.ListField(child=serializers.CharField(), help_text="attached lorebooks (GET lorebooks)")
    created_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


def _shown(character: library.Character) -> dict[str, Any]:
    avatar = f"characters/{character.id}/avatar?v={character.avatar}" if character.avatar else None
    return CharacterSerializer(
        {
            "id": character.id,
            "builtin": character.builtin,
            "source": character.source,
            "data": character.data,
            "avatar_url": avatar,
            "lorebooks": list(character.lorebooks),
            "created_at": character.created_at,
            "updated_at": character.updated_at,
        }
    ).data


def _writer(request: Request, user_id: str | None) -> str:
    """The owner key a library write acts for; demo accounts chat only (as with documents)."""
    who: Principal = principal(request)
    who.require_role(allowed=(Role.ADMIN, Role.USER), what="the character library")
    return who.owner_for(user_id)


def _query_writer(request: Request) -> str:
    """The owner key a DELETE acts for (its `user_id` is a query parameter)."""
    query = UserQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return _writer(request, query.validated_data.get("user_id"))


def _card_data_schema(*, create: bool) -> dict[str, Any]:
    """The card fields as JSON Schema: the types and sizes webapp.characters.cards checks (it
    checks more: a lorebook's entries, text without NUL; those are 400 invalid_card)."""
    text = {"type": "string", "maxLength": cards.MAX_LONG_TEXT_CHARS}
    short = {"type": "string", "maxLength": cards.MAX_SHORT_TEXT_CHARS}

    def texts(items: int, chars: int) -> dict[str, Any]:
        return {"type": "array", "maxItems": items, "items": {"type": "string", "maxLength": chars}}

    schema: dict[str, Any] = {
        "type": "object",
        "description": "Character Card V3 `data` fields; fields this service does not know are kept as they are",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": cards.MAX_NAME_CHARS, "pattern": r"\S"},
            **{field: text for field in cards.LONG_TEXT_FIELDS},
            **{field: short for field in cards.SHORT_TEXT_FIELDS},
            "alternate_greetings": texts(cards.MAX_GREETINGS, cards.MAX_GREETING_CHARS),
            "group_only_greetings": texts(cards.MAX_GREETINGS, cards.MAX_GREETING_CHARS),
            "tags": texts(cards.MAX_TAGS, cards.MAX_TAG_CHARS),
            "extensions": {"type": "object", "description": "other tools' data, kept as it is"},
            "character_book": {"type": "object", "nullable": True, "description": "the card's lorebook"},
        },
        "additionalProperties": True,
    }
    if create:
        schema["required"] = ["name"]
    return schema


@extend_schema_field(_card_data_schema(create=True))
class CardDataField(serializers.JSONField):
    pass


@extend_schema_field(_card_data_schema(create=False))
class CardChangesField(serializers.JSONField):
    pass


class CardBodySerializer(BodySerializer):
    data = CardDataField(help_text="the card's fields (name is required)")
    user_id = user_id_field()


class CardChangesSerializer(BodySerializer):
    data = CardChangesField(required=False, help_text="the card fields to change; those left out stay")
    lorebooks = serializers.ListField(
        child=StrictCharField(max_length=64),
        required=False,
        max_length=library.LOREBOOKS_PER_CHARACTER,
        help_text="the lorebooks attached to the character (ids from GET lorebooks): replaces the list",
    )
    user_id = user_id_field()


class CharacterListApi(APIView):
    @extend_schema(
        operation_id="characters_list",
        parameters=[UserQuerySerializer],
        responses={
            200: OpenApiResponse(
                CharacterSerializer(many=True), description="built-in characters first, then yours, newest first"
            ),
            **error_responses(400),
        },
        summary="Your character library",
    )
    def get(self, request: Request) -> Response:
        return Response({"characters": [_shown(c) for c in library.characters_list(query_owner(request))]})

    @extend_schema(
        request=CardBodySerializer,
        responses={201: CharacterSerializer, **error_responses(*BODY_ERRORS, 403, 409)},
        summary="Create a character from card fields (the editor)",
    )
    def post(self, request: Request) -> Response:
        body = CardBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        owner = _writer(request, body.validated_data.get("user_id"))
        character = library.character_create(owner, body.validated_data["data"])
        return Response(_shown(character), status=status.HTTP_201_CREATED)


class CharacterDetailApi(APIView):
    @extend_schema(
        parameters=[CHARACTER_ID_PARAM, UserQuerySerializer],
        responses={200: CharacterSerializer, **error_responses(400, 404)},
        summary="One character of your library",
    )
    def get(self, request: Request, character_id: str) -> Response:
        return Response(_shown(library.character_get(query_owner(request), character_id)))

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM],
        request=CardChangesSerializer,
        responses={200: CharacterSerializer, **error_responses(*BODY_ERRORS, 403, 404)},
        summary="Change some of a character's card fields (those left out stay)",
    )
    def patch(self, request: Request, character_id: str) -> Response:
        body = CardChangesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        owner = _writer(request, body.validated_data.get("user_id"))
        changed = library.character_update(
            owner, character_id, body.validated_data.get("data"), lorebooks=body.validated_data.get("lorebooks")
        )
        return Response(_shown(changed))

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM, UserQuerySerializer],
        responses={204: OpenApiResponse(description="deleted, with its avatar"), **error_responses(400, 403, 404)},
        summary="Delete one of your characters (its conversations stay)",
    )
    def delete(self, request: Request, character_id: str) -> Response:
        library.character_delete(_query_writer(request), character_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CharacterDuplicateApi(APIView):
    @extend_schema_serializer(component_name="CharacterDuplicate")
    class InputSerializer(BodySerializer):
        user_id = user_id_field()

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM],
        request=InputSerializer,
        responses={201: CharacterSerializer, **error_responses(*BODY_ERRORS, 403, 404, 409)},
        summary="Copy a character (a built-in one too) into your library, to edit the copy",
    )
    def post(self, request: Request, character_id: str) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        owner = _writer(request, body.validated_data.get("user_id"))
        return Response(_shown(library.character_duplicate(owner, character_id)), status=status.HTTP_201_CREATED)


def _upload(request: Request, serializer: type[serializers.Serializer]) -> tuple[str, bytes]:
    """(owner, file bytes) of a multipart upload; its size is checked before a byte is read."""
    upload = request.FILES.get("file")
    if upload is not None and upload.size > cards.MAX_CARD_FILE_BYTES:
        raise cards.CardTooLargeError(
            f"file is {upload.size:,} bytes; the limit is {cards.MAX_CARD_FILE_BYTES:,} bytes", field="file"
        )
    body = serializer(data=request.data)
    body.is_valid(raise_exception=True)
    who = principal(request)
    owner = _writer(request, body.validated_data.get("user_id"))
    upload_admit(who, client_ip(request))
    return owner, body.validated_data["file"].read()


class FileUploadSerializer(BodySerializer):
    file = serializers.FileField(allow_empty_file=True, error_messages={"required": "attach the file as `file`."})
    user_id = user_id_field()


class CharacterImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": FileUploadSerializer},
        responses={
            201: CharacterSerializer,
            **error_responses(
                *BODY_ERRORS,
                403,
                409,
                413,
                429,
                _400="not a character card, or a malformed one: `field` names the part (`ccv3`, `data.name`, …)",
                _413="file over 8 MiB (`card_too_large`)",
            ),
        },
        summary="Import a Character Card: PNG (chara / ccv3), JSON (V1, V2, V3) or CHARX",
    )
    def post(self, request: Request) -> Response:
        owner, content = _upload(request, FileUploadSerializer)
        return Response(_shown(library.character_import(owner, content)), status=status.HTTP_201_CREATED)


class CharacterExportApi(APIView):
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # `?format=` is this endpoint's own parameter (the card file's format), not DRF's
        # renderer override, which would answer ?format=png with a 404: errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    class QuerySerializer(UserQuerySerializer):
        format = serializers.ChoiceField(
            choices=library.EXPORT_FORMATS,
            default="png",
            error_messages={"invalid_choice": "must be png, json or charx."},
        )

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM, QuerySerializer],
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="PNG with ccv3 and chara"),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="Character Card V3"),
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="CHARX"),
            **error_responses(400, 404),
        },
        summary="Export a character as a card file",
    )
    def get(self, request: Request, character_id: str) -> HttpResponse:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        owner = principal(request).owner_for(query.validated_data.get("user_id"))
        content, content_type, filename = library.character_export(owner, character_id, query.validated_data["format"])
        response = HttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
        return response


class CharacterAvatarApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM, UserQuerySerializer],
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY), **error_responses(400, 404)},
        summary="A character's avatar (a PNG this service re-encoded)",
    )
    def get(self, request: Request, character_id: str) -> HttpResponse:
        png = library.avatar_get(query_owner(request), character_id)
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, max-age=31536000, immutable"  # its URL changes with it
        response["Content-Security-Policy"] = "default-src 'none'"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @extend_schema(
        parameters=[CHARACTER_ID_PARAM],
        request={"multipart/form-data": FileUploadSerializer},
        responses={200: CharacterSerializer, **error_responses(*BODY_ERRORS, 403, 404, 413, 429)},
        summary="Set a character's avatar (any image Pillow reads; stored re-encoded as PNG)",
    )
    def put(self, request: Request, character_id: str) -> Response:
        owner, content = _upload(request, FileUploadSerializer)
        return Response(_shown(library.avatar_set(owner, character_id, content)))


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": library.USER_NAME_MAX, "pattern": r"\S"})
class UserNameField(StrictCharField):
    """A name with something in it: blank or only spaces is a 400 (its schema says so too)."""


@extend_schema_serializer(component_name="UserPersona")
class UserPersonaSerializer(BodySerializer):
    name = UserNameField(max_length=library.USER_NAME_MAX, help_text="who you are in role-play: {{user}}")
    description = StrictCharField(
        max_length=library.USER_DESCRIPTION_MAX, allow_blank=True, default="", help_text="placed in the prompt"
    )
    user_id = user_id_field()


class UserPersonaApi(APIView):
    @extend_schema(
        parameters=[UserQuerySerializer],
        responses={200: UserPersonaSerializer, **error_responses(400)},
        summary="Who you are in role-play (your user persona)",
    )
    def get(self, request: Request) -> Response:
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        who = principal(request)
        user_id = query.validated_data.get("user_id")
        persona = library.user_persona_get(who.owner_for(user_id), default_name=user_id or who.username)
        return Response({"name": persona.name, "description": persona.description})

    @extend_schema(
        request=UserPersonaSerializer,
        responses={200: UserPersonaSerializer, **error_responses(*BODY_ERRORS)},
        summary="Set your user persona: your name ({{user}}) and a description the characters know",
    )
    def put(self, request: Request) -> Response:
        body = UserPersonaSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        owner = principal(request).owner_for(data.get("user_id"))
        persona = library.user_persona_set(owner, name=data["name"], description=data["description"])
        return Response({"name": persona.name, "description": persona.description})


# --- standalone lorebooks ------------------------------------------------------------------

LOREBOOK_ID_PARAM = OpenApiParameter("lorebook_id", str, OpenApiParameter.PATH, description="a lorebook's id")


@extend_schema_serializer(component_name="Lorebook")
class LorebookSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    entries = serializers.IntegerField(help_text="how many entries it has")
    created_at = serializers.DateTimeField()


def _book(record: Any) -> dict[str, Any]:
    return LorebookSerializer(record).data


class LorebookListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="lorebooks_list",
        parameters=[UserQuerySerializer],
        responses={200: LorebookSerializer(many=True), **error_responses(400)},
        summary="Your standalone lorebooks (world info), newest first",
    )
    def get(self, request: Request) -> Response:
        return Response({"lorebooks": [_book(b) for b in library.lorebooks_list(query_owner(request))]})

    @extend_schema(
        request={"multipart/form-data": FileUploadSerializer},
        responses={
            201: LorebookSerializer,
            **error_responses(
                *BODY_ERRORS,
                403,
                409,
                413,
                429,
                _400="not a lorebook, or a malformed one (`invalid_lorebook`, `field` names the part)",
            ),
        },
        summary="Import a lorebook: V3 lorebook_v3, a card's character_book, or SillyTavern world info JSON",
    )
    def post(self, request: Request) -> Response:
        owner, content = _upload(request, FileUploadSerializer)
        return Response(_book(library.lorebook_import(owner, content)), status=status.HTTP_201_CREATED)


class LorebookDetailApi(APIView):
    @extend_schema(
        parameters=[LOREBOOK_ID_PARAM, UserQuerySerializer],
        responses={200: LorebookSerializer, **error_responses(400, 404)},
        summary="One of your lorebooks",
    )
    def get(self, request: Request, lorebook_id: str) -> Response:
        return Response(_book(library.lorebook_get(query_owner(request), lorebook_id)))

    @extend_schema(
        parameters=[LOREBOOK_ID_PARAM, UserQuerySerializer],
        responses={204: OpenApiResponse(description="deleted"), **error_responses(400, 403, 404)},
        summary="Delete a lorebook (characters it was attached to go on without it)",
    )
    def delete(self, request: Request, lorebook_id: str) -> Response:
        library.lorebook_delete(_query_writer(request), lorebook_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LorebookExportApi(APIView):
    @extend_schema(
        parameters=[LOREBOOK_ID_PARAM, UserQuerySerializer],
        responses={(200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT), **error_responses(400, 404)},
        summary="A lorebook's file, exactly as it was imported",
    )
    def get(self, request: Request, lorebook_id: str) -> HttpResponse:
        record = library.lorebook_get(query_owner(request), lorebook_id)
        response = HttpResponse(record.file.encode(), content_type="application/json")
        stem = slugify(record.name, allow_unicode=True) or "lorebook"
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=f"{stem}.json")
        return response


class ConversationLorebooksApi(APIView):
    @extend_schema_serializer(component_name="ConversationLorebooksSet")
    class InputSerializer(BodySerializer):
        lorebooks = serializers.ListField(
            child=StrictCharField(max_length=64),
            max_length=library.LOREBOOKS_PER_CHARACTER,
            help_text="lorebooks (ids from GET lorebooks) this chat uses besides its character's; replaces the list",
        )
        user_id = user_id_field()

    @extend_schema(
        parameters=[OpenApiParameter("db_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="a conversation")],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "ConversationLorebooks", {"lorebooks": serializers.ListField(child=serializers.CharField())}
            ),
            **error_responses(*BODY_ERRORS, 404),
        },
        summary="Attach lorebooks to one chat (its later turns scan them too)",
    )
    def put(self, request: Request, db_id: Any) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        owner = principal(request).owner_for(body.validated_data.get("user_id"))
        attached = library.conversation_lorebooks_set(owner, str(db_id), body.validated_data["lorebooks"])
        return Response({"lorebooks": list(attached)})


# --- group chats ------------------------------------------------------------------------


def _body(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """A group body: its documented fields only (webapp.chat.apis.unknown_fields_refuse)."""
    unknown_fields_refuse(request.data, serializer_class().fields)
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


class GroupListApi(APIView):
    @extend_schema(
        operation_id="groups_create",
        request=group_chats.GroupCreateSerializer,
        responses={201: ConversationSerializer, **error_responses(*BODY_ERRORS, 409)},
        summary="Start a group chat of several characters",
        description="A conversation whose replies come from its members, each in its own voice: post the user's "
        "message to …/messages, then let each named speaker speak (POST …/speak, or a `speak` WebSocket frame).",
    )
    def post(self, request: Request) -> Response:
        data = _body(group_chats.GroupCreateSerializer, request)
        group = group_chats.group_create(
            store=runtime.chat_store_get(), owner=principal(request).owner_for(data.get("user_id")), data=data
        )
        return Response(ConversationSerializer(group).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="groups_list",
        parameters=[UserQuerySerializer],
        responses={
            200: inline_serializer("GroupList", {"groups": ConversationSerializer(many=True)}),
            **error_responses(400),
        },
        summary="Your group chats, newest first",
    )
    def get(self, request: Request) -> Response:
        chats = runtime.chat_store_get().conversations_for_user(query_owner(request), limit=500)
        return Response({"groups": ConversationSerializer([c for c in chats if c.is_group], many=True).data})


class GroupDetailApi(APIView):
    @extend_schema(
        operation_id="groups_get",
        parameters=[DB_ID_PARAM, UserQuerySerializer],
        responses={200: ConversationSerializer, **error_responses(400, 404)},
        summary="A group chat: its members, who is muted, and how speakers are picked",
    )
    def get(self, request: Request, db_id: Any) -> Response:
        group = group_chats.group_owned(store=runtime.chat_store_get(), db_id=str(db_id), user_id=query_owner(request))
        return Response(ConversationSerializer(group).data)

    @extend_schema(
        operation_id="groups_update",
        parameters=[DB_ID_PARAM, UserQuerySerializer],
        request=group_chats.GroupUpdateSerializer,
        responses={200: ConversationSerializer, **error_responses(*BODY_ERRORS, 404)},
        summary="Change a group: members, muted members, activation, title",
    )
    def patch(self, request: Request, db_id: Any) -> Response:
        owner = query_owner(request)
        data = _body(group_chats.GroupUpdateSerializer, request)
        group = group_chats.group_update(store=runtime.chat_store_get(), db_id=str(db_id), owner=owner, data=data)
        return Response(ConversationSerializer(group).data)


class GroupMessageApi(APIView):
    @extend_schema(
        operation_id="groups_post",
        parameters=[DB_ID_PARAM],
        request=group_chats.GroupPostSerializer,
        responses={
            201: inline_serializer(
                "GroupPosted",
                {
                    "message": MessageListApi.OutputSerializer(),
                    "speakers": serializers.ListField(
                        child=serializers.CharField(),
                        help_text="who should answer, in order, by the group's activation ([] for manual): "
                        "let each speak in turn",
                    ),
                },
            ),
            **error_responses(*BODY_ERRORS, 404),
        },
        summary="Say something in a group chat; the answer names who speaks next",
    )
    def post(self, request: Request, db_id: Any) -> Response:
        data = _body(group_chats.GroupPostSerializer, request)
        message, speakers = group_chats.group_post(
            store=runtime.chat_store_get(),
            db_id=str(db_id),
            owner=principal(request).owner_for(data.get("user_id")),
            text=data["input_data"],
            seed=data.get("seed"),
        )
        body = {"message": MessageListApi.OutputSerializer(message).data, "speakers": speakers}
        return Response(body, status=status.HTTP_201_CREATED)


class GroupSpeakApi(APIView):
    class InputSerializer(group_chats.GroupSpeakSerializer):
        db_id = None  # from the path

    @extend_schema(
        operation_id="groups_speak",
        parameters=[DB_ID_PARAM],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "GroupReply",
                {
                    "message": MessageListApi.OutputSerializer(),
                    "speaker": serializers.CharField(),
                },
            ),
            **LLAMA_ERRORS,
            409: OpenApiResponse(description="message_id is not the group's last message"),
        },
        summary="A member replies to the group now (the next speaker, or one the user picks)",
    )
    def post(self, request: Request, db_id: Any) -> Response:
        with runtime.CountedRequest() as counted:
            data = _body(self.InputSerializer, request)
            who = principal(request)
            turn = group_chats.speak_request(
                {**data, "db_id": str(db_id)},
                owner=who.owner_for(data.get("user_id")),
                user_name=data.get("user_id") or who.username,
                role=who.role,
                gate=TurnLimits(who, client_ip(request)),
                sampling=sampling_params(runtime.model_spec_get().sampling),
            )
            done = async_to_sync(turn_collect)(turn, deps=runtime.turn_deps())
            counted.succeeded()
        assert done.message is not None
        return Response({"message": MessageListApi.OutputSerializer(done.message).data, "speaker": turn.persona.id})
