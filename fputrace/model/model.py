"""``Model``: the streaming analysis behind report, estimate, the dashboard and the exports.

Feed it event batches (``fputrace.events.EVENT_DTYPE``, sorted by time) as they come; ask for a
report, an estimate, a snapshot or a task's detail at any time. The C engine (engine.c) does the
per-event work; this class owns its state (``state.EngineState``), the sinks that want per-event
annotations (``sinks.py``), and the rows of exited tasks.

Memory follows the tasks alive, not the trace: an exited task is retired once nothing refers to it
(its counts go into exact totals, its slot is reused). Its report row is kept only if it can be
asked for: ``top=N`` keeps the N first rows (the report's ``--top``), ``pid=P`` only P's tasks;
by default every row is kept (compactly, ~1 KB per exited task with any FPU activity).

``feed`` may run on a worker thread while another thread takes snapshots (one lock).
"""
from __future__ import annotations

import threading

import numpy as np

from .cost import CostModel, load_cost_model, xstate_table
from .policies import DEFAULT_POLICIES, POLICIES, recorded_policy, resolve
from .sinks import OutBuffers, Sink
from .state import ROWS_NONE, EngineState
from .structs import concat, take
from .tables import ModelView, primary_key, rank

COMPACT_EVERY = 4096                 # rows of exited tasks gathered before cutting to top N
FEED_STEP = 1 << 16                  # events per engine call (sinks see chunks of at most this)


def _modes_have(meta: dict, logical: str) -> bool:
    m = (meta.get("modes") or {}).get(logical)
    return bool(m) and str(m.get("attach", "")).lower() not in ("", "none", "unavailable", "n/a")


