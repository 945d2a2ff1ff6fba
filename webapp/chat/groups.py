"""Group chats (the character app): who speaks next, and how a group's chat reads to one member.

Pure functions; the turn service and the group services call them. Written by hand
because the rules are the product's own, after SillyTavern's group chats, which users of
such a service know:

- **natural**: the members named in the last message speak first, in the order they are
  named; then each other member speaks if a roll of the dice comes under its
  talkativeness (0..1, a card's `extensions.talkativeness`, 0.5 by default), in a
  shuffled order; when nobody is named and every roll fails, one member picked at random
  speaks. The member who wrote the last message is not picked again by the rolls.
- **list**: every member, in the group's order.
- **manual**: nobody; the user picks who speaks ("speak now").

Muted members are never picked (the user can still make one speak now). The dice are a
`random.Random` the caller passes: seeded in tests, and by a request's `seed`.

A member's prompt is its own card and lore (the turn binds the speaker's persona); the
group's messages come into it as a script: its own earlier replies as its turns, and
everyone else's lines, the user's included, as "Name: text" from the other side.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webapp.engine.engine import ChatMessage
from webapp.store.chat_store import Message

ACTIVATIONS = ("natural", "list", "manual")
MEMBERS_MIN = 2
MEMBERS_MAX = 8
TALKATIVENESS_DEFAULT = 0.5


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    talkativeness: float = TALKATIVENESS_DEFAULT


# What Korean writes right after a name, inside the same word: vocative, subject, topic,
# object, possessive and "with/to/also" particles, and the honorific 씨.
_KO_AFTER_NAME = "(?:야|아|이|가|는|은|을|를|의|에게|한테|께|랑|이랑|와|과|도|만|씨|이가|이는|이야)?"
_HANGUL_END = re.compile(r"[\uac00-\ud7a3]$")


def named_in(text: str, name: str) -> int:
    """Where `name` first occurs in `text` as a whole word (any case; letters and digits of
    any script are word characters; a Korean name may carry a particle: 하나야, 하나는);
    -1 when it does not."""
    name = name.strip()
    if not name:
        return -1
    after = _KO_AFTER_NAME if _HANGUL_END.search(name) else ""
    found = re.search(rf"(?<!\w){re.escape(name)}{after}(?!\w)", text, flags=re.IGNORECASE)
    return found.start() if found else -1


def speakers_next(
    members: Sequence[Member],
    *,
    activation: str,
    muted: frozenset[str] | set[str] = frozenset(),
    last_text: str = "",
    last_speaker: str | None = None,
    rng: random.Random,
) -> list[str]:
    """The ids of the members who answer the last message, in speaking order (see the
    module docstring for the rules); empty for manual groups and when all are muted."""
    awake = [m for m in members if m.id not in muted]
    if activation == "manual" or not awake:
        return []
    if activation == "list":
        return [m.id for m in awake]
    mentioned = sorted(
        (m for m in awake if m.id != last_speaker and named_in(last_text, m.name) >= 0),
        key=lambda m: named_in(last_text, m.name),
    )
    chosen = [m.id for m in mentioned]
    others = [m for m in awake if m.id != last_speaker and m.id not in chosen]
    rng.shuffle(others)
    for member in others:
        if rng.random() < member.talkativeness:
            chosen.append(member.id)
    if not chosen:
        pool = [m for m in awake if m.id != last_speaker] or awake
        chosen.append(rng.choice(pool).id)
    return chosen


def group_script(
    messages: Sequence[Message], *, speaker: str, names: Mapping[str, str], user_name: str
) -> list[ChatMessage]:
    """A group's messages as `speaker`'s prompt sees them: its own replies as assistant
    turns, every other line (the user's, the other members') as a user turn "Name: text"."""
    script = []
    for message in messages:
        who = str(message.meta.get("speaker") or "")
        if message.role == "assistant" and who == speaker:
            script.append(ChatMessage("assistant", message.content))
        elif message.role == "assistant":
            script.append(ChatMessage("user", f"{names.get(who, who or 'Someone')}: {message.content}"))
        else:
            script.append(ChatMessage("user", f"{user_name}: {message.content}"))
    return script


def group_instruction(*, speaker_name: str, member_names: Sequence[str], user_name: str) -> ChatMessage:
    """The system line that tells a member where it is and whose turn it is."""
    others = [n for n in member_names if n != speaker_name]
    present = ", ".join([user_name, *others])
    return ChatMessage(
        "system",
        f"This is a group chat between {present} and you, {speaker_name}. Write only {speaker_name}'s next "
        f"message: one reply, in character, without a name in front and without lines for anyone else.",
    )
