"""``Model``: the streaming analysis behind report, estimate, the dashboard and the exporter.

Feed it event batches (``fputrace.events.EVENT_DTYPE``, sorted by time) as they come; ask for a
report, an estimate, a snapshot or a task's detail at any time. State is a handful of int64 arrays
that grow with the number of tasks, CPUs and kernel-FPU callers, never with the number of events.
``feed`` may run on a worker thread while another thread takes snapshots (one lock).
"""
from __future__ import annotations

import copy
import threading

import numpy as np

from fputrace.errors import FputraceError
from fputrace.events import Kind, args_to_comm
from . import engine
from .cost import CostModel, load_cost_model, xstate_table
from .layout import (CA_HIST, NCA, NCF, NHIST, NPF, NS, NTF, OWN_UNKNOWN, OWNER_RING, PP_EAGER,
                     PP_VALIDITY, RATE_SLOTS, S_FIRST_TS, S_FULL_MASK, S_HAS_UR_EVENTS, S_KFPU_EXACT, S_NPOL,
                     S_NTASKS, S_REC_DEFERRED, S_REC_POLICY, S_UR_ASSUMED, S_EXIT_STATES, CF_CUR, CF_OWNER,
                     CF_UNKNOWN, CF_PEND_KIND, TF_KTHREAD, TF_TGID, CF_KFPU_CALLER)
from .policies import DEFAULT_POLICIES, resolve, recorded_policy

MAX_TID = 1 << 24                   # pid_max cannot exceed 2^22; leave room, refuse nonsense


def _grow_rows(a: np.ndarray, rows: int, fill=0) -> np.ndarray:
    if a.shape[0] >= rows:
        return a
    extra = np.full((rows - a.shape[0],) + a.shape[1:], fill, dtype=a.dtype)
    return np.concatenate([a, extra])


def _modes_have(meta: dict, logical: str) -> bool:
    m = (meta.get("modes") or {}).get(logical)
    return bool(m) and str(m.get("attach", "")).lower() not in ("", "none", "unavailable", "n/a")


