"""Web search through a self-hosted SearxNG instance's JSON API.

SearxNG answers `GET /search?q=...&format=json` only when `json` is listed under
`search.formats` in its settings.yml; otherwise it answers 403, and the error says so.
With no instance configured the tool refuses (503, not_configured): it never makes up
results. Only http(s) links are passed on, so the model is never handed a javascript: or
file: URL to repeat to the user.

Plain urllib keeps this free of extra HTTP dependencies; every call is blocking and runs
on the tool worker thread like any other handler.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from webapp.tools.limits import RateLimit
from webapp.tools.registry import (
    Handler,
    Sensitivity,
    ToolArgumentError,
    ToolContext,
    ToolFailedError,
    ToolNotConfiguredError,
    ToolSpec,
)

DEFAULT_USER_AGENT = "persona-chat-office/0.1 (self-hosted; SearxNG JSON client)"
MAX_RESULTS = 10
MAX_QUERY_CHARS = 300
MAX_SNIPPET_CHARS = 500
MAX_TITLE_CHARS = 300
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a results page is tens of KiB; more means something is wrong

NOT_CONFIGURED_MESSAGE = (
    "web search is not configured: set SEARXNG_URL to a SearxNG instance with the JSON format enabled"
)
_JSON_FORMAT_HINT = "enable `json` in search.formats of settings.yml"


class WebSearchError(ToolFailedError):
    """SearxNG could not be reached or gave an answer we cannot use."""

    code = "search_failed"
    status = 502


@dataclass(frozen=True)
class WebResult:
    title: str
    url: str
    snippet: str


def _text_clean(value: object, limit: int) -> str:
    """Collapse whitespace and cut to `limit` characters, marking the cut with an ellipsis."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _http_url_is(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _url_without_credentials(url: str) -> str:
    """The URL for messages: user:password@ in SEARXNG_URL must not end up in a chat."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class SearxngClient:
    """A client for one SearxNG instance. Thread-safe (it keeps no connection state)."""

    def __init__(self, base_url: str, *, timeout_s: float = 8.0, user_agent: str = DEFAULT_USER_AGENT) -> None:
        if not _http_url_is(base_url):
            raise ValueError(f"SearxNG base URL must be an http(s) URL, got {base_url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._shown_url = _url_without_credentials(self.base_url)

    def search(self, query: str, *, k: int = 5, language: str | None = None) -> list[WebResult]:
        """Up to `k` (1..10) results for `query`; WebSearchError when SearxNG fails."""
        if not 1 <= k <= MAX_RESULTS:
            raise ValueError(f"k must be from 1 to {MAX_RESULTS}, got {k}")
        params = {"q": query, "format": "json"}
        if language:
            params["language"] = language
        payload = self._json_get(f"{self.base_url}/search?{urllib.parse.urlencode(params)}")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise WebSearchError(f"SearxNG at {self._shown_url} answered JSON without a 'results' list")
        return self._results_pick(results, k=k)

    def _json_get(self, url: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 - _http_url_is() allowed only http(s) base URLs
            url, headers={"Accept": "application/json", "User-Agent": self.user_agent}
        )
        where = f"SearxNG at {self._shown_url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - as above
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 403:
                raise WebSearchError(
                    f"{where} answered 403 Forbidden; it refuses the JSON format unless you {_JSON_FORMAT_HINT}"
                ) from None
            if exc.code == 429:
                raise WebSearchError(
                    f"{where} answered 429 Too Many Requests; its bot limiter may be blocking this server "
                    "(see server.limiter in settings.yml)"
                ) from None
            raise WebSearchError(f"{where} answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise WebSearchError(f"{where} did not answer within {self.timeout_s:g} s") from None
            if isinstance(exc.reason, ConnectionRefusedError):
                raise WebSearchError(f"could not connect to {where}: connection refused") from None
            raise WebSearchError(f"could not reach {where}: {exc.reason}") from None
        except TimeoutError:
            raise WebSearchError(f"{where} did not answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise WebSearchError(f"connection to {where} failed: {exc.__class__.__name__}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise WebSearchError(f"{where} answered more than {MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise WebSearchError(
                f"{where} did not answer JSON; check that SEARXNG_URL points at SearxNG and {_JSON_FORMAT_HINT}"
            ) from None

    def _results_pick(self, items: list[Any], *, k: int) -> list[WebResult]:
        picked: list[WebResult] = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                continue
            url = item.get("url")
            if not isinstance(url, str) or not _http_url_is(url.strip()) or url.strip() in seen:
                continue
            url = url.strip()
            seen.add(url)
            title = _text_clean(item.get("title"), MAX_TITLE_CHARS) or url
            picked.append(WebResult(title=title, url=url, snippet=_text_clean(item.get("content"), MAX_SNIPPET_CHARS)))
            if len(picked) == k:
                break
        return picked


def web_search_tool_spec() -> ToolSpec:
    return ToolSpec(
        name="web_search",
        description=(
            "Search the web and get the top results (title, URL, snippet). Use for current events or facts "
            "you are not sure of; cite the URLs you use."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_QUERY_CHARS,
                    "description": "What to search for.",
                },
                "k": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_RESULTS,
                    "default": 5,
                    "description": "How many results to return (1-10).",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        sensitivity=Sensitivity.LOW,
        rate_limit=RateLimit(requests=10, window_s=60.0, burst=3),
        max_concurrent=2,
    )


def web_search_handler_make(client: SearxngClient | None) -> Handler:
    """A handler bound to `client`; with None it refuses every call as not configured."""

    def web_search_handler(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        if client is None:
            raise ToolNotConfiguredError(NOT_CONFIGURED_MESSAGE)
        query = args["query"].strip()  # the schema made it a string
        if not query:
            # Only white space: nothing to search for, which is no error (the schema admits it,
            # and a JSON Schema pattern for "not blank" is more than the grammar converter reads).
            return {"query": "", "results": []}
        k = args.get("k", 5)
        # JSON Schema counts 5.0 as an integer, so accept it; anything else out of range is a 400.
        whole = (isinstance(k, int) and not isinstance(k, bool)) or (isinstance(k, float) and k.is_integer())
        if not whole or not 1 <= k <= MAX_RESULTS:
            raise ToolArgumentError(f"arguments.k must be an integer from 1 to {MAX_RESULTS}", field="arguments.k")
        results = client.search(query, k=int(k))
        return {"query": query, "results": [asdict(result) for result in results]}

    return web_search_handler
