"""``RecentActivity``: the dashboard's memory of the last seconds, a sink the dashboard owns.

The model's engine keeps counts; what only a screen needs lives here, fed through
``Model(meta, activity=RecentActivity())`` (which adds it with ``Model.add_sink``) from the
annotations of every fed chunk (``fputrace.model.sinks.FeedOutput``). Per CPU: a ring of
register-owner changes (for the owner strips and task timelines) and a ring of per-second
XSAVE/XRSTOR counts (for the rate sparklines); one ring of recent kernel FPU sections (for the
``kernel-fpu`` state of a task's timeline). Bounded: memory does not grow with the trace. The
model's snapshot and task detail read it through ``strip``, ``rates`` and ``timeline``.
"""
from __future__ import annotations

import numpy as np

from ..events import Kind
from ..model.sinks import FeedOutput
from ..model.snapshot import OwnerInterval
from ..model.structs import OWNER_CHANGE, OWNER_KINDS, SECTION

OWNER_RING = 1 << 14           # owner changes kept per CPU
RATE_SLOTS = 1024              # seconds of XSAVE/XRSTOR rates kept per CPU
SECTION_RING = 1 << 14         # recent kernel FPU sections (all CPUs)
MAX_STRIP = 256                # owner intervals per CPU in a snapshot (downsampled beyond)
NS_PER_S = 1_000_000_000
_TASK = OWNER_KINDS.index("TASK")


class _Ring:
    """The newest ``size`` records of one dtype, oldest first on read."""

    def __init__(self, dtype, size: int):
        self.buf = np.zeros(size, dtype)
        self.head = 0                       # records ever written

    def extend(self, rows: np.ndarray) -> None:
        size = len(self.buf)
        if len(rows) >= size:
            rows = rows[-size:]
        at = self.head % size
        first = min(len(rows), size - at)          # up to the end of the buffer, then from 0
        self.buf[at:at + first] = rows[:first]
        self.buf[:len(rows) - first] = rows[first:]
        self.head += len(rows)

    def read(self) -> np.ndarray:
        size = len(self.buf)
        n = min(self.head, size)
        return self.buf[(np.arange(self.head - n, self.head)) % size]

    @property
    def wrapped(self) -> bool:
        return self.head > len(self.buf)


