"""Global time order for events that arrive from many CPUs through one buffer.

Each CPU's events reach the ring within microseconds of their timestamp (BPF programs run with
preemption off between ``bpf_ktime_get_ns`` and the commit), but CPUs interleave. ``Reorderer``
holds events back until they are ``hold_ns`` older than the current CLOCK_MONOTONIC time, then
releases them sorted (stable: equal timestamps keep buffer order, which is program order on one
CPU, e.g. the inferred KFPU_BEGIN, XSAVE, KFPU_END triple).

Guarantee: the concatenation of released batches is sorted by ts_ns, unless an event arrives
more than ``hold_ns`` late (a producer stalled for 100 ms); such events are released at once in
the next batch and counted in ``late_events``. ``flush()`` releases everything (at stop).

Cost: each event is sorted once, when released. Pending chunks (one per ring read, each spanning
a short time) are only split when they straddle the watermark; rows move as 5 x u64, which numpy
copies far faster than a structured dtype.
"""
from __future__ import annotations

import time

import numpy as np

from ..events import EVENT_DTYPE, empty_batch

DEFAULT_HOLD_NS = 100_000_000
# a buffer is filled in reservation order, and a program reads the clock just before it reserves:
# an interrupt's program between the two, or another CPU's on a shared ring, can put a slightly
# older record after a newer one
BUFFER_ORDER_SLACK_NS = 1_000_000
_WORDS = EVENT_DTYPE.itemsize // 8


def rows(batch: np.ndarray) -> np.ndarray:
    """An (n, 5) uint64 view of a contiguous EVENT_DTYPE array."""
    return np.ascontiguousarray(batch).view(np.uint64).reshape(-1, _WORDS)


def events_of(words: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(words).view(EVENT_DTYPE).reshape(-1)


class Reorderer:
    def __init__(self, hold_ns: int = DEFAULT_HOLD_NS):
        self.hold_ns = hold_ns
        self._pending: list[tuple[int, int, np.ndarray]] = []   # (min ts, max ts, rows)
        self._released_upto = 0
        self.late_events = 0

    def push(self, batch: np.ndarray) -> None:
        if len(batch):
            ts = batch["ts_ns"]
            self._pending.append((int(ts.min()), int(ts.max()), rows(batch)))

    @property
    def released_upto(self) -> int:
        """Timestamp of the newest event released so far: anything pushed older is late."""
        return self._released_upto

    def pending(self) -> int:
        return sum(len(r) for _, _, r in self._pending)

    def pop_ready(self, now_ns: int | None = None, before_ns: int | None = None) -> np.ndarray:
        """Events ``hold_ns`` older than ``now_ns`` and, if given, older than ``before_ns``: the
        newest event taken from a buffer that still holds more (BUFFER_ORDER_SLACK_NS before it)."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        watermark = now_ns - self.hold_ns
        if before_ns is not None:
            watermark = min(watermark, before_ns - BUFFER_ORDER_SLACK_NS - 1)
        return self._release(watermark)

    def flush(self) -> np.ndarray:
        return self._release(None)

    def _release(self, watermark: int | None) -> np.ndarray:
        if not self._pending:
            return empty_batch()
        out, keep = [], []
        for lo, hi, r in self._pending:
            if watermark is None or hi <= watermark:
                out.append(r)
            elif lo > watermark:
                keep.append((lo, hi, r))
            else:                                        # straddles: split it
                ts = r[:, 0]
                m = ts <= np.uint64(watermark)
                out.append(r[m])
                rest = r[~m]
                keep.append((int(rest[:, 0].min()), hi, rest))
        self._pending = keep
        if not out:
            return empty_batch()
        allrows = out[0] if len(out) == 1 else np.concatenate(out)
        ts = allrows[:, 0]
        if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():
            allrows = allrows[np.argsort(ts, kind="stable")]
            ts = allrows[:, 0]
        res = events_of(allrows)
        if len(res):
            late = int(np.count_nonzero(ts < np.uint64(self._released_upto)))
            self.late_events += late
            self._released_upto = max(self._released_upto, int(ts[-1]))
        return res
