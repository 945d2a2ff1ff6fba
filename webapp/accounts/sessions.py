"""Django's database sessions, refusing session keys Django never makes.

A cookie such as `sessionid="\\000aaaaaaaa"` is unquoted into a NUL byte, which PostgreSQL
refuses with an error (a 500 on every page that reads the session). Django's own keys are
32 characters of a-z and 0-9; anything else is no session, like an unknown key.
"""

from __future__ import annotations

import re

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

_SESSION_KEY = re.compile(r"[a-z0-9]{32}")


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and _SESSION_KEY.fullmatch(key) is not None
