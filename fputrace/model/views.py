"""Snapshot and TaskDetail for the dashboard (contract: ``snapshot.py``); cheap enough for 10 Hz.

Counts come from the model's accessors (``tables.ModelView``); owner strips, rates and timelines
from the recent-activity sink the dashboard hands the model (``fputrace.tui.activity``), if any.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import FputraceError
from .estimate import difference
from .snapshot import CpuView, OwnerInterval, PolicyView, Snapshot, TaskDetail
from .structs import CLASS_NAMES, XRSTOR_CAUSE_NAMES, XSAVE_CAUSE_NAMES

SNAPSHOT_TASK_COLUMNS = ["tid", "generation", "tgid", "comm", "kthread", "xsave", "xrstor",
                         "avoidable_xrstor", "kfpu_sections", "kfpu_ns", "state", "last_cpu", "bytes",
                         "components", "xstate_rank", "bytes_per_xsave", "bytes_share",
                         "cycles_share", "avoidable_bytes", "fputrace_own"]


def _policy_view(name: str, r: dict) -> PolicyView:
    return PolicyView(name, int(r["xsave"]), int(r["xrstor"]), int(r["avoidable_xrstor"]),
                      int(r["bytes"]), float(r["cycles"]))


def build_snapshot(view, history, window_ns: int) -> Snapshot:
    f = view.flags()
    now = view.now_ns
    lo = now - window_ns
    seconds = max(1, int(window_ns // 1_000_000_000))
    if history is not None:
        seconds = min(seconds, history.rate_slots)
    cpus = []
    for c, (kind, tid, comm) in enumerate(view.cpu_owners()):
        if history is not None:
            strip = history.strip(c, lo, now)
            xs, xr = history.rates(c, now, seconds)
        else:
            strip, xs, xr = (OwnerInterval(lo, now, "UNKNOWN"),), (0.0,) * seconds, (0.0,) * seconds
        cpus.append(CpuView(cpu=c, owner=kind, tid=tid, comm=comm if kind == "TASK" else "",
                            strip=strip, xsave_per_s=xs, xrstor_per_s=xr))
    tasks = view.task_columns()
    tasks["bytes"] = tasks["xsave_bytes"] + tasks["xrstor_bytes"]
    tasks["xstate_rank"] = np.array([CLASS_NAMES.index(c) for c in tasks["xstate_class"]], np.int64)
    tasks = tasks.select(SNAPSHOT_TASK_COLUMNS).frame()
    tasks["state"] = tasks["state"].astype(str)
    callers = view.caller_columns().select(["caller", "sections", "total_ns", "max_ns",
                                            "p99_ns"]).frame()
    rows = view.policy_rows([p.name for p in view.requested])
    diff = difference(rows)
    return Snapshot(now_ns=now, window_ns=window_ns, events=f["nevents"],
                    lost_events=f["lost"], gap_flagged=bool(f["gap"]), cpus=tuple(cpus),
                    tasks=tasks, kfpu_callers=callers,
                    kfpu_hist=view.hist_columns().select(["lo_ns", "count"]).frame(),
                    policies=tuple(_policy_view(r["policy"], r) for r in rows),
                    recorded_policy=view.recorded_policy or "unknown",
                    self_check=view.self_check(), cost_model=view.cost_model.name,
                    inferred_kinds=("KFPU_BEGIN", "XSAVE", "KFPU_END") if f["inferred"] else (),
                    difference=_policy_view("saved", diff) if diff else None,
                    xrstor_fewer_pct=diff["xrstor_fewer_pct"] if diff else None)


def build_task_detail(view, history, tid: int) -> TaskDetail:
    n = view.newest(tid)                   # the newest generation of a reused tid
    if n is None:
        raise FputraceError(f"task {tid} does not appear in the trace")
    rows = [("XSAVE", name, int(n["xsave"][v]), 0) for v, name in XSAVE_CAUSE_NAMES.items()]
    rows += [("XRSTOR", name, int(n["xrstor"][v]), int(n["avoidable"][v]))
             for v, name in XRSTOR_CAUSE_NAMES.items()]
    causes = pd.DataFrame([r for r in rows if r[2] > 0],
                          columns=["kind", "cause", "count", "avoidable"])
    timeline = []
    if history is not None:
        timeline = history.timeline(int(n["uid"]), view.now_ns, user_state=not n["kthread"],
                                    alive=view.is_alive(int(n["uid"])))
    tl = pd.DataFrame(timeline, columns=["start_ns", "end_ns", "state"])
    return TaskDetail(tid=tid, tgid=int(n["tgid"]), comm=n["comm"].decode("utf-8", "replace"),
                      causes=causes, timeline=tl)
