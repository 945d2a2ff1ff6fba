"""Group chats (the character app): making one, changing it, posting the user's message,
and the turn request of a member's reply. REST (/character/groups) and the WebSocket's
`speak` frame both come through here; the rules of who speaks are webapp.chat.groups and
a reply is an ordinary turn of the one turn service (webapp.chat.turns, `speaks`).

A group is a conversation with `members` (persona ids: built-in characters or the user's
own), `muted` and `activation`. Posting a message stores it and answers who should speak,
by the group's activation; each of them then speaks in its own turn (a `speak` frame or
POST …/speak), so every reply streams, stops and resumes like any other and the user can
change course between two of them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from rest_framework import serializers

from webapp.chat import runtime
from webapp.chat.groups import ACTIVATIONS, MEMBERS_MAX, MEMBERS_MIN, Member, speakers_next
from webapp.chat.inputs import (
    StrictCharField,
    StrictIntegerField,
    db_id_field,
    input_data_field,
    swipe_of_field,
    user_id_field,
)
from webapp.chat.inputs import persona_by_id as _persona_by_id
from webapp.chat.personas import Persona
from webapp.chat.selectors import conversation_owned
from webapp.chat.turns import TurnGate, TurnRequest
from webapp.core.errors import ApplicationError, ConflictError, NotFoundError
from webapp.engine.engine import SamplingParams
from webapp.store.chat_store import ChatStore, Conversation, Message

TITLE_MAX = 200
SEED_MAX = 2**31 - 1


def _persona_id_field() -> StrictCharField:
    return StrictCharField(max_length=64)


def _activation_field(*, required: bool) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=ACTIVATIONS,
        required=required,
        help_text="who speaks next: natural (named first, then by talkativeness), list (everyone in order), "
        "manual (the user picks)",
        error_messages={"invalid_choice": "must be natural, list or manual."},
    )


class GroupCreateSerializer(serializers.Serializer):
    user_id = user_id_field()
    members = serializers.ListField(
        child=_persona_id_field(),
        min_length=MEMBERS_MIN,
        max_length=MEMBERS_MAX,
        help_text=f"the characters, by persona id, in the group's order ({MEMBERS_MIN}-{MEMBERS_MAX}, no repeats)",
    )
    activation = _activation_field(required=False)
    title = StrictCharField(required=False, max_length=TITLE_MAX)
    db_id = db_id_field(required=False)


class GroupUpdateSerializer(serializers.Serializer):
    members = serializers.ListField(
        child=_persona_id_field(), min_length=MEMBERS_MIN, max_length=MEMBERS_MAX, required=False
    )
    muted = serializers.ListField(
        child=_persona_id_field(),
        max_length=MEMBERS_MAX,
        required=False,
        help_text="members never picked to speak (the user can still make one speak now)",
    )
    activation = _activation_field(required=False)
    title = StrictCharField(required=False, max_length=TITLE_MAX)


class GroupPostSerializer(serializers.Serializer):
    user_id = user_id_field()
    input_data = input_data_field()
    seed = StrictIntegerField(
        required=False, min_value=0, max_value=SEED_MAX, help_text="seeds the dice of natural activation"
    )


class GroupSpeakSerializer(serializers.Serializer):
    """A member's reply: REST POST …/speak and the WebSocket's `speak` frame."""

    user_id = user_id_field()
    db_id = db_id_field(required=True)
    speaker = _persona_id_field()
    message_id = swipe_of_field()  # the group's last message, a reply: answered again, a new swipe


def _members_check(ids: Sequence[str], *, owner: str, field: str = "members") -> list[Persona]:
    if len(set(ids)) != len(ids):
        raise ApplicationError(f"{field}: a character can be in a group only once", field=field)
    personas = []
    for persona_id in ids:
        try:
            persona = _persona_by_id(persona_id, owner=owner)
        except ApplicationError as exc:
            raise ApplicationError(f"{field}: {exc.message.removeprefix('persona: ')}", field=field) from exc
        if persona.app != "character":
            raise ApplicationError(f"{field}: {persona_id!r} is not a character", field=field)
        personas.append(persona)
    return personas


def _settings(members: Sequence[str], muted: Sequence[str], activation: str) -> dict[str, Any]:
    unknown = [m for m in muted if m not in members]
    if unknown:
        raise ApplicationError(f"muted: {unknown[0]!r} is not a member of this group", field="muted")
    return {"members": list(members), "muted": list(dict.fromkeys(muted)), "activation": activation}


def _title_of(personas: Sequence[Persona]) -> str:
    names = [p.name for p in personas]
    return ", ".join(names[:-1]) + f" and {names[-1]}"


def group_create(*, store: ChatStore, owner: str, data: Mapping[str, Any]) -> Conversation:
    """A new, empty group chat of `owner`'s (409 if `db_id` is taken)."""
    personas = _members_check(data["members"], owner=owner)
    db_id = str(data.get("db_id") or uuid.uuid4())
    if store.conversation_get(db_id) is not None:
        raise ConflictError(f"db_id: a conversation {db_id} exists already", field="db_id")
    return store.conversation_create(
        db_id=db_id,
        user_id=owner,
        persona=personas[0].id,
        title=data.get("title") or _title_of(personas),
        group=_settings(data["members"], (), data.get("activation", "natural")),
    )


