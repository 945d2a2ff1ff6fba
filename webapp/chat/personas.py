"""Personas: who the model plays. Loaded from TOML files under personas/<app>/.

A persona becomes the pinned head of every prompt: a system message, optional example
exchanges, and the greeting as the assistant's first turn. The model's chat template
turns these into its own special tokens; nothing here writes template syntax.

The character app (webapp.characters) makes personas of character cards too: those have
alternate greetings, post-history instructions, a lorebook (`lore`), and macros that
depend on who chats and when. The turn service binds such a persona to its chat
(`Persona.bind` with a `ChatScope`) before it lays out the prompt
(webapp.chat.assembly); a persona from a TOML file binds to itself.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from webapp.engine.prompt import ChatMessage

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
INLINE_PERSONA_ID = "custom"


class PersonaFileError(Exception):
    """A persona file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Example:
    user: str
    assistant: str


@dataclass(frozen=True)
class ChatScope:
    """Who chats, in which conversation, and when: what a character's macros are evaluated against."""

    owner: str  # the data owner key (webapp.accounts.identity)
    user_name: str  # the user's name when they have set no user persona
    seed: str  # the conversation's id: {{pick}} and the definition's {{random}} stay stable in it
    started_at: datetime  # the conversation's start: {{time}} etc. in the definition
    now: datetime  # this turn: {{time}} etc. in lore and post-history instructions
    greeting_index: int = 0  # 0 = the first message, n = alternate greeting n
    lorebooks: tuple[str, ...] = ()  # lorebooks attached to the conversation (character app)


@dataclass(frozen=True)
class LoreItem:
    """A lorebook entry that fired for this turn, as the prompt and the reply's trace see it."""

    content: str
    tokens: int
    priority: int  # under context pressure the lowest priority goes first
    order: int  # its place among the fired entries (insertion order)
    position: Literal["before_char", "after_char"]
    trace: dict[str, Any]  # stored with the reply: name, uid, book, tokens, reason


# The lore that fires for a turn: given the chat's texts (oldest first, the new message last)
# and the model's token counter, the entries in insertion order.
LoreActivate = Callable[[Sequence[str], Callable[[str], int]], tuple[LoreItem, ...]]


@dataclass(frozen=True)
class Persona:
    id: str
    app: str
    name: str
    description: str
    system_prompt: str
    greeting: str = ""
    language: str = "en"
    examples: tuple[Example, ...] = field(default_factory=tuple)
    is_default: bool = False
    alternate_greetings: tuple[str, ...] = ()
    post_history: str = ""  # after the history, never dropped (a card's post_history_instructions)
    user_description: str = ""  # the user persona, placed after the definition
    lore: LoreActivate | None = None
    talkativeness: float = 0.5  # in a group chat, how likely it speaks unprompted (0..1; webapp.chat.groups)
    binder: Callable[[Persona, ChatScope], Persona] | None = field(default=None, compare=False)

    def bind(self, scope: ChatScope) -> Persona:
        """This persona for one chat: macros evaluated, the greeting chosen, the user persona in."""
        return self.binder(self, scope) if self.binder is not None else self

    def greetings(self) -> tuple[str, ...]:
        """Every first message the user may start with: the greeting, then the alternates."""
        return (self.greeting, *self.alternate_greetings) if self.greeting else self.alternate_greetings

    def pinned_messages(self) -> list[ChatMessage]:
        messages = [ChatMessage("system", self.system_prompt)]
        for example in self.examples:
            messages.append(ChatMessage("user", example.user))
            messages.append(ChatMessage("assistant", example.assistant))
        if self.greeting:
            messages.append(ChatMessage("assistant", self.greeting))
        return messages


def character_system_prompt(*, name: str, context: str) -> str:
    return (
        f"You are {name}, a character in a role-play chat. {context.strip()}\n"
        f"Stay in character as {name}. Speak in the first person, keep replies short and vivid, "
        "and answer in the language the user writes in."
    )


def character_inline(*, name: str, greeting: str, context: str) -> Persona:
    """A one-off character from the request's own fields (the seed API's way)."""
    return Persona(
        id=INLINE_PERSONA_ID,
        app="character",
        name=name,
        description=context,
        system_prompt=character_system_prompt(name=name, context=context),
        greeting=greeting,
    )


def _text(data: dict, key: str, where: Path, *, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise PersonaFileError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def persona_load(path: Path, app: str) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PersonaFileError(f"{path}: not valid TOML: {exc}") from exc
    persona_id = _text(data, "id", path)
    if not PERSONA_ID.match(persona_id) or persona_id == INLINE_PERSONA_ID:
        raise PersonaFileError(f"{path}: 'id' must match {PERSONA_ID.pattern} and not be '{INLINE_PERSONA_ID}'")
    name = _text(data, "name", path)
    raw_examples = data.get("examples", [])
    if not isinstance(raw_examples, list) or not all(isinstance(e, dict) for e in raw_examples):
        raise PersonaFileError(f"{path}: 'examples' must be [[examples]] tables with user and assistant")
    examples = tuple(Example(user=_text(e, "user", path), assistant=_text(e, "assistant", path)) for e in raw_examples)
    if app == "character":
        context = _text(data, "context", path)
        system_prompt = character_system_prompt(name=name, context=context)
        description = _text(data, "description", path, required=False) or context
    else:
        system_prompt = _text(data, "system_prompt", path)
        description = _text(data, "description", path)
    return Persona(
        id=persona_id,
        app=app,
        name=name,
        description=description,
        system_prompt=system_prompt,
        greeting=_text(data, "greeting", path, required=False),
        language=_text(data, "language", path, required=False) or "en",
        examples=examples,
        is_default=data.get("default") is True,
    )


@dataclass(frozen=True)
class PersonaCatalog:
    app: str
    personas: dict[str, Persona]
    default_id: str

    def get(self, persona_id: str) -> Persona | None:
        return self.personas.get(persona_id)

    @property
    def default(self) -> Persona:
        return self.personas[self.default_id]


def catalog_load(folder: Path, app: str) -> PersonaCatalog:
    """Load every personas/<app>/*.toml. The default persona is the one marked default, else the first."""
    files = sorted((folder / app).glob("*.toml"))
    if not files:
        raise PersonaFileError(f"no persona files in {folder / app}")
    personas: dict[str, Persona] = {}
    default_id = ""
    for path in files:
        persona = persona_load(path, app)
        if persona.id in personas:
            raise PersonaFileError(f"{path}: duplicate persona id '{persona.id}'")
        personas[persona.id] = persona
        if persona.is_default:
            default_id = persona.id
    return PersonaCatalog(app=app, personas=personas, default_id=default_id or next(iter(personas)))
