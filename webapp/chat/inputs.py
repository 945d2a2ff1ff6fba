"""The input of a chat turn, shared by the REST Llama endpoints and the WebSocket consumer.

Both interfaces validate a turn with the same serializer, so a field that REST refuses is
refused over WebSocket too, with the same code and message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from webapp.chat import runtime
from webapp.chat.personas import Persona, character_inline
from webapp.chat.turns import TurnGate, TurnRequest
from webapp.core.errors import ApplicationError
from webapp.engine.engine import SamplingParams

INPUT_MAX = 500
USER_ID_MAX = 128
GREETINGS_MAX = 100


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly stringifying them."""

    default_error_messages = {"invalid": "must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer in a JSON body: refuses "5" and true, which IntegerField would take as 5 and 1."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str | bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


def input_data_field() -> StrictCharField:
    return StrictCharField(
        min_length=1,
        max_length=INPUT_MAX,
        trim_whitespace=False,
        error_messages={
            "blank": "must not be empty (1-500 characters).",
            "min_length": "must not be empty (1-500 characters).",
            "max_length": "must be at most 500 characters.",
        },
    )


def user_id_field() -> StrictCharField:
    """The seed's `user_id`, kept for compatibility. Optional: who asks comes from the session
    or API key; a service key uses it to name one of its own end users (see
    webapp.accounts.identity.Principal.owner_for). Not trimmed: "  alice  " is not "alice"."""
    return StrictCharField(
        required=False,
        max_length=USER_ID_MAX,
        trim_whitespace=False,
        error_messages={
            "max_length": "must be at most 128 characters.",
            "blank": "must not be empty (or leave it out).",
        },
    )


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class StrictUUIDField(serializers.UUIDField):
    """A UUID written the usual way (8-4-4-4-12 hex digits), as the schema's `format: uuid`
    says: not the integers, booleans (UUID(int=0)) and other spellings uuid.UUID() reads."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not _UUID_TEXT.fullmatch(data):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


def db_id_field(*, required: bool) -> serializers.UUIDField:
    """A conversation id. Without one, a new message starts a new conversation (the seed's quick start)."""
    return StrictUUIDField(required=required, error_messages={"invalid": "must be a UUID."})


class OfficeTurnSerializer(serializers.Serializer):
    input_data = input_data_field()
    google_access = StrictBooleanField(default=False)
    db_id = db_id_field(required=False)
    user_id = user_id_field()
    persona = StrictCharField(required=False, max_length=64)
    # Let the model call tools before it answers: "auto" (if it wants) or "required".
    tools = serializers.ChoiceField(
        choices=["auto", "required"],
        required=False,
        allow_null=True,
        error_messages={"invalid_choice": 'must be "auto" or "required" (or left out).'},
    )
    tool_names = serializers.ListField(
        child=StrictCharField(max_length=64), required=False, max_length=16, allow_empty=False
    )


class CharacterTurnSerializer(serializers.Serializer):
    input_data = input_data_field()
    db_id = db_id_field(required=False)
    user_id = user_id_field()
    persona = StrictCharField(required=False, max_length=64)
    character_name = StrictCharField(required=False, max_length=100)
    greeting = StrictCharField(required=False, allow_blank=True, max_length=1000)
    context = StrictCharField(required=False, max_length=4000)
    # Which greeting a new conversation starts with: 0 the character's first message, n its
    # alternate greeting n (GET characters lists them). Ignored once the conversation exists.
    greeting_index = StrictIntegerField(required=False, min_value=0, max_value=GREETINGS_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        inline = [k for k in ("character_name", "greeting", "context") if k in attrs]
        if "persona" in attrs and inline:
            raise serializers.ValidationError(
                {"persona": "give either persona or character_name/greeting/context, not both."}
            )
        if "persona" not in attrs:
            for key in ("character_name", "context"):
                if key not in attrs:
                    raise serializers.ValidationError(
                        {key: "this field is required when no persona is given."}, code="required"
                    )
        return attrs


def swipe_of_field() -> serializers.RegexField:
    return serializers.RegexField(
        r"^[0-9a-f]{24}$",
        required=False,
        help_text="the reply to answer again (it must be the conversation's last); left out: the last reply",
        error_messages={"invalid": "must be a message id: 24 lowercase hex digits."},
    )


class OfficeRegenerateSerializer(OfficeTurnSerializer):
    """Regenerating answers the conversation's last user message again: no new input. The
    new answer becomes the last reply's newest alternative (swipe)."""

    input_data = None
    db_id = db_id_field(required=True)
    message_id = swipe_of_field()


class CharacterRegenerateSerializer(CharacterTurnSerializer):
    input_data = None
    db_id = db_id_field(required=True)
    message_id = swipe_of_field()


def turn_request(
    data: Mapping[str, Any],
    *,
    owner: str,
    user_name: str,
    role: str,
    gate: TurnGate | None,
    sampling: SamplingParams,
) -> TurnRequest:
    """A validated turn (either app's serializer) as the turn service's request, for the data
    owner, account role and account limits (`gate`) the interface authenticated; `user_name`
    is who the user is in a character's macros until they set a user persona. Blocking (a
    character may be read from the store): call on a worker thread."""
    names = data.get("tool_names")
    return TurnRequest(
        user_id=owner,
        user_name=user_name,
        role=role,
        gate=gate,
        greeting_index=int(data.get("greeting_index", 0)),
        db_id=str(data.get("db_id") or uuid.uuid4()),
        persona=persona_from_input(data, owner=owner),
        sampling=sampling,
        text=data.get("input_data"),  # None: regenerate
        web_search=bool(data.get("google_access")),
        tool_mode=data.get("tools"),
        tool_names=tuple(names) if names else None,
        swipe_of=data.get("message_id"),
    )


def persona_by_id(persona_id: str, *, owner: str) -> Persona:
    """A persona by id: this app's own (personas/), or one of `owner`'s characters when the
    app has a character library (AppWiring.persona_get)."""
    found = runtime.wiring_get().persona_get
    catalog = runtime.personas_get()
    persona = found(owner, persona_id) if found is not None else catalog.get(persona_id)
    if persona is None:
        known = ", ".join(sorted(catalog.personas))
        mine = " or one of your characters (GET characters)" if found is not None else ""
        raise ApplicationError(f"persona: unknown persona '{persona_id}' (known: {known}{mine})", field="persona")
    return persona


def persona_from_input(data: Mapping[str, Any], *, owner: str) -> Persona:
    """The persona a validated turn asks for: by id, described inline, or the app's default."""
    if "persona" in data:
        return persona_by_id(data["persona"], owner=owner)
    if "character_name" in data:
        return character_inline(name=data["character_name"], greeting=data.get("greeting", ""), context=data["context"])
    return runtime.personas_get().default


def persona_for_import(*, chosen: str | None, file_persona: str, character_name: str, owner: str) -> Persona:
    """Who an imported chat is with: `chosen` if given (it must exist: else a 400 naming
    `persona`); else the persona id the file names (our exports do), else a persona of
    this app named as the file's character, else the app's default."""
    if chosen:
        return persona_by_id(chosen, owner=owner)
    catalog = runtime.personas_get()
    if file_persona:
        try:
            return persona_by_id(file_persona, owner=owner)
        except ApplicationError:
            pass  # not one of ours (any more): look by name
    name = character_name.strip().casefold()
    named = next((p for p in catalog.personas.values() if name and p.name.casefold() == name), None)
    return named or catalog.default
