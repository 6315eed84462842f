"""The ring's readers come first on the CPU.

A tracer that shares its CPU evenly with a CPU-bound job loses events: the kernel ring fills
while its reader waits for a time slice (at load 8-11 on this 2-CPU host, `fputrace record` at
nice 0 lost 8% of a context-switch storm beside two busy loops). As root, the threads that read
the rings, decode, write and model run at CONSUMER_NICE: CFS weight 9548 against 1024 for a nice-0
job, so the competing job gives them the CPU they need and keeps the rest. What they need is
small beside the traced workload's own (the dashboard's capture thread: ~0.6 s of CPU per
million events, benchmarks/TUI.md).
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
