"""``EngineState``: the arrays the C engine works on, and the calls into it.

Python owns the memory (numpy arrays of the dtypes in ``structs.py``) and hands C one
``struct fpt_engine`` holding their addresses. When C needs more room it stops before the event
that needs it (``need``); Python grows the array, re-points the struct and calls again.
"""
from __future__ import annotations

import numpy as np

from ..errors import FputraceError
from ..events import EVENT_DTYPE
from . import structs as S
from .native import lib

MAX_TID = 1 << 24                      # pid_max cannot exceed 2^22; leave room, refuse nonsense


class EngineState:
    """One model's state. ``copy()`` is a deep copy (used to replay the held-back actions at the
    end of the stream without disturbing the live state)."""

    ARRAYS = ("tasks", "free_slots", "retire_queue", "tids", "cpus", "callers", "caller_hash")

    def __init__(self, *, policies, rec_policy: int, rec_deferred: bool, has_ur_events: bool,
                 ur_assumed: bool, kfpu_exact: bool, exit_states: bool, xsizes, full_mask: int,
                 ncpu: int):
        self.e = np.zeros(1, S.ENGINE)
        e = self.e[0]
        e["npol"] = len(policies)
        for i, p in enumerate(policies):
            e["policy_eager"][i] = int(p.eager_restore)
            e["policy_validity"][i] = int(p.validity_shortcut)
        e["rec_policy"] = rec_policy
        e["rec_deferred"] = int(rec_deferred)
        e["has_ur_events"] = int(has_ur_events)
        e["ur_assumed"] = int(ur_assumed)
        e["kfpu_exact"] = int(kfpu_exact)
        e["exit_states"] = int(exit_states)
        e["full_mask"] = full_mask
        e["class_mask"][:] = [mask for _, mask in S.XSTATE_CLASSES]
        e["xsize"][:] = xsizes
        e["first_ts"] = -1
        self.tasks = np.zeros(256, S.TASK)
        self.free_slots = np.zeros(256, np.int64)
        self.retire_queue = np.zeros(256, np.int64)
        self.tids = np.zeros(0, S.TID)
        self.cpus = np.zeros(0, S.CPU)
        self.callers = np.zeros(16, S.CALLER)
        self.caller_hash = np.zeros(64, np.int64)
        self._rows = np.zeros(64, S.TASK_COUNTS)       # retired rows come out here
        self._grow_tids(1024)
        self._grow_cpus(max(1, ncpu))
        self.e["ncpu"] = max(1, ncpu)
        self._wire()

    # ------------------------------------------------------------ pointers and growth

    def _wire(self) -> None:
        e = self.e
        e["tasks"], e["task_cap"] = self.tasks.ctypes.data, len(self.tasks)
        e["free_slots"] = self.free_slots.ctypes.data
        e["retire_queue"] = self.retire_queue.ctypes.data
        e["tids"], e["tid_cap"] = self.tids.ctypes.data, len(self.tids)
        e["cpus"], e["cpu_cap"] = self.cpus.ctypes.data, len(self.cpus)
        e["callers"], e["caller_cap"] = self.callers.ctypes.data, len(self.callers)
        e["caller_hash"], e["caller_hash_cap"] = self.caller_hash.ctypes.data, len(self.caller_hash)

    @property
    def ptr(self) -> int:
        return self.e.ctypes.data

    def _grow_tasks(self) -> None:
        n = 2 * len(self.tasks)
        self.tasks = S.grown(self.tasks, n)
        self.free_slots = S.grown(self.free_slots, n)
        self.retire_queue = S.grown(self.retire_queue, n)

    def _grow_tids(self, tid: int) -> None:
        if tid >= MAX_TID:
            raise FputraceError(f"task id {tid} is out of range (Linux pid_max <= 4194304)")
        n = min(MAX_TID, max(tid + 1, 2 * len(self.tids)))
        self.tids = S.grown(self.tids, n, fill=np.array([(-1, 0)], S.TID))

    def _grow_cpus(self, cpu: int) -> None:
        old = len(self.cpus)
        self.cpus = S.grown(self.cpus, max(cpu + 1, 2 * old, 4))
        self.e["cpus"], self.e["cpu_cap"] = self.cpus.ctypes.data, len(self.cpus)
        lib().fpt_init_cpus(self.ptr, old, len(self.cpus))

    def _grow_callers(self) -> None:
        self.callers = S.grown(self.callers, 2 * len(self.callers))
        self.caller_hash = np.zeros(4 * len(self.callers), np.int64)
        self._wire()
        lib().fpt_rehash_callers(self.ptr)

    def grow(self, need: int, arg: int) -> None:
        if need == S.NEED_TASKS:
            self._grow_tasks()
        elif need == S.NEED_TIDS:
            self._grow_tids(arg)
        elif need == S.NEED_BAD_TID:
            raise FputraceError(f"task id {arg} is out of range (Linux pid_max <= 4194304)")
        elif need == S.NEED_CPUS:
            if arg >= 1 << 16:
                raise FputraceError(f"cpu {arg} is out of range")
            self._grow_cpus(arg)
        elif need == S.NEED_CALLERS:
            self._grow_callers()
        else:                       # (owner/section output is sized never to fill up)
            raise FputraceError(f"model engine stopped for an unknown reason ({need})")
        self._wire()

    # ------------------------------------------------------------ calls

    def feed(self, batch: np.ndarray, out=None) -> None:
        if batch.dtype != EVENT_DTYPE or not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch, dtype=EVENT_DTYPE)
        n, i = len(batch), 0
        feed = lib().fpt_feed
        out_ptr = out.ptr if out is not None else NO_OUT.ctypes.data
        while True:
            i = feed(self.ptr, batch.ctypes.data, n, i, out_ptr)
            if i >= n:
                return
            self.grow(int(self.e["need"][0]), int(self.e["need_arg"][0]))

    def finish(self) -> None:
        lib().fpt_finish(self.ptr)

    def retire(self, want_rows: bool) -> np.ndarray:
        """Retire the exited tasks nothing refers to; their rows (active ones) if ``want_rows``."""
        if not int(self.e["nretire"][0]):
            return ROWS_NONE
        if not want_rows:
            lib().fpt_retire(self.ptr, None, 0)
            return ROWS_NONE
        parts = []
        while True:
            need = int(self.e["nretire"][0])
            if len(self._rows) < need:          # (reused: fresh pages cost more than the rows)
                self._rows = np.zeros(max(need, 2 * len(self._rows)), S.TASK_COUNTS)
            k = lib().fpt_retire(self.ptr, self._rows.ctypes.data, len(self._rows))
            parts.append(S.take(self._rows, np.arange(k)))     # a copy (the buffer is reused)
            if k < len(self._rows):
                break
        return S.concat(parts) if len(parts) > 1 else parts[0]

    def preload(self, tid: int, tgid: int | None, kthread: bool, comm: str | None) -> None:
        if tid >= len(self.tids):
            self._grow_tids(tid)
            self._wire()
        while lib().fpt_preload(self.ptr, tid, -1 if tgid is None else tgid, int(kthread),
                                (comm or "").encode("utf-8", "replace")[:16]) < 0:
            self._grow_tasks()
            self._wire()

    def copy(self) -> "EngineState":
        clone = object.__new__(EngineState)
        clone.e = self.e.copy()
        for name in self.ARRAYS:
            setattr(clone, name, getattr(self, name).copy())
        clone._rows = np.zeros(64, S.TASK_COUNTS)
        clone._wire()
        return clone

    # ------------------------------------------------------------ views for the accessors

    @property
    def scalars(self) -> np.void:
        return self.e[0]

    def live_tasks(self) -> np.ndarray:
        """The live tasks' rows (TASK dtype), in slot order."""
        t = self.tasks[:int(self.e["task_hwm"][0])]
        return S.take(t, t["n"]["uid"] >= 0)

    def cpu_rows(self) -> np.ndarray:
        return self.cpus[:int(self.e["ncpu"][0])]

    def caller_rows(self) -> np.ndarray:
        return self.callers[:int(self.e["ncallers"][0])]


NO_OUT = np.zeros(1, S.OUT)                # every output pointer NULL: nothing wanted
ROWS_NONE = np.zeros(0, S.TASK_COUNTS)
