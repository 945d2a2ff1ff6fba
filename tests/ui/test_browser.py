"""The chat UI in a real browser: Debian's chromium driven by Playwright, through real nginx.

This module runs its own stack: replies may be long (so Stop has something to stop), and
the character catalog has one extra persona whose name and greeting are HTML payloads.
Screenshots go to var/screenshots/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import socket
import string
import threading
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.auth import Visitor, account_create, signin, visitor_context, visitor_create
from tests.conftest import stack_running
from tests.ui.conftest import SCREENSHOTS
from webapp.config.env import REPO_ROOT
from webapp.launcher.stack import Stack, registry_derive

pytestmark = pytest.mark.slow

STORY = "Write a long story about a dragon who lives in a castle."
XSS_IMG = '<img src=x onerror="window.__xss = 1">'
XSS_SCRIPT = "<script>window.__xss = 2</script>"
EVIL_PERSONA = f'''
id = "mallory"
name = "{XSS_IMG.replace('"', "'")} Mallory"
language = "en"
description = "A test character whose text is an HTML payload. {XSS_SCRIPT}"
context = "Mallory speaks plainly."
greeting = "Hi {XSS_SCRIPT} {XSS_IMG.replace('"', "'")} [link](javascript:window.__xss=3)"
'''
LAST_ASSISTANT = "[data-testid=message][data-role=assistant] >> nth=-1"


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    personas = tmp_path_factory.mktemp("personas")
    shutil.copytree(REPO_ROOT / "personas", personas, dirs_exist_ok=True)
    (personas / "character" / "mallory.toml").write_text(EVIL_PERSONA)
    registry = registry_derive(
        REPO_ROOT / "models" / "registry.toml",
        tmp_path_factory.mktemp("ui-models") / "registry.toml",
        max_tokens=300,
        ignore_eos=True,
    )
    with stack_running(tmp_path_factory.mktemp("ui-var"), registry, personas=personas) as running:
        yield running


@pytest.fixture(scope="module")
def base(ui_stack: Stack) -> str:
    return f"http://localhost:{ui_stack.config.gateway_port}"


def _page(browser, stack: Stack, base: str, **context_options):
    """A new browser context signed in as a new account (`page.visitor`), and its page."""
    visitor = visitor_create(stack, base)
    context = visitor_context(browser, visitor, **context_options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.visitor = visitor
    page.set_default_timeout(60_000)
    page.uncaught = []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    return page


@pytest.fixture
def page(browser, base, ui_stack):
    page = _page(browser, ui_stack, base, viewport={"width": 1280, "height": 800})
    yield page
    uncaught = page.uncaught
    page.context.close()
    assert uncaught == [], "the page threw"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


def open_app(page, base: str, app: str) -> None:
    page.goto(f"{base}/{app}/")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("[data-testid=connection-state][data-state=open]")


def send(page, text: str) -> None:
    box = page.locator("[data-testid=message-input]")
    box.fill(text)
    box.press("Enter")


def rendered(page, text: str) -> str:
    """The text content of `text` as the page's Markdown renderer shows it."""
    return page.evaluate(
        "(t) => { const d = document.createElement('div'); d.append(PersonaMarkdown.render(t));"
        " return d.textContent; }",
        text,
    )


def words(text: str) -> str:
    return " ".join(text.split())


def stop_when_streaming(page, how: str = "button") -> str:
    """Wait until a reply is visibly streaming (text and cursor shown, not done) and stop it
    in the same instant; return the text seen at that moment."""
    action = (
        "document.querySelector('[data-testid=stop-button]').click()"
        if how == "button"
        else "document.querySelector('[data-testid=message-input]').dispatchEvent("
        "new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))"
    )
    seen = page.wait_for_function(
        f"""() => {{
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const m = all[all.length - 1];
            if (!m || m.dataset.streaming !== 'true' || !m.querySelector('.cursor')) return false;
            const text = m.querySelector('[data-testid=message-body]').textContent.trim();
            if (text.length < 3) return false;
            {action};
            return text;
        }}""",
        polling="raf",
    )
    return seen.json_value()


def wait_done(page) -> None:
    page.wait_for_function(
        """() => {
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const m = all[all.length - 1];
            return m && m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]');
        }"""
    )


