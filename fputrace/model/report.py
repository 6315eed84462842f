"""``Report``: the measured side of the model as DataFrames, JSON (SCHEMA.md), CSV and text."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cost import CLASS_NAMES, class_table, task_xstate_columns
from .exactness import exactness
from .tables import bucket_bounds, hist_quantile  # noqa: F401  (part of this module's API)

SCHEMA_VERSION = 1


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
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)   # class, xsave, xrstor, bytes, cycles
    cost_model: str = "builtin-default"

    def filtered(self, pid: int | None = None, top: int | None = None,
                 sort: str = "xsave") -> pd.DataFrame:
        df = self.per_task
        if pid is not None:
            df = df[(df.tid == pid) | (df.tgid == pid)]
        if sort != "xsave":            # xsave: the model's own order (most XSAVEs first)
            df = df.iloc[sort_order(df, sort)]
        return df if top is None else df.head(top)

    def to_dict(self, pid: int | None = None, top: int | None = None, sort: str = "xsave") -> dict:
        tasks = self.filtered(pid, top, sort).copy()
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
            "per_class": _records(self.per_class),
            "cost_model": self.cost_model,
        }

    def to_csv(self, pid: int | None = None, top: int | None = None, sort: str = "xsave") -> str:
        return self.filtered(pid, top, sort).to_csv(index=False)

    def to_text(self, top: int | None = 20, pid: int | None = None, sort: str = "xsave") -> str:
        from .text import render_report
        return render_report(self, top=top, pid=pid, sort=sort)


SORT_KEYS = ("xsave", "bytes", "components", "cycles")


def sort_order(df: pd.DataFrame, key: str) -> np.ndarray:
    """Row order for ``report --sort``: ``bytes`` (moved, most first), ``components`` (largest
    state first: AMX, AVX-512, AVX, SSE; then bytes), ``cycles``; ties by tid."""
    moved = (df["xsave_bytes"] + df["xrstor_bytes"]).to_numpy()
    tid = df["tid"].to_numpy()
    if key == "bytes":
        return np.lexsort((tid, -moved))
    if key == "cycles":
        return np.lexsort((tid, -df["cycles"].to_numpy()))
    if key == "components":
        rank = df["xstate_class"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()
        return np.lexsort((tid, -moved, -rank))
    raise ValueError(f"unknown sort key {key!r} (choose among {', '.join(SORT_KEYS)})")


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out


def build_report(view) -> Report:
    """The measured side of one ``tables.ModelView``."""
    totals = view.totals()
    # runs of the capture's programs the kernel skipped (recursion protection): unseen events
    totals["bpf_recursion_misses"] = int(sum((view.meta.get("recursion_misses") or {}).values()))
    cost = view.cost_model
    per_class = class_table(view.class_totals(), cost)
    totals["cycles"] = float(per_class["cycles"].sum())
    per_task = view.tasks()
    per_task = pd.concat([per_task, task_xstate_columns(
        per_task, view.task_xstate(), cost, totals["xsave_bytes"] + totals["xrstor_bytes"],
        totals["cycles"])], axis=1)
    return Report(totals=totals, per_task=per_task, per_cpu=view.cpus(),
                  per_cause=view.causes(), kfpu_callers=view.callers(),
                  kfpu_hist=view.kfpu_hist(), lost_events=totals["lost_events"],
                  modes=dict(view.meta.get("modes") or {}), exactness=exactness(view),
                  recorded_policy=view.recorded_policy, meta=view.meta, per_class=per_class,
                  cost_model=cost.name)
