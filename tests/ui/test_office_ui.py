"""The office UI in a real browser: documents panel, sources under grounded replies, slash
commands with tool cards and approvals. Debian's chromium driven by Playwright, through
the session stack's nginx (`gateway`), whose web search goes to the local SearxNG stub.

Each test's browser uses the `user_id` fixture as its stored user id, so the API can check
what the page did. Screenshots go to var/screenshots/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import uuid

import pytest

from tests.auth import Visitor, visitor_context
from tests.office.test_documents import POLICY_MD, documents_of, upload
from tests.ui.conftest import SCREENSHOTS

pytestmark = pytest.mark.slow

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
LAST_ASSISTANT = "[data-testid=message][data-role=assistant] >> nth=-1"
QUESTION = "How many days do I have to submit hotel receipts?"


def office_page(browser, gateway: str, visitor: Visitor, options: dict):
    """A page signed in as `visitor`, open on the office app and connected."""
    context = visitor_context(browser, visitor, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.uncaught = []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    office_open(page, f"{gateway}/office/")
    return page


def office_open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("[data-testid=connection-state][data-state=open]")


@pytest.fixture
def page(browser, gateway, user_id, visitor):
    page = office_page(browser, gateway, visitor, DESKTOP)
    yield page
    uncaught = page.uncaught
    page.context.close()
    assert uncaught == [], "the page threw"


def screenshot(page, name: str) -> None:
    """Like test_browser's, with animations run to their end (a card fading in looks dim)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), animations="disabled")


def command(page, text: str, tool: str):
    """Type a slash command, press Enter, wait for its card to settle; return the card."""
    before = page.locator("[data-testid=tool-card]").count()
    box = page.locator("[data-testid=message-input]")
    box.fill(text)
    box.press("Enter")
    card = page.locator("[data-testid=tool-card]").nth(before)
    card.wait_for()
    page.wait_for_function(
        "(i) => document.querySelectorAll('[data-testid=tool-card]')[i].dataset.status !== 'pending'", arg=before
    )
    assert card.get_attribute("data-tool") == tool
    return card


