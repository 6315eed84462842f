"""glibc malloc settings for fputrace's long-running streams (record, the live dashboard, replay):
they allocate big buffers that live for a moment (ring reads, reorder and file batches, decoded
pieces, a picture's frames), which glibc's defaults would keep on the heap for ever."""
from __future__ import annotations

import ctypes
import ctypes.util

_malloc_trim = None


def bound_heap() -> None:
    """Allocations above 256 KiB are mmapped and go back to the OS when freed (the dynamic
    threshold would otherwise move them onto the heap), and two arenas, not one per thread, hold
    what is left. ``trim_heap`` returns the free tail regularly. Idempotent."""
    global _malloc_trim
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
    libc.mallopt(M_MMAP_THRESHOLD, 256 << 10)
    libc.mallopt(M_ARENA_MAX, 2)
    _malloc_trim = libc.malloc_trim


def trim_heap() -> None:
    """Give the heap's free tail back to the OS (a no-op before ``bound_heap``)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
