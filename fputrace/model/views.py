"""Snapshot and TaskDetail for the dashboard (contract: ``snapshot.py``); cheap enough for 10 Hz.

Counts come from the model's accessors (``tables.ModelView``); owner strips, rates and timelines
from the dashboard's recent-activity sink (``history.RecentActivity``), when the model keeps one.
"""
from __future__ import annotations

import pandas as pd

from ..errors import FputraceError
from .cost import class_rank, components_label
from .history import MAX_STRIP, RATE_SLOTS  # noqa: F401  (MAX_STRIP: part of the contract)
from .snapshot import CpuView, OwnerInterval, PolicyView, Snapshot, TaskDetail
from .structs import XRSTOR_CAUSE_NAMES, XSAVE_CAUSE_NAMES

SNAPSHOT_TASK_COLUMNS = ["tid", "tgid", "comm", "kthread", "xsave", "xrstor", "avoidable_xrstor",
                         "kfpu_sections", "kfpu_ns", "state", "last_cpu", "bytes", "components",
                         "xstate_rank"]


def build_snapshot(view, history, window_ns: int) -> Snapshot:
    f = view.flags()
    now = view.now_ns
    lo = now - window_ns
    seconds = max(1, min(RATE_SLOTS, int(window_ns // 1_000_000_000)))
    cpus = []
    for c, (kind, tid, comm) in enumerate(view.cpu_owners()):
        if history is not None:
            strip = history.strip(c, lo, now)
            xs, xr = history.rates(c, now, seconds)
        else:
            strip, xs, xr = (OwnerInterval(lo, now, "UNKNOWN"),), (0.0,) * seconds, (0.0,) * seconds
        cpus.append(CpuView(cpu=c, owner=kind, tid=tid, comm=comm if kind == "TASK" else "",
                            strip=strip, xsave_per_s=xs, xrstor_per_s=xr))
    tasks = view.tasks()
    tasks["bytes"] = tasks["xsave_bytes"] + tasks["xrstor_bytes"]
    seen = pd.Series(view.xfeatures_seen())                                 # same rows
    labels = {x: (components_label(x), class_rank(x)) for x in seen.unique().tolist()}
    tasks["components"] = seen.map(lambda x: labels[x][0]).to_numpy()
    tasks["xstate_rank"] = seen.map(lambda x: labels[x][1]).to_numpy()
    tasks = tasks[SNAPSHOT_TASK_COLUMNS].copy()
    tasks["state"] = tasks["state"].astype(str)
    callers = view.callers()[["caller", "sections", "total_ns", "max_ns", "p99_ns"]]
    pol = view.policy_totals([p.name for p in view.requested])
    policies = tuple(PolicyView(name, int(r.xsave), int(r.xrstor), int(r.avoidable_xrstor),
                                int(r.bytes), float(r.cycles)) for name, r in pol.iterrows())
    sc = view.self_check()
    inferred = ("KFPU_BEGIN", "XSAVE", "KFPU_END") if f["inferred"] else ()
    return Snapshot(now_ns=now, window_ns=window_ns, events=f["nevents"],
                    lost_events=f["lost"], gap_flagged=bool(f["gap"]), cpus=tuple(cpus),
                    tasks=tasks.reset_index(drop=True), kfpu_callers=callers,
                    kfpu_hist=view.kfpu_hist()[["lo_ns", "count"]], policies=policies,
                    recorded_policy=view.recorded_policy or "unknown",
                    self_check=float("nan") if sc is None else sc,
                    cost_model=view.cost_model.name, inferred_kinds=inferred)


def build_task_detail(view, history, tid: int) -> TaskDetail:
    n = view.newest(tid)                   # the newest generation of a reused tid
    if n is None:
        raise FputraceError(f"task {tid} does not appear in the trace")
    rows = [("XSAVE", name, int(n["xsave"][v]), 0) for v, name in XSAVE_CAUSE_NAMES.items()]
    rows += [("XRSTOR", name, int(n["xrstor"][v]), 0) for v, name in XRSTOR_CAUSE_NAMES.items()]
    causes = pd.DataFrame(rows, columns=["kind", "cause", "count", "avoidable"])
    causes = causes[causes["count"] > 0].reset_index(drop=True)
    if len(causes):
        causes.loc[causes.kind == "XRSTOR", "avoidable"] = 0
        causes.attrs["avoidable_xrstor"] = int(n["avoidable"].sum())
    timeline = []
    if history is not None:
        timeline = [s for s in history.timeline(int(n["uid"]), view.now_ns, user_state=False,
                                                alive=True) if s[2].startswith("regs")]
    tl = pd.DataFrame(timeline, columns=["start_ns", "end_ns", "state"])
    return TaskDetail(tid=tid, tgid=int(n["tgid"]), comm=n["comm"].decode("utf-8", "replace"),
                      causes=causes, timeline=tl)
