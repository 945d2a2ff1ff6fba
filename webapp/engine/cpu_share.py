"""A CPU budget that the apps on one host share: how many threads the next decode step gets.

When both apps' models run on the CPU, their llama.cpp OpenMP threads share the same
cores. Threads that spin while they wait make one busy app fast, but two busy apps that
each start a thread per core then spin against each other and collapse (measured: 3.4
tokens/s in all, against ~200 for one app alone). Threads that sleep while they wait
(OMP_WAIT_POLICY=PASSIVE) cost one busy app ~40% instead.

So the apps split the cores between them, step by step: each app says in a small shared
file whether it is decoding, and before each `llama_decode` it takes the cores divided by
the number of busy apps (`llama_set_n_threads` takes effect at the next decode). One
busy app gets every core, two busy apps get half each and never contend, and an idle app
takes nothing. The launcher sets no OpenMP wait policy: libgomp's default (spin a
while, then sleep) keeps the threads hot between steps and asleep once an app is idle.

The file is the product's own protocol (nothing off the shelf splits llama.cpp's threads
between processes): one fixed-size record per app, each written only by its own app.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

# pid, busy (0/1), the monotonic time it was last written (CLOCK_MONOTONIC is host-wide).
_RECORD = struct.Struct("<qqd")
# A busy record not rewritten for STALE_S counts as idle if its process is gone; one not
# rewritten for DEAD_S counts as idle whatever (no step takes that long).
STALE_S = 2.0
DEAD_S = 120.0


class CpuShare:
    """This process's place in the shared budget. Used by one engine's scheduler thread."""

    def __init__(self, path: Path, *, member: int, members: int, cores: int) -> None:
        if not 0 <= member < members:
            raise ValueError(f"member {member} is not in 0..{members - 1}")
        self.member, self.members, self.cores = member, members, max(1, cores)
        self._pid = os.getpid()
        size = _RECORD.size * members
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._busy = False
        self._write(busy=False)

    def threads(self, *, busy: bool) -> int:
        """Threads for this app's next step; `busy` says whether it has work (it is written
        at once, so the others see it before this step starts)."""
        if busy or busy != self._busy:
            self._write(busy=busy)
        if not busy:
            return self.cores
        others = [m for m in range(self.members) if m != self.member and self._busy_other(m)]
        sharing = len(others) + 1
        rank = sum(1 for m in others if m < self.member)
        share = self.cores // sharing + (1 if rank < self.cores % sharing else 0)
        return max(1, share)

    def close(self) -> None:
        self._write(busy=False)
        self._map.close()

    def _write(self, *, busy: bool) -> None:
        self._busy = busy
        _RECORD.pack_into(self._map, self.member * _RECORD.size, self._pid, int(busy), time.monotonic())

    def _busy_other(self, member: int) -> bool:
        pid, busy, stamp = _RECORD.unpack_from(self._map, member * _RECORD.size)
        if not busy:
            return False
        age = time.monotonic() - stamp
        if age < STALE_S:
            return True
        return age < DEAD_S and _alive(pid)  # a long step, or a process that died busy


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0