class Model:
    def __init__(self, meta: dict | None = None, policies=DEFAULT_POLICIES,
                 cost_model: CostModel | str | None = None, tasks=None):
        self.meta = dict(meta or {})
        self.requested = resolve(policies)
        rp, self.recorded_policy_source = recorded_policy(self.meta)
        self.recorded_policy = rp
        pols = list(self.requested)
        if rp is not None and all(p.name != rp for p in pols):
            from .policies import POLICIES
            pols.append(POLICIES[rp])     # needed for the self-check even if not asked for
        self.policies = pols
        self.cost_model = (cost_model if isinstance(cost_model, CostModel)
                           else load_cost_model(cost_model))
        sizes, mask, self.xstate_note = xstate_table(self.meta)
        self._FS = np.array(sizes, dtype=np.int64)
        npol = len(pols)
        self._PP = np.zeros((npol, 2), dtype=np.int64)
        for i, p in enumerate(pols):
            self._PP[i, PP_EAGER] = int(p.eager_restore)
            self._PP[i, PP_VALIDITY] = int(p.validity_shortcut)
        self._S = np.zeros(NS, dtype=np.int64)
        S = self._S
        S[S_FIRST_TS] = -1
        S[S_FULL_MASK] = mask
        S[S_NPOL] = npol
        S[S_REC_POLICY] = next((i for i, p in enumerate(pols) if p.name == rp), -1)
        # A deferred kernel's saves and restores are evidence of returns to user mode (engine
        # docstring); assume deferred when the metadata does not say (every kernel since 2019).
        S[S_REC_DEFERRED] = 0 if rp == "eager" else 1
        S[S_HAS_UR_EVENTS] = int(_modes_have(self.meta, "user_return"))
        kfpu_mode = (self.meta.get("modes") or {}).get("kfpu_begin") or {}
        S[S_KFPU_EXACT] = int(_modes_have(self.meta, "kfpu_begin") and bool(kfpu_mode.get("exact")))
        S[S_UR_ASSUMED] = int(rp == "eager" and not S[S_HAS_UR_EVENTS])
        # (added with the C engine: an exited task's last switch is the one with an exit state)
        S[S_EXIT_STATES] = int("sched_switch" in str(((self.meta.get("modes") or {}).get("switch")
                                                      or {}).get("attach", "")))
        self._slot = np.full(1024, -1, dtype=np.int64)
        self._T = np.zeros((256, NTF), dtype=np.int64)
        self._PT = np.zeros((npol, 256, NPF), dtype=np.int64)
        self._ncpu = 0
        self._alloc_cpus(max(1, int(self.meta.get("nr_cpus") or 1)))
        self._CA = np.zeros((16, NCA), dtype=np.int64)
        self._KH = np.zeros(NHIST, dtype=np.int64)
        self._callers: dict[int, int] = {}
        self._caller_addrs: list[int] = []
        self.comms: dict[int, str] = {}          # dense task index -> name
        self.lock = threading.Lock()
        if tasks is not None:
            self._preload_tasks(tasks)

    # ------------------------------------------------------------ state growth

    def _alloc_cpus(self, n: int) -> None:
        if n <= self._ncpu:
            return
        if self._ncpu == 0:
            npol = len(self.policies)
            self._C = np.zeros((n, NCF), dtype=np.int64)
            self._PC = np.full((npol, n), OWN_UNKNOWN, dtype=np.int64)
            self._RATE = np.zeros((n, 2, RATE_SLOTS), dtype=np.int64)
            self._RSEC = np.full((n, RATE_SLOTS), -1, dtype=np.int64)
            self._OTS = np.zeros((n, OWNER_RING), dtype=np.int64)
            self._OOWN = np.zeros((n, OWNER_RING), dtype=np.int64)
            self._OHEAD = np.zeros(n, dtype=np.int64)
            first = 0
        else:
            first = self._ncpu
            self._C = _grow_rows(self._C, n)
            self._PC = np.concatenate(
                [self._PC, np.full((self._PC.shape[0], n - first), OWN_UNKNOWN, np.int64)], axis=1)
            self._RATE = _grow_rows(self._RATE, n)
            self._RSEC = _grow_rows(self._RSEC, n, -1)
            self._OTS = _grow_rows(self._OTS, n)
            self._OOWN = _grow_rows(self._OOWN, n)
            self._OHEAD = _grow_rows(self._OHEAD, n)
        self._C[first:n, CF_CUR] = -1
        self._C[first:n, CF_OWNER] = OWN_UNKNOWN
        self._C[first:n, CF_UNKNOWN] = 0
        self._C[first:n, CF_KFPU_CALLER] = -1
        self._ncpu = n

    def _grow_tasks(self) -> None:
        rows = self._T.shape[0] * 2
        self._T = _grow_rows(self._T, rows)
        self._PT = np.concatenate(
            [self._PT, np.zeros((self._PT.shape[0], rows - self._PT.shape[1], NPF), np.int64)],
            axis=1)

    def _grow_slots(self, max_tid: int) -> None:
        if max_tid >= MAX_TID:
            raise FputraceError(f"task id {max_tid} is out of range (Linux pid_max <= 4194304)")
        if max_tid >= self._slot.shape[0]:
            size = max(max_tid + 1, self._slot.shape[0] * 2)
            self._slot = _grow_rows(self._slot, min(size, MAX_TID), -1)

    def _caller_indices(self, kind: np.ndarray, a1: np.ndarray) -> np.ndarray:
        idx = np.full(kind.shape[0], -1, dtype=np.int64)
        m = (kind == Kind.KFPU_BEGIN) | (kind == Kind.KFPU_END)
        if not m.any():
            return idx
        addrs = a1[m]
        uniq, inv = np.unique(addrs, return_inverse=True)
        mapped = np.empty(uniq.shape[0], dtype=np.int64)
        for j, addr in enumerate(uniq.tolist()):
            if addr == 0:
                mapped[j] = -1
                continue
            ci = self._callers.get(addr)
            if ci is None:
                ci = self._callers[addr] = len(self._caller_addrs)
                self._caller_addrs.append(addr)
            mapped[j] = ci
        if len(self._caller_addrs) > self._CA.shape[0]:
            self._CA = _grow_rows(self._CA, 2 * len(self._caller_addrs))
        idx[m] = mapped[inv]
        return idx

    def _preload_tasks(self, tasks) -> None:
        """Names and kernel-thread flags from a recording's task table (tid, comm, kthread)."""
        import pandas as pd
        df = tasks if isinstance(tasks, pd.DataFrame) else pd.DataFrame(tasks)
        if df.empty or "tid" not in df:
            return
        self._grow_slots(int(df["tid"].max()))
        for row in df.itertuples(index=False):
            while self._S[S_NTASKS] + 3 > self._T.shape[0]:
                self._grow_tasks()
            t = engine.get_task(int(row.tid), self._slot, self._T, self._PT, self._S,
                                len(self.policies))
            if getattr(row, "kthread", False):
                self._T[t, TF_KTHREAD] = 1
            if getattr(row, "tgid", None) is not None:
                self._T[t, TF_TGID] = int(row.tgid)
            comm = getattr(row, "comm", None)
            if comm:
                self.comms[t] = str(comm)

    # ------------------------------------------------------------ feeding

    def feed(self, batch: np.ndarray) -> None:
        n = batch.shape[0]
        if n == 0:
            return
        kind = batch["kind"]
        a0, a1, tid = batch["a0"], batch["a1"], batch["tid"]
        with self.lock:
            ref = (kind == Kind.SWITCH) | (kind == Kind.FORK)
            max_tid = int(tid.max())
            if ref.any():
                max_tid = max(max_tid, int((a0[ref] & 0xFFFFFFFF).max()))
            self._grow_slots(max_tid)
            self._alloc_cpus(int(batch["cpu"].max()) + 1)
            caller_idx = self._caller_indices(kind, a1)
            out_idx = np.full(n, -1, dtype=np.int64)
            out_other = np.full(n, -1, dtype=np.int64)
            i = 0
            while True:
                i = engine.run_batch(batch["ts_ns"], kind, batch["cpu"], tid, batch["tgid"], a0, a1,
                                     batch["flags"], caller_idx, i, out_idx, out_other,
                                     self._slot, self._T, self._PT, self._C, self._PC, self._PP,
                                     self._S, self._FS, self._CA, self._KH, self._RATE, self._RSEC,
                                     self._OTS, self._OOWN, self._OHEAD)
                if i >= n:
                    break
                self._grow_tasks()
            self._names(kind, a0, a1, out_idx, out_other)

    def _names(self, kind, a0, a1, out_idx, out_other) -> None:
        pos = np.flatnonzero((kind == Kind.COMM) | (kind == Kind.FORK))
        for j in pos.tolist():
            if kind[j] == Kind.COMM:
                self.comms[int(out_idx[j])] = args_to_comm(int(a0[j]), int(a1[j]))
            else:                          # a child starts with its parent's name
                parent = self.comms.get(int(out_idx[j]))
                if parent is not None and out_other[j] >= 0 and int(out_other[j]) not in self.comms:
                    self.comms[int(out_other[j])] = parent

    # ------------------------------------------------------------ views

    def _finished(self) -> "Model":
        """A copy whose held-back actions (at most one per CPU) are replayed as the stream's end.
        The live state is untouched, so feeding may continue."""
        if not self._C[:self._ncpu, CF_PEND_KIND].any():
            return self
        clone = copy.copy(self)
        for name in ("_T", "_PT", "_C", "_PC", "_S", "_OTS", "_OOWN", "_OHEAD"):
            setattr(clone, name, getattr(self, name).copy())
        engine.flush_all(self._ncpu, clone._PP, clone._PC, clone._PT, clone._T, clone._C,
                         clone._S, clone._FS)
        return clone

    def report(self):
        from .report import build_report
        with self.lock:
            return build_report(self._finished())

    def estimate(self, cost_model: CostModel | str | None = None):
        from .estimate import build_estimate
        cm = self.cost_model if cost_model is None else (
            cost_model if isinstance(cost_model, CostModel) else load_cost_model(cost_model))
        with self.lock:
            return build_estimate(self._finished(), cm)

    def snapshot(self, window_ns: int = 30_000_000_000):
        from .views import build_snapshot
        with self.lock:
            return build_snapshot(self, window_ns)

    def task_detail(self, tid: int):
        from .views import build_task_detail
        with self.lock:
            return build_task_detail(self, tid)

    # ------------------------------------------------------------ helpers for the views

    @property
    def ntasks(self) -> int:
        return int(self._S[S_NTASKS])

    def caller_name(self, ci: int) -> str:
        addr = self._caller_addrs[ci]
        syms = self.meta.get("symbols") or {}
        name = syms.get(f"0x{addr:x}") or syms.get(f"0x{addr:016x}") or syms.get(str(addr))
        return name or f"0x{addr:x}"

    def owners(self) -> dict:
        """Current owner per CPU, measured and per policy (for tests: one owner per CPU)."""
        with self.lock:
            n = self.ntasks
            T = self._T[:n]
            valid = {}
            for i, p in enumerate(self.policies):
                own = self._PC[i]
                lst = self._PT[i, :n, 6]           # PF_LASTCPU
                valid[p.name] = [int(o) if o >= 0 and lst[o] == c else -1
                                 for c, o in enumerate(own.tolist())]
            return {"measured": self._C[:, CF_OWNER].tolist(), "policies": valid,
                    "tgid": T[:, TF_TGID].tolist()}


__all__ = ["Model", "CA_HIST"]
