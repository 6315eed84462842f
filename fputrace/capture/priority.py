"""The ring's readers come first on the CPU.

The live dashboard's capture and model threads share one GIL with its drawing: at nice 0 beside a
CPU-bound job they wait for time slices, and the kernel ring fills meanwhile. As root they run at
CONSUMER_NICE: CFS weight 9548 against 1024 for a nice-0 job (benchmarks/TUI.md).
`fputrace record` keeps nice 0, like perf and bpftrace: a reader that preempts the traced
workload at every wakeup would add context switches, and so XSAVEs, to what it measures.
"""
from __future__ import annotations

import os
import threading

CONSUMER_NICE = -10


def raise_priority(nice: int = CONSUMER_NICE) -> int | None:
    """Give the calling thread this nice value (Linux: per thread); None if not allowed (not
    root): the caller then works as before, sharing the CPU evenly."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError):
        return None
    return nice
