"""The office composer's Web and Tools options and the tool steps of a reply, in a real browser:
Debian's chromium driven by Playwright, through the session stack's nginx (`gateway`), whose web
search goes to the local SearxNG stub, with the real model.

The tiny model seldom calls a tool when it may ("auto"), so these tests use the Tools menu's
"always" mode (tools: "required") and offer one tool, which makes the call certain; what it
calls the tool with is the model's own choice, so both a result and an error are accepted.
A script added to each page records the frames the page sends and every status a tool step
shows, so the tests check what the page did, not only where it ended. To photograph a step
while it runs, one page's WebSocket is routed through Playwright, which holds the server's
frames back for a moment (FrameGate). Screenshots go to var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.auth import Visitor, visitor_context
from tests.office.test_documents import POLICY_MD, documents_of, upload
from tests.ui.test_office_ui import DESKTOP, LAST_ASSISTANT, PHONE, office_open, screenshot

pytestmark = pytest.mark.slow

RECORDER = """
    window.__sent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
        try { window.__sent.push(JSON.parse(data)); } catch (_) {}
        return send.call(this, data);
    };
    window.__stepStatuses = [];  // each status a tool step took, in order (a repeat of the same one is not news)
    const last = new WeakMap();
    new MutationObserver((mutations) => {
        for (const m of mutations) {
            const step = m.target;
            const status = step.getAttribute('data-status');
            if (step.dataset.testid !== 'tool-step' || last.get(step) === status) continue;
            last.set(step, status);
            window.__stepStatuses.push(status);
        }
    }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-status']});
"""
DONE = """() => {
    const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
    const m = all[all.length - 1];
    return Boolean(m && m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]'));
}"""


class FrameGate:
    """Sits on the page's chat WebSocket: from a tool call's outcome on, the server's frames wait
    here until `release()`, so the step stays "running" for a screenshot. Frames are only delayed."""

    def __init__(self, context) -> None:
        self.held: list[str | bytes] = []
        self.holding = True
        self.route = None
        context.route_web_socket("**/office/ws/chat/", self._connect)

    def _connect(self, route) -> None:
        self.route = route
        route.connect_to_server().on_message(self._from_server)

    def _from_server(self, message: str | bytes) -> None:
        frame = json.loads(message)
        outcome = frame["type"] == "tool_call" and frame["status"] != "running"
        if self.holding and (self.held or outcome):
            self.held.append(message)
        else:
            self.route.send(message)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.route.send(message)
        self.held.clear()


def tools_page(browser, gateway: str, visitor: Visitor, options: dict, path: str = "/office/", *, gate: bool = False):
    """An office page signed in as `visitor`, recording what it sends and shows."""
    context = visitor_context(browser, visitor, **options)
    context.add_init_script(RECORDER)
    gated = FrameGate(context) if gate else None
    page = context.new_page()
    page.gate = gated
    page.set_default_timeout(60_000)
    page.uncaught = []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    office_open(page, f"{gateway}{path}")
    return page


@pytest.fixture
def page(browser, gateway, user_id, visitor):
    page = tools_page(browser, gateway, visitor, DESKTOP)
    yield page
    uncaught = page.uncaught
    page.context.close()
    assert uncaught == [], "the page threw"


def tools_set(page, mode: str, only: str | None = None, *, shot: str | None = None) -> None:
    """In the Tools menu: pick the mode ("Off", "Auto", "Always") and offer only `only`; close it."""
    page.locator("[data-testid=tools-button]").click()
    menu = page.locator("[data-testid=tools-menu]")
    menu.locator(".segmented label", has_text=mode).click()
    boxes = menu.locator("[data-testid=tool-option]")
    boxes.first.wait_for()
    if only:
        menu.locator(f"[data-testid=tool-option][value={only}]").check()
        for i in range(boxes.count()):
            if boxes.nth(i).get_attribute("value") != only:
                boxes.nth(i).uncheck()
    if shot:
        screenshot(page, shot)
    page.keyboard.press("Escape")
    assert menu.is_hidden()


def ask(page, text: str) -> None:
    box = page.locator("[data-testid=message-input]")
    box.fill(text)
    box.press("Enter")


def wait_done(page) -> None:
    page.wait_for_function(DONE)


def last_message_frame(page) -> dict:
    return [f for f in page.evaluate("window.__sent") if f["type"] == "message"][-1]


def stored_replies(http, gateway: str, user_id: str, db_id: str) -> list[dict]:
    response = http.get(f"{gateway}/office/conversations/{db_id}/messages", params={"user_id": user_id}, timeout=30)
    assert response.status_code == 200, response.text
    return [m for m in response.json()["messages"] if m["role"] == "assistant"]


def settled(page, step) -> str:
    """Wait until a step leaves "running" (and, live, "approval_required"); return its status."""
    step.and_(page.locator(":not([data-status=running]):not([data-status=approval_required])")).wait_for()
    return step.get_attribute("data-status")


def tool_budget_wait(http, gateway: str, user_id: str, tool: str, *, timeout: float = 60.0) -> None:
    """Wait until the user's rate limit for `tool` has a call left (its bucket refills over time)."""
    deadline = time.monotonic() + timeout
    while True:
        limit = http.get(f"{gateway}/office/tools/{tool}/rate-limit", params={"user_id": user_id}, timeout=30).json()
        if limit["remaining"] >= 1:
            return
        assert time.monotonic() < deadline, f"{tool}'s rate limit did not refill: {limit}"
        time.sleep(min(max(limit["reset_in_s"], 0.2), 2.0))


def within_phone_width(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["viewport"]["width"]


def test_tools_always_with_the_calculator_shows_the_step_then_the_answer_and_again_after_a_reload(
    browser, page, gateway, user_id, http, visitor
):
    tools = page.locator("[data-testid=tools-button]")
    assert tools.get_attribute("data-mode") == "off" and tools.get_attribute("aria-expanded") == "false"
    tools_set(page, "Always", "calculator", shot="office-tools-menu.png")
    total = len(http.get(f"{gateway}/office/tools", timeout=30).json()["tools"])
    assert tools.get_attribute("data-mode") == "required"
    assert page.locator("[data-testid=tools-state]").text_content() == f"always · 1/{total}"
    assert tools.get_attribute("aria-label") == f"Tools: always, 1 of {total} tools offered"

    ask(page, "What is 17 times 23?")
    reply = page.locator(LAST_ASSISTANT)
    step = reply.locator("[data-testid=tool-step]")
    step.wait_for()
    status = settled(page, step)
    assert status in ("ok", "error")
    wait_done(page)
    sent = last_message_frame(page)
    assert (sent["tools"], sent["tool_names"]) == ("required", ["calculator"]) and "google_access" not in sent
    assert page.evaluate("window.__stepStatuses")[:2] == ["running", status], "the spinner showed first"
    assert step.locator("[data-testid=tool-step-name]").text_content() == "calculator"
    args = step.locator("[data-testid=tool-step-args]").text_content()
    assert isinstance(json.loads(args)["expression"], str), "the arguments, as pretty JSON"
    if status == "ok":
        assert " = " in step.locator("[data-testid=tool-step-preview]").text_content()
        full = step.locator("[data-testid=tool-step-full]")
        assert full.is_hidden()
        step.locator("[data-testid=tool-step-expand]").click()
        assert json.loads(full.text_content())["expression"] == json.loads(args)["expression"]
    else:
        assert step.locator("[data-testid=tool-error]").text_content().strip()
    # The step sits above the answer, which streamed after it (the call itself is never text).
    body = reply.locator("[data-testid=message-body]")
    assert step.evaluate(
        "(s, b) => Boolean(s.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING)", body.element_handle()
    )
    assert reply.locator("[data-testid=approve-button]").count() == 0
    screenshot(page, "office-tool-step.png")

    db_id = page.evaluate("window.personaChat.state.dbId")
    (stored,) = stored_replies(http, gateway, user_id, db_id)
    assert [(c["tool"], c["status"]) for c in stored["meta"]["tool_calls"]] == [("calculator", status)]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    again = page.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
    again.wait_for()
    assert again.get_attribute("data-status") == status
    assert again.locator("[data-testid=tool-step-args]").text_content() == args
    assert page.locator("[data-testid=tools-button]").get_attribute("data-mode") == "required", "remembered"
    assert page.locator("[data-testid=tools-state]").text_content() == f"always · 1/{total}"

    # A call's outcome normally follows at once; held back a moment here, the spinner shows.
    held = tools_page(browser, gateway, visitor, DESKTOP, f"/office/#{db_id}", gate=True)
    try:
        tools_set(held, "Always", "list_notes")
        ask(held, "Which notes do I have?")
        running = held.locator(LAST_ASSISTANT).locator("[data-testid=tool-step][data-status=running]")
        running.locator(".spinner").wait_for()
        assert running.locator("[data-testid=tool-step-status]").text_content() == "Running…"
        screenshot(held, "office-tool-step-running.png")
        held.gate.release()
        listed = held.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
        assert settled(held, listed) in ("ok", "error")
        wait_done(held)
        if listed.get_attribute("data-status") == "ok":
            listed.locator("[data-testid=tool-step-expand]").click()
            assert json.loads(listed.locator("[data-testid=tool-step-full]").text_content())["notes"] == []
        screenshot(held, "office-tool-step-done.png")
        assert held.uncaught == []
    finally:
        held.context.close()

    phone = tools_page(browser, gateway, visitor, PHONE, f"/office/#{db_id}")
    try:
        phone_step = phone.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
        phone_step.wait_for()
        assert within_phone_width(phone_step)
        screenshot(phone, "phone-office-tool-step.png")
        tools_set(phone, "Auto", shot="phone-office-tools-menu.png")
        assert phone.locator("[data-testid=tools-state]").text_content() == "auto"
        phone.locator("[data-testid=web-toggle]").click()
        assert within_phone_width(phone.locator("#composer"))
        screenshot(phone, "phone-office-composer-options.png")
        assert phone.uncaught == []
    finally:
        phone.context.close()


def test_a_call_that_needs_approval_is_denied_approved_or_stopped_from_its_step(
    browser, page, gateway, user_id, http, visitor
):
    document = upload(http, gateway, user_id, "travel.md", POLICY_MD).json()
    page.reload()
    page.wait_for_selector("[data-testid=document-item][data-status=ready]")
    tools_set(page, "Always", "delete_document")
    decide = """(step, which) => {
        step.querySelector(`[data-testid=${which}-button]`).click();
        return [...step.querySelectorAll('.approval-button')].map((b) => b.disabled);
    }"""

    # Deny: the call does not run, the document stays.
    ask(page, f"Delete the document {document['id']}")
    step = page.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
    step.and_(page.locator("[data-status=approval_required]")).wait_for()
    assert step.locator("[data-testid=tool-step-name]").text_content() == "delete_document"
    assert "document_id" in json.loads(step.locator("[data-testid=tool-step-args]").text_content())
    assert page.locator("[data-testid=stop-button]").is_enabled(), "the turn waits, still stoppable"
    screenshot(page, "office-tool-approval.png")
    assert step.evaluate(decide, "deny") == [True, True], "both buttons disabled once decided"
    approval_id = step.get_attribute("data-approval-id")
    assert page.evaluate("window.__sent")[-1] == {"type": "approval", "approval_id": approval_id, "decision": "deny"}
    assert settled(page, step) == "denied"
    wait_done(page)
    assert "You denied it" in step.locator("[data-testid=tool-step-note]").text_content()
    assert step.locator(".approval-button").count() == 0
    assert [d["id"] for d in documents_of(http, gateway, user_id)] == [document["id"]]

    # Approve: it runs (an error if the model named another id); a deleted document leaves the panel too.
    ask(page, f"Delete the document {document['id']}")
    step = page.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
    step.and_(page.locator("[data-status=approval_required]")).wait_for()
    assert step.evaluate(decide, "approve") == [True, True]
    assert page.evaluate("window.__sent")[-1]["decision"] == "approve"
    status = settled(page, step)
    assert status in ("ok", "error")
    wait_done(page)
    screenshot(page, "office-tool-approved.png")
    if status == "ok":
        assert "Deleted “Travel policy”" in step.locator("[data-testid=tool-step-preview]").text_content()
        assert documents_of(http, gateway, user_id) == []
        page.locator("[data-testid=document-item]").wait_for(state="detached")
    else:
        assert "document" in step.locator("[data-testid=tool-error]").text_content()

    # Stop while it waits: the call is denied and the reply ends as stopped.
    ask(page, "Delete the document abc.")
    step = page.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
    step.and_(page.locator("[data-status=approval_required]")).wait_for()
    page.locator("[data-testid=stop-button]").click()
    assert settled(page, step) == "denied"
    wait_done(page)
    assert "Stopped" in step.locator("[data-testid=tool-step-note]").text_content()
    assert page.locator(LAST_ASSISTANT).locator("[data-badge=stopped]").count() == 1
    assert {"type": "stop"} in page.evaluate("window.__sent")
    statuses = [s for s in page.evaluate("window.__stepStatuses") if s != "running"]
    assert statuses == ["approval_required", "denied", "approval_required", status, "approval_required", "denied"]

    # Reopened, the steps are as stored, without buttons.
    db_id = page.evaluate("window.personaChat.state.dbId")
    stored = stored_replies(http, gateway, user_id, db_id)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    steps = page.locator("[data-testid=tool-step]")
    steps.nth(2).wait_for()
    assert [steps.nth(i).get_attribute("data-status") for i in range(3)] == ["denied", status, "denied"]
    assert [r["meta"]["tool_calls"][0]["status"] for r in stored] == ["denied", status, "denied"]
    assert page.locator(".approval-button").count() == 0

    # A REST turn ends while its call waits: reopened here, the step says so, with the approval id.
    # (delete_document allows a burst of 3 calls per user; this 4th one waits for a refill.)
    tool_budget_wait(http, gateway, user_id, "delete_document")
    rest_db_id = str(uuid.uuid4())
    body = {
        "input_data": "Delete the document xyz.",
        "db_id": rest_db_id,
        "user_id": user_id,
        "tools": "required",
        "tool_names": ["delete_document"],
    }
    assert http.post(f"{gateway}/office/Llama", json=body, timeout=300).status_code == 200
    (rest_reply,) = stored_replies(http, gateway, user_id, rest_db_id)
    waiting_id = rest_reply["meta"]["tool_calls"][0]["approval_id"]
    office_open(page, f"{gateway}/office/#{rest_db_id}")
    waiting = page.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
    waiting.wait_for()
    assert waiting.get_attribute("data-status") == "approval_required"
    assert "Was waiting for approval" in waiting.locator("[data-testid=tool-step-status]").text_content()
    assert waiting_id in waiting.locator("[data-testid=tool-step-detail]").text_content()
    assert waiting.locator(".approval-button").count() == 0
    screenshot(page, "office-tool-stored-waiting.png")

    tool_budget_wait(http, gateway, user_id, "delete_document")
    phone = tools_page(browser, gateway, visitor, PHONE)
    try:
        tools_set(phone, "Always", "delete_document")
        ask(phone, "Delete the document xyz.")
        phone_step = phone.locator(LAST_ASSISTANT).locator("[data-testid=tool-step]")
        phone_step.and_(phone.locator("[data-status=approval_required]")).wait_for()
        assert within_phone_width(phone_step)
        screenshot(phone, "phone-office-tool-approval.png")
        phone_step.locator("[data-testid=deny-button]").click()
        assert settled(phone, phone_step) == "denied"
        wait_done(phone)
        assert phone.uncaught == []
    finally:
        phone.context.close()


def test_the_web_toggle_grounds_replies_on_web_results_and_says_when_it_could_not(page, gateway, user_id, http):
    # Both options work from the keyboard; Enter in the Tools menu picks, it does not send.
    web = page.locator("[data-testid=web-toggle]")
    assert web.get_attribute("aria-pressed") == "false"
    web.focus()
    page.keyboard.press("Space")
    assert web.get_attribute("aria-pressed") == "true"
    tools = page.locator("[data-testid=tools-button]")
    tools.focus()
    page.keyboard.press("Enter")
    assert page.locator("[data-testid=tools-menu]").is_visible() and tools.get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.activeElement.value") == "off"
    page.keyboard.press("ArrowRight")
    assert tools.get_attribute("data-mode") == "auto"
    page.keyboard.press("Escape")
    assert page.locator("[data-testid=tools-menu]").is_hidden()
    assert page.evaluate("document.activeElement.id") == "tools-button"
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    assert page.locator("[data-testid=tools-menu]").is_hidden() and tools.get_attribute("data-mode") == "off"
    assert [f for f in page.evaluate("window.__sent") if f["type"] == "message"] == [], "nothing was sent"
    screenshot(page, "office-composer-options.png")

    ask(page, "Where is kimchi stew served?")
    wait_done(page)
    sent = last_message_frame(page)
    assert sent["google_access"] is True and "tools" not in sent
    reply = page.locator(LAST_ASSISTANT)
    chips = reply.locator("[data-testid=source-chip][data-kind=web]")
    assert chips.count() >= 1
    assert chips.first.text_content().startswith("[1] Result 1 for ") and "example.org" in chips.first.text_content()
    assert reply.locator("[data-testid=reply-notice]").count() == 0

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("[data-testid=web-toggle]").get_attribute("aria-pressed") == "true", "remembered"

    # With this user's web searches used up (the tool's burst), the reply opens with a notice instead.
    for _ in range(2):  # the rate limit's bucket refills slowly; once more should one be back already
        for _ in range(20):
            response = http.post(
                f"{gateway}/office/tools/web_search/call",
                json={"user_id": user_id, "arguments": {"query": "anything"}},
                timeout=30,
            )
            if response.status_code == 429:
                break
        ask(page, "Where is kimchi stew served?")
        wait_done(page)
        if page.locator(LAST_ASSISTANT).locator("[data-testid=reply-notice]").count():
            break
    reply = page.locator(LAST_ASSISTANT)
    notice = reply.locator("[data-testid=reply-notice]")
    assert notice.text_content().startswith("Web search was not used: ")
    assert reply.locator("[data-testid=source-chip][data-kind=web]").count() == 0
    db_id = page.evaluate("window.personaChat.state.dbId")
    assert stored_replies(http, gateway, user_id, db_id)[-1]["content"].startswith(notice.text_content())
    screenshot(page, "office-web-notice.png")
