"""The process heap under glibc's malloc: few arenas, large buffers in their own mappings, free pages handed back."""
from __future__ import annotations

import ctypes
from typing import Any


class Heap:
    """Keeps a processor's memory to what it holds, under glibc's malloc.

    glibc gives each thread that allocates its own arena, up to eight per core, and an arena keeps what it once
    held. A processor's work is spread over many threads (Faust's executor, librdkafka's threads of each client),
    each allocating large passing buffers (fetches, batches of records, archived objects), so its memory grew
    with the largest burst it ever worked off and stayed there. Two arenas; buffers from 256 KB up in their own
    mappings, handed back when freed (glibc's threshold otherwise rises to the largest buffer freed, up to
    32 MB); and `trim` hands free pages back after a burst. Elsewhere (no glibc) this does nothing.
    """

    M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt's parameters

    def __init__(self) -> None:
        try:
            self._libc: Any = ctypes.CDLL("libc.so.6")
            self._libc.mallopt(self.M_ARENA_MAX, 2)
            self._libc.mallopt(self.M_MMAP_THRESHOLD, 256 * 1024)
        except (OSError, AttributeError):
            self._libc = None

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)
