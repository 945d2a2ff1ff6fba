"""The character app's library in a real browser: a PNG card imported by the file picker and
by a real drop, its avatar and greetings (alternates picked before the first message), the
Lore row under a reply, the editor (create, server field errors, built-ins read-only), the
user persona, a hostile file, and the phone layout.

Debian's chromium driven by Playwright, through the session stack's nginx (`gateway`).
Never asserts on the model's words: only on what the card and the lorebook decide.
Screenshots go to var/screenshots/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from tests.auth import Visitor, visitor_context
from tests.characters import cardgen
from tests.ui.conftest import SCREENSHOTS

pytestmark = pytest.mark.slow

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
GREETING = "[data-testid=message][data-greeting=true]"
LAST_ASSISTANT = "[data-testid=message][data-role=assistant] >> nth=-1"
LIBRARY = "[data-testid=library]"
EDITOR = "[data-testid=character-editor]"


def character_page(browser, gateway: str, visitor: Visitor, options: dict):
    """A page signed in as `visitor`, open on the character app and connected."""
    context = visitor_context(browser, visitor, **options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.uncaught = []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    page.goto(f"{gateway}/character/")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("[data-testid=connection-state][data-state=open]")
    return page


@pytest.fixture
def page(browser, gateway, visitor):
    page = character_page(browser, gateway, visitor, DESKTOP)
    yield page
    uncaught = page.uncaught
    page.context.close()
    assert uncaught == [], "the page threw"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), animations="disabled")


def library_open(page) -> None:
    page.locator("[data-testid=library-open]").click()
    page.locator(LIBRARY).wait_for(state="visible")


def persona_now(page) -> str:
    return page.evaluate("window.personaChat.state.persona")


def wait_persona_change(page, old: str | None) -> str:
    page.wait_for_function("(old) => { const p = window.personaChat.state.persona; return p && p !== old; }", arg=old)
    return persona_now(page)


def wait_done(page) -> None:
    page.wait_for_function(
        """() => {
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const m = all[all.length - 1];
            return m && !m.dataset.greeting && m.dataset.streaming === 'false'
                && m.querySelector('[data-testid=reply-stats]');
        }"""
    )


def image_loaded(page, selector: str) -> None:
    """Every <img> under `selector` has loaded a real picture."""
    page.wait_for_function(
        """(sel) => {
            const imgs = [...document.querySelectorAll(sel)];
            return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
        }""",
        arg=selector,
    )


def greeting_text(page) -> str:
    return page.locator(GREETING).locator("[data-testid=message-body]").text_content()


def test_a_png_card_is_imported_picked_and_chatted_with_from_its_alternate_greeting(page, gateway, visitor, tmp_path):
    card = cardgen.card_v3()
    name = card["data"]["name"]
    called = card["data"]["nickname"] or name  # what {{char}} stands for (V3)
    png = cardgen.png_with(chara=None, ccv3=card)
    path = tmp_path / "mireille.png"
    path.write_bytes(png)
    before = persona_now(page)

    # The file picker: the card is imported, picked for a new chat, its greeting shown.
    library_open(page)
    page.locator("[data-testid=card-file]").set_input_files(str(path))
    first_id = wait_persona_change(page, before)
    page.locator(LIBRARY).wait_for(state="hidden")
    page.wait_for_function("(sel) => document.querySelector(sel)", arg=GREETING)
    shown = greeting_text(page)
    assert "We close at ten" in shown
    assert f"{called} looks up" in shown, "{{char}} is shown as the character's nickname"
    assert "{{" not in shown
    assert page.locator("[data-testid=persona-picker]").input_value() == first_id
    image_loaded(page, "#intro-avatar img")
    assert page.locator("[data-testid=greeting-counter]").text_content() == "1/3"

    # A real drop on the drop zone imports a second copy.
    library_open(page)
    data_transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'dropped-card.png', { type: 'image/png' }));
            return dt;
        }""",
        base64.b64encode(png).decode(),
    )
    page.dispatch_event("[data-testid=card-drop]", "dragenter", {"dataTransfer": data_transfer})
    page.dispatch_event("[data-testid=card-drop]", "drop", {"dataTransfer": data_transfer})
    second_id = wait_persona_change(page, first_id)
    page.locator(LIBRARY).wait_for(state="hidden")
    assert "We close at ten" in greeting_text(page)

    # Both are in the library, each with its picture; Esc closes the library.
    library_open(page)
    for character_id in (first_id, second_id):
        item = page.locator(f"[data-testid=character-item][data-character-id='{character_id}']")
        assert item.locator("[data-testid=character-name]").text_content() == name
        assert "mystery" in item.text_content(), "its tags are listed"
        image_loaded(page, f"[data-character-id='{character_id}'] [data-testid=character-avatar] img")
    screenshot(page, "character-library.png")
    page.keyboard.press("Escape")
    page.locator(LIBRARY).wait_for(state="hidden")

    # The next greeting: the first alternate, {{user}} shown as the user's name.
    page.locator("[data-testid=greeting-next]").click()
    assert page.locator("[data-testid=greeting-counter]").text_content() == "2/3"
    shown = greeting_text(page)
    assert "A power cut" in shown and f"Hold this, {visitor.username}." in shown
    screenshot(page, "character-greeting.png")

    page.locator("[data-testid=message-input]").fill("Are there cats here?")
    page.locator("[data-testid=message-input]").press("Enter")
    wait_done(page)
    assert not page.locator("[data-testid=greeting-next]").is_visible(), "the greeting is fixed once the chat starts"

    # The Lore row, collapsed, lists the entries that fired: the constant one always does.
    trace = page.locator(LAST_ASSISTANT).locator("[data-testid=lore-trace]")
    trace.wait_for()
    assert trace.get_attribute("open") is None
    trace.locator("summary").click()
    names = trace.locator("[data-testid=lore-entry] .lore-name").all_text_contents()
    assert "Library hours" in names
    assert "constant" in trace.locator("[data-testid=lore-entry]", has_text="Library hours").text_content()
    assert "character" in trace.locator("[data-testid=lore-budget]").text_content()
    screenshot(page, "character-lore.png")

    db_id = page.evaluate("window.personaChat.state.dbId")
    listed = requests.get(f"{gateway}/character/conversations", headers=visitor.auth, timeout=10).json()
    conversation = next(c for c in listed["conversations"] if c["db_id"] == db_id)
    assert (conversation["persona"], conversation["greeting"]) == (second_id, 1)

    # Reopened after a reload, the chat starts with the greeting it started with.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator(f"[data-testid=conversation-item][data-db-id='{db_id}'] .conversation-open").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message][data-role=user]').length === 1")
    assert "A power cut" in greeting_text(page)
    assert not page.locator("[data-testid=greeting-next]").is_visible()
    assert page.locator(LAST_ASSISTANT).locator("[data-testid=lore-trace]").count() == 1


