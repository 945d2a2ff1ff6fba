"""Let Django, not Twisted, read request bodies under daphne.

Twisted's HTTP request parses every POST with a form content type into `request.args`,
which daphne never reads (it hands the raw body to the ASGI app). That costs a second
copy of each upload (up to 10 MiB), and a malformed multipart body (no boundary, garbage)
is answered by Twisted itself with an empty 400 before Django sees it: no JSON, no field.
`form_parsing_off` turns that parsing off for daphne's request class, so Django parses the
body once and a bad one gets the project's error shape. Call it once, before serving.
"""

from __future__ import annotations

from typing import Any


def form_parsing_off() -> None:
    from daphne.http_protocol import WebRequest

    original = WebRequest.__init__
    if getattr(original, "form_parsing_off", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # twisted.web.http.Request's own switch

    __init__.form_parsing_off = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]