class RecentActivity:
    """A sink (``Model.add_sink``) that the snapshot and task-detail views read."""
    rate_slots = RATE_SLOTS                 # the most seconds ``rates`` can give
    rate_slots = RATE_SLOTS                 # the most seconds ``rates`` can give

    def __init__(self):
        self.owners: list[_Ring] = []
        self.rate = np.zeros((0, 2, RATE_SLOTS), np.int64)   # [cpu, xsave/xrstor, slot]
        self.rate_sec = np.zeros((0, RATE_SLOTS), np.int64)  # which second a slot holds
        self.sections = _Ring(SECTION, SECTION_RING)

    def _cpus(self, n: int) -> None:
        while len(self.owners) < n:
            self.owners.append(_Ring(OWNER_CHANGE, OWNER_RING))
        if self.rate.shape[0] < n:
            extra = n - self.rate.shape[0]
            self.rate = np.concatenate([self.rate, np.zeros((extra, 2, RATE_SLOTS), np.int64)])
            self.rate_sec = np.concatenate([self.rate_sec, np.full((extra, RATE_SLOTS), -1)])

    def on_feed(self, batch: np.ndarray, out: FeedOutput) -> None:
        if len(batch):
            self._cpus(int(batch["cpu"].max()) + 1)
        ch = out.owner_changes
        if len(ch):
            cpus = ch["cpu"].astype(np.uint16)
            per_cpu = np.bincount(cpus)
            if np.count_nonzero(per_cpu) == 1:
                self.owners[int(cpus[0])].extend(ch)
            else:                      # group by CPU (a radix sort keeps time order)
                order = np.argsort(cpus, kind="stable")
                ends = np.cumsum(per_cpu)
                for c in np.flatnonzero(per_cpu).tolist():
                    lo = max(ends[c] - per_cpu[c], ends[c] - OWNER_RING)
                    self.owners[c].extend(ch[order[lo:ends[c]]])
        if len(out.kfpu_sections):
            self.sections.extend(out.kfpu_sections)
        self._count_rates(batch, out.xclass)

    def _count_rates(self, batch: np.ndarray, xclass: np.ndarray) -> None:
        """XSAVE/XRSTOR per CPU and second (xclass >= 0 marks them)."""
        ts = batch["ts_ns"]
        first, last = int(ts[0]) // NS_PER_S, int(ts[-1]) // NS_PER_S   # batches are in time order
        first = max(first, last - RATE_SLOTS + 1)       # only the newest seconds can be shown
        edges = np.searchsorted(ts, np.arange(first, last + 2, dtype=np.uint64) * NS_PER_S)
        ncpu = self.rate.shape[0]
        for sec, lo, hi in zip(range(first, last + 1), edges[:-1].tolist(), edges[1:].tolist()):
            pos = lo + np.flatnonzero(xclass[lo:hi] >= 0)
            if not len(pos):
                continue
            key = batch["cpu"][pos].astype(np.int64) * 2 + (batch["kind"][pos] == Kind.XRSTOR)
            counts = np.bincount(key, minlength=2 * ncpu).reshape(ncpu, 2)
            slot = sec % RATE_SLOTS
            stale = self.rate_sec[:, slot] != sec
            self.rate[stale, :, slot] = 0
            self.rate_sec[:, slot] = sec
            self.rate[:, :, slot] += counts

    # ------------------------------------------------------------ views

    def strip(self, c: int, lo_ns: int, now_ns: int) -> tuple[OwnerInterval, ...]:
        """Owner intervals of CPU c from lo_ns to now_ns, oldest first (at most MAX_STRIP)."""
        if c >= len(self.owners) or self.owners[c].head == 0:
            return (OwnerInterval(lo_ns, now_ns, "UNKNOWN"),)
        ring = self.owners[c]
        rec = ring.read()
        first = max(0, int(np.searchsorted(rec["ts_ns"], lo_ns, side="right")) - 1)
        rec = rec[first:]
        if len(rec) > MAX_STRIP:    # a strip is a few hundred cells wide: keep evenly spaced changes
            rec = rec[np.unique(np.linspace(0, len(rec) - 1, MAX_STRIP).astype(np.int64))]
        ts, own, tid = rec["ts_ns"].tolist(), rec["owner"].tolist(), rec["tid"].tolist()
        out = []
        for j in range(len(ts)):
            start = max(ts[j], lo_ns)
            end = ts[j + 1] if j + 1 < len(ts) else now_ns
            if end < start:
                continue
            out.append(OwnerInterval(start, end, OWNER_KINDS[own[j]], tid[j]))
        if out and out[0].start_ns > lo_ns and not ring.wrapped:
            out.insert(0, OwnerInterval(lo_ns, out[0].start_ns, "UNKNOWN"))
        return tuple(out)

    def rates(self, c: int, now_ns: int, seconds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """XSAVE and XRSTOR per second on CPU c over the last ``seconds`` seconds, oldest first."""
        secs = np.arange(now_ns // NS_PER_S - seconds + 1, now_ns // NS_PER_S + 1)
        if c >= self.rate.shape[0]:
            zeros = tuple(0.0 for _ in secs)
            return zeros, zeros
        slots = secs % RATE_SLOTS
        ok = self.rate_sec[c, slots] == secs
        xs = np.where(ok, self.rate[c, 0, slots], 0).astype(float)
        xr = np.where(ok, self.rate[c, 1, slots], 0).astype(float)
        return tuple(xs.tolist()), tuple(xr.tolist())

    def timeline(self, task_id: int, now_ns: int, *, user_state: bool, alive: bool) -> list:
        """Where one task's user FPU state was: (start_ns, end_ns, state) with state "regs:<cpu>"
        (valid in that CPU's registers), "kernel-fpu" (a kernel FPU section of the task runs: its
        user state is saved) or "memory" (saved, in no registers), oldest first."""
        spans = []
        for c, ring in enumerate(self.owners):
            rec = ring.read()
            ts = rec["ts_ns"]
            for j in np.flatnonzero((rec["owner"] == _TASK) & (rec["task_id"] == task_id)).tolist():
                end = int(ts[j + 1]) if j + 1 < len(rec) else now_ns
                spans.append((int(ts[j]), end, f"regs:{c}"))
        sec = self.sections.read()
        mine = sec[(sec["task_id"] == task_id) & (sec["begin_ns"] >= 0)]
        spans += [(int(b), int(e), "kernel-fpu") for b, e in zip(mine["begin_ns"], mine["end_ns"])]
        spans.sort()
        if not user_state or not spans:
            return spans
        out, reach = [], spans[0][0]
        for span in spans:                   # between the spans: saved in memory
            if span[0] > reach:
                out.append((reach, span[0], "memory"))
            out.append(span)
            reach = max(reach, span[1])
        if alive and reach < now_ns:
            out.append((reach, now_ns, "memory"))
        return out
