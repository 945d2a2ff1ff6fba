"""Group chats' rules, as pure functions: who speaks next (with seeded dice), and how the
group's messages read to the member who speaks."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from webapp.chat.groups import Member, group_instruction, group_script, named_in, speakers_next
from webapp.store.chat_store import Message

ANNA = Member("anna", "Anna", 0.0)
BORIS = Member("boris", "Boris", 0.0)
CHLOE = Member("chloe", "Chloé", 1.0)
HANA = Member("hana", "하나", 0.0)


def pick(members, **kwargs) -> list[str]:
    return speakers_next(members, rng=random.Random(7), **kwargs)


def test_list_order_is_every_unmuted_member_in_order() -> None:
    assert pick([ANNA, BORIS, CHLOE], activation="list") == ["anna", "boris", "chloe"]
    assert pick([ANNA, BORIS, CHLOE], activation="list", muted={"boris"}) == ["anna", "chloe"]


def test_manual_picks_nobody_and_everyone_muted_picks_nobody() -> None:
    assert pick([ANNA, BORIS], activation="manual", last_text="Anna?") == []
    assert pick([ANNA, BORIS], activation="natural", muted={"anna", "boris"}, last_text="Anna?") == []


def test_natural_puts_the_named_members_first_in_the_order_they_are_named() -> None:
    # Anna and Boris never speak unprompted (talkativeness 0); Chloé always does (1).
    said = "Boris, what do you think? And anna too."
    assert pick([ANNA, BORIS, CHLOE], activation="natural", last_text=said) == ["boris", "anna", "chloe"]
    assert pick([ANNA, BORIS, HANA], activation="natural", last_text="하나야, 안녕?") == ["hana"]


def test_a_name_counts_only_as_a_whole_word() -> None:
    assert named_in("Annabel came by", "Anna") == -1
    assert named_in("hi, ANNA!", "Anna") == 4
    assert named_in("하나님", "하나") == -1 and named_in("하나 씨", "하나") == 0
    assert named_in("그럼 하나는 어때?", "하나") == 3
    assert pick([ANNA, BORIS], activation="natural", last_text="Annabel came by") != ["anna", "boris"]


def test_muted_and_the_last_speaker_are_not_picked_by_name_or_by_dice() -> None:
    members = [ANNA, BORIS, CHLOE]
    assert pick(members, activation="natural", muted={"boris"}, last_text="Boris?") == ["chloe"]
    assert "chloe" not in pick(members, activation="natural", last_text="Chloé!", last_speaker="chloe")


def test_when_nobody_is_named_and_every_roll_fails_one_member_speaks() -> None:
    quiet = [ANNA, BORIS]
    picks = Counter(speakers_next(quiet, activation="natural", rng=random.Random(seed))[0] for seed in range(200))
    assert set(picks) == {"anna", "boris"} and all(n > 50 for n in picks.values()), picks
    assert all(len(speakers_next(quiet, activation="natural", rng=random.Random(s))) == 1 for s in range(50))


def test_talkativeness_is_how_often_a_member_speaks_unprompted() -> None:
    members = [Member("a", "A", 0.2), Member("b", "B", 0.8), Member("c", "C", 0.5)]
    spoke = Counter()
    for seed in range(2000):
        spoke.update(speakers_next(members, activation="natural", rng=random.Random(seed)))
    assert spoke["a"] < spoke["c"] < spoke["b"], spoke
    assert 1400 < spoke["b"] < 1800, spoke


def test_the_same_seed_picks_the_same_speakers() -> None:
    members = [Member(str(i), f"M{i}", 0.5) for i in range(6)]
    runs = {tuple(speakers_next(members, activation="natural", rng=random.Random(42))) for _ in range(5)}
    assert len(runs) == 1
    orders = {tuple(speakers_next(members, activation="natural", rng=random.Random(s))) for s in range(30)}
    assert len(orders) > 5, "different seeds, different orders"


def message(role: str, content: str, speaker: str = "") -> Message:
    meta = {"speaker": speaker} if speaker else {}
    return Message("0" * 24, "c", 0, role, content, datetime(2026, 12, 1, tzinfo=UTC), meta)


def test_the_group_reads_as_a_script_to_the_member_who_speaks() -> None:
    history = [
        message("user", "Hello, both of you."),
        message("assistant", "Hi!", speaker="anna"),
        message("assistant", "Good evening.", speaker="boris"),
    ]
    names = {"anna": "Anna", "boris": "Boris"}

    as_anna = group_script(history, speaker="anna", names=names, user_name="Minji")

    assert [(m.role, m.content) for m in as_anna] == [
        ("user", "Minji: Hello, both of you."),
        ("assistant", "Hi!"),
        ("user", "Boris: Good evening."),
    ]
    as_boris = group_script(history, speaker="boris", names=names, user_name="Minji")
    assert [m.role for m in as_boris] == ["user", "user", "assistant"]
    line = group_instruction(speaker_name="Anna", member_names=["Anna", "Boris"], user_name="Minji")
    assert line.role == "system" and "Minji, Boris and you, Anna" in line.content


@pytest.mark.parametrize("activation", ["natural", "list", "manual"])
def test_no_members_no_speakers(activation: str) -> None:
    assert speakers_next([], activation=activation, rng=random.Random(1)) == []
