"""Interval aggregation of the model's cumulative counts, shared by ``fputrace stat`` and the exporter.

The model counts cumulatively; a view that prints "what happened in the last second" (stat) or
attributes counts to bounded labels (the exporter) needs the *increase* since it last looked, per
task. ``Intervals.advance(report)`` returns it as an ``Interval``.

Why per task (tid + generation) and not per name: the report names a task by its newest name, so a
task that execs moves all its earlier counts to its new name; per-task increases attribute each
count to the name the task had when it was counted. A report's counts can also step back by one at
the end of a stream (the model replays each CPU's held-back action as if nothing followed it, then
resolves it differently when the next event comes): increases are taken against the highest value
seen so far, so nothing is counted twice and no increase is ever negative.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..events import XrstorCause, XsaveCause

XSAVE_CAUSES = [c.name.lower() for c in XsaveCause]
XRSTOR_CAUSES = [c.name.lower() for c in XrstorCause]
TASK_COUNTERS = ([f"xsave_{c}" for c in XSAVE_CAUSES] + [f"xrstor_{c}" for c in XRSTOR_CAUSES]
                 + ["avoidable_xrstor", "kfpu_sections", "kfpu_sections_inferred", "kfpu_ns",
                    "xsave_bytes", "xrstor_bytes"])
CALLER_COUNTERS = ["sections", "total_ns"]
UNKNOWN_CALLER = "unknown"        # kernel-FPU sections without a caller address (inferred ones)
TOTAL_COUNTERS = ["events", "lost_events", "xsave_inferred_unseen", "unexplained_xrstor"]


@dataclass
class Interval:
    start_s: float
    end_s: float
    tasks: pd.DataFrame        # one row per task generation with any increase: tid, generation,
                               # tgid, comm, kthread, TASK_COUNTERS, xsave, xrstor (sums of causes)
    callers: pd.DataFrame      # caller, sections, total_ns: increases
    hist: pd.DataFrame         # lo_ns, hi_ns, count: increases of the section-length histogram
    lost_per_cpu: dict         # {cpu: increase}
    totals: dict               # increases: xsave, xrstor, avoidable_xrstor, kfpu_sections,
                               # kfpu_ns, xsave_bytes, xrstor_bytes and TOTAL_COUNTERS

    def top_tasks(self, n: int) -> pd.DataFrame:
        t = self.tasks
        return t.sort_values(["xsave", "xrstor", "kfpu_sections", "tid"],
                             ascending=[False, False, False, True], kind="stable").head(n)


class _Running:
    """The highest cumulative value seen per (key, counter): increases never go negative."""

    def __init__(self, counters: list[str]):
        self.counters = counters
        self.high: dict = {}

    def advance(self, keys: list, values: np.ndarray) -> np.ndarray:
        """``values`` (rows = keys, columns = counters): cumulative now -> increases."""
        old = np.array([self.high.get(k, np.zeros(len(self.counters), np.int64)) for k in keys],
                       np.int64).reshape(len(keys), len(self.counters))
        new = np.maximum(old, values)
        for k, row in zip(keys, new):
            self.high[k] = row
        return new - old


class Intervals:
    """``advance(report, now_s)``: the increases since the previous call (or since ``start_s``,
    or for a first call without it, an interval of length zero)."""

    def __init__(self, start_s: float | None = None):
        self._tasks = _Running(TASK_COUNTERS)
        self._callers = _Running(CALLER_COUNTERS)
        self._hist = _Running(["count"])
        self._lost = _Running(["lost_events"])
        self._totals = _Running(TOTAL_COUNTERS)
        self._last_s = start_s

    def advance(self, report, now_s: float) -> Interval:
        start = self._last_s if self._last_s is not None else now_s
        self._last_s = now_s
        pt = report.per_task
        keys = list(zip(pt.tid.tolist(), pt.generation.tolist()))
        inc = self._tasks.advance(keys, pt[TASK_COUNTERS].to_numpy(np.int64))
        tasks = pd.DataFrame(inc, columns=TASK_COUNTERS)
        for col in ("kthread", "comm", "tgid", "generation", "tid"):
            tasks.insert(0, col, pt[col].to_numpy())
        tasks["xsave"] = tasks[[f"xsave_{c}" for c in XSAVE_CAUSES]].sum(axis=1)
        tasks["xrstor"] = tasks[[f"xrstor_{c}" for c in XRSTOR_CAUSES]].sum(axis=1)
        tasks = tasks[(tasks[TASK_COUNTERS] != 0).any(axis=1)].reset_index(drop=True)

        kc = report.kfpu_callers
        # sections whose caller the mode could not see (inferred ones): one more row, so that
        # the callers' sections add up to the total
        uncalled = max(0, int(report.totals["kfpu_sections"]) - int(kc.sections.sum()))
        cum = np.vstack([kc[CALLER_COUNTERS].to_numpy(np.int64).reshape(-1, 2), [[uncalled, 0]]])
        cinc = self._callers.advance(kc.address.tolist() + [None], cum)
        callers = pd.DataFrame(cinc, columns=CALLER_COUNTERS)
        callers.insert(0, "caller", kc.caller.tolist() + [UNKNOWN_CALLER])
        callers = callers[callers.sections > 0].reset_index(drop=True)

        kh = report.kfpu_hist
        hinc = self._hist.advance(kh.lo_ns.tolist(), kh[["count"]].to_numpy(np.int64))
        hist = pd.DataFrame({"lo_ns": kh.lo_ns.to_numpy(), "hi_ns": kh.hi_ns.to_numpy(),
                             "count": hinc[:, 0]})
        hist = hist[hist["count"] > 0].reset_index(drop=True)

        pc = report.per_cpu
        linc = self._lost.advance(pc.cpu.tolist(), pc[["lost_events"]].to_numpy(np.int64))
        lost = {int(c): int(v) for c, v in zip(pc.cpu.tolist(), linc[:, 0])}

        tot = report.totals
        tinc = self._totals.advance(["totals"], np.array([[tot[k] for k in TOTAL_COUNTERS]], np.int64))
        totals = dict(zip(TOTAL_COUNTERS, (int(v) for v in tinc[0])))
        for k in ("xsave", "xrstor", "avoidable_xrstor", "kfpu_sections", "kfpu_ns",
                  "xsave_bytes", "xrstor_bytes"):
            totals[k] = int(tasks[k].sum())
        return Interval(start, now_s, tasks, callers, hist, lost, totals)
