"""An account's character library, and characters as the chat's personas.

The library is the app's built-in personas (personas/character/*.toml: shared, read-only)
and the account's own characters (private: another account's reads as missing). Own
characters are Character Card V3 `data` objects (webapp.characters.cards), created in the
editor, imported from card files, or duplicated from any character.

A card becomes a chat persona (`persona_for`) whose prompt follows the card spec:
- the definition is the card's `system_prompt` (or the default one; `{{original}}` in it
  inserts the default), then description, personality and scenario;
- `mes_example` is split on `<START>` into example exchanges;
- `post_history_instructions` go after the history; `creator_notes`, tags and creator
  never reach the prompt; `alternate_greetings` are the chat's other possible first messages;
- the card's `character_book` is its lore (webapp.characters.lorebook).

When macros are evaluated (webapp.characters.macros), so that the definition stays the
same text for a whole conversation (the engine then reuses its computed prefix, and a
reply does not change because the clock moved): the definition, the examples and the
greeting are bound once per conversation: `{{user}}` is the user persona's name, the clock
macros show the conversation's start, `{{random}}` and `{{pick}}` draw from the
conversation's id. Lore and post-history instructions, which sit after the shared part,
are evaluated at each turn: the clock is now and `{{random}}` draws afresh.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.utils.text import slugify

from webapp.characters import cards
from webapp.characters.lorebook import Lorebook, LorebookError, lore_activate, lorebook_from_card, lorebook_from_file
from webapp.characters.macros import MacroContext, macros_expand
from webapp.characters.runtime import avatars_get, character_store_get
from webapp.chat import runtime as chat_runtime
from webapp.chat.personas import ChatScope, Example, LoreItem, Persona
from webapp.core.errors import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from webapp.core.json_input import JsonInputError, json_loads_bounded
from webapp.engine.prompt import prompt_budget
from webapp.store.character_store import CharacterRecord, LorebookRecord, UserPersona

CHARACTERS_PER_OWNER = 500
LOREBOOKS_PER_OWNER = 200
LOREBOOKS_PER_CHARACTER = 8
MAX_LOREBOOK_FILE_BYTES = 4 * 1024 * 1024
USER_NAME_MAX = 100
USER_DESCRIPTION_MAX = 4000
# Lore when a card's book sets no scan depth or budget (SillyTavern's defaults are alike).
LORE_SCAN_DEPTH = 4
LORE_TOKEN_BUDGET = 512

DEFAULT_SYSTEM_PROMPT = (
    "You are {{char}} in a role-play chat with {{user}}. Stay in character as {{char}}: speak in the "
    "first person, keep replies short and vivid, and answer in the language {{user}} writes in."
)

_START = re.compile(r"<start>", re.IGNORECASE)
_SPEAKER = re.compile(
    r"^[ \t]*(\{\{user\}\}|<user>|\{\{char\}\}|<bot>|<char>)[ \t]*:[ \t]?", re.IGNORECASE | re.MULTILINE
)


@dataclass(frozen=True)
class Character:
    """A character of the library as the API shows it."""

    id: str
    builtin: bool
    data: dict[str, Any]
    extra: dict[str, Any]
    source: str
    avatar: str | None  # the avatar's version, None without one
    created_at: datetime | None
    updated_at: datetime | None
    lorebooks: tuple[str, ...] = ()  # standalone lorebooks attached to it

    @classmethod
    def of_record(cls, record: CharacterRecord) -> Character:
        return cls(
            id=record.id,
            builtin=False,
            data=record.data,
            extra=record.extra,
            source=record.source,
            avatar=record.avatar,
            created_at=record.created_at,
            updated_at=record.updated_at,
            lorebooks=record.lorebooks,
        )


# --- built-ins -------------------------------------------------------------------------------


def _builtin(persona: Persona) -> Character:
    examples = "\n".join(f"<START>\n{{{{user}}}}: {e.user}\n{{{{char}}}}: {e.assistant}" for e in persona.examples)
    data = cards.card_data_check(
        {
            "name": persona.name,
            "description": persona.description,
            "system_prompt": persona.system_prompt,
            "first_mes": persona.greeting,
            "mes_example": examples,
            "tags": ["built-in"],
            "creator": "persona-chat",
        }
    )
    return Character(
        id=persona.id,
        builtin=True,
        data=data,
        extra={},
        source="builtin",
        avatar=None,
        created_at=None,
        updated_at=None,
    )


def _builtins() -> dict[str, Persona]:
    return chat_runtime.personas_get().personas


# --- reading -------------------------------------------------------------------------------


def _own(owner: str, character_id: str) -> CharacterRecord:
    """`owner`'s character; another owner's is "not found", exactly like none."""
    record = character_store_get().character_get(character_id)
    if record is None or record.owner != owner:
        raise NotFoundError(f"no character {character_id} in your library", field="character_id")
    return record


def characters_list(owner: str) -> list[Character]:
    """The built-in characters, then `owner`'s own, newest first."""
    return [
        *(_builtin(p) for p in _builtins().values()),
        *(Character.of_record(r) for r in character_store_get().characters_for(owner)),
    ]


