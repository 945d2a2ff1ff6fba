"""A card as the chat's persona (webapp.characters.library): the prompt the card spec asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.characters import cardgen
from webapp.characters.cards import card_data_check
from webapp.characters.library import DEFAULT_SYSTEM_PROMPT, examples_split, persona_from_card
from webapp.chat.personas import ChatScope, Example

START = datetime(2026, 11, 30, 15, 7, tzinfo=UTC)


def scope(**fields: object) -> ChatScope:
    # owner "" binds without reading a stored user persona: the user is `user_name`.
    base: dict[str, object] = {"owner": "", "user_name": "Ari", "seed": "chat-1", "started_at": START, "now": START}
    return ChatScope(**{**base, **fields})  # type: ignore[arg-type]


def card(**fields: object) -> dict[str, object]:
    return card_data_check({"name": "Quill", **fields})


def test_examples_split_on_start_and_speakers() -> None:
    text = "<START>\r\n{{user}}: hi\r\n{{char}}: hello\r\n<start>\n<USER>: a\nmore\n<BOT>: b\n{{Char}}: c"
    assert examples_split(text) == (Example("hi", "hello"), Example("a\nmore", "b\nc"))


def test_examples_without_a_user_line_before_are_left_out() -> None:
    assert examples_split("<START>\n{{char}}: alone\n<START>\nno speaker at all") == ()


def test_definition_is_system_prompt_then_description_personality_scenario() -> None:
    bound = persona_from_card(
        "c-1",
        card(
            system_prompt="{{original}} Be terse.",
            description="{{char}} keeps the archive.",
            personality="dry",
            scenario="{{user}} visits at night.",
            creator_notes="NOTES-NEVER-IN-PROMPT",
            tags=["TAG-NEVER"],
            creator="CREATOR-NEVER",
        ),
    ).bind(scope())
    default = DEFAULT_SYSTEM_PROMPT.replace("{{char}}", "Quill").replace("{{user}}", "Ari")
    assert bound.system_prompt == (
        f"{default} Be terse.\n\nQuill keeps the archive.\n\nQuill's personality: dry\n\nScenario: Ari visits at night."
    )
    everything = " ".join(m.content for m in bound.pinned_messages())
    for hidden in ("NOTES-NEVER-IN-PROMPT", "TAG-NEVER", "CREATOR-NEVER"):
        assert hidden not in everything


def test_an_empty_system_prompt_means_the_default() -> None:
    bound = persona_from_card("c-1", card(description="D")).bind(scope())
    assert bound.system_prompt.startswith("You are Quill in a role-play chat with Ari.")


def test_the_definition_is_the_same_at_every_turn_of_a_chat() -> None:
    unbound = persona_from_card(
        "c-1", card(description="It is {{time}} on {{weekday}}; {{random:red,blue,green}} {{pick:a,b,c}}.")
    )
    first = unbound.bind(scope())
    later = unbound.bind(scope(now=START + timedelta(hours=3)))
    assert first.system_prompt == later.system_prompt
    assert "3:07 PM on Monday" in first.system_prompt
    other_user = unbound.bind(scope(user_name="Bo", seed="chat-1"))
    assert other_user.system_prompt.split("\n\n")[1] == first.system_prompt.split("\n\n")[1]


def test_post_history_is_evaluated_at_the_turn() -> None:
    unbound = persona_from_card("c-1", card(post_history_instructions="Now: {{isotime}}. Never speak for {{user}}."))
    assert unbound.bind(scope()).post_history == "Now: 15:07. Never speak for Ari."
    assert unbound.bind(scope(now=START + timedelta(minutes=5))).post_history == "Now: 15:12. Never speak for Ari."


def test_greeting_index_picks_an_alternate_greeting() -> None:
    unbound = persona_from_card("c-1", card(first_mes="Hello {{user}}.", alternate_greetings=["Alt one.", "Alt two."]))
    assert unbound.greetings() == ("Hello {{user}}.", "Alt one.", "Alt two.")
    assert unbound.bind(scope()).greeting == "Hello Ari."
    assert unbound.bind(scope(greeting_index=2)).greeting == "Alt two."
    assert unbound.bind(scope(greeting_index=2)).alternate_greetings == ()


def test_the_cards_lorebook_fires_on_its_keys() -> None:
    data = card_data_check(cardgen.card_v3()["data"])
    bound = persona_from_card("c-1", data).bind(scope())
    assert bound.lore is not None
    items = bound.lore(["Good evening.", "Are there any cats here?"], lambda s: len(s.split()))
    # 0 is constant, "cats" sets off c0ffee-5, and 0's own text ("Lantern Street") sets off 3 (recursion).
    assert {item.trace["uid"] for item in items} == {"0", "3", "c0ffee-5"}
    assert next(item for item in items if item.trace["uid"] == "3").trace["reason"].startswith("recursion")
    cats = next(item for item in items if item.trace["uid"] == "c0ffee-5")
    assert cats.position == "after_char" and cats.priority == 5
    assert "Mira" in cats.content and "{{char}}" not in cats.content  # macros in lore expand (to the nickname)
    assert cats.trace["reason"].startswith("key:")
    quiet = bound.lore(["Good evening."], lambda s: len(s.split()))
    assert {item.trace["uid"] for item in quiet} == {"0", "3"}


def test_char_is_the_nickname_when_the_card_has_one() -> None:
    bound = persona_from_card("c-1", card(nickname="Quilly", first_mes="I am {{char}}.")).bind(scope())
    assert bound.greeting == "I am Quilly."
    assert bound.name == "Quill"