def test_a_file_that_is_not_a_card_is_refused_naming_the_field(page, tmp_path):
    library_open(page)
    page.locator("[data-testid=card-file]").set_input_files(
        {"name": "holiday.png", "mimeType": "image/png", "buffer": b"not a card"}
    )
    alert = page.locator("[data-testid=library-error]")
    alert.wait_for(state="visible")
    assert alert.get_attribute("role") == "alert"
    assert alert.get_attribute("data-field") == "file"
    assert "(field: file)" in alert.text_content()
    assert page.locator(LIBRARY).is_visible(), "the library stays open to try again"
    screenshot(page, "character-import-error.png")


def test_the_editor_creates_a_character_and_shows_a_builtin_read_only(page, gateway, visitor):
    name = f"Bard {uuid.uuid4().hex[:6]}"
    library_open(page)
    page.locator("[data-testid=character-new]").click()
    editor = page.locator(EDITOR)
    editor.wait_for(state="visible")
    editor.locator("[data-testid=editor-name]").fill(name)
    editor.locator("[data-testid=editor-first_mes]").fill("Well met, {{user}}! Sit by the fire.")
    editor.locator("[data-testid=editor-greeting-add]").click()
    editor.locator("[data-testid=editor-greeting]").last.fill("*{{char}} tunes a lute.* Another song?")
    editor.locator("[data-testid=editor-tags]").fill("bard, " + "x" * 101)
    editor.locator("[data-testid=editor-save]").click()

    # The server's field error is shown under its field; nothing is created twice.
    tags_error = editor.locator("#error-tags")
    tags_error.wait_for(state="visible")
    assert tags_error.text_content().startswith("Tag 2: ")
    assert editor.locator("[data-testid=editor-error]").get_attribute("data-field") == "data.tags[1]"
    assert editor.locator("[data-testid=editor-tags]").get_attribute("aria-invalid") == "true"
    editor.locator("[data-testid=editor-tags]").fill("bard, tavern")
    editor.locator("[data-testid=editor-save]").click()
    editor.wait_for(state="hidden")

    item = page.locator("[data-testid=character-item]", has_text=name)
    item.wait_for()
    assert item.count() == 1
    mine = requests.get(f"{gateway}/character/characters", headers=visitor.auth, timeout=10).json()["characters"]
    (created,) = [c for c in mine if c["data"]["name"] == name]
    assert created["data"]["tags"] == ["bard", "tavern"]
    assert created["data"]["alternate_greetings"] == ["*{{char}} tunes a lute.* Another song?"]

    item.locator("[data-testid=character-chat]").click()
    page.locator(LIBRARY).wait_for(state="hidden")
    assert persona_now(page) == created["id"]
    assert f"Well met, {visitor.username}!" in greeting_text(page)
    assert page.locator("[data-testid=greeting-counter]").text_content() == "1/2"

    # Editing sends only what changed.
    library_open(page)
    item.locator("[data-testid=character-edit]").click()
    editor.wait_for(state="visible")
    assert editor.locator("[data-testid=editor-name]").input_value() == name
    editor.locator("[data-testid=editor-creator]").fill("ui test")
    with page.expect_request(lambda r: r.method == "PATCH") as patch:
        editor.locator("[data-testid=editor-save]").click()
    assert patch.value.post_data_json == {"data": {"creator": "ui test"}}
    editor.wait_for(state="hidden")

    # Export links download the card; Delete asks first, and the chat moves to a built-in.
    item.locator("[data-testid=character-export]").click()
    href = item.locator("[data-testid=character-export-charx]").get_attribute("href")
    assert href == f"/character/characters/{created['id']}/export?format=charx"
    page.once("dialog", lambda dialog: dialog.accept())
    item.locator("[data-testid=character-delete]").click()
    item.wait_for(state="detached")
    assert persona_now(page) != created["id"]
    mine = requests.get(f"{gateway}/character/characters", headers=visitor.auth, timeout=10).json()["characters"]
    assert created["id"] not in [c["id"] for c in mine]

    # A built-in character opens read-only, with "Duplicate to edit".
    builtin = page.locator("[data-testid=character-item][data-builtin=true]").first
    builtin_name = builtin.locator("[data-testid=character-name]").text_content()
    builtin.locator("[data-testid=character-edit]").click()
    editor.wait_for(state="visible")
    assert not editor.locator("[data-testid=editor-name]").is_editable()
    assert not editor.locator("[data-testid=editor-description]").is_editable()
    assert not editor.locator("[data-testid=editor-save]").is_visible()
    screenshot(page, "character-editor-builtin.png")
    editor.locator("[data-testid=editor-duplicate]").click()
    page.wait_for_function(
        "(n) => document.querySelector('[data-testid=editor-name]').value === n + ' (copy)'", arg=builtin_name
    )
    assert editor.locator("[data-testid=editor-name]").is_editable()
    assert editor.locator("[data-testid=editor-save]").is_visible()
    screenshot(page, "character-editor.png")
    page.keyboard.press("Escape")
    editor.wait_for(state="hidden")
    assert page.locator(LIBRARY).is_visible(), "Esc closes the editor first"


