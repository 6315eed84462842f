"""``Report``: the measured side of the model as tables, JSON (SCHEMA.md), CSV and text.

The tables are ``Columns``; the DataFrame attributes (``per_task``, ``per_cpu``, ...) are made on
first use, so the CLI's text/JSON/CSV output never imports pandas.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .columns import Columns
from .exactness import exactness
from .structs import CLASS_NAMES
from .tables import SORT_KEYS, bucket_bounds, hist_quantile  # noqa: F401  (this module's API)

SCHEMA_VERSION = 1


@dataclass
class Report:
    totals: dict
    tables: dict                       # per_task, per_cpu, per_cause, per_class, kfpu_callers, kfpu_hist
    lost_events: int
    modes: dict
    exactness: dict
    recorded_policy: str | None
    meta: dict = field(default_factory=dict, repr=False)
    cost_model: str = "builtin-default"   # the cost model the cycles come from

    # DataFrames (pandas) of the tables, for Python users
    @cached_property
    def per_task(self):
        return self.tables["per_task"].frame()

    @cached_property
    def per_cpu(self):
        return self.tables["per_cpu"].frame()

    @cached_property
    def per_cause(self):
        return self.tables["per_cause"].frame()

    @cached_property
    def per_class(self):
        """class, xsave, xrstor, bytes, cycles, charged_set, match."""
        return self.tables["per_class"].frame()

    @cached_property
    def kfpu_callers(self):
        return self.tables["kfpu_callers"].frame()

    @cached_property
    def kfpu_hist(self):
        return self.tables["kfpu_hist"].frame()

    def task_rows(self, pid: int | None = None, top: int | None = None,
                  sort: str = "xsave") -> Columns:
        t = self.tables["per_task"]
        if pid is not None:
            t = t.take((t["tid"] == pid) | (t["tgid"] == pid))
        if sort != "xsave":            # xsave: the model's own order (most XSAVEs first)
            t = t.take(sort_order(t, sort))
        return t.head(top)

    def filtered(self, pid: int | None = None, top: int | None = None, sort: str = "xsave"):
        """DataFrame of the task rows with tid or tgid ``pid``, by ``sort``, the first ``top``."""
        return self.task_rows(pid, top, sort).frame()

    def to_dict(self, pid: int | None = None, top: int | None = None, sort: str = "xsave") -> dict:
        cpus = self.tables["per_cpu"]
        return {
            "schema_version": SCHEMA_VERSION,
            "kernel_release": self.meta.get("kernel_release"),
            "recorded_policy": self.recorded_policy,
            "totals": self.totals,
            "per_task": self.task_rows(pid, top, sort).records(),
            "per_cpu": cpus.records(),
            "per_cause": self.tables["per_cause"].records(),
            "per_class": self.tables["per_class"].records(),
            "kfpu_callers": self.tables["kfpu_callers"].records(),
            "kfpu_hist": self.tables["kfpu_hist"].records(),
            "lost_events": self.lost_events,
            "lost_per_cpu": {str(c): int(n) for c, n in zip(cpus["cpu"].tolist(),
                                                             cpus["lost_events"].tolist()) if n},
            "modes": self.modes,
            "exactness": self.exactness,
            "cost_model": self.cost_model,
        }

    def to_csv(self, pid: int | None = None, top: int | None = None, sort: str = "xsave") -> str:
        return self.task_rows(pid, top, sort).to_csv()

    def write_json(self, out, pid: int | None = None, top: int | None = None, sort: str = "xsave",
                   **extra) -> None:
        """``to_dict`` (plus ``extra`` keys) as JSON into ``out``, the per-task rows streamed one
        line each: a fork storm's 400k rows never become 400k Python dicts at once."""
        d = self.to_dict(pid=pid, top=0, sort=sort)
        d.update(extra)
        del d["per_task"]
        body = json.dumps(d, indent=1)
        out.write(body[:-2] + ',\n "per_task": [')
        for i, rec in enumerate(self.task_rows(pid, top, sort).iter_records()):
            out.write(("\n  " if i == 0 else ",\n  ") + json.dumps(rec))
        out.write("\n ]\n}\n")

    def write_csv(self, out, pid: int | None = None, top: int | None = None,
                  sort: str = "xsave") -> None:
        self.task_rows(pid, top, sort).write_csv(out)

    def to_text(self, top: int | None = 20, pid: int | None = None, sort: str = "xsave") -> str:
        from .text import render_report
        return render_report(self, top=top, pid=pid, sort=sort)


def sort_order(t: Columns, key: str) -> np.ndarray:
    """Row order for ``report --sort`` (the same as ``tables.rank`` with that key): ``bytes``
    (moved, most first), ``components`` (largest state first: AMX, AVX-512, AVX, SSE; then bytes),
    ``cycles``; ties by tid, then the model's order."""
    moved = t["xsave_bytes"] + t["xrstor_bytes"]
    tid = t["tid"]
    if key == "bytes":
        return np.lexsort((tid, -moved))
    if key == "cycles":
        return np.lexsort((tid, -t["cycles"]))
    if key == "components":
        order = {c: i for i, c in enumerate(CLASS_NAMES)}
        return np.lexsort((tid, -moved, -np.array([order[c] for c in t["xstate_class"]], np.int64)))
    raise ValueError(f"unknown sort key {key!r} (choose among {', '.join(SORT_KEYS)})")


def build_report(view) -> Report:
    """The measured side of one ``tables.ModelView``."""
    totals = view.totals()
    # runs of the capture's programs the kernel skipped (recursion protection): unseen events
    totals["bpf_recursion_misses"] = int(sum((view.meta.get("recursion_misses") or {}).values()))
    per_class = view.class_table("measured")
    totals["cycles"] = float(per_class["cycles"].sum())
    tables = {"per_task": view.task_columns(), "per_cpu": view.cpu_columns(),
              "per_cause": view.cause_columns(), "per_class": per_class,
              "kfpu_callers": view.caller_columns(), "kfpu_hist": view.hist_columns()}
    return Report(totals=totals, tables=tables, lost_events=totals["lost_events"],
                  modes=dict(view.meta.get("modes") or {}), exactness=exactness(view),
                  recorded_policy=view.recorded_policy, meta=view.meta,
                  cost_model=view.cost_model.name)
