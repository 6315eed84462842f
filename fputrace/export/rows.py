"""Event batches -> the columns of an export: kind and cause names, task names at the time.

Task names and kernel-thread flags are not in the event rows: they come from the task-table records
(COMM, TASK) and from FORK (a child starts with its parent's name). ``PerTidValue`` gives every
row the value in force for its tid *at that row* (so an exec's new name applies from the exec on),
vectorised: a batch's changes are few (a few per fork/exec), its rows are many.
"""
from __future__ import annotations

import numpy as np

from ..events import KIND_NAMES, Kind, XrstorCause, XsaveCause

TASK_RECORD_KINDS = np.array([Kind.COMM, Kind.TASK], np.uint8)

# Cause names as the report spells them (SCHEMA.md: xsave_<cause>, xrstor_<cause>).
XSAVE_CAUSES = {c.value: c.name.lower() for c in XsaveCause}
XRSTOR_CAUSES = {c.value: c.name.lower() for c in XrstorCause}


def kind_name(code: int) -> str:
    return KIND_NAMES.get(code, f"KIND_{code}")     # a kind from a newer writer keeps its number


def is_task_record(kind: np.ndarray) -> np.ndarray:
    return np.isin(kind, TASK_RECORD_KINDS)


class Interned:
    """Strings as small integer codes (dictionary columns); code -1 = null."""

    def __init__(self):
        self.values: list[str] = []
        self._code: dict[str, int] = {}

    def code(self, s: str) -> int:
        c = self._code.get(s)
        if c is None:
            c = self._code[s] = len(self.values)
            self.values.append(s)
        return c


class PerTidValue:
    """An integer value per tid that changes at given rows of a batch (default when never set)."""

    def __init__(self, default: int = -1):
        self.default = default
        self.current: dict[int, int] = {}

    def rows(self, tids: np.ndarray, changes: list[tuple[int, int, int]]) -> np.ndarray:
        """The value in force at each row. ``changes`` = (row, tid, value) in row order: the value
        holds for that tid's rows after ``row``."""
        uniq, inv = np.unique(tids, return_inverse=True)
        base = np.array([self.current.get(t, self.default) for t in uniq.tolist()], np.int64)
        out = base[inv] if len(tids) else np.zeros(0, np.int64)
        if not changes:
            return out
        order = np.lexsort((np.arange(len(tids)), tids))
        key = (tids[order].astype(np.uint64) << np.uint64(32)) | order.astype(np.uint64)
        for row, tid, value in changes:
            lo = np.searchsorted(key, np.uint64((tid << 32) | (row + 1)))
            hi = np.searchsorted(key, np.uint64((tid + 1) << 32))
            out[order[lo:hi]] = value
            self.current[tid] = value
        return out
