"""web_search against a real local HTTP server that answers like SearxNG's JSON API."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from webapp.tools.registry import ToolArgumentError, ToolContext, ToolFailedError, ToolNotConfiguredError, ToolRegistry
from webapp.tools.web_search import (
    SearxngClient,
    WebResult,
    WebSearchError,
    web_search_handler_make,
    web_search_tool_spec,
)

CTX = ToolContext(user_id="alice")


def result_item(n: int, **overrides: Any) -> dict[str, Any]:
    item = {
        "title": f"Result {n}",
        "url": f"https://example.org/{n}",
        "content": f"Snippet {n}",
        "engine": "duckduckgo",
        "score": 1.0 / (n + 1),
    }
    item.update(overrides)
    return item


@dataclass
class FakeSearxng:
    """What the fake server answers, and what it was asked."""

    base_url: str = ""
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def results_answer(self, results: list[Any]) -> None:
        self.body = json.dumps(
            {"query": "q", "number_of_results": len(results), "results": results, "unresponsive_engines": []}
        ).encode()


@pytest.fixture
def searxng() -> Iterator[FakeSearxng]:
    fake = FakeSearxng()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            fake.requests.append({"path": parts.path, "query": parse_qs(parts.query), "headers": dict(self.headers)})
            if fake.delay_s:
                fake.stop.wait(fake.delay_s)
            try:
                self.send_response(fake.status)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_search_sends_searxng_parameters_and_parses_results(searxng: FakeSearxng) -> None:
    searxng.results_answer([result_item(1), result_item(2)])
    client = SearxngClient(searxng.base_url + "/", user_agent="test-agent/1")

    results = client.search("persona chat", k=5, language="de")

    assert results == [
        WebResult(title="Result 1", url="https://example.org/1", snippet="Snippet 1"),
        WebResult(title="Result 2", url="https://example.org/2", snippet="Snippet 2"),
    ]
    [request] = searxng.requests
    assert request["path"] == "/search"
    assert request["query"] == {"q": ["persona chat"], "format": ["json"], "language": ["de"]}
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["User-Agent"] == "test-agent/1"


def test_language_is_left_out_unless_given(searxng: FakeSearxng) -> None:
    searxng.results_answer([])
    assert SearxngClient(searxng.base_url).search("x & y=1") == []
    assert searxng.requests[0]["query"] == {"q": ["x & y=1"], "format": ["json"]}


def test_only_http_urls_are_kept_and_snippets_are_cleaned(searxng: FakeSearxng) -> None:
    long_text = "word \n\t " * 200
    searxng.results_answer(
        [
            result_item(1, url="javascript:alert(1)"),
            result_item(2, url="file:///etc/passwd"),
            result_item(3, url="ftp://example.org/x"),
            result_item(4, url=None),
            {"title": "no url at all", "content": "x"},
            "not an object",
            result_item(5, url="https://"),
            result_item(6, url="http://plain.example/page", content=long_text, title="  Spaced \n title  "),
            result_item(7, url="http://plain.example/page"),  # duplicate
            result_item(8, title="", content=None),
        ]
    )

    results = SearxngClient(searxng.base_url).search("q", k=10)

    assert [r.url for r in results] == ["http://plain.example/page", "https://example.org/8"]
    first, second = results
    assert first.title == "Spaced title"
    assert len(first.snippet) == 500
    assert first.snippet.startswith("word word ") and first.snippet.endswith("…")
    assert "\n" not in first.snippet
    assert (second.title, second.snippet) == ("https://example.org/8", "")


def test_k_limits_the_results(searxng: FakeSearxng) -> None:
    searxng.results_answer([result_item(n) for n in range(1, 9)])
    client = SearxngClient(searxng.base_url)

    assert [r.url for r in client.search("q", k=3)] == [f"https://example.org/{n}" for n in (1, 2, 3)]
    assert len(client.search("q", k=10)) == 8
    with pytest.raises(ValueError, match="k must be from 1 to 10"):
        client.search("q", k=11)
    with pytest.raises(ValueError, match="k must be from 1 to 10"):
        client.search("q", k=0)


def test_403_says_to_enable_the_json_format(searxng: FakeSearxng) -> None:
    searxng.status, searxng.body, searxng.content_type = 403, b"<html>Forbidden</html>", "text/html"

    with pytest.raises(WebSearchError) as caught:
        SearxngClient(searxng.base_url).search("q")

    error = caught.value
    assert (error.status, error.code) == (502, "search_failed")
    assert isinstance(error, ToolFailedError)
    assert "403" in str(error)
    assert "enable `json` in search.formats of settings.yml" in str(error)


def test_server_error_is_reported_with_its_status(searxng: FakeSearxng) -> None:
    searxng.status, searxng.body = 500, b"oops"
    with pytest.raises(WebSearchError, match="answered HTTP 500"):
        SearxngClient(searxng.base_url).search("q")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>SearXNG</body></html>", "did not answer JSON"),
        (b"{not json", "did not answer JSON"),
        (b"\xff\xfe\x00garbage", "did not answer JSON"),
        (b'{"answers": []}', "without a 'results' list"),
        (b"[1, 2]", "without a 'results' list"),
    ],
)
def test_unusable_bodies_are_reported(searxng: FakeSearxng, body: bytes, message: str) -> None:
    searxng.body = body
    with pytest.raises(WebSearchError, match=message):
        SearxngClient(searxng.base_url).search("q")


def test_slow_server_times_out(searxng: FakeSearxng) -> None:
    searxng.results_answer([result_item(1)])
    searxng.delay_s = 10.0
    client = SearxngClient(searxng.base_url, timeout_s=0.3)

    started = time.monotonic()
    with pytest.raises(WebSearchError, match=r"did not answer within 0\.3 s"):
        client.search("q")
    assert time.monotonic() - started < 3.0


def test_connection_refused_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    with pytest.raises(WebSearchError, match="connection refused"):
        SearxngClient(f"http://127.0.0.1:{port}", timeout_s=2.0).search("q")


def test_credentials_in_the_base_url_stay_out_of_messages(searxng: FakeSearxng) -> None:
    searxng.status = 500
    port = searxng.base_url.rsplit(":", 1)[1]
    with pytest.raises(WebSearchError) as caught:
        SearxngClient(f"http://admin:s3cret@127.0.0.1:{port}").search("q")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("base_url", ["ftp://example.org", "example.org", "file:///tmp/x", "http://"])
def test_base_url_must_be_http(base_url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        SearxngClient(base_url)


# --- as a tool ------------------------------------------------------------------------


def test_handler_returns_query_and_results(searxng: FakeSearxng) -> None:
    searxng.results_answer([result_item(n) for n in range(1, 6)])
    handler = web_search_handler_make(SearxngClient(searxng.base_url))

    result = handler(CTX, {"query": "  llamas  ", "k": 2})

    assert result == {
        "query": "llamas",
        "results": [
            {"title": "Result 1", "url": "https://example.org/1", "snippet": "Snippet 1"},
            {"title": "Result 2", "url": "https://example.org/2", "snippet": "Snippet 2"},
        ],
    }
    assert searxng.requests[0]["query"]["q"] == ["llamas"]
    assert len(handler(CTX, {"query": "llamas"})["results"]) == 5  # k defaults to 5


def test_not_configured_refuses_and_invents_nothing() -> None:
    registry = ToolRegistry()
    registry.register(web_search_tool_spec(), web_search_handler_make(None))

    with pytest.raises(ToolNotConfiguredError) as caught:
        registry.execute("web_search", CTX, {"query": "weather"})

    error = caught.value
    assert (error.status, error.code) == (503, "not_configured")
    assert "SEARXNG_URL" in str(error)
    assert "JSON format" in str(error)


def test_tool_through_the_registry(searxng: FakeSearxng) -> None:
    searxng.results_answer([result_item(1)])
    registry = ToolRegistry()
    registry.register(web_search_tool_spec(), web_search_handler_make(SearxngClient(searxng.base_url)))

    with pytest.raises(ToolArgumentError, match="at most 10") as caught:
        registry.arguments_check("web_search", {"query": "q", "k": 11})
    assert caught.value.field == "arguments.k"
    with pytest.raises(ToolArgumentError, match="at most 300 characters"):
        registry.arguments_check("web_search", {"query": "q" * 301})

    arguments = registry.arguments_check("web_search", {"query": "q", "k": 1})
    assert registry.execute("web_search", CTX, arguments)["results"][0]["url"] == "https://example.org/1"

    searxng.status = 403
    with pytest.raises(WebSearchError, match=r"search\.formats"):
        registry.execute("web_search", CTX, arguments)

    spec = registry.get("web_search").public()
    assert (spec["rate_limit"], spec["max_concurrent"]) == ({"requests": 10, "window_s": 60.0, "burst": 3}, 2)


def test_a_blank_query_finds_nothing_without_asking_the_provider(searxng: FakeSearxng) -> None:
    handler = web_search_handler_make(SearxngClient(searxng.base_url))
    assert handler(ToolContext("alice"), {"query": " \r\n\t "}) == {"query": "", "results": []}
    assert searxng.requests == []