def stored(base: str, app: str, db_id: str, visitor: Visitor) -> list[dict]:
    """What the API stored for the page's account (read with its personal key)."""
    response = requests.get(f"{base}/{app}/conversations/{db_id}/messages", headers=visitor.auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def conversations_of(base: str, app: str, visitor: Visitor) -> list[dict]:
    response = requests.get(f"{base}/{app}/conversations", headers=visitor.auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["conversations"]


def visitor_of(page) -> Visitor:
    return page.visitor


def test_landing_page_leads_to_both_apps(page, base):
    page.goto(f"{base}/")
    assert page.locator("a[href='/office/']").count() >= 1
    assert page.locator("a[href='/character/']").count() >= 1
    screenshot(page, "landing.png")
    page.locator("a[href='/character/']").first.click()
    page.wait_for_selector("body[data-ready=true]")
    assert page.url.endswith("/character/")


def test_character_chat_streams_stops_and_is_listed_after_reload(page, base):
    open_app(page, base, "character")
    greeting = requests.get(f"{base}/character/personas", timeout=10).json()["personas"]
    rhea = next(p for p in greeting if p["id"] == "captain-rhea")
    page.select_option("[data-testid=persona-picker]", "captain-rhea")
    first = page.locator("[data-testid=message][data-role=assistant]").first
    assert rhea["greeting"] in first.text_content()

    send(page, STORY)
    seen = stop_when_streaming(page)
    wait_done(page)
    reply = page.locator(LAST_ASSISTANT)
    assert "stopped" in reply.locator("[data-testid=reply-stats]").text_content().lower()
    final = reply.locator("[data-testid=message-body]").text_content()
    screenshot(page, "chat-character-stopped.png")

    item = page.locator("[data-testid=conversation-item]").first
    db_id = item.get_attribute("data-db-id")
    messages = stored(base, "character", db_id, visitor_of(page))
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["meta"]["finish_reason"] == "stopped" and messages[1]["meta"]["stopped_by"] == "user"
    assert 0 < messages[1]["meta"]["tokens"] < 300
    # Tokens were on screen before the reply was complete (stop_when_streaming saw them), and
    # what the page shows is the stored reply, rendered (the model may write Markdown).
    assert len(seen) >= 3
    shown = rendered(page, messages[1]["content"])
    assert words(final) == words(shown), (final, shown)

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator(f"[data-testid=conversation-item][data-db-id='{db_id}']").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message][data-role=user]').length === 1")
    assert STORY in page.locator("[data-testid=message][data-role=user]").first.text_content()
    assert words(shown) in words(page.locator(LAST_ASSISTANT).text_content())
    assert page.locator("[data-testid=persona-picker]").input_value() == "captain-rhea"
    # The greeting is shown again at the top of a reopened character chat.
    assert rhea["greeting"] in page.locator("[data-testid=message][data-role=assistant]").first.text_content()


def test_html_from_personas_users_and_the_model_is_shown_as_text(page, base):
    open_app(page, base, "character")
    page.select_option("[data-testid=persona-picker]", "mallory")
    greeting = page.locator("[data-testid=message][data-role=assistant]").first
    assert "<script>" in greeting.text_content()
    send(page, f"Repeat exactly: {XSS_IMG} {XSS_SCRIPT} [click](javascript:window.__xss=4)")
    wait_done(page)
    screenshot(page, "chat-xss.png")

    found = page.evaluate(
        """() => ({
            xss: window.__xss,
            scripts: document.querySelectorAll('[data-testid=message-list] script').length,
            images: document.querySelectorAll('[data-testid=message-list] img, select img, option img').length,
            jsLinks: document.querySelectorAll('a[href^="javascript:" i]').length,
            options: [...document.querySelectorAll('[data-testid=persona-picker] option')].map(o => o.textContent),
        })"""
    )
    assert found["xss"] is None
    assert (found["scripts"], found["images"], found["jsLinks"]) == (0, 0, 0)
    assert any("<img" in option for option in found["options"]), "the persona's name is shown as literal text"

    rendered = page.evaluate(
        """(payload) => {
            const host = document.createElement('div');
            host.append(window.PersonaMarkdown.render(payload));
            return {
                scripts: host.querySelectorAll('script, iframe, object, embed').length,
                images: host.querySelectorAll('img').length,
                handlers: [...host.querySelectorAll('*')].filter(
                    el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
                jsLinks: host.querySelectorAll('a[href^="javascript:" i], a[href^="data:" i]').length,
                links: [...host.querySelectorAll('a')].map(a => a.getAttribute('href')),
                code: host.querySelectorAll('pre code [class^="tok-"]').length,
                text: host.textContent,
            };
        }""",
        f"# Title\n{XSS_SCRIPT}\n\n{XSS_IMG}\n\n![img](x.png)\n\n[bad](javascript:alert(1)) [data](data:text/html,x)"
        " [good](https://example.com)\n\n```python\ndef add(a, b):\n    return a + b  # sum\n```\n",
    )
    assert page.evaluate("window.__xss") is None
    assert (rendered["scripts"], rendered["images"], rendered["handlers"], rendered["jsLinks"]) == (0, 0, 0, 0)
    assert rendered["links"] == ["https://example.com"] or "https://example.com" in rendered["links"]
    assert rendered["code"] > 0, "the python block is highlighted"
    assert "<script>" in rendered["text"] and "onerror" in rendered["text"]


MARKDOWN_SAMPLE = """## Release notes

Some **bold**, *emphasis*, ~~gone~~ and `inline code`; see https://example.com/docs. or <https://example.org>.
A [relative](notes.html) link and [mail](mailto:team@example.com), ![diagram](https://example.com/d.png "The diagram").

- [ ] write tests
- [x] ship it
- plain item

3. third
4. fourth

> quoted **text**

| name | count |
|:-----|------:|
| a    | 1     |

```python
def add(a, b):
    return a + b  # sum <b>
```

```html
<script>window.__xss = 5</script>
```

```nosuchlanguage
<b>kept as text</b>
```
"""

# Every element the renderer makes for MARKDOWN_SAMPLE: a fixed set, whatever the text says.
MARKDOWN_ELEMENTS = {
    *("a", "blockquote", "br", "button", "code", "del", "div", "em", "h2", "li", "ol", "p", "path", "pre"),
    *("span", "strong", "svg", "table", "tbody", "td", "th", "thead", "tr", "ul"),
}


def test_markdown_is_built_from_markdown_it_tokens_with_highlight_js_code(page, base):
    open_app(page, base, "character")
    found = page.evaluate(
        """(text) => {
            const host = document.createElement('div');
            host.className = 'message-body md';
            host.append(window.PersonaMarkdown.render(text));
            const q = (s) => host.querySelector(s);
            const blocks = [...host.querySelectorAll('.md-code')];
            return {
                heading: q('h2.md-heading') && q('h2.md-heading').textContent,
                strong: q('p strong') && q('p strong').textContent,
                del: q('del') && q('del').textContent,
                inlineCode: q('code.md-inline-code') && q('code.md-inline-code').textContent,
                links: [...host.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.textContent.trim(),
                                                                   a.target, a.rel, a.className]),
                text: host.textContent,
                tasks: [...host.querySelectorAll('li.md-task')].map((li) => li.textContent),
                olStart: q('ol') && q('ol').start,
                quote: q('blockquote strong') && q('blockquote strong').textContent,
                table: Boolean(q('.md-table-wrap > table > thead th')),
                align: q('tbody td:last-child') && q('tbody td:last-child').style.textAlign,
                images: host.querySelectorAll('img').length,
                elements: [...new Set([...host.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()))].sort(),
                blocks: blocks.map((b) => ({
                    lang: b.dataset.lang || '',
                    label: b.querySelector('.md-code-lang').textContent,
                    copy: b.querySelector('button.md-code-copy').getAttribute('aria-label'),
                    tokens: [...b.querySelectorAll('pre code [class^="tok-"]')].map((t) => t.className),
                    code: b.querySelector('pre code').textContent,
                })),
            };
        }""",
        MARKDOWN_SAMPLE,
    )
    assert found["heading"] == "Release notes"
    assert (found["strong"], found["del"], found["inlineCode"]) == ("bold", "gone", "inline code")
    links = {href: (label, target, rel, cls) for href, label, target, rel, cls in found["links"]}
    assert links["https://example.com/docs"][0] == "https://example.com/docs", "a bare address, without its period"
    assert links["https://example.org"][0] == "https://example.org"
    assert links["mailto:team@example.com"][0] == "mail"
    image = links["https://example.com/d.png"]
    assert image[0] == "diagram" and "md-image-link" in image[3]
    assert found["images"] == 0, "an image is a link, never loaded"
    assert all(target == "_blank" and rel == "noopener noreferrer nofollow" for _, target, rel, _ in links.values())
    assert "notes.html" not in links and "[relative](notes.html)" in found["text"], "a refused link stays as written"
    assert found["tasks"] == ["☐ write tests", "☑ ship it"]
    assert found["olStart"] == 3 and found["quote"] == "text" and found["table"] and found["align"] == "right"
    assert set(found["elements"]) <= MARKDOWN_ELEMENTS, found["elements"]
    python, html, unknown = found["blocks"]
    assert (python["lang"], python["label"], python["copy"]) == ("python", "python", "Copy code (python)")
    assert {"tok-keyword", "tok-comment"} <= set(python["tokens"]), python["tokens"]
    assert python["code"] == "def add(a, b):\n    return a + b  # sum <b>"
    assert html["tokens"] and html["code"] == "<script>window.__xss = 5</script>"
    assert unknown["tokens"] == [] and unknown["code"] == "<b>kept as text</b>"
    assert page.evaluate("window.__xss") is None

    # A reply still streaming: an unclosed fence is already a code block, a dangling ** stays text.
    streaming = page.evaluate(
        """() => {
            const host = document.createElement('div');
            host.append(window.PersonaMarkdown.render('Here **it comes:\\n\\n```js\\nconst a = 1;'));
            return [host.querySelector('p').textContent, host.querySelector('.md-code code').textContent,
                    host.querySelectorAll('.md-code [class^="tok-"]').length];
        }"""
    )
    assert streaming[0] == "Here **it comes:" and streaming[1] == "const a = 1;" and streaming[2] > 0

    # Shown as a reply would be, for the screenshot; its code block's Copy copies the code.
    page.evaluate(
        """(text) => {
            const article = document.createElement('article');
            article.className = 'message message-assistant';
            const main = document.createElement('div');
            main.className = 'message-main';
            const body = document.createElement('div');
            body.className = 'message-body md';
            body.append(window.PersonaMarkdown.render(text));
            main.append(body);
            article.append(main);
            document.querySelector('[data-testid=message-list]').append(article);
            document.getElementById('intro').hidden = true;
        }""",
        MARKDOWN_SAMPLE,
    )
    page.locator("[data-testid=message-list] .md-code").first.scroll_into_view_if_needed()
    screenshot(page, "markdown.png")
    copy = page.locator("[data-testid=message-list] .md-code-copy").first
    copy.click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=message-list] .md-code-copy').textContent === 'Copied'"
    )
    assert page.evaluate("navigator.clipboard.readText()") == python["code"]