def character_get(owner: str, character_id: str) -> Character:
    builtin = _builtins().get(character_id)
    if builtin is not None:
        return _builtin(builtin)
    return Character.of_record(_own(owner, character_id))


# --- writing -------------------------------------------------------------------------------


def _writable(owner: str, character_id: str) -> CharacterRecord:
    if character_id in _builtins():
        raise ForbiddenError(
            f"{character_id} is a built-in character and can't be changed; duplicate it to edit a copy",
            field="character_id",
            code="read_only",
        )
    return _own(owner, character_id)


def _room(owner: str) -> None:
    if len(character_store_get().characters_for(owner)) >= CHARACTERS_PER_OWNER:
        raise ConflictError(
            f"your library holds {CHARACTERS_PER_OWNER} characters, the most it can; delete one first",
            code="library_full",
        )


def definition_fits(data: dict[str, Any]) -> None:
    """Refuse a card whose definition, greeting and post-history instructions leave no room
    in a slot's context for a message and its reply: it could never be chatted with, and it
    is never cut. Checked when the model is loaded (the chat checks again at each turn)."""
    state, _ = chat_runtime.engine_status()
    if state != "ready":
        return
    engine = chat_runtime.engine_get()
    spec = chat_runtime.model_spec_get()
    persona = persona_from_card("check", data).bind(
        ChatScope(owner="", user_name="User", seed="check", started_at=_now(), now=_now())
    )
    needed = sum(
        engine.count_tokens(text) for text in (persona.system_prompt, persona.greeting, persona.post_history) if text
    )
    budget = prompt_budget(n_ctx=engine.n_ctx, max_tokens=spec.sampling.max_tokens) - 64  # a short message
    if needed > budget:
        raise ApplicationError(
            f"data: this character's definition, greeting and post-history instructions need {needed} tokens; "
            f"the model's context leaves {budget} for them (n_ctx {engine.n_ctx}, replies up to "
            f"{spec.sampling.max_tokens}). Shorten the description or use a model with a longer context.",
            field="data.description",
            code="card_too_long",
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _unix_now() -> int:
    return int(_now().timestamp())


def character_create(owner: str, data: Any, *, source: str = "editor") -> Character:
    checked = cards.card_data_check(data)
    # V3: the dates of a card made here (seconds since the epoch), unless the client set them.
    checked["creation_date"] = checked.get("creation_date") or _unix_now()
    checked["modification_date"] = checked.get("modification_date") or checked["creation_date"]
    definition_fits(checked)
    _room(owner)
    return Character.of_record(
        character_store_get().character_create(owner=owner, data=checked, extra={}, source=source)
    )


def character_update(
    owner: str, character_id: str, changes: Any = None, *, lorebooks: Sequence[str] | None = None
) -> Character:
    """Change some of a character's card fields (a PATCH: fields left out stay), and/or which
    of the owner's lorebooks are attached to it."""
    record = _writable(owner, character_id)
    merged = None
    if changes is not None:
        partial = cards.card_data_check(changes, partial=True)
        merged = cards.card_data_check({**record.data, "modification_date": _unix_now(), **partial})
        definition_fits(merged)
    attached = None
    if lorebooks is not None:
        attached = tuple(dict.fromkeys(lorebooks))
        if len(attached) > LOREBOOKS_PER_CHARACTER:
            raise ApplicationError(
                f"lorebooks: at most {LOREBOOKS_PER_CHARACTER} lorebooks per character", field="lorebooks"
            )
        for lorebook_id in attached:
            _own_lorebook(owner, lorebook_id, field="lorebooks")
    updated = character_store_get().character_update(record, data=merged, lorebooks=attached)
    return Character.of_record(updated)


def character_delete(owner: str, character_id: str) -> None:
    record = _writable(owner, character_id)
    character_store_get().character_delete(record.id)
    avatars_get().delete(record.id, record.avatar)


def character_duplicate(owner: str, character_id: str) -> Character:
    """A private copy of any character of the library (a built-in one too), with its avatar."""
    original = character_get(owner, character_id)
    _room(owner)
    data = {**original.data, "name": f"{original.data['name']} (copy)"[: cards.MAX_NAME_CHARS]}
    store = character_store_get()
    record = store.character_create(owner=owner, data=cards.card_data_check(data), extra=original.extra, source="copy")
    png = avatars_get().read(original.id, original.avatar) if original.avatar else None
    if png is not None:
        record = store.character_update(record, avatar=avatars_get().save(record.id, png))
    if original.lorebooks:
        record = store.character_update(record, lorebooks=original.lorebooks)
    return Character.of_record(record)


def character_import(owner: str, content: bytes) -> Character:
    """A card file (PNG, JSON or CHARX) into the library, with its avatar."""
    parsed = cards.card_read(content)
    definition_fits(parsed.data)
    _room(owner)
    store = character_store_get()
    record = store.character_create(owner=owner, data=parsed.data, extra=parsed.extra, source=parsed.source)
    if parsed.avatar is not None:
        record = store.character_update(record, avatar=avatars_get().save(record.id, parsed.avatar))
    return Character.of_record(record)


def avatar_set(owner: str, character_id: str, content: bytes) -> Character:
    record = _writable(owner, character_id)
    png = cards.image_reencode(content, field="file")
    old = record.avatar
    record = character_store_get().character_update(record, avatar=avatars_get().save(record.id, png))
    if old and old != record.avatar:
        avatars_get().delete(record.id, old)
    return Character.of_record(record)


def avatar_get(owner: str, character_id: str) -> bytes:
    character = character_get(owner, character_id)
    png = avatars_get().read(character.id, character.avatar) if character.avatar else None
    if png is None:
        raise NotFoundError(f"character {character_id} has no avatar", field="character_id", code="no_avatar")
    return png


EXPORT_FORMATS = ("png", "json", "charx")


def character_export(owner: str, character_id: str, fmt: str) -> tuple[bytes, str, str]:
    """The character as a card file: (bytes, content type, file name). PNG carries the V3
    card (`ccv3`) and a V2 one (`chara`) for older tools; JSON is V3; CHARX is V3 + avatar."""
    character = character_get(owner, character_id)
    avatar = avatars_get().read(character.id, character.avatar) if character.avatar else None
    stem = slugify(character.data["name"], allow_unicode=True) or "character"
    if fmt == "png":
        return cards.card_png(data=character.data, extra=character.extra, avatar=avatar), "image/png", f"{stem}.png"
    if fmt == "charx":
        content = cards.card_charx(data=character.data, extra=character.extra, avatar=avatar)
        return content, "application/zip", f"{stem}.charx"
    if fmt == "json":
        card = cards.card_v3(data=character.data, extra=character.extra)
        return json.dumps(card, ensure_ascii=False, indent=2).encode(), "application/json", f"{stem}.json"
    raise ApplicationError(f"format: must be one of {', '.join(EXPORT_FORMATS)}", field="format")


# --- standalone lorebooks ----------------------------------------------------------------------


def _own_lorebook(owner: str, lorebook_id: str, *, field: str = "lorebook_id") -> LorebookRecord:
    record = character_store_get().lorebook_get(lorebook_id)
    if record is None or record.owner != owner:
        raise NotFoundError(f"no lorebook {lorebook_id} in your library", field=field)
    return record


def lorebook_import(owner: str, content: bytes) -> LorebookRecord:
    """A lorebook file (V3 `lorebook_v3`, a card's `character_book`, or SillyTavern's world
    info JSON) into the owner's library, kept as it came so that it exports unchanged."""
    if len(content) > MAX_LOREBOOK_FILE_BYTES:
        raise cards.CardTooLargeError(
            f"file is {len(content):,} bytes; a lorebook file may have {MAX_LOREBOOK_FILE_BYTES:,}", field="file"
        )
    try:
        obj = json_loads_bounded(content.removeprefix(b"\xef\xbb\xbf"))
    except JsonInputError as exc:
        raise LorebookError(f"not a lorebook: {exc.message}", field="file") from None
    book = lorebook_from_file(obj)
    store = character_store_get()
    if len(store.lorebooks_for(owner)) >= LOREBOOKS_PER_OWNER:
        raise ConflictError(f"your library holds {LOREBOOKS_PER_OWNER} lorebooks, the most it can", code="library_full")
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return store.lorebook_create(owner=owner, name=book.name or "Lorebook", entries=len(book.entries), file=text)


def lorebooks_list(owner: str) -> list[LorebookRecord]:
    return character_store_get().lorebooks_for(owner)


def lorebook_get(owner: str, lorebook_id: str) -> LorebookRecord:
    return _own_lorebook(owner, lorebook_id)


def lorebook_delete(owner: str, lorebook_id: str) -> None:
    """Delete a lorebook; characters it was attached to go on without it."""
    record = _own_lorebook(owner, lorebook_id)
    character_store_get().lorebook_delete(record.id)
    with _personas_lock:
        _personas.clear()  # a cached persona may hold the book
        _parsed_books.pop(record.id, None)


def _books_of(owner: str, lorebook_ids: Sequence[str]) -> tuple[Lorebook, ...]:
    """The lorebooks of `owner` with these ids that still exist (a deleted one is skipped),
    parsed once per lorebook and kept (lorebooks never change; deleting clears the cache)."""
    store = character_store_get()
    books = []
    for lorebook_id in lorebook_ids:
        found = store.lorebook_get(lorebook_id)
        if found is None or found.owner != owner:
            continue
        with _personas_lock:
            book = _parsed_books.get(found.id)
        if book is None:
            book = lorebook_from_file(json.loads(found.file))
            with _personas_lock:
                _parsed_books[found.id] = book
                while len(_parsed_books) > PERSONAS_CACHED:
                    _parsed_books.pop(next(iter(_parsed_books)))
        books.append(book)
    return tuple(books)


def _attached_books(record: CharacterRecord) -> tuple[Lorebook, ...]:
    return _books_of(record.owner, record.lorebooks)


def conversation_lorebooks_set(owner: str, db_id: str, lorebook_ids: Sequence[str]) -> tuple[str, ...]:
    """Attach these of `owner`'s lorebooks to one of `owner`'s conversations (replacing the list)."""
    chats = chat_runtime.chat_store_get()
    conversation = chats.conversation_get(db_id)
    if conversation is None or conversation.user_id != owner:
        raise NotFoundError(f"no conversation {db_id} for this user_id", field="db_id")
    attached = tuple(dict.fromkeys(lorebook_ids))
    if len(attached) > LOREBOOKS_PER_CHARACTER:
        raise ApplicationError(f"lorebooks: at most {LOREBOOKS_PER_CHARACTER} lorebooks per chat", field="lorebooks")
    for lorebook_id in attached:
        _own_lorebook(owner, lorebook_id, field="lorebooks")
    return chats.conversation_lorebooks_set(conversation, attached).lorebooks


# --- the user persona ------------------------------------------------------------------------


def user_persona_get(owner: str, *, default_name: str) -> UserPersona:
    found = character_store_get().user_persona_get(owner)
    return found if found is not None else UserPersona(owner=owner, name=default_name, description="")


def user_persona_set(owner: str, *, name: str, description: str) -> UserPersona:
    return character_store_get().user_persona_set(owner=owner, name=name, description=description)


# --- characters as personas -----------------------------------------------------------------


def examples_split(mes_example: str) -> tuple[Example, ...]:
    """A card's example dialogue as exchanges: blocks start at `<START>`; in a block, lines
    that open with `{{user}}:` / `<USER>:` are the user's, `{{char}}:` / `<BOT>:` the
    character's, and lines after one belong to it. A character's line with no user line
    before it (in its block) has no exchange to be part of and is left out."""
    found: list[Example] = []
    for block in _START.split(mes_example.replace("\r\n", "\n")):
        turns: list[tuple[str, str]] = []
        speakers = list(_SPEAKER.finditer(block))
        for i, match in enumerate(speakers):
            end = speakers[i + 1].start() if i + 1 < len(speakers) else len(block)
            role = "user" if "user" in match.group(1).lower() else "assistant"
            text = block[match.end() : end].strip()
            if turns and turns[-1][0] == role:
                turns[-1] = (role, f"{turns[-1][1]}\n{text}")
            else:
                turns.append((role, text))
        for (role, text), (next_role, reply) in itertools.pairwise(turns):
            if role == "user" and next_role == "assistant" and text and reply:
                found.append(Example(user=text, assistant=reply))
    return tuple(found)


def _definition(data: dict[str, Any]) -> str:
    parts = [data.get("system_prompt", "").strip() or "{{original}}"]
    if data.get("description", "").strip():
        parts.append(data["description"].strip())
    if data.get("personality", "").strip():
        parts.append("{{char}}'s personality: " + data["personality"].strip())
    if data.get("scenario", "").strip():
        parts.append("Scenario: " + data["scenario"].strip())
    return "\n\n".join(parts).replace("\r\n", "\n")


def _books(data: dict[str, Any]) -> tuple[Lorebook, ...]:
    book = data.get("character_book")
    return (lorebook_from_card(book),) if isinstance(book, dict) else ()


def _text(value: str) -> str:
    return value.replace("\r\n", "\n").strip()


def persona_from_card(character_id: str, data: dict[str, Any], *, attached: Sequence[Lorebook] = ()) -> Persona:
    """A card as the chat's persona, its macros unevaluated until it is bound to a chat; its
    lore is the card's own book and the `attached` standalone ones."""
    books = (*_books(data), *attached)
    # V3: a card's nickname, when it has one, is what {{char}} stands for.
    called = (data.get("nickname") or "").strip() or data["name"]

    def bind(persona: Persona, scope: ChatScope) -> Persona:
        user = _user_of(scope)
        at_start = MacroContext(char=called, user=user.name, original="", now=scope.started_at, seed=scope.seed)
        original = macros_expand(DEFAULT_SYSTEM_PROMPT, at_start)
        conversation = replace(at_start, original=original)
        dice = random.Random()  # noqa: S311 - role-play dice, not secrets
        this_turn = MacroContext(char=called, user=user.name, now=scope.now, seed=scope.seed, rng=dice)
        greetings = persona.greetings()
        greeting = greetings[scope.greeting_index] if scope.greeting_index < len(greetings) else ""
        all_books = (*books, *_books_of(scope.owner, scope.lorebooks))  # the card's, then the chat's
        return replace(
            persona,
            system_prompt=macros_expand(persona.system_prompt, conversation),
            greeting=macros_expand(_text(greeting), conversation),
            alternate_greetings=(),
            examples=tuple(
                Example(macros_expand(e.user, conversation), macros_expand(e.assistant, conversation))
                for e in persona.examples
            ),
            post_history=macros_expand(persona.post_history, this_turn),
            user_description=(f"About {user.name}: {_text(user.description)}" if user.description.strip() else ""),
            lore=_lore_of(all_books, this_turn) if all_books else None,
            binder=None,
        )

    return Persona(
        id=character_id,
        app="character",
        name=data["name"],
        description=data.get("description", ""),
        system_prompt=_definition(data),
        greeting=_text(data.get("first_mes", "")),
        examples=examples_split(data.get("mes_example", "")),
        alternate_greetings=tuple(_text(g) for g in data.get("alternate_greetings", []) if g.strip()),
        post_history=_text(data.get("post_history_instructions", "")),
        talkativeness=talkativeness_of(data),
        binder=bind,
    )


def talkativeness_of(data: dict[str, Any]) -> float:
    """A card's `extensions.talkativeness` (SillyTavern writes it as text, "0.5"), within
    0..1; 0.5 when it has none or it is not a number."""
    raw = (data.get("extensions") or {}).get("talkativeness")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return 0.5
    return min(1.0, max(0.0, value)) if value == value else 0.5  # NaN: none


def _user_of(scope: ChatScope) -> UserPersona:
    if not scope.owner:
        return UserPersona("", scope.user_name, "")
    return user_persona_get(scope.owner, default_name=scope.user_name)


def _lore_of(
    books: Sequence[Lorebook], context: MacroContext
) -> Callable[[Sequence[str], Callable[[str], int]], tuple[LoreItem, ...]]:
    def activate(texts: Sequence[str], count_tokens: Callable[[str], int]) -> tuple[LoreItem, ...]:
        result = lore_activate(
            books,
            messages=texts,
            count_tokens=count_tokens,
            scan_depth=LORE_SCAN_DEPTH,
            token_budget=LORE_TOKEN_BUDGET,
        )
        return tuple(
            LoreItem(
                content=macros_expand(fired.entry.content, context),
                tokens=fired.tokens,
                priority=fired.entry.priority,
                order=i,
                position=fired.entry.position,
                trace={
                    "uid": fired.entry.uid,
                    "name": fired.entry.name or (fired.entry.keys[0] if fired.entry.keys else ""),
                    "book": fired.book,
                    "tokens": fired.tokens,
                    "reason": fired.reason,
                },
            )
            for i, fired in enumerate(result.fired)
        )

    return activate


def _builtin_bind(persona: Persona, scope: ChatScope) -> Persona:
    """A built-in persona in a chat: as written, with the user persona placed after it and
    the chat's lorebooks as its lore."""
    user = _user_of(scope)
    described = f"About {user.name}: {_text(user.description)}" if user.description.strip() else ""
    books = _books_of(scope.owner, scope.lorebooks)
    dice = random.Random()  # noqa: S311 - role-play dice, not secrets
    this_turn = MacroContext(char=persona.name, user=user.name, now=scope.now, seed=scope.seed, rng=dice)
    return replace(persona, user_description=described, lore=_lore_of(books, this_turn) if books else None, binder=None)


def persona_for(owner: str, character_id: str) -> Persona | None:
    """The persona a turn of `owner` asks for by id (AppWiring.persona_get): a built-in one,
    or one of `owner`'s own characters; None for anything else."""
    builtin = _builtins().get(character_id)
    if builtin is not None:
        return replace(builtin, binder=_builtin_bind)
    record = character_store_get().character_get(character_id)
    if record is None or record.owner != owner:
        return None
    key = (record.id, record.updated_at)  # attaching or detaching a book updates the record
    with _personas_lock:
        persona = _personas.get(key)
        if persona is not None:
            _personas.move_to_end(key)
            return persona
    # Parsing a big lorebook is not free: keep the persona.
    persona = persona_from_card(record.id, record.data, attached=_attached_books(record))
    with _personas_lock:
        _personas[key] = persona
        while len(_personas) > PERSONAS_CACHED:
            _personas.popitem(last=False)
    return persona


PERSONAS_CACHED = 256
_personas: OrderedDict[tuple[str, datetime], Persona] = OrderedDict()
_parsed_books: dict[str, Lorebook] = {}  # standalone lorebooks by id, parsed
_personas_lock = threading.Lock()


def owner_purge(owner: str) -> dict[str, int]:
    """Delete `owner`'s characters, their avatars and user personas (an account is deleted)."""
    removed, records = character_store_get().owner_purge(owner)
    for record in records:
        avatars_get().delete(record.id, record.avatar)
    return removed
