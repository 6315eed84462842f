"""Where each task-table record goes in a CSV export (the first of ``csv.py``'s two passes).

The importer rebuilds a COMM (TASK) record just before a row whose ``comm`` (``kthread``) cell
differs from the last one it saw for that tid, with the row's time, CPU and tgid. So a record is

* *carried* by an event row of its tid: the row it was imported from if there is one (same time,
  CPU and tgid), else the tid's next event row; possible when the importer would rebuild exactly
  this record there (the value changes, the tgid matches, the name survives the trip);
* or *explicit*: a ``COMM``/``TASK`` row with the record's raw arguments and empty cells, written
  where the record was, or just after the row that carried the previous record of its tid.

Records of one tid keep their order (a COMM and a TASK carried by one row: COMM first, as the
importer writes them), which is what decides the task's final name, kernel-thread flag and tgid.
Each tid's records are placed in order, greedily at the earliest row that fits: for a file that
``fputrace import`` made, the rows the records came from fit, so the greedy places never fall
after them. Positions are counted over every record of ``trace.batches()``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..events import TASK_KTHREAD, Kind, args_to_comm, comm_to_args
from .rows import is_task_record

IN_PLACE, CARRIED, AFTER_ROW = 0, 1, 2     # slot kinds, in the order they come at one position


@dataclass
class Placement:
    changes: list = field(default_factory=list)   # (event gpos, tid, "comm"|"kthread", value)
    carried: set = field(default_factory=set)     # gpos of carried records
    moved: dict = field(default_factory=dict)     # event gpos -> [record row] written after it
    moved_from: set = field(default_factory=set)  # gpos of the records written elsewhere


@dataclass
class _Record:
    gpos: int
    kind: int
    row: np.void                                  # a copy of the record (EVENT_DTYPE)


class _EventIndex:
    """Where each tid's event rows are in one batch (by global position)."""

    def __init__(self, b: np.ndarray, base: int):
        self.b, self.base = b, base
        pos = np.flatnonzero(~is_task_record(b["kind"]))
        tids = b["tid"][pos].astype(np.uint64)
        order = np.lexsort((pos, tids))
        self.pos = pos[order]
        self.key = (tids[order] << np.uint64(32)) | self.pos.astype(np.uint64)
        self.tids = set(np.unique(tids).tolist())

    def carrier(self, tid: int, lo: int, hi: int | None, rec: np.void) -> int | None:
        """The global position of the event row of ``tid`` in (lo, hi) that should carry ``rec``:
        the first with the record's time, CPU and tgid if the rows at its time have one, else the
        first row; None if the tid has no row there."""
        start = max(-1, lo - self.base)
        i = int(np.searchsorted(self.key, np.uint64((tid << 32) | (start + 1))))
        first = None
        while i < len(self.key) and int(self.key[i]) >> 32 == tid:
            row = int(self.pos[i])
            if hi is not None and self.base + row >= hi:
                break
            e = self.b[row]
            if first is None:
                first = row
            if int(e["ts_ns"]) != int(rec["ts_ns"]):
                break
            if int(e["cpu"]) == int(rec["cpu"]) and int(e["tgid"]) == int(rec["tgid"]):
                return self.base + row
            i += 1
        return None if first is None else self.base + first


def _carriable_comm(rec: np.void) -> str | None:
    a0, a1 = int(rec["a0"]), int(rec["a1"])
    name = args_to_comm(a0, a1)
    if not name or "\n" in name or "\r" in name or comm_to_args(name) != (a0, a1):
        return None                       # the importer would not rebuild this record from a cell
    return name


class Planner:
    def __init__(self):
        self.out = Placement()
        self.queue: dict[int, deque[_Record]] = {}    # per tid: records not placed yet, in order
        self.cursor: dict[int, tuple[int, int, int]] = {}   # tid -> (gpos, slot kind, record kind)
        self.comm_of: dict[int, str] = {}          # the importer's own per-tid state
        self.kthread_of: dict[int, bool] = {}

    def batch(self, b: np.ndarray, base: int) -> None:
        rec_rows = np.flatnonzero(is_task_record(b["kind"]))
        touched = set()
        for p in rec_rows.tolist():
            tid = int(b["tid"][p])
            self.queue.setdefault(tid, deque()).append(_Record(base + p, int(b["kind"][p]), b[p].copy()))
            touched.add(tid)
        index = _EventIndex(b, base)
        for tid in touched | (index.tids & self.queue.keys()):
            self._place(tid, index)

    def finish(self) -> Placement:
        for tid in list(self.queue):
            self._place(tid, None)
        return self.out

    # ---------------------------------------------------------------------------------------
    def _place(self, tid: int, index: _EventIndex | None) -> None:
        q = self.queue[tid]
        while q:
            r = q[0]
            end = next((x.gpos for x in list(q)[1:] if x.kind == r.kind), None)
            cur = self.cursor.get(tid)
            lo = r.gpos
            if cur is not None:
                c_pos, c_slot, c_kind = cur
                same_row_ok = c_slot == CARRIED and c_kind == Kind.COMM and r.kind == Kind.TASK
                lo = max(lo, c_pos - 1 if same_row_ok else c_pos)
            e = index.carrier(tid, lo, end, r.row) if index is not None else None
            if e is None and end is None and index is not None:
                return                     # an event of this tid may still come: wait
            q.popleft()
            if e is not None and self._carry(tid, r, e, index):
                self.cursor[tid] = (e, CARRIED, r.kind)
            else:
                self._explicit(tid, r)
        del self.queue[tid]

    def _carry(self, tid: int, r: _Record, e: int, index: _EventIndex) -> bool:
        row = index.b[e - index.base]
        if int(row["tgid"]) != int(r.row["tgid"]):
            return False
        if r.kind == Kind.COMM:
            name = _carriable_comm(r.row)
            if name is None or self.comm_of.get(tid) == name:
                return False
            self.comm_of[tid] = name
            self.out.changes.append((e, tid, "comm", name))
        else:
            a0 = int(r.row["a0"])
            if a0 & ~TASK_KTHREAD or int(r.row["a1"]):
                return False
            flag = bool(a0 & TASK_KTHREAD)
            if self.kthread_of.get(tid) == flag:
                return False
            self.kthread_of[tid] = flag
            self.out.changes.append((e, tid, "kthread", flag))
        self.out.carried.add(r.gpos)
        return True

    def _explicit(self, tid: int, r: _Record) -> None:
        cur = self.cursor.get(tid)
        if cur is None or (cur[0], cur[1]) < (r.gpos, IN_PLACE):
            self.cursor[tid] = (r.gpos, IN_PLACE, r.kind)
            return
        after = cur[0]                     # after the row that carried the previous record
        self.out.moved.setdefault(after, []).append(r.row)
        self.out.moved_from.add(r.gpos)
        self.cursor[tid] = (after, AFTER_ROW, r.kind)


def plan(trace) -> Placement:
    planner = Planner()
    base = 0
    for b in trace.batches():
        planner.batch(b, base)
        base += len(b)
    out = planner.finish()
    out.changes.sort(key=lambda c: c[0])
    return out