def test_lorebooks_are_imported_attached_to_a_character_and_deleted(page, gateway, visitor, http, tmp_path):
    name = f"Keeper {uuid.uuid4().hex[:6]}"
    created = http.post(f"{gateway}/character/characters", json={"data": {"name": name}}, timeout=10)
    assert created.status_code == 201, created.text
    character_id = created.json()["id"]
    path = tmp_path / "harbour.json"
    path.write_text(json.dumps(cardgen.world_info()))

    # Imported by the file input: listed with its entry count.
    library_open(page)
    section = page.locator("[data-testid=lorebooks]")
    section.locator("[data-testid=lorebook-file]").set_input_files(str(path))
    item = section.locator("[data-testid=lorebook-item]", has_text="Harbour lore")
    item.wait_for()
    assert "2" in item.locator("[data-testid=lorebook-entries]").text_content()
    lorebook_id = item.get_attribute("data-lorebook-id")
    assert item.locator("[data-testid=lorebook-export]").get_attribute("href") == (
        f"/character/lorebooks/{lorebook_id}/export"
    )

    # A file that is not a lorebook: an alert, and the list as it was.
    section.locator("[data-testid=lorebook-file]").set_input_files(
        {"name": "notes.json", "mimeType": "application/json", "buffer": b"not json"}
    )
    alert = section.locator("[role=alert]")
    alert.wait_for(state="visible")
    assert "notes.json" in alert.text_content()
    assert section.locator("[data-testid=lorebook-item]").count() == 1

    # Ticked in the character's editor: the PATCH attaches it.
    character = page.locator(f"[data-testid=character-item][data-character-id='{character_id}']")
    character.locator("[data-testid=character-edit]").click()
    editor = page.locator(EDITOR)
    editor.wait_for(state="visible")
    boxes = editor.locator("[data-testid=editor-lorebooks]")
    box = boxes.locator(f"input[type=checkbox][data-lorebook-id='{lorebook_id}']")
    assert not box.is_checked()
    box.check()
    with page.expect_request(lambda r: r.method == "PATCH") as patch:
        editor.locator("[data-testid=editor-save]").click()
    assert patch.value.post_data_json == {"lorebooks": [lorebook_id]}
    editor.wait_for(state="hidden")
    got = http.get(f"{gateway}/character/characters/{character_id}", timeout=10).json()
    assert got["lorebooks"] == [lorebook_id]
    screenshot(page, "character-lorebooks.png")

    # Deleted from the list, after a confirm.
    page.once("dialog", lambda dialog: dialog.accept())
    item.locator("[data-testid=lorebook-delete]").click()
    item.wait_for(state="detached")
    listed = requests.get(f"{gateway}/character/lorebooks", headers=visitor.auth, timeout=10).json()
    assert lorebook_id not in [b["id"] for b in listed["lorebooks"]]


