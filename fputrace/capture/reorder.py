"""Global time order for events that arrive from many CPUs through one buffer.

Each CPU's events reach the ring within microseconds of their timestamp (BPF programs run with
preemption off between ``bpf_ktime_get_ns`` and the commit), but CPUs interleave. ``Reorderer``
holds events back until they are ``hold_ns`` older than the current CLOCK_MONOTONIC time, then
releases them sorted (stable: equal timestamps keep buffer order, which is program order on one
CPU, e.g. the inferred KFPU_BEGIN, XSAVE, KFPU_END triple).

Guarantee: the concatenation of released batches is sorted by ts_ns, unless an event arrives
more than ``hold_ns`` late (a producer stalled for 100 ms); such events are released at once in
the next batch and counted in ``late_events``. ``flush()`` releases everything (at stop).
"""
from __future__ import annotations

import time

import numpy as np

from ..events import EVENT_DTYPE, empty_batch

DEFAULT_HOLD_NS = 100_000_000


class Reorderer:
    def __init__(self, hold_ns: int = DEFAULT_HOLD_NS):
        self.hold_ns = hold_ns
        self._pending: list[np.ndarray] = []
        self._released_upto = 0
        self.late_events = 0

    def push(self, batch: np.ndarray) -> None:
        if len(batch):
            self._pending.append(batch)

    def pop_ready(self, now_ns: int | None = None) -> np.ndarray:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        return self._release(now_ns - self.hold_ns)

    def flush(self) -> np.ndarray:
        return self._release(None)

    def _release(self, watermark: int | None) -> np.ndarray:
        if not self._pending:
            return empty_batch()
        allev = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        order = np.argsort(allev["ts_ns"], kind="stable")
        allev = allev[order]
        if watermark is None:
            cut = len(allev)
        else:
            cut = int(np.searchsorted(allev["ts_ns"], watermark, side="right"))
        out, rest = allev[:cut], allev[cut:]
        self._pending = [rest] if len(rest) else []
        if len(out):
            late = int(np.count_nonzero(out["ts_ns"] < self._released_upto))
            self.late_events += late
            self._released_upto = max(self._released_upto, int(out["ts_ns"][-1]))
        return np.ascontiguousarray(out, dtype=EVENT_DTYPE)
