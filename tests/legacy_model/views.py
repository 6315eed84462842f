"""Snapshot and TaskDetail for the dashboard (contract: ``snapshot.py``); cheap enough for 10 Hz."""
from __future__ import annotations

import numpy as np
import pandas as pd

from fputrace.errors import FputraceError
from .estimate import policy_totals, self_check
from .layout import (CF_OWNER, OWNER_RING, RATE_SLOTS, S_GAP, S_INFERRED, S_LAST_TS, S_LOST,
                     S_NEVENTS, TF_TID, TF_TGID, TF_XR, TF_XS, TF_AVOID, XRSTOR_CAUSE_NAMES,
                     XSAVE_CAUSE_NAMES, TF_PENDING)
from .report import caller_table, hist_table, owner_name, task_table
from .snapshot import CpuView, OwnerInterval, PolicyView, Snapshot, TaskDetail

MAX_STRIP = 256                      # owner intervals per CPU in a snapshot (downsampled beyond)
SNAPSHOT_TASK_COLUMNS = ["tid", "tgid", "comm", "kthread", "xsave", "xrstor", "avoidable_xrstor",
                         "kfpu_sections", "kfpu_ns", "state", "last_cpu"]


def _strip(model, c: int, lo_ns: int, now_ns: int) -> tuple[OwnerInterval, ...]:
    head = int(model._OHEAD[c])
    n = min(head, OWNER_RING)
    if n == 0:
        return (OwnerInterval(lo_ns, now_ns, "UNKNOWN"),)
    idx = np.arange(head - n, head) % OWNER_RING
    ts, own = model._OTS[c, idx], model._OOWN[c, idx]
    first = max(0, int(np.searchsorted(ts, lo_ns, side="right")) - 1)
    ts, own = ts[first:], own[first:]
    n = len(ts)
    if n > MAX_STRIP:   # a strip is a few hundred cells wide: keep evenly spaced changes
        keep = np.unique(np.linspace(0, n - 1, MAX_STRIP).astype(np.int64))
        ts, own, n = ts[keep], own[keep], len(keep)
    out = []
    for j in range(n):
        start = max(int(ts[j]), lo_ns)
        end = int(ts[j + 1]) if j + 1 < n else now_ns
        if end < start:
            continue
        kind, tid = owner_name(model, int(own[j]))
        out.append(OwnerInterval(start, end, kind, tid))
    if out and out[0].start_ns > lo_ns and head <= OWNER_RING:
        out.insert(0, OwnerInterval(lo_ns, out[0].start_ns, "UNKNOWN"))
    return tuple(out)


def _rates(model, c: int, now_ns: int, seconds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    now_s = now_ns // 1_000_000_000
    secs = np.arange(now_s - seconds + 1, now_s + 1)
    slots = secs % RATE_SLOTS
    ok = model._RSEC[c, slots] == secs
    xs = np.where(ok, model._RATE[c, 0, slots], 0).astype(float)
    xr = np.where(ok, model._RATE[c, 1, slots], 0).astype(float)
    return tuple(xs.tolist()), tuple(xr.tolist())


def build_snapshot(model, window_ns: int) -> Snapshot:
    S = model._S
    now = int(S[S_LAST_TS])
    lo = now - window_ns
    seconds = max(1, min(RATE_SLOTS, int(window_ns // 1_000_000_000)))
    cpus = []
    for c in range(model._ncpu):
        kind, tid = owner_name(model, int(model._C[c, CF_OWNER]))
        tidx = int(model._C[c, CF_OWNER])
        xs, xr = _rates(model, c, now, seconds)
        cpus.append(CpuView(cpu=c, owner=kind, tid=tid,
                            comm=model.comms.get(tidx, "") if kind == "TASK" else "",
                            strip=_strip(model, c, lo, now), xsave_per_s=xs, xrstor_per_s=xr))
    tasks = task_table(model)[SNAPSHOT_TASK_COLUMNS].copy()
    tasks["state"] = tasks["state"].astype(str)
    callers = caller_table(model)[["caller", "sections", "total_ns", "max_ns", "p99_ns"]]
    pol = policy_totals(model, model.cost_model, [p.name for p in model.requested])
    policies = tuple(PolicyView(name, int(r.xsave), int(r.xrstor), int(r.avoidable_xrstor),
                                int(r.bytes), float(r.cycles)) for name, r in pol.iterrows())
    sc = self_check(model)
    inferred = ("KFPU_BEGIN", "XSAVE", "KFPU_END") if S[S_INFERRED] else ()
    return Snapshot(now_ns=now, window_ns=window_ns, events=int(S[S_NEVENTS]),
                    lost_events=int(S[S_LOST]), gap_flagged=bool(S[S_GAP]), cpus=tuple(cpus),
                    tasks=tasks.reset_index(drop=True), kfpu_callers=callers,
                    kfpu_hist=hist_table(model)[["lo_ns", "count"]], policies=policies,
                    recorded_policy=model.recorded_policy or "unknown",
                    self_check=float("nan") if sc is None else sc,
                    cost_model=model.cost_model.name, inferred_kinds=inferred)


def build_task_detail(model, tid: int) -> TaskDetail:
    n = model.ntasks
    T = model._T[:n]
    gens = np.flatnonzero(T[:, TF_TID] == tid)
    if gens.size == 0:
        raise FputraceError(f"task {tid} does not appear in the trace")
    t = int(gens[-1])                      # the newest generation of a reused tid
    rows = [("XSAVE", name, int(T[t, TF_XS + v]), 0) for v, name in XSAVE_CAUSE_NAMES.items()]
    rows += [("XRSTOR", name, int(T[t, TF_XR + v]), 0) for v, name in XRSTOR_CAUSE_NAMES.items()]
    causes = pd.DataFrame(rows, columns=["kind", "cause", "count", "avoidable"])
    causes = causes[causes["count"] > 0].reset_index(drop=True)
    if len(causes):
        causes.loc[causes.kind == "XRSTOR", "avoidable"] = 0
        causes.attrs["avoidable_xrstor"] = int(T[t, TF_AVOID])
    timeline = []
    for c in range(model._ncpu):
        head = int(model._OHEAD[c])
        k = min(head, OWNER_RING)
        idx = np.arange(head - k, head) % OWNER_RING
        ts, own = model._OTS[c, idx], model._OOWN[c, idx]
        for j in np.flatnonzero(own == t).tolist():
            end = int(ts[j + 1]) if j + 1 < k else int(model._S[S_LAST_TS])
            timeline.append((int(ts[j]), end, f"regs:{c}"))
    timeline.sort()
    tl = pd.DataFrame(timeline, columns=["start_ns", "end_ns", "state"])
    return TaskDetail(tid=tid, tgid=int(T[t, TF_TGID]), comm=model.comms.get(t, ""),
                      causes=causes, timeline=tl)