class Model:
    def __init__(self, meta: dict | None = None, policies=DEFAULT_POLICIES,
                 cost_model: CostModel | str | None = None, tasks=None, *, history=None,
                 top: int | None = None, pid: int | None = None, sort: str = "xsave"):
        """``history``: a sink the caller owns that keeps what only a screen needs (owner strips,
        rates, timelines: the dashboard's ``fputrace.tui.activity.RecentActivity``); snapshot and
        task detail read it (without one, or with a false value, strips are UNKNOWN and timelines
        empty);
        ``top``/``pid``/``sort``: which exited tasks' rows to keep (the first ``top`` of ``pid``'s
        tasks in ``sort`` order, ``tables.rank``; above)."""
        self.meta = dict(meta or {})
        self.requested = resolve(policies)
        rp, self.recorded_policy_source = recorded_policy(self.meta)
        self.recorded_policy = rp
        pols = list(self.requested)
        if rp is not None and all(p.name != rp for p in pols):
            pols.append(POLICIES[rp])     # needed for the self-check even if not asked for
        self.policies = pols
        self.cost_model = (cost_model if isinstance(cost_model, CostModel)
                           else load_cost_model(cost_model))
        sizes, mask, self.xstate_note = xstate_table(self.meta)
        has_ur = _modes_have(self.meta, "user_return")
        kfpu_mode = (self.meta.get("modes") or {}).get("kfpu_begin") or {}
        self._state = EngineState(
            policies=pols, rec_policy=next((i for i, p in enumerate(pols) if p.name == rp), -1),
            # a deferred kernel's saves and restores are evidence of returns to user mode
            # (engine.c); assume deferred when the metadata does not say (every kernel since 2019)
            rec_deferred=rp != "eager", has_ur_events=has_ur,
            ur_assumed=rp == "eager" and not has_ur,
            kfpu_exact=_modes_have(self.meta, "kfpu_begin") and bool(kfpu_mode.get("exact")),
            # sched_switch's prev_state tells an exited task's last switch from a preemption on
            # its way out (else: the first switch-out after EXIT is the last)
            exit_states="sched_switch" in str(((self.meta.get("modes") or {}).get("switch") or {})
                                              .get("attach", "")),
            xsizes=sizes, full_mask=mask, ncpu=int(self.meta.get("nr_cpus") or 1))
        self.top, self.pid, self.sort = top, pid, sort
        self._kept: list[np.ndarray] = []          # rows of exited tasks (TASK_COUNTS)
        self._kept_n = 0
        self._cut = None                            # the N-th kept row's primary_key, once known
        self._sinks: list[Sink] = []
        self._out = OutBuffers()
        self.lock = threading.Lock()
        if history is True:
            raise TypeError("history= takes the sink itself (fputrace.tui.activity.RecentActivity())")
        self.history = history or None
        if self.history is not None:
            self.add_sink(self.history)
        if tasks is not None:
            self._preload_tasks(tasks)

    def add_sink(self, sink: Sink) -> None:
        """Call ``sink.on_feed(batch, out)`` after every fed chunk (see ``sinks.py``)."""
        with self.lock:
            self._sinks.append(sink)

    def _preload_tasks(self, tasks) -> None:
        """Names and kernel-thread flags from a recording's task table (tid, tgid, comm, kthread)."""
        import pandas as pd
        df = tasks if isinstance(tasks, pd.DataFrame) else pd.DataFrame(tasks)
        if df.empty or "tid" not in df:
            return
        for row in df.itertuples(index=False):
            tgid = getattr(row, "tgid", None)
            self._state.preload(int(row.tid), None if tgid is None else int(tgid),
                                bool(getattr(row, "kthread", False)), getattr(row, "comm", None))

    # ------------------------------------------------------------ feeding

    def feed(self, batch: np.ndarray) -> None:
        """Analyse a batch, in steps of FEED_STEP events: between steps exited tasks retire, so
        their slots are reused while still in cache (a fork storm stays fast and small)."""
        for lo in range(0, batch.shape[0], FEED_STEP):
            step = batch[lo:lo + FEED_STEP]
            with self.lock:
                out = self._out if self._sinks else None
                if out is not None:
                    out.prepare(step.shape[0])
                self._state.feed(step, out)
                if out is not None:
                    result = out.result(step.shape[0])
                    for sink in self._sinks:
                        sink.on_feed(step, result)
                self._keep(self._state.retire(want_rows=self.top != 0))

    def _keep(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        if self.pid is not None:
            rows = take(rows, (rows["tid"] == self.pid) | (rows["tgid"] == self.pid))
        if self._cut is not None:            # below the N-th kept row already: never shown
            rows = take(rows, primary_key(rows, self.sort, self.cost_model) >= self._cut)
        if not len(rows):
            return
        self._kept.append(rows)
        self._kept_n += len(rows)
        if len(self._kept) > 64:                       # few large parts, not many small ones
            self._kept = [concat(self._kept)]
        if self.top is not None and self._kept_n > self.top + COMPACT_EVERY:
            kept = self._kept_rows()
            self._kept, self._kept_n = [kept], len(kept)
            if self.top and len(kept) == self.top:
                self._cut = primary_key(kept[-1:], self.sort, self.cost_model)[0]

    def _kept_rows(self) -> np.ndarray:
        if not self._kept:
            return ROWS_NONE
        if len(self._kept) > 1:                        # (kept joined once, not per view)
            self._kept = [concat(self._kept)]
        rows = self._kept[0]
        if self.top is not None and len(rows) > self.top:
            # an exited task's rank is final: the first N of them stay the first N, exactly
            rows = take(rows, rank(rows, self.sort, self.cost_model)[:self.top])
        return rows

    # ------------------------------------------------------------ views

    def view(self, final: bool = True) -> ModelView:
        """Accessors over the analysis so far (``tables.ModelView``). ``final``: as if the stream
        ended now (every CPU's held-back action replayed on a copy; feeding may continue).
        Call under ``self.lock`` when another thread may feed."""
        state = self._state
        if final and state.cpu_rows()["pend_kind"].any():
            state = state.copy()
            state.finish()
        return ModelView(self, state, self._kept_rows())

    def report(self):
        """The measured side; with ``top``/``pid`` set, ``per_task`` holds just those rows."""
        from .report import build_report
        with self.lock:
            rep = build_report(self.view())
        if self.top is not None or self.pid is not None:
            rep.tables["per_task"] = rep.task_rows(self.pid, self.top, self.sort)
        return rep

    def estimate(self, cost_model: CostModel | str | None = None):
        from .estimate import build_estimate
        cm = self.cost_model if cost_model is None else (
            cost_model if isinstance(cost_model, CostModel) else load_cost_model(cost_model))
        with self.lock:
            return build_estimate(self.view(), cm)

    def snapshot(self, window_ns: int = 30_000_000_000, final: bool = False):
        """The dashboard's picture. ``final``: as if the stream ended now (what report and
        estimate show: a replay at the end of its recording); by default the actions held back
        for the next event stay out, as they must while events keep coming."""
        from .views import build_snapshot
        with self.lock:
            return build_snapshot(self.view(final=final), self.history, window_ns)

    def task_detail(self, tid: int, final: bool = False):
        from .views import build_task_detail
        with self.lock:
            return build_task_detail(self.view(final=final), self.history, tid)

    def task_identity(self, task_ids):
        """DataFrame (task_id, tid, generation, tgid, comm, kthread) for task ids of a sink's
        ``FeedOutput``; valid for live tasks and kept rows (and for every id inside on_feed)."""
        return self.view(final=False).task_identity(task_ids)

    def stats(self) -> dict:
        """What the model holds now: live task slots, their capacity, kept rows of exited tasks."""
        with self.lock:
            e = self._state.scalars
            return {"live_tasks": int(e["task_hwm"] - e["nfree"]), "task_capacity": int(e["task_cap"]),
                    "kept_rows": sum(len(r) for r in self._kept), "retired_tasks": int(e["retired_tasks"])}

    def owners(self) -> dict:
        """Current owner of each CPU's registers, measured and per policy (task ids; tests)."""
        with self.lock:
            return self.view(final=False).owners()

    def copy(self) -> "Model":
        """An independent copy of the analysis so far (the dashboard's replay keeps copies as
        checkpoints to go back in time). Sinks added with ``add_sink`` are not copied: the copy
        has none, apart from its own copy of ``history``."""
        import copy as _copy
        with self.lock:
            clone = _copy.copy(self)
            clone._state = self._state.copy()
            clone._kept = list(self._kept)               # (rows are never changed in place)
            clone._out = OutBuffers()
            clone.lock = threading.Lock()
            clone.history = _copy.deepcopy(self.history)
            clone._sinks = [clone.history] if clone.history is not None else []
            return clone

    # ------------------------------------------------------------ names

    def caller_name(self, addr: int) -> str:
        addr &= (1 << 64) - 1
        syms = self.meta.get("symbols") or {}
        name = syms.get(f"0x{addr:x}") or syms.get(f"0x{addr:016x}") or syms.get(str(addr))
        return name or f"0x{addr:x}"


__all__ = ["Model"]