class _HeadModules(HTMLParser):
    """The module scripts and modulepreload links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[str] = []
        self.preloads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("type") == "module":
            self.entries.append(a["src"] or "")
        elif tag == "link" and a.get("rel") == "modulepreload":
            self.preloads.append(a["href"] or "")


IMPORT_FROM = re.compile(
    r"""^\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]""", re.M
)


def module_graph(base: str, entry: str) -> dict[str, str]:
    """Every module the entry imports, transitively, fetched through nginx: url -> source."""
    graph: dict[str, str] = {}
    todo = [urljoin(base, entry)]
    while todo:
        url = todo.pop()
        if url in graph:
            continue
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, url
        # A module script must come with a JavaScript MIME type (nosniff is on).
        assert response.headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript"), (
            url,
            response.headers["Content-Type"],
        )
        graph[url] = response.text
        for match in IMPORT_FROM.finditer(response.text if "/vendor/" not in url else ""):
            specifier = match.group(1) or match.group(2)
            assert specifier.startswith("."), f"{url} imports {specifier!r}: only relative imports, no CDN"
            todo.append(urljoin(url, specifier))
    return graph


@pytest.mark.parametrize("app", ["character", "office"])
def test_each_page_loads_native_modules_and_preloads_exactly_its_graph(base, app, ui_stack):
    with signin(base, account_create(ui_stack)) as session:
        html = session.get(f"{base}/{app}/", timeout=10).text
    head = _HeadModules()
    head.feed(html.split("<body", 1)[0])
    (entry,) = head.entries
    assert entry == f"/{app}/static/chat/{'office/' if app == 'office' else ''}main.js"
    graph = module_graph(base, entry)
    modules = {url.removeprefix(base) for url in graph}
    assert set(head.preloads) == modules - {entry}, "the modulepreload links are the entry's imports, no more, no less"
    office = {m for m in modules if "/static/chat/office/" in m}
    if app == "character":
        assert office == set(), "the character page never loads office code"
    else:
        assert {m.rsplit("/", 1)[1] for m in office} >= {"main.js", "documents.js", "slash.js", "tool-steps.js"}
    # Our own modules never assign innerHTML; the one place is markdown.js's highlight(), for
    # highlight.js's escaped output.
    own = {url: text for url, text in graph.items() if "/vendor/" not in url}
    assignments = {
        url.rsplit("/static/chat/", 1)[1]: len(re.findall(r"\.innerHTML\s*=", text)) for url, text in own.items()
    }
    assert {name: n for name, n in assignments.items() if n} == {"markdown.js": 1}


def test_the_character_page_runs_without_office_modules(page, base):
    open_app(page, base, "character")
    loaded = page.evaluate("performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname)")
    assert "/character/static/chat/markdown.js" in loaded
    assert not [p for p in loaded if "/static/chat/office/" in p]
    assert page.evaluate("window.personaChat.state.options") is None
    open_app(page, base, "office")
    loaded = page.evaluate("performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname)")
    assert "/office/static/chat/office/tool-steps.js" in loaded
    assert page.evaluate("window.personaChat.state.options") == {}


def test_korean_input_ime_enter_and_keyboard_shortcuts(page, base):
    open_app(page, base, "office")
    box = page.locator("[data-testid=message-input]")
    box.click()
    page.keyboard.insert_text("안녕하세요")
    # Enter that confirms a Hangul composition must not send.
    page.evaluate(
        """() => document.querySelector('[data-testid=message-input]').dispatchEvent(
            new KeyboardEvent('keydown',
                {key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true}))"""
    )
    page.wait_for_timeout(300)
    assert page.locator("[data-testid=message][data-role=user]").count() == 0
    assert box.input_value() == "안녕하세요"

    page.keyboard.press("Shift+Enter")
    page.keyboard.insert_text("용을 주인공으로 긴 이야기를 써 주세요. " + STORY)
    assert "\n" in box.input_value()
    assert page.locator("[data-testid=message][data-role=user]").count() == 0

    page.keyboard.press("Enter")
    user = page.locator("[data-testid=message][data-role=user]").first
    user.wait_for()
    assert user.text_content().strip().startswith("안녕하세요")
    assert box.input_value() == ""

    stop_when_streaming(page, how="escape")
    wait_done(page)
    assert "stopped" in page.locator(LAST_ASSISTANT).locator("[data-testid=reply-stats]").text_content().lower()
    screenshot(page, "chat-korean.png")


def test_reply_stats_copy_regenerate_and_delete(page, base):
    open_app(page, base, "office")
    send(page, "Write a Python function that adds two numbers. Use a code block.")
    wait_done(page)
    reply = page.locator(LAST_ASSISTANT)
    stats = reply.locator("[data-testid=reply-stats]").text_content()
    assert "TTFT" in stats and "tok/s" in stats
    screenshot(page, "chat-office.png")

    db_id = page.locator("[data-testid=conversation-item]").first.get_attribute("data-db-id")
    visitor = visitor_of(page)
    first_reply = stored(base, "office", db_id, visitor)[1]

    reply.locator("[data-testid=copy-reply]").click()
    assert page.evaluate("navigator.clipboard.readText()") == first_reply["content"]

    page.locator("[data-testid=regenerate]").click()
    # The new answer lands in the same message, as its second alternative.
    page.wait_for_function(
        """(id) => {
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const m = all[all.length - 1];
            const counter = m && m.querySelector('[data-testid=swipe-counter]');
            return m.dataset.messageId === id && m.dataset.streaming === 'false' && counter
                && counter.textContent === '2/2';
        }""",
        arg=first_reply["id"],
    )
    assert page.locator("[data-testid=message][data-role=assistant]").count() == 1, "one reply, two alternatives"
    messages = stored(base, "office", db_id, visitor)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    reply_stored = messages[1]
    assert reply_stored["id"] == first_reply["id"] and reply_stored["meta"]["swipe_id"] == 1
    assert reply_stored["meta"]["swipes"][0]["content"] == first_reply["content"]

    # Swipe back to the first answer: the page shows it and the store says it is the one shown.
    counter = reply.locator("[data-testid=swipe-counter]")
    assert counter.inner_text() == "2/2"
    reply.locator("[data-testid=swipe-prev]").click()
    page.wait_for_function("() => document.querySelector('[data-testid=swipe-counter]').textContent === '1/2'")
    assert stored(base, "office", db_id, visitor)[1]["meta"]["swipe_id"] == 0
    reply.locator("[data-testid=copy-reply]").click()
    assert page.evaluate("navigator.clipboard.readText()") == first_reply["content"], "the shown text is the first"

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"[data-testid=conversation-item][data-db-id='{db_id}'] [data-testid=delete-conversation]").click()
    page.wait_for_selector(f"[data-testid=conversation-item][data-db-id='{db_id}']", state="detached")
    gone = requests.get(f"{base}/office/conversations/{db_id}/messages", headers=visitor.auth, timeout=10)
    assert gone.status_code == 404


def test_phone_layout_has_a_drawer(browser, base, ui_stack):
    page = _page(browser, ui_stack, base, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        open_app(page, base, "character")
        conversations = page.locator("[data-testid=conversation-list]")
        assert not conversations.is_visible(), "the conversation list hides in a drawer on a phone"
        composer = page.locator("[data-testid=message-input]")
        box = composer.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        screenshot(page, "phone-chat.png")
        page.locator("[data-testid=menu-button]").click()
        conversations.wait_for(state="visible")
        screenshot(page, "phone-drawer.png")
        assert page.uncaught == []
    finally:
        page.context.close()


def test_connection_lost_shows_reconnecting_and_recovers(page, base, ui_stack):
    open_app(page, base, "character")
    ui_stack.app_stop("character")
    try:
        banner = page.locator("[data-testid=status-banner]")
        # One check of all three at one moment: while the app drains, the page may reconnect
        # to it once more before it exits, so the banner can come and go.
        page.wait_for_function(
            """() => {
                const banner = document.querySelector('[data-testid=status-banner]');
                const state = document.querySelector('[data-testid=connection-state]').dataset.state;
                return !banner.hidden && /reconnect/i.test(banner.textContent) && state !== 'open';
            }"""
        )
        screenshot(page, "chat-reconnecting.png")
    finally:
        ui_stack.app_start("character")
        ui_stack.wait_app_ready("character")
    page.wait_for_selector("[data-testid=connection-state][data-state=open]")
    assert not banner.is_visible() or "reconnect" not in (banner.text_content() or "").lower()
    send(page, "Hello again!")
    wait_done(page)


class DroppingProxy:
    """A TCP proxy in front of nginx whose connections can all be dropped at once, the way a
    network drops them: no WebSocket close frame (the page and the app see 1006)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def drop_all(self) -> None:
        with self.lock:
            dropped, self.open = self.open, []
        for sock in dropped:
            # shutdown wakes the pump threads blocked in recv (a bare close would not); neither
            # side gets a WebSocket close frame.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.drop_all()


