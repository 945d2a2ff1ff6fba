"""Prompt assembly: a bound persona, the lore that fired, the history and the new message,
laid out for the engine, with what to give up when the context is short.

The layout, in order:

    system      the definition (a card: its system prompt, description, personality, scenario)
    user/asst.  example dialogue, as exchanges
    assistant   the greeting the chat started with
    system      the user persona, then the lore that fired (before_char entries, then after_char)
    system      a tool round's instruction (the office)
    …           the history, oldest first
    user        the new message
    system      post-history instructions

The definition, the examples and the greeting come first and depend only on the
character, the user's name and the conversation's start (webapp.characters binds macros
so): they are the layout's `shared` head, which the engine evaluates once for every
conversation that starts the same way (webapp.engine.prefix_cache), and what changes from
turn to turn (lore, the user persona) sits after it. Lore marked before_char still goes
after the definition, for that reason: it stays ahead of the after_char lore.

Under context pressure, the spec's order: the example dialogue goes first, then the
oldest history (the engine's prompt_fit), then the lowest-priority lore. The definition,
the new message and the post-history instructions are never dropped: when they alone do
not fit, the turn is refused (context_length_exceeded), never silently cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webapp.chat.personas import LoreItem, Persona
from webapp.engine.prompt import ChatMessage, prompt_budget

# Tokens a chat template adds around one message (role markers, newlines); an estimate used
# only to decide whether the examples fit beside the whole history.
MESSAGE_OVERHEAD_TOKENS = 6


@dataclass(frozen=True)
class Layout:
    pinned: tuple[ChatMessage, ...]  # never dropped by the engine
    after: tuple[ChatMessage, ...]
    lore: tuple[LoreItem, ...]  # the lore in the prompt
    lore_dropped: tuple[LoreItem, ...]  # fired, but left out for room
    examples: bool  # whether the example dialogue is in
    shared: int = 0  # leading `pinned` messages that depend only on the character and the chat's start

    def budget(self, *, persona: Persona, count_tokens: Callable[[str], int]) -> dict[str, int]:
        """Tokens of each part: character (definition, user persona, greeting, post-history),
        lore, examples. The history's share is the prompt's size less these."""
        character = sum(
            count_tokens(text)
            for text in (persona.system_prompt, persona.user_description, persona.greeting, persona.post_history)
            if text
        )
        examples = (
            sum(count_tokens(e.user) + count_tokens(e.assistant) for e in persona.examples) if self.examples else 0
        )
        return {"character": character, "lore": sum(item.tokens for item in self.lore), "examples": examples}


def layout_build(
    persona: Persona,
    *,
    lore: Sequence[LoreItem] = (),
    examples: bool = True,
    instruction: ChatMessage | None = None,
    dropped: Sequence[LoreItem] = (),
) -> Layout:
    """The messages around the history for `persona` (bound) with `lore` (in insertion order)."""
    pinned = [ChatMessage("system", persona.system_prompt)]
    if examples:
        for example in persona.examples:
            pinned += [ChatMessage("user", example.user), ChatMessage("assistant", example.assistant)]
    if persona.greeting:
        pinned.append(ChatMessage("assistant", persona.greeting))
    shared = len(pinned)
    context = [persona.user_description] if persona.user_description else []
    context += [item.content for item in lore if item.position == "before_char"]
    context += [item.content for item in lore if item.position == "after_char"]
    if context:
        pinned.append(ChatMessage("system", "\n\n".join(context)))
    if instruction is not None:
        pinned.append(instruction)
    after = (ChatMessage("system", persona.post_history),) if persona.post_history else ()
    return Layout(
        pinned=tuple(pinned),
        after=after,
        lore=tuple(lore),
        lore_dropped=tuple(dropped),
        examples=examples,
        shared=shared,
    )


def layout_first(
    persona: Persona,
    *,
    lore: Sequence[LoreItem],
    history: Sequence[ChatMessage],
    user: ChatMessage,
    count_tokens: Callable[[str], int],
    n_ctx: int,
    max_tokens: int,
    instruction: ChatMessage | None = None,
) -> Layout:
    """The first layout to try: with the examples when they fit beside the whole history and
    the lore, without them otherwise (they are the first thing to go)."""
    full = layout_build(persona, lore=lore, instruction=instruction)
    if not persona.examples:
        return full
    size = sum(count_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in (*full.pinned, *history, user, *full.after))
    if size <= prompt_budget(n_ctx=n_ctx, max_tokens=max_tokens):
        return full
    return layout_build(persona, lore=lore, examples=False, instruction=instruction)


def layout_without_lowest_lore(persona: Persona, layout: Layout, *, instruction: ChatMessage | None = None) -> Layout:
    """`layout` less its lowest-priority lore entry (of equal priority, the one inserted last);
    call when even no history leaves room. Raises ValueError when there is no lore left."""
    if not layout.lore:
        raise ValueError("no lore left to drop")
    lowest = min(range(len(layout.lore)), key=lambda i: (layout.lore[i].priority, -layout.lore[i].order))
    kept = [item for i, item in enumerate(layout.lore) if i != lowest]
    return layout_build(
        persona,
        lore=kept,
        examples=layout.examples,
        instruction=instruction,
        dropped=(*layout.lore_dropped, layout.lore[lowest]),
    )
