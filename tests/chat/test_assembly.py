"""Prompt assembly (webapp.chat.assembly): the layout, and what goes first when the context is short."""

from __future__ import annotations

from webapp.chat.assembly import layout_build, layout_first, layout_without_lowest_lore
from webapp.chat.personas import Example, LoreItem, Persona
from webapp.engine.prompt import ChatMessage, prompt_budget


def words(text: str) -> int:
    return len(text.split())


def persona(**fields: object) -> Persona:
    base: dict[str, object] = {
        "id": "c-test",
        "app": "character",
        "name": "Quill",
        "description": "",
        "system_prompt": "DEFINITION",
        "greeting": "GREETING",
        "examples": (Example("EX-USER", "EX-REPLY"),),
        "post_history": "POST",
        "user_description": "About Ari: a courier.",
    }
    return Persona(**{**base, **fields})  # type: ignore[arg-type]


def lore(content: str, *, priority: int = 10, order: int = 0, position: str = "before_char") -> LoreItem:
    return LoreItem(
        content=content,
        tokens=words(content),
        priority=priority,
        order=order,
        position=position,
        trace={"uid": content},
    )  # type: ignore[arg-type]


def test_layout_puts_the_definition_first_and_post_history_last() -> None:
    layout = layout_build(persona(), lore=[lore("AFTER", position="after_char", order=0), lore("BEFORE", order=1)])
    assert layout.pinned == (
        ChatMessage("system", "DEFINITION"),
        ChatMessage("user", "EX-USER"),
        ChatMessage("assistant", "EX-REPLY"),
        ChatMessage("assistant", "GREETING"),
        ChatMessage("system", "About Ari: a courier.\n\nBEFORE\n\nAFTER"),
    )
    assert layout.after == (ChatMessage("system", "POST"),)


def test_the_shared_head_does_not_change_with_lore_or_user_persona() -> None:
    one = layout_build(persona(), lore=[lore("A")])
    two = layout_build(persona(user_description="About Bo: a baker."), lore=[lore("B"), lore("C")])
    assert one.shared == two.shared == 4  # definition, one example exchange, greeting
    assert one.pinned[: one.shared] == two.pinned[: two.shared]
    assert one.pinned[one.shared :] != two.pinned[two.shared :]
    assert layout_build(persona(), examples=False).shared == 2


def test_a_persona_without_card_fields_lays_out_as_before() -> None:
    plain = Persona(id="p", app="office", name="P", description="", system_prompt="SYS", greeting="HI")
    instruction = ChatMessage("system", "TOOLS")
    assert layout_build(plain, instruction=instruction).pinned == (
        ChatMessage("system", "SYS"),
        ChatMessage("assistant", "HI"),
        instruction,
    )
    assert layout_build(plain).after == ()


def test_examples_go_first_when_the_history_does_not_fit_beside_them() -> None:
    history = [ChatMessage("user" if i % 2 == 0 else "assistant", "word " * 50) for i in range(8)]
    user = ChatMessage("user", "hello")
    roomy = layout_first(persona(), lore=[], history=history, user=user, count_tokens=words, n_ctx=4096, max_tokens=100)
    assert roomy.examples is True
    tight = layout_first(persona(), lore=[], history=history, user=user, count_tokens=words, n_ctx=400, max_tokens=100)
    assert tight.examples is False
    assert ChatMessage("user", "EX-USER") not in tight.pinned
    assert tight.pinned[0] == ChatMessage("system", "DEFINITION")  # never the definition


def test_lore_goes_lowest_priority_first_then_the_later_entry() -> None:
    layout = layout_build(
        persona(),
        lore=[
            lore("KEEP", priority=50, order=0),
            lore("LOW-1", priority=1, order=1),
            lore("LOW-2", priority=1, order=2),
        ],
    )
    first = layout_without_lowest_lore(persona(), layout)
    assert [item.content for item in first.lore] == ["KEEP", "LOW-1"]
    assert [item.content for item in first.lore_dropped] == ["LOW-2"]
    second = layout_without_lowest_lore(persona(), first)
    assert [item.content for item in second.lore] == ["KEEP"]
    assert [item.content for item in second.lore_dropped] == ["LOW-2", "LOW-1"]
    assert second.after == (ChatMessage("system", "POST"),)  # never the post-history instructions


def test_budget_counts_each_part() -> None:
    layout = layout_build(persona(), lore=[lore("one two three")])
    parts = layout.budget(persona=persona(), count_tokens=words)
    assert parts == {"character": 1 + 4 + 1 + 1, "lore": 3, "examples": 2}
    assert layout_build(persona(), examples=False).budget(persona=persona(), count_tokens=words)["examples"] == 0


def test_prompt_budget_keeps_room_for_the_reply_but_never_more_than_half() -> None:
    assert prompt_budget(n_ctx=4096, max_tokens=256) == 3840
    assert prompt_budget(n_ctx=1000, max_tokens=900) == 500
