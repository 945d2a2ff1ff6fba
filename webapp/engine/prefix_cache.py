"""A bounded LRU of persona prefixes' KV state, kept in host memory.

Many conversations start with the same tokens: a character's definition, its example
dialogue and greeting, or an office persona. The engine evaluates such a prefix once,
copies that sequence's KV cells out (`llama_state_seq_get_data`: only that sequence's
cells, about 22 KiB per token for SmolLM2-135M) and copies them into any slot that needs
the same prefix later (`llama_state_seq_set_data`). On a 2-core CPU a 1,000-token prefix
takes about 7 s to evaluate and 6 ms to restore.

llama.cpp's own server keeps a prompt cache too, but in its HTTP server, not in the
library, so this is the product's own: the key is the exact token sequence (one token
different anywhere, say a changed card or another user name, is another entry), and the
entries are what the engine's scheduler thread copied out. Only that thread uses it.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass

Key = tuple[int, ...]


@dataclass
class PrefixEntry:
    tokens: Key
    state: ctypes.Array[ctypes.c_uint8]  # what llama_state_seq_get_data wrote
    size: int  # bytes of `state` in use

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class PrefixCacheStats:
    entries: int
    bytes: int
    limit_bytes: int
    hits: int  # a request started from a cached prefix
    misses: int  # a request had to evaluate a prefix that was not cached
    stored: int
    evictions: int


class PrefixCache:
    """Entries by token sequence, least recently used first out once `limit_bytes` is passed.

    An entry larger than the whole limit is never stored. A limit of 0 stores nothing.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[Key, PrefixEntry] = OrderedDict()
        self._bytes = 0
        self._counts = {"hits": 0, "misses": 0, "stored": 0, "evictions": 0}

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def lookup(self, key: Key) -> PrefixEntry | None:
        """The entry for exactly these tokens (now the most recently used), counted as a hit
        or a miss."""
        entry = self._entries.get(key)
        if entry is None:
            self._counts["misses"] += 1
            return None
        self._entries.move_to_end(key)
        self._counts["hits"] += 1
        return entry

    def fits(self, size: int) -> bool:
        return 0 < size <= self.limit_bytes

    def store(self, entry: PrefixEntry) -> bool:
        """Keep `entry`, evicting the least recently used until it fits; False when it never can."""
        if not self.fits(entry.size):
            return False
        old = self._entries.pop(entry.tokens, None)
        if old is not None:
            self._bytes -= old.size
        while self._entries and self._bytes + entry.size > self.limit_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
            self._counts["evictions"] += 1
        self._entries[entry.tokens] = entry
        self._bytes += entry.size
        self._counts["stored"] += 1
        return True

    def discard(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(
            entries=len(self._entries), bytes=self._bytes, limit_bytes=self.limit_bytes, **self._counts
        )