def test_a_dropped_connection_resumes_the_reply_on_screen(browser, ui_stack):
    proxy = DroppingProxy(ui_stack.config.gateway_port)
    via = f"http://localhost:{proxy.port}"
    page = _page(browser, ui_stack, via, viewport={"width": 1280, "height": 800})
    try:
        open_app(page, via, "character")
        page.select_option("[data-testid=persona-picker]", "captain-rhea")
        send(page, STORY)
        page.wait_for_function(
            """() => {
                const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
                const m = all[all.length - 1];
                return m && m.dataset.streaming === 'true'
                    && m.querySelector('[data-testid=message-body]').textContent.trim().length > 20;
            }"""
        )
        proxy.drop_all()
        page.wait_for_function(
            "() => /reconnect/i.test(document.querySelector('[data-testid=status-banner]').textContent)"
        )
        screenshot(page, "chat-resuming.png")
        wait_done(page)  # reconnected and resumed: the same reply ran to its end
        reply = page.locator(LAST_ASSISTANT)
        db_id = page.evaluate("window.personaChat.state.dbId")
        messages = stored(via, "character", db_id, visitor_of(page))
        assert [m["role"] for m in messages] == ["user", "assistant"], "one reply, written once"
        assert messages[1]["meta"]["finish_reason"] == "length", "never stopped: it ran to max_tokens"
        assert reply.get_attribute("data-message-id") == messages[1]["id"]
        shown = reply.locator("[data-testid=message-body]").text_content()
        assert words(shown) == words(rendered(page, messages[1]["content"])), "nothing lost, nothing twice"
        assert reply.locator("[data-badge=interrupted]").count() == 0
        assert page.uncaught == []
    finally:
        page.context.close()
        proxy.close()