def group_owned(*, store: ChatStore, db_id: str, user_id: str) -> Conversation:
    """The group chat, if it exists and is `user_id`'s; NotFoundError otherwise (a 1:1 chat too)."""
    conversation = conversation_owned(store=store, db_id=db_id, user_id=user_id)
    if not conversation.is_group:
        raise NotFoundError(f"no group chat {db_id} for this user_id (it is a one-to-one chat)", field="db_id")
    return conversation


def group_update(*, store: ChatStore, db_id: str, owner: str, data: Mapping[str, Any]) -> Conversation:
    """Change members, muted, activation or title; members must exist, muted must be members."""
    group = group_owned(store=store, db_id=db_id, user_id=owner)
    members = list(data.get("members", group.members))
    if "members" in data:
        _members_check(members, owner=owner)
    muted = data.get("muted", [m for m in group.muted if m in members])
    settings = _settings(members, muted, data.get("activation", group.activation))
    return store.conversation_group_set(group, {**settings, "title": data.get("title")})


def _member_list(group: Conversation, *, owner: str) -> list[Member]:
    """The group's members with their names and talkativeness; one whose character is gone
    is left out (it can't speak)."""
    found = []
    for persona_id in group.members:
        try:
            persona = _persona_by_id(persona_id, owner=owner)
        except ApplicationError:
            continue
        found.append(Member(persona.id, persona.name, persona.talkativeness))
    return found


def member_names(group: Conversation, *, owner: str) -> dict[str, str]:
    """The group's members' names by persona id (those whose character is gone: left out)."""
    return {m.id: m.name for m in _member_list(group, owner=owner)}


def group_post(
    *, store: ChatStore, db_id: str, owner: str, text: str, seed: int | None = None
) -> tuple[Message, list[str]]:
    """Store the user's message in the group; it and who should answer it, in order."""
    group = group_owned(store=store, db_id=db_id, user_id=owner)
    message = store.message_append(group, role="user", content=text, persona=group.persona)
    speakers = speakers_next(
        _member_list(group, owner=owner),
        activation=group.activation,
        muted=frozenset(group.muted),
        last_text=text,
        rng=random.Random(seed),  # noqa: S311 - who speaks in a role-play, not a secret
    )
    return message, speakers


def speak_request(
    data: Mapping[str, Any],
    *,
    owner: str,
    user_name: str,
    role: str,
    gate: TurnGate | None,
    sampling: SamplingParams,
) -> TurnRequest:
    """A validated GroupSpeakSerializer as the turn service's request: `speaker` replies to
    the group as it stands. Blocking (characters may be read from the store)."""
    db_id = str(data["db_id"])
    group = group_owned(store=runtime.chat_store_get(), db_id=db_id, user_id=owner)
    if data["speaker"] not in group.members:
        raise ApplicationError(
            f"speaker: {data['speaker']!r} is not a member of this group", field="speaker", code="not_a_member"
        )
    speaker = _members_check([data["speaker"]], owner=owner, field="speaker")[0]
    names = member_names(group, owner=owner)
    return TurnRequest(
        user_id=owner,
        user_name=user_name,
        role=role,
        gate=gate,
        db_id=db_id,
        persona=speaker,
        sampling=sampling,
        speaks=True,
        group_names=names,
        swipe_of=data.get("message_id"),
    )