def test_the_user_persona_names_the_user_in_greetings(page, gateway, visitor):
    library_open(page)
    form = page.locator("[data-testid=user-persona]")
    # The form is filled from GET user-persona once the library has opened: wait for it.
    page.wait_for_function(
        "(name) => document.querySelector('[data-testid=user-persona-name]').value === name", arg=visitor.username
    )
    form.locator("[data-testid=user-persona-name]").fill("Quill Reader")
    form.locator("[data-testid=user-persona-description]").fill("A student of old maps.")
    form.locator("[data-testid=user-persona-save]").click()
    page.wait_for_function("() => document.querySelector('[data-testid=user-persona-status]').textContent === 'Saved'")
    saved = requests.get(f"{gateway}/character/user-persona", headers=visitor.auth, timeout=10).json()
    assert saved == {"name": "Quill Reader", "description": "A student of old maps."}
    assert page.evaluate("window.personaChat.state.persona") is not None


def test_the_library_fits_a_phone(browser, gateway, visitor):
    page = character_page(browser, gateway, visitor, PHONE)
    try:
        library_open(page)
        box = page.locator(LIBRARY).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.locator("[data-testid=card-drop]").is_visible()
        assert page.locator("[data-testid=character-chat]").first.is_visible()
        screenshot(page, "phone-character-library.png")
        assert page.uncaught == []
    finally:
        page.context.close()
