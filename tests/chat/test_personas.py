"""Personas: the shipped files load, become the pinned head of the prompt, and bad files are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.chat.personas import (
    INLINE_PERSONA_ID,
    Example,
    Persona,
    PersonaFileError,
    catalog_load,
    character_inline,
    persona_load,
)
from webapp.config.env import REPO_ROOT
from webapp.engine.prompt import ChatMessage

PERSONAS = REPO_ROOT / "personas"

OFFICE_FILE = """
id = "helper"
name = "Helper"
description = "Helps."
system_prompt = "You help."
"""

CHARACTER_FILE = """
id = "knight"
name = "Sir Test"
context = "A knight who tests things."
"""


@pytest.mark.parametrize("app", ["office", "character"])
def test_every_persona_file_loads(app: str) -> None:
    catalog = catalog_load(PERSONAS, app)

    files = sorted((PERSONAS / app).glob("*.toml"))
    assert files
    assert len(catalog.personas) == len(files)
    for path in files:
        persona = persona_load(path, app)
        assert catalog.get(persona.id) == persona
        assert persona.app == app
        assert persona.name
        assert persona.system_prompt
        assert persona.description
    assert catalog.default in catalog.personas.values()


def test_office_has_a_marked_default() -> None:
    catalog = catalog_load(PERSONAS, "office")

    marked = [p.stem for p in (PERSONAS / "office").glob("*.toml") if "default = true" in p.read_text()]
    assert len(marked) == 1
    assert catalog.default_id == catalog.default.id
    assert catalog.default.id == persona_load(PERSONAS / "office" / f"{marked[0]}.toml", "office").id


def test_characters_include_korean_and_english() -> None:
    catalog = catalog_load(PERSONAS, "character")

    languages = {p.language for p in catalog.personas.values()}
    assert {"ko", "en"} <= languages
    korean = next(p for p in catalog.personas.values() if p.language == "ko")
    assert any("\uac00" <= ch <= "\ud7a3" for ch in korean.greeting)  # a Hangul greeting
    assert korean.name in korean.system_prompt


def test_pinned_messages_are_system_then_example_pairs_then_greeting() -> None:
    persona = Persona(
        id="p",
        app="office",
        name="P",
        description="d",
        system_prompt="SYSTEM",
        greeting="GREETING",
        examples=(Example(user="U1", assistant="A1"), Example(user="U2", assistant="A2")),
    )

    assert persona.pinned_messages() == [
        ChatMessage("system", "SYSTEM"),
        ChatMessage("user", "U1"),
        ChatMessage("assistant", "A1"),
        ChatMessage("user", "U2"),
        ChatMessage("assistant", "A2"),
        ChatMessage("assistant", "GREETING"),
    ]


def test_pinned_messages_without_greeting_or_examples_is_just_the_system_prompt() -> None:
    persona = Persona(id="p", app="office", name="P", description="d", system_prompt="SYSTEM")

    assert persona.pinned_messages() == [ChatMessage("system", "SYSTEM")]


@pytest.mark.parametrize("app", ["office", "character"])
def test_shipped_personas_pin_their_own_examples_and_greeting(app: str) -> None:
    for persona in catalog_load(PERSONAS, app).personas.values():
        pinned = persona.pinned_messages()

        assert pinned[0] == ChatMessage("system", persona.system_prompt)
        body = pinned[1 : 1 + 2 * len(persona.examples)]
        assert [m.role for m in body] == ["user", "assistant"] * len(persona.examples)
        assert [m.content for m in body] == [t for e in persona.examples for t in (e.user, e.assistant)]
        if persona.greeting:
            assert pinned[-1] == ChatMessage("assistant", persona.greeting)
            assert len(pinned) == 2 + 2 * len(persona.examples)


def test_character_system_prompt_is_built_from_name_and_context(tmp_path: Path) -> None:
    path = tmp_path / "knight.toml"
    path.write_text(CHARACTER_FILE, encoding="utf-8")

    persona = persona_load(path, "character")

    assert "Sir Test" in persona.system_prompt
    assert "A knight who tests things." in persona.system_prompt
    assert persona.description == "A knight who tests things."  # defaults to the context
    assert persona.language == "en"


def persona_file(folder: Path, text: str, name: str = "bad.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("app", "text", "key"),
    [
        ("office", OFFICE_FILE.replace('name = "Helper"', ""), "name"),
        ("office", OFFICE_FILE.replace('name = "Helper"', 'name = "   "'), "name"),
        ("office", OFFICE_FILE.replace('name = "Helper"', "name = 7"), "name"),
        ("office", OFFICE_FILE.replace('system_prompt = "You help."', ""), "system_prompt"),
        ("character", CHARACTER_FILE.replace('name = "Sir Test"', ""), "name"),
        ("character", CHARACTER_FILE.replace('context = "A knight who tests things."', ""), "context"),
        ("office", OFFICE_FILE + '[[examples]]\nuser = "hi"\n', "assistant"),
    ],
)
def test_missing_field_names_the_file_and_key(tmp_path: Path, app: str, text: str, key: str) -> None:
    path = persona_file(tmp_path, text)

    with pytest.raises(PersonaFileError) as excinfo:
        persona_load(path, app)

    assert str(path) in str(excinfo.value)
    assert f"'{key}'" in str(excinfo.value)


@pytest.mark.parametrize("bad_id", ["Bad Id", "UPPER", "-leading-dash", "has_underscore", "x" * 65, INLINE_PERSONA_ID])
def test_bad_id_names_the_file(tmp_path: Path, bad_id: str) -> None:
    path = persona_file(tmp_path, OFFICE_FILE.replace('id = "helper"', f'id = "{bad_id}"'))

    with pytest.raises(PersonaFileError, match="'id'") as excinfo:
        persona_load(path, "office")

    assert str(path) in str(excinfo.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = persona_file(tmp_path, 'id = "x\n')

    with pytest.raises(PersonaFileError, match="not valid TOML") as excinfo:
        persona_load(path, "office")

    assert str(path) in str(excinfo.value)


def test_catalog_rejects_duplicate_ids_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "office").mkdir()
    persona_file(tmp_path / "office", OFFICE_FILE, "a.toml")
    second = persona_file(tmp_path / "office", OFFICE_FILE, "b.toml")

    with pytest.raises(PersonaFileError, match="duplicate") as excinfo:
        catalog_load(tmp_path, "office")

    assert str(second) in str(excinfo.value)


def test_catalog_without_files_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(PersonaFileError) as excinfo:
        catalog_load(tmp_path, "office")

    assert str(tmp_path / "office") in str(excinfo.value)


def test_catalog_default_falls_back_to_the_first_file(tmp_path: Path) -> None:
    (tmp_path / "office").mkdir()
    persona_file(tmp_path / "office", OFFICE_FILE.replace('"helper"', '"zeta"'), "b.toml")
    persona_file(tmp_path / "office", OFFICE_FILE.replace('"helper"', '"alpha"'), "a.toml")

    assert catalog_load(tmp_path, "office").default_id == "alpha"


def test_character_inline_builds_a_persona_from_request_fields() -> None:
    persona = character_inline(name="Mina", greeting="Hi there!", context="  Mina runs a tea shop in Busan.  ")

    assert persona.id == INLINE_PERSONA_ID
    assert persona.app == "character"
    assert "Mina" in persona.system_prompt
    assert "Mina runs a tea shop in Busan." in persona.system_prompt
    assert persona.pinned_messages() == [
        ChatMessage("system", persona.system_prompt),
        ChatMessage("assistant", "Hi there!"),
    ]


def test_character_inline_matches_a_file_persona_with_the_same_fields(tmp_path: Path) -> None:
    path = persona_file(tmp_path, CHARACTER_FILE + 'greeting = "Hail!"\n', "knight.toml")
    from_file = persona_load(path, "character")

    inline = character_inline(name="Sir Test", greeting="Hail!", context="A knight who tests things.")

    assert inline.system_prompt == from_file.system_prompt
    assert inline.pinned_messages() == from_file.pinned_messages()


@pytest.mark.parametrize("examples", ['["hi"]', '"hi"'])
def test_examples_that_are_not_tables_name_the_file(tmp_path: Path, examples: str) -> None:
    path = persona_file(tmp_path, OFFICE_FILE + f"examples = {examples}\n")

    with pytest.raises(PersonaFileError) as excinfo:
        persona_load(path, "office")

    assert str(path) in str(excinfo.value)
    assert "'examples'" in str(excinfo.value)