def test_a_long_chat_opens_on_its_newest_page_and_loads_earlier_ones_going_up(page, base):
    """The thread reads a chat by pages. The browser's page size is cut to one message (the
    server still answers every page itself), so one stored turn is two pages: the reply,
    then the user's message, which starts the chat, so the greeting shows above it."""
    visitor = visitor_of(page)
    db_id = str(uuid.uuid4())
    turn = requests.post(
        f"{base}/character/Llama",
        json={"input_data": "Hello!", "persona": "captain-rhea", "db_id": db_id},
        headers=visitor.auth,
        timeout=180,
    )
    assert turn.status_code == 200, turn.text
    user, reply = stored(base, "character", db_id, visitor)
    asked: list[str] = []

    def one_per_page(route) -> None:
        url = route.request.url
        asked.append(url)
        route.continue_(url=url.replace("limit=50", "limit=1"))

    page.route(f"**/character/conversations/{db_id}/messages?*", one_per_page)
    open_app(page, base, "character")
    page.locator(f"[data-testid=conversation-item][data-db-id='{db_id}']").click()

    page.wait_for_selector("[data-testid=message][data-greeting]")
    page.wait_for_selector("[data-testid=older-messages]", state="detached")
    shown = page.locator("[data-testid=message-list] > [data-testid=message]")
    assert [shown.nth(i).get_attribute("data-message-id") for i in range(shown.count())] == [
        None,  # the greeting, shown once the first page is reached
        user["id"],
        reply["id"],
    ]
    assert shown.first.get_attribute("data-greeting") == "true"
    assert len(asked) == 2 and "before=" not in asked[0]
    assert f"before={reply['seq']}" in asked[1], "the second page ends where the first starts"


