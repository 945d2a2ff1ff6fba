"""Turning generated token bytes into text that is safe to stream.

Two things make this more than `bytes.decode()`: a UTF-8 character (every Hangul
syllable) can be split across tokens, and a stop string can be split across tokens.
`TextStream` holds back exactly the bytes and characters that might still turn out to
be part of either, and releases everything else at once.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    """Incremental detokenizer with stop strings. Not thread-safe: one per request."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._pending = ""
        self.stopped = False
        self.stopped_by: str | None = None  # the stop string that ended the text

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be shown now.

        After a stop string is seen, `stopped` is True and the text before it has been
        returned; everything from the stop string on is discarded.
        """
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        return self._release()

    def flush(self) -> str:
        """Return whatever is still held back (call once, when generation ends)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        text = self._cut_at_stop()
        self._pending = ""
        return text

    def _cut_at_stop(self) -> str:
        hits = [(i, s) for i, s in ((self._pending.find(s), s) for s in self._stop) if i >= 0]
        if hits:
            at, self.stopped_by = min(hits, key=lambda hit: hit[0])
            self.stopped = True
            return self._pending[:at]
        return self._pending

    def _release(self) -> str:
        text = self._cut_at_stop()
        if self.stopped:
            self._pending = ""
            return text
        hold = self._partial_stop_length()
        cut = len(self._pending) - hold
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return text

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for k in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:k]):
                    longest = k
                    break
        return longest
