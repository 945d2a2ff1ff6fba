"""A small local HTTP server that answers like SearxNG's JSON API (GET /search?q=…&format=json).

The session stack points SEARXNG_URL at it, so the real adapter and the real web_search
tool run end to end without the internet. A query containing "slow" waits `slow_s`
before answering, to hold a call open (the concurrency-cap test).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class SearxngStub:
    def __init__(self, *, slow_s: float = 3.0) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.slow_s = slow_s
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = parse_qs(url.query)
                stub.queries.append(params)
                if url.path != "/search" or params.get("format") != ["json"]:
                    self.send_error(403)
                    return
                query = params.get("q", [""])[0]
                if "slow" in query:
                    time.sleep(stub.slow_s)
                body = json.dumps({"query": query, "results": stub.results_for(query)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def results_for(query: str) -> list[dict[str, str]]:
        return [
            {
                "title": f"Result {n} for {query}",
                "url": f"https://example.org/{n}?q={query.replace(' ', '+')}",
                "content": f"Snippet {n} about {query}.",
                "engine": "stub",
            }
            for n in range(1, 4)
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