def test_a_message_is_edited_branched_from_deleted_exported_and_imported(page, base):
    open_app(page, base, "office")
    send(page, "Say hello.")
    wait_done(page)
    db_id = page.locator("[data-testid=conversation-item]").first.get_attribute("data-db-id")
    visitor = visitor_of(page)
    user, reply = stored(base, "office", db_id, visitor)

    mine = page.locator(f"[data-testid=message][data-message-id='{user['id']}']")
    mine.locator("[data-testid=edit-message]").click()
    box = mine.locator("[data-testid=edit-input]")
    assert box.input_value() == "Say hello."
    box.fill("Say hello, edited.")
    mine.locator("[data-testid=edit-save]").click()
    mine.locator("[data-testid=edit-input]").wait_for(state="detached")
    assert mine.locator("[data-testid=message-body]").inner_text() == "Say hello, edited."
    edited = stored(base, "office", db_id, visitor)[0]
    assert edited["content"] == "Say hello, edited."
    assert [e["content"] for e in edited["meta"]["edits"]] == ["Say hello."]

    # Branch at the reply: a new chat with the same two messages opens, and says where it came from.
    page.locator(f"[data-testid=message][data-message-id='{reply['id']}'] [data-testid=branch-message]").click()
    page.wait_for_selector("[data-testid=lineage-parent]")
    branch_id = page.evaluate("location.hash.slice(1)")
    assert branch_id != db_id
    assert page.locator("[data-testid=lineage-parent]").get_attribute("data-db-id") == db_id
    branched = stored(base, "office", branch_id, visitor)
    assert [(m["role"], m["content"]) for m in branched] == [
        ("user", "Say hello, edited."),
        ("assistant", reply["content"]),
    ]
    item = page.locator(f"[data-testid=conversation-item][data-db-id='{branch_id}']")
    assert item.locator("[data-testid=conversation-branch]").count() == 1
    page.locator("[data-testid=lineage-parent]").click()
    page.wait_for_selector(f"[data-testid=lineage-child][data-db-id='{branch_id}']")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"[data-testid=message][data-message-id='{reply['id']}'] [data-testid=delete-message]").click()
    page.wait_for_selector(f"[data-testid=message][data-message-id='{reply['id']}']", state="detached")
    assert [m["id"] for m in stored(base, "office", db_id, visitor)] == [user["id"]]
    assert len(stored(base, "office", branch_id, visitor)) == 2, "deleting in one branch leaves the other"
    page.reload()
    page.wait_for_selector(f"[data-testid=message][data-message-id='{user['id']}']")
    assert page.locator("[data-testid=message][data-role=assistant]").count() == 0, "gone after a reload too"

    # Export the branch as SillyTavern JSONL from the list, and import that file back.
    item = page.locator(f"[data-testid=conversation-item][data-db-id='{branch_id}']")
    item.hover()
    with page.expect_download() as download:
        item.locator("[data-testid=export-conversation]").click()
    exported = Path(download.value.path()).read_text()
    header, *lines = [json.loads(line) for line in exported.splitlines()]
    assert "character_name" in header and [line["mes"] for line in lines] == [m["content"] for m in branched]
    before = {c["db_id"] for c in conversations_of(base, "office", visitor)}
    page.locator("[data-testid=import-chat]").set_input_files(
        files=[{"name": "branch.jsonl", "mimeType": "application/jsonl", "buffer": exported.encode()}]
    )
    page.wait_for_function("(known) => location.hash && !known.includes(location.hash.slice(1))", arg=list(before))
    imported_id = page.evaluate("location.hash.slice(1)")
    assert [(m["role"], m["content"]) for m in stored(base, "office", imported_id, visitor)] == [
        (m["role"], m["content"]) for m in branched
    ]
    page.wait_for_selector("[data-testid=message-list] > [data-testid=message] >> nth=1")
    shown = page.locator("[data-testid=message-list] > [data-testid=message] [data-testid=message-body]")
    assert shown.first.inner_text().strip() == "Say hello, edited."