def test_documents_panel_uploads_with_progress_shows_server_errors_and_deletes(page, gateway, user_id, http, tmp_path):
    policy = tmp_path / "travel.md"
    policy.write_bytes(POLICY_MD)
    page.locator("[data-testid=document-file]").set_input_files(str(policy))
    item = page.locator("[data-testid=document-item][data-status=ready]")
    item.wait_for()
    listed = documents_of(http, gateway, user_id)
    assert [d["title"] for d in listed] == ["Travel policy"]
    assert item.get_attribute("data-document-id") == listed[0]["id"]
    text = item.text_content()
    assert "Travel policy" in text and "MD" in text and "Ready" in text
    assert f"{listed[0]['chunks']} chunk" in text

    # A big file is indexed in the background: the row spins until polling finds it ready.
    big = tmp_path / "manual.md"
    parts = (f"## Part {i}\n" + f"Widget {i} is blue. " * 12 for i in range(52))  # 52 chunks > 48
    big.write_text("# Big manual\n\n" + "\n\n".join(parts))
    page.locator("[data-testid=document-file]").set_input_files(str(big))
    indexing = page.locator("[data-testid=document-item][data-status=indexing]")
    indexing.locator(".spinner").wait_for()
    big_id = indexing.get_attribute("data-document-id")
    screenshot(page, "office-documents-indexing.png")
    big_row = page.locator(f"[data-testid=document-item][data-document-id='{big_id}']")
    big_row.and_(page.locator("[data-status=ready]")).wait_for(timeout=90_000)

    # A slow upload shows its progress; a refused one, the server's own message next to the panel.
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ" + b"\x00" * 600_000)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 400_000},
    )
    page.evaluate(
        """() => {
            window.__progress = new Set();
            new MutationObserver(() => {
                const bar = document.querySelector('[data-testid=document-upload-row] [role=progressbar]');
                if (bar) window.__progress.add(Number(bar.getAttribute('aria-valuenow')));
            }).observe(document.body, {subtree: true, childList: true, attributes: true});
        }"""
    )
    page.locator("[data-testid=document-file]").set_input_files(str(exe))
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('[data-testid=document-upload-row] [role=progressbar]');
            const now = bar && Number(bar.getAttribute('aria-valuenow'));
            return now > 15 && now < 85;
        }"""
    )
    assert "setup.exe" in page.locator("[data-testid=document-upload-row]").text_content()
    screenshot(page, "office-documents-uploading.png")
    error = page.locator("[data-testid=documents-error]")
    error.wait_for()
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    seen = page.evaluate("[...window.__progress]")
    assert any(0 < v < 100 for v in seen) and 100 in seen, seen
    assert "setup.exe" in error.text_content()
    assert "file type .exe is not supported" in error.text_content(), "the server's own message is shown"
    assert page.locator("[data-testid=document-upload-row]").count() == 0

    # Dropping a file on the chat uploads it too; while it is dragged over, the overlay says so.
    drag = """(type) => {
        if (!window.__drag) {
            window.__drag = new DataTransfer();
            window.__drag.items.add(new File(['Kimchi stew is served on Mondays from noon.'], 'menu.txt',
                                             {type: 'text/plain'}));
        }
        const target = document.querySelector('[data-testid=message-list]');
        target.dispatchEvent(new DragEvent(type, {dataTransfer: window.__drag, bubbles: true, cancelable: true}));
    }"""
    page.evaluate(drag, "dragenter")
    page.evaluate(drag, "dragover")
    assert page.locator("[data-testid=drop-overlay]").is_visible()
    screenshot(page, "office-drop.png")
    page.evaluate(drag, "drop")
    page.locator("[data-testid=document-item][data-status=ready] >> nth=2").wait_for()
    assert page.locator("[data-testid=drop-overlay]").is_hidden()
    screenshot(page, "office-documents.png")

    page.once("dialog", lambda dialog: dialog.accept())
    policy_row = page.locator(f"[data-testid=document-item][data-document-id='{listed[0]['id']}']")
    policy_row.locator("[data-testid=document-delete]").click()
    policy_row.wait_for(state="detached")
    assert [d["title"] for d in documents_of(http, gateway, user_id)] == ["menu", "Big manual"]

    page.locator("#documents-error-dismiss").click()
    assert error.is_hidden()


def test_a_grounded_reply_shows_sources_that_expand_and_survive_a_reload(
    browser, page, gateway, user_id, http, visitor
):
    upload(http, gateway, user_id, "travel.md", POLICY_MD)
    page.reload()
    page.wait_for_selector("[data-testid=document-item][data-status=ready]")
    box = page.locator("[data-testid=message-input]")
    box.fill(QUESTION)
    box.press("Enter")
    reply = page.locator(LAST_ASSISTANT)
    page.wait_for_function(
        """() => {
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const m = all[all.length - 1];
            return m && m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]');
        }"""
    )
    assert reply.locator("[data-testid=message-body]").text_content().strip(), "the reply streamed text"
    chips = reply.locator("[data-testid=source-chip]")
    assert chips.count() >= 1
    assert chips.first.text_content().startswith("[1] Travel policy")
    excerpt = reply.locator("[data-testid=source-excerpt]")
    assert excerpt.is_hidden()
    chips.first.click()
    assert excerpt.is_visible() and chips.first.get_attribute("aria-expanded") == "true"
    shown = excerpt.text_content()
    screenshot(page, "office-sources.png")
    chips.first.click()
    assert excerpt.is_hidden(), "a second click folds the excerpt away"

    # Reopened from the store (meta.sources), the row is the same.
    db_id = page.evaluate("window.personaChat.state.dbId")
    stored = http.get(
        f"{gateway}/office/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=10
    ).json()["messages"]
    sources = stored[-1]["meta"]["sources"]
    assert sources[0]["title"] == "Travel policy" and sources[0]["excerpt"] in shown
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    reply.locator("[data-testid=sources]").wait_for()
    assert reply.locator("[data-testid=source-chip]").count() == len(sources)
    reply.locator("[data-testid=source-chip]").first.click()
    assert sources[0]["excerpt"] in reply.locator("[data-testid=source-excerpt]").text_content()

    # A reply grounded on the web too (google_access, over the REST API): its web sources link out.
    web_db_id = str(uuid.uuid4())
    body = {"input_data": "Where is kimchi stew served?", "google_access": True, "db_id": web_db_id, "user_id": user_id}
    assert http.post(f"{gateway}/office/Llama", json=body, timeout=120).status_code == 200
    office_open(page, f"{gateway}/office/#{web_db_id}")
    web_chip = page.locator(LAST_ASSISTANT).locator("[data-testid=source-chip][data-kind=web]").first
    assert "example.org" in web_chip.text_content()
    web_chip.click()
    link = page.locator(LAST_ASSISTANT).locator("[data-testid=source-excerpt] a")
    assert link.get_attribute("href").startswith("https://example.org/")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    screenshot(page, "office-web-sources.png")

    phone = office_page(browser, gateway, visitor, PHONE)
    try:
        office_open(phone, f"{gateway}/office/#{db_id}")
        phone_reply = phone.locator(LAST_ASSISTANT)
        phone_reply.locator("[data-testid=source-chip]").first.click()
        phone_reply.locator("[data-testid=source-excerpt]").scroll_into_view_if_needed()
        box = phone_reply.locator("[data-testid=sources]").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        screenshot(phone, "phone-office-sources.png")
        phone.locator("[data-testid=menu-button]").click()
        phone.locator("[data-testid=document-list]").wait_for(state="visible")
        screenshot(phone, "phone-office-documents.png")
        assert phone.uncaught == []
    finally:
        phone.context.close()


def test_slash_commands_call_tools_and_show_local_cards(page, gateway, user_id, http):
    upload(http, gateway, user_id, "travel.md", POLICY_MD)
    page.reload()
    page.wait_for_selector("[data-testid=document-item][data-status=ready]")

    box = page.locator("[data-testid=message-input]")
    hint = page.locator("#composer-hint")
    box.fill("/ca")
    assert hint.text_content() == "/calc <expression>", "the hint line shows the matching commands"
    box.fill("/ hello")
    assert "/calc" not in hint.text_content(), "a slash and a space is an ordinary message"

    calc = command(page, "/calc (2+3)*4", "calculator")
    assert calc.get_attribute("data-status") == "ok"
    assert calc.locator(".calc-value").text_content() == "20"
    assert "/calc (2+3)*4" in calc.text_content() and "calculator" in calc.text_content()

    found = command(page, "/search hotel receipts", "search_documents")
    assert "Travel policy" in found.text_content()

    saved = command(page, "/note Groceries: milk and eggs", "save_note")
    assert "Groceries" in saved.text_content()
    notes = command(page, "/notes", "list_notes")
    assert "Groceries" in notes.text_content() and "milk and eggs" in notes.text_content()

    web = command(page, "/web kimchi stew", "web_search")
    assert "Result 1 for kimchi stew" in web.text_content()
    assert web.locator("a.result-title").first.get_attribute("href").startswith("https://example.org/")
    screenshot(page, "office-slash.png")

    bad = command(page, "/calc 1/0", "calculator")
    assert bad.get_attribute("data-status") == "error" and bad.locator("[data-testid=tool-error]").text_content()

    unknown = command(page, "/xyz", "help")
    assert "Unknown command /xyz" in unknown.text_content() and "/search <query>" in unknown.text_content()
    assert page.locator("[data-testid=message-input]").input_value() == "/xyz", "kept to be fixed"

    helped = command(page, "/help", "help")
    tools = {t["name"]: t for t in http.get(f"{gateway}/office/tools", timeout=10).json()["tools"]}
    assert tools["search_documents"]["description"] in helped.text_content()
    assert "//text" in helped.text_content()
    screenshot(page, "office-help.png")

    # Cards are local: nothing reached the chat history.
    assert page.locator("[data-testid=message]").count() == 0
    listed = http.get(f"{gateway}/office/conversations", params={"user_id": user_id}, timeout=10).json()
    assert listed["conversations"] == []


def test_delete_command_asks_for_approval_deny_keeps_approve_removes(browser, page, gateway, user_id, http, visitor):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    page.reload()
    page.wait_for_selector("[data-testid=document-item][data-status=ready]")

    asked = command(page, "/delete travel", "delete_document")
    assert asked.get_attribute("data-status") == "approval"
    args = asked.locator("[data-testid=approval-args]").text_content()
    assert document["id"] in args and "Travel policy" in args
    screenshot(page, "office-approval.png")
    asked.locator("[data-testid=deny-button]").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tool-card]:last-child').dataset.status === 'denied'"
    )
    assert "Denied" in asked.locator("[data-testid=approval-outcome]").text_content()
    assert asked.locator("[data-testid=approve-button]").count() == 0
    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]

    approved = command(page, f"/delete {document['id']}", "delete_document")
    approved.locator("[data-testid=approve-button]").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tool-card]:last-child').dataset.status === 'approved'"
    )
    assert "Deleted “Travel policy”" in approved.text_content()
    screenshot(page, "office-approval-done.png")
    page.locator("[data-testid=document-item]").wait_for(state="detached")
    assert documents_of(http, gateway, user_id) == []

    phone = office_page(browser, gateway, visitor, PHONE)
    try:
        upload(http, gateway, user_id, "travel.md", POLICY_MD)
        phone.wait_for_timeout(100)
        command(phone, "/calc sqrt(2) ^ 2 + 1", "calculator")
        command(phone, "/delete Travel policy", "delete_document")
        card = phone.locator("[data-testid=tool-card] >> nth=-1")
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        screenshot(phone, "phone-office-approval.png")
        assert phone.uncaught == []
    finally:
        phone.context.close()
