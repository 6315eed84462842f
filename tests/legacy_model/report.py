"""``Report``: the measured side of the model as DataFrames, JSON (SCHEMA.md), CSV and text."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .exactness import exactness
from .layout import (CA_HIST, CA_INFERRED, CA_MAX_NS, CA_SECTIONS, CA_TOTAL_NS, CF_KFPU, CF_LOST,
                     CF_OWNER, CF_XRSTOR, CF_XSAVE, NHIST, OWN_KERNEL, OWN_NONE, S_FIRST_TS, S_GAP,
                     S_LAST_TS, S_LOST, S_NEVENTS, S_UNEXPLAINED, S_UNSEEN_SAVES, STATE_NAMES, TF_AVOID, TF_GAP,
                     TF_GEN, TF_KFPU, TF_KFPU_INF, TF_KFPU_MAX_NS, TF_KFPU_NS, TF_KTHREAD,
                     TF_LAST_CPU, TF_STATE, TF_TGID, TF_TID, TF_XR, TF_XR_BYTES, TF_XS,
                     TF_XS_BYTES, XRSTOR_CAUSE_NAMES, XSAVE_CAUSE_NAMES)

SCHEMA_VERSION = 1


def bucket_bounds(b: int) -> tuple[int, int]:
    """Bucket b of the section-length histogram covers [lo, hi) nanoseconds."""
    return (0, 1) if b == 0 else (1 << (b - 1), 1 << b)


def hist_quantile(hist: np.ndarray, q: float) -> int:
    """Upper bound (ns) of the bucket holding the q-quantile; 0 for an empty histogram."""
    total = int(hist.sum())
    if total == 0:
        return 0
    b = int(np.searchsorted(np.cumsum(hist), q * total))
    return bucket_bounds(min(b, NHIST - 1))[1]


def owner_name(model, code: int) -> tuple[str, int]:
    if code >= 0:
        return "TASK", int(model._T[code, TF_TID])
    return {OWN_NONE: "NONE", OWN_KERNEL: "KERNEL"}.get(code, "UNKNOWN"), 0


def task_table(model, active_only: bool = True) -> pd.DataFrame:
    n = model.ntasks
    T = model._T[:n]
    xs = T[:, TF_XS:TF_XS + len(XSAVE_CAUSE_NAMES)]
    xr = T[:, TF_XR:TF_XR + len(XRSTOR_CAUSE_NAMES)]
    df = pd.DataFrame({
        "tid": T[:, TF_TID], "generation": T[:, TF_GEN], "tgid": T[:, TF_TGID],
        "comm": [model.comms.get(i, "") for i in range(n)],
        "kthread": T[:, TF_KTHREAD].astype(bool),
        "xsave": xs.sum(axis=1), "xrstor": xr.sum(axis=1), "avoidable_xrstor": T[:, TF_AVOID],
        "kfpu_sections": T[:, TF_KFPU], "kfpu_sections_inferred": T[:, TF_KFPU_INF],
        "kfpu_ns": T[:, TF_KFPU_NS], "kfpu_max_ns": T[:, TF_KFPU_MAX_NS],
        "xsave_bytes": T[:, TF_XS_BYTES], "xrstor_bytes": T[:, TF_XR_BYTES],
        "gap": T[:, TF_GAP].astype(bool),
        "state": pd.Categorical.from_codes(T[:, TF_STATE], categories=list(STATE_NAMES)),
        "last_cpu": T[:, TF_LAST_CPU],
    })
    for v, name in XSAVE_CAUSE_NAMES.items():
        df[f"xsave_{name}"] = xs[:, v]
    for v, name in XRSTOR_CAUSE_NAMES.items():
        df[f"xrstor_{name}"] = xr[:, v]
    if active_only:
        df = df[(df.xsave + df.xrstor + df.kfpu_sections) > 0]
    return df.sort_values(["xsave", "xrstor", "tid"], ascending=[False, False, True],
                          kind="stable").reset_index(drop=True)


def caller_table(model) -> pd.DataFrame:
    ncall = len(model._caller_addrs)
    CA = model._CA[:ncall]
    rows = []
    for ci in range(ncall):
        h = CA[ci, CA_HIST:CA_HIST + NHIST]
        rows.append({"caller": model.caller_name(ci), "address": f"0x{model._caller_addrs[ci]:x}",
                     "sections": int(CA[ci, CA_SECTIONS]),
                     "inferred_sections": int(CA[ci, CA_INFERRED]),
                     "total_ns": int(CA[ci, CA_TOTAL_NS]), "max_ns": int(CA[ci, CA_MAX_NS]),
                     "p50_ns": hist_quantile(h, 0.5), "p99_ns": hist_quantile(h, 0.99)})
    cols = ["caller", "address", "sections", "inferred_sections", "total_ns", "max_ns", "p50_ns",
            "p99_ns"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["sections", "caller"], ascending=[False, True]).reset_index(drop=True)


def hist_table(model) -> pd.DataFrame:
    nz = np.flatnonzero(model._KH)
    return pd.DataFrame({"lo_ns": [bucket_bounds(b)[0] for b in nz],
                         "hi_ns": [bucket_bounds(b)[1] for b in nz],
                         "count": model._KH[nz]}, columns=["lo_ns", "hi_ns", "count"])


def cpu_table(model) -> pd.DataFrame:
    C = model._C[:model._ncpu]
    own = [owner_name(model, int(o)) for o in C[:, CF_OWNER]]
    return pd.DataFrame({"cpu": np.arange(C.shape[0]), "xsave": C[:, CF_XSAVE],
                         "xrstor": C[:, CF_XRSTOR], "kfpu_sections": C[:, CF_KFPU],
                         "lost_events": C[:, CF_LOST], "owner": [o[0] for o in own],
                         "owner_tid": [o[1] for o in own]})


def cause_table(model) -> pd.DataFrame:
    n = model.ntasks
    T = model._T[:n]
    rows = [("XSAVE", name, int(T[:, TF_XS + v].sum())) for v, name in XSAVE_CAUSE_NAMES.items()]
    rows += [("XRSTOR", name, int(T[:, TF_XR + v].sum())) for v, name in XRSTOR_CAUSE_NAMES.items()]
    df = pd.DataFrame(rows, columns=["kind", "cause", "count"])
    return df[df["count"] > 0].reset_index(drop=True)


@dataclass
class Report:
    totals: dict
    per_task: pd.DataFrame
    per_cpu: pd.DataFrame
    per_cause: pd.DataFrame
    kfpu_callers: pd.DataFrame
    kfpu_hist: pd.DataFrame
    lost_events: int
    modes: dict
    exactness: dict
    recorded_policy: str | None
    meta: dict = field(default_factory=dict, repr=False)

    def filtered(self, pid: int | None = None, top: int | None = None) -> pd.DataFrame:
        df = self.per_task
        if pid is not None:
            df = df[(df.tid == pid) | (df.tgid == pid)]
        return df if top is None else df.head(top)

    def to_dict(self, pid: int | None = None, top: int | None = None) -> dict:
        tasks = self.filtered(pid, top).copy()
        tasks["state"] = tasks["state"].astype(str)
        return {
            "schema_version": SCHEMA_VERSION,
            "kernel_release": self.meta.get("kernel_release"),
            "recorded_policy": self.recorded_policy,
            "totals": self.totals,
            "per_task": _records(tasks),
            "per_cpu": _records(self.per_cpu),
            "per_cause": _records(self.per_cause),
            "kfpu_callers": _records(self.kfpu_callers),
            "kfpu_hist": _records(self.kfpu_hist),
            "lost_events": self.lost_events,
            "lost_per_cpu": {str(r.cpu): int(r.lost_events) for r in self.per_cpu.itertuples()
                             if r.lost_events},
            "modes": self.modes,
            "exactness": self.exactness,
        }

    def to_csv(self, pid: int | None = None, top: int | None = None) -> str:
        return self.filtered(pid, top).to_csv(index=False)

    def to_text(self, top: int | None = 20, pid: int | None = None) -> str:
        from .text import render_report
        return render_report(self, top=top, pid=pid)


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out


def build_report(model) -> Report:
    S = model._S
    per_task = task_table(model)
    hist = model._KH
    all_tasks = task_table(model, active_only=False)
    first, last = int(S[S_FIRST_TS]), int(S[S_LAST_TS])
    totals = {
        "events": int(S[S_NEVENTS]),
        "duration_ns": max(0, last - first) if first >= 0 else 0,
        "tasks": int(len(per_task)),
        "xsave": int(all_tasks.xsave.sum()),
        "xrstor": int(all_tasks.xrstor.sum()),
        "avoidable_xrstor": int(all_tasks.avoidable_xrstor.sum()),
        "kfpu_sections": int(all_tasks.kfpu_sections.sum()),
        "kfpu_sections_inferred": int(all_tasks.kfpu_sections_inferred.sum()),
        "kfpu_p50_ns": hist_quantile(hist, 0.5),
        "kfpu_p99_ns": hist_quantile(hist, 0.99),
        "kfpu_max_ns": int(all_tasks.kfpu_max_ns.max()) if len(all_tasks) else 0,
        "xsave_bytes": int(all_tasks.xsave_bytes.sum()),
        "xrstor_bytes": int(all_tasks.xrstor_bytes.sum()),
        "xsave_inferred_unseen": int(S[S_UNSEEN_SAVES]),
        "unexplained_xrstor": int(S[S_UNEXPLAINED]),
        "lost_events": int(S[S_LOST]),
        "gap_flagged": bool(S[S_GAP]),
    }
    return Report(totals=totals, per_task=per_task, per_cpu=cpu_table(model),
                  per_cause=cause_table(model), kfpu_callers=caller_table(model),
                  kfpu_hist=hist_table(model), lost_events=int(S[S_LOST]),
                  modes=dict(model.meta.get("modes") or {}), exactness=exactness(model),
                  recorded_policy=model.recorded_policy, meta=model.meta)