def test_search_finds_a_word_and_opens_the_chat_at_that_message(page, base):
    """A 120-message chat is imported; search finds a word from message 5 (by its plural,
    and a Korean word by another inflection), and the hit opens the chat scrolled to that
    message, with every page down to it loaded."""
    visitor = visitor_of(page)
    # Letters, so one term; ending in "t", so that its plural is the one the search strips
    # (a random last letter failed about one run in nine: "...s", "...u", "...i" + "s" are kept whole).
    word = "kumquat" + "".join(random.choices(string.ascii_lowercase, k=5)) + "t"
    lines = [{"user_name": "You", "character_name": "Bench", "create_date": "2026-1-1@10h00m00s", "chat_metadata": {}}]
    for i in range(120):
        text = f"filler line {i}"
        if i == 5:
            text = f"Remember the {word} order for Friday"
        if i == 7:
            text = "회의록에서 결정을 찾았어요"
        lines.append({"name": "You", "is_user": i % 2 == 0, "is_system": False, "mes": text, "send_date": i * 1000})
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    made = requests.post(
        f"{base}/office/conversations/import",
        files={"file": ("search.jsonl", data)},
        data={"title": "Fruit orders"},
        headers=visitor.auth,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    db_id = made.json()["conversation"]["db_id"]
    target = stored_all(base, "office", db_id, visitor)[5]

    open_app(page, base, "office")
    page.locator("[data-testid=search-input]").fill(word + "s")
    hit = page.locator(f"[data-testid=search-hit][data-message-id='{target['id']}']")
    hit.wait_for()
    assert page.locator("[data-testid=search-hit]").count() == 1
    assert page.locator("[data-testid=conversation-list]").is_hidden(), "the hits stand in for the list"
    assert hit.locator("mark").inner_text() == word
    assert "Fruit orders" in hit.inner_text()
    screenshot(page, "search-hits.png")
    hit.locator("button").click()

    found = page.locator(f"[data-testid=message][data-message-id='{target['id']}']")
    found.wait_for()
    assert found.get_attribute("data-found") == "true"
    assert found.is_visible() and found.evaluate(
        "(m) => { const r = m.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; }"
    ), "scrolled into view"
    assert page.evaluate("location.hash.slice(1)") == db_id
    screenshot(page, "search-opened.png")

    page.locator("[data-testid=search-input]").fill("회의록을")
    page.locator("[data-testid=search-input]").press("Enter")
    korean = stored_all(base, "office", db_id, visitor)[7]
    page.locator(f"[data-testid=search-hit][data-message-id='{korean['id']}']").wait_for()
    page.locator("[data-testid=search-input]").press("Escape")
    page.locator("[data-testid=conversation-list]").wait_for(state="visible")
    assert page.locator("[data-testid=search-results]").is_hidden()


def stored_all(base: str, app: str, db_id: str, visitor: Visitor) -> list[dict]:
    response = requests.get(
        f"{base}/{app}/conversations/{db_id}/messages", params={"limit": 500}, headers=visitor.auth, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_a_group_chat_of_two_characters_in_the_browser(page, base):
    """A group of two, everyone in order: one message, two replies, each by its member;
    then a muted member is skipped by the next round but can be made to speak."""
    visitor = visitor_of(page)
    open_app(page, base, "character")
    page.locator("[data-testid=group-new]").click()
    dialog = page.locator("[data-testid=group-dialog]")
    dialog.locator("[data-testid=group-choice][value=captain-rhea]").check()
    dialog.locator("[data-testid=group-choice][value=seoyeon]").check()
    dialog.locator("[data-testid=group-form-activation]").select_option("list")
    dialog.locator("[data-testid=group-create]").click()
    page.wait_for_selector("[data-testid=group-bar]:not([hidden])")
    members = page.locator("[data-testid=group-member]")
    assert [members.nth(i).get_attribute("data-member") for i in range(members.count())] == ["captain-rhea", "seoyeon"]
    db_id = page.evaluate("location.hash.slice(1)")
    item = page.locator(f"[data-testid=conversation-item][data-db-id='{db_id}']")
    assert item.get_attribute("data-group") == "true" and "서연" in item.inner_text()

    send(page, "Hello, crew!")
    replies = page.locator("[data-testid=message][data-role=assistant]")
    page.wait_for_function(
        """() => {
            const done = [...document.querySelectorAll('[data-testid=message][data-role=assistant]')]
              .filter((m) => m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]'));
            return done.length === 2;
        }"""
    )
    assert [replies.nth(i).locator(".message-name").inner_text() for i in range(2)] == ["Captain Rhea", "서연"]
    user, first, second = stored(base, "character", db_id, visitor)
    assert user["content"] == "Hello, crew!"
    assert [first["meta"]["speaker"], second["meta"]["speaker"]] == ["captain-rhea", "seoyeon"]
    assert [replies.nth(i).get_attribute("data-message-id") for i in range(2)] == [first["id"], second["id"]]

    seoyeon = page.locator("[data-testid=group-member][data-member=seoyeon]")
    seoyeon.locator("[data-testid=group-mute]").click()
    page.wait_for_selector("[data-testid=group-member][data-member=seoyeon].is-muted")
    groups = requests.get(f"{base}/character/groups/{db_id}", headers=visitor.auth, timeout=10).json()
    assert groups["muted"] == ["seoyeon"]
    page.locator("[data-testid=group-member][data-member=seoyeon] [data-testid=group-speak]").click()
    page.wait_for_function(
        """() => {
            const done = [...document.querySelectorAll('[data-testid=message][data-role=assistant]')]
              .filter((m) => m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]'));
            return done.length === 3;
        }"""
    )
    third = stored(base, "character", db_id, visitor)[-1]
    assert third["meta"]["speaker"] == "seoyeon", "speak now: a muted member too"

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("[data-testid=group-bar]:not([hidden])")
    names = page.locator("[data-testid=message][data-role=assistant] .message-name")
    names.nth(2).wait_for()
    assert [names.nth(i).inner_text() for i in range(3)] == ["Captain Rhea", "서연", "서연"]
    screenshot(page, "group-chat.png")


def test_an_earlier_reply_gets_another_answer_and_an_edit_is_sent_again_on_a_branch(page, base):
    visitor = visitor_of(page)
    open_app(page, base, "office")
    for text in ("First question.", "Second question."):
        send(page, text)
        wait_done(page)
    db_id = page.locator("[data-testid=conversation-item]").first.get_attribute("data-db-id")
    _, r1, u2, r3 = stored(base, "office", db_id, visitor)
    swiped = requests.post(
        f"{base}/office/conversations/{db_id}/messages/{r1['id']}/swipes", headers=visitor.auth, timeout=180
    )
    assert swiped.status_code == 200, swiped.text
    page.reload()
    earlier = page.locator(f"[data-testid=message][data-message-id='{r1['id']}']")
    counter = earlier.locator("[data-testid=swipe-counter]")
    assert counter.inner_text() == "2/2"

    def touch_swipe(dx: int) -> None:
        earlier.evaluate(
            """(m, dx) => {
                const at = (type, x) => m.dispatchEvent(new PointerEvent(type, {
                    pointerType: 'touch', clientX: x, clientY: 300, bubbles: true }));
                at('pointerdown', 400);
                at('pointerup', 400 + dx);
            }""",
            dx,
        )

    touch_swipe(+120)  # left to right: the alternative before
    earlier.locator("[data-testid=swipe-counter]:text-is('1/2')").wait_for()
    assert stored(base, "office", db_id, visitor)[1]["meta"]["swipe_id"] == 0
    touch_swipe(-120)  # right to left: the next one
    earlier.locator("[data-testid=swipe-counter]:text-is('2/2')").wait_for()
    touch_swipe(-30)  # too short to be a swipe
    assert stored(base, "office", db_id, visitor)[1]["meta"]["swipe_id"] == 1

    earlier.locator("[data-testid=swipe-next]").click()  # past the last: a third answer, in place
    page.wait_for_selector(f"[data-testid=message][data-message-id='{r1['id']}'] >> text=3/3")
    after = stored(base, "office", db_id, visitor)
    assert len(after[1]["meta"]["swipes"]) == 3 and after[1]["meta"]["swipe_id"] == 2
    assert after[1]["meta"]["prompt"]["history_message_ids"] == [], "answered as it was then"
    assert after[3] == r3, "the later reply is untouched"

    mine = page.locator(f"[data-testid=message][data-message-id='{u2['id']}']")
    mine.locator("[data-testid=edit-message]").click()
    mine.locator("[data-testid=edit-input]").fill("Second question, asked better.")
    mine.locator("[data-testid=edit-resend]").click()
    page.wait_for_function("(old) => location.hash && location.hash.slice(1) !== old", arg=db_id)
    branch_id = page.evaluate("location.hash.slice(1)")
    wait_done(page)
    branched = stored(base, "office", branch_id, visitor)
    assert [(m["role"], m["content"]) for m in branched[:3]] == [
        ("user", "First question."),
        ("assistant", after[1]["content"]),
        ("user", "Second question, asked better."),
    ]
    assert len(branched) == 4 and branched[3]["role"] == "assistant", "the edited message got its own reply"
    shown = page.locator("[data-testid=message]").evaluate_all("(ms) => ms.map((m) => m.dataset.messageId)")
    assert shown[-1] == branched[3]["id"]
    assert stored(base, "office", db_id, visitor)[2]["content"] == "Second question.", "the past stays as it was"


def test_continue_writes_more_of_the_last_reply_in_the_same_bubble(page, base):
    visitor = visitor_of(page)
    open_app(page, base, "office")
    send(page, "Tell me a long story.")
    wait_done(page)
    db_id = page.locator("[data-testid=conversation-item]").first.get_attribute("data-db-id")
    _, reply = stored(base, "office", db_id, visitor)
    assert reply["meta"]["finish_reason"] == "length"  # the UI stack's replies run to the limit
    bubble = page.locator(f"[data-testid=message][data-message-id='{reply['id']}']")

    bubble.locator("[data-testid=continue-reply]").click()
    page.wait_for_function(
        "(id) => { const m = document.querySelector(`[data-testid=message][data-message-id='${id}']`);"
        " return m && m.dataset.streaming === 'false' && m.querySelector('[data-testid=reply-stats]'); }",
        arg=reply["id"],
        polling=200,
    )
    page.wait_for_function("() => !window.personaChat.state.streaming")

    after = stored(base, "office", db_id, visitor)
    assert len(after) == 2 and after[1]["id"] == reply["id"], "the same reply, not a new one"
    assert after[1]["content"].startswith(reply["content"]) and len(after[1]["content"]) > len(reply["content"])
    assert after[1]["meta"]["continued"] == 1
    assert page.locator("[data-testid=message][data-role=assistant]").count() == 1
    shown = bubble.locator("[data-testid=message-body]").evaluate("(b) => b.textContent")
    assert words(shown) == words(rendered(page, after[1]["content"])), "the bubble shows the stored reply"
