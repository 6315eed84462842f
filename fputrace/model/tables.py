"""``ModelView``: the model's accessors. Every number report, estimate, the dashboard and the
exports show comes from here, as DataFrames (documented columns, units in the names) or dicts.

A view reads one ``EngineState`` (the live one, or a finished copy) plus the rows of exited tasks
the model kept; nothing outside ``fputrace.model`` touches the engine's arrays.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import structs as S
from .structs import (concat, take, CLASS_NAMES, NHIST, OWN_KERNEL, OWN_NONE, STATE_NAMES, XRSTOR_CAUSE_NAMES,
                      XSAVE_CAUSE_NAMES)

NXS, NXR = len(XSAVE_CAUSE_NAMES), len(XRSTOR_CAUSE_NAMES)


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


def rank(counts: np.ndarray) -> np.ndarray:
    """Order of task rows in every table: most XSAVEs first, then XRSTORs, then tid, generation."""
    xs = counts["xsave"].sum(axis=1)
    xr = counts["xrstor"].sum(axis=1)
    return np.lexsort((counts["uid"], counts["tid"], -xr, -xs))


def is_active(counts: np.ndarray) -> np.ndarray:
    return (counts["xsave"].sum(axis=1) + counts["xrstor"].sum(axis=1)
            + counts["kfpu_sections"]) > 0


class ModelView:
    def __init__(self, model, state, finished_rows: np.ndarray):
        self.meta = model.meta
        self.policies = model.policies           # replayed (the requested + the recorded one)
        self.requested = model.requested
        self.recorded_policy = model.recorded_policy
        self.cost_model = model.cost_model
        self.xstate_note = model.xstate_note
        self._caller_name = model.caller_name
        self._state = state
        self._e = state.scalars
        self._live = state.live_tasks()
        self._finished = finished_rows

    # ------------------------------------------------------------ scalars

    @property
    def now_ns(self) -> int:
        return int(self._e["last_ts"])

    def flags(self) -> dict:
        """What the numbers rest on: counters of the stream as a whole."""
        e = self._e
        return {k: int(e[k]) for k in ("nevents", "first_ts", "last_ts", "lost", "inferred", "gap",
                                       "unexplained", "kfpu_untimed", "unseen_saves",
                                       "has_ur_events", "ur_assumed", "rec_policy")}

    # ------------------------------------------------------------ tasks

    def task_counts(self) -> np.ndarray:
        """Every task row the model holds (live, then kept exited ones), TASK_COUNTS records."""
        live = self._live["n"]
        return concat([live, self._finished])

    def _sum(self, field: str, live: np.ndarray | None = None):
        """A count summed over every task ever seen: live rows + the retired totals."""
        live = self._live["n"] if live is None else live
        return live[field].sum(axis=0) + self._e["retired"][field]

    def _task_rows(self, active_only: bool) -> np.ndarray:
        n = self.task_counts()
        if active_only:
            n = take(n, is_active(n))
        return take(n, rank(n))

    def tasks(self, active_only: bool = True) -> pd.DataFrame:
        n = self._task_rows(active_only)
        xs, xr = n["xsave"][:, :NXS], n["xrstor"][:, :NXR]
        df = pd.DataFrame({
            "tid": n["tid"], "generation": n["generation"], "tgid": n["tgid"],
            "comm": [c.decode("utf-8", "replace") for c in n["comm"].tolist()],
            "kthread": n["kthread"].astype(bool),
            "xsave": xs.sum(axis=1), "xrstor": xr.sum(axis=1),
            "avoidable_xrstor": n["avoidable"].sum(axis=1),
            "kfpu_sections": n["kfpu_sections"], "kfpu_sections_inferred": n["kfpu_inferred"],
            "kfpu_ns": n["kfpu_ns"], "kfpu_max_ns": n["kfpu_max_ns"],
            "xsave_bytes": n["xsave_class_bytes"].sum(axis=1),
            "xrstor_bytes": n["xrstor_class_bytes"].sum(axis=1),
            "gap": n["gap"].astype(bool),
            "state": pd.Categorical.from_codes(n["state"], categories=list(STATE_NAMES)),
            "last_cpu": n["last_cpu"],
        })
        for v, name in XSAVE_CAUSE_NAMES.items():
            df[f"xsave_{name}"] = xs[:, v]
        for v, name in XRSTOR_CAUSE_NAMES.items():
            df[f"xrstor_{name}"] = xr[:, v]
        return df

    def task_xstate(self, active_only: bool = True) -> pd.DataFrame:
        """Per task, in the rows and order of ``tasks``: ``xfeatures_seen`` (OR over its
        XSAVE/XRSTOR events), per class of ``CLASS_NAMES`` ``xsave_<class>``, ``xrstor_<class>``,
        ``xsave_bytes_<class>``, ``xrstor_bytes_<class>``, ``avoidable_bytes`` (measured), and per
        replayed policy ``avoidable_xrstor_<policy>`` and ``avoidable_bytes_<policy>``."""
        n = self._task_rows(active_only)
        df = pd.DataFrame({"tid": n["tid"], "generation": n["generation"],
                           "xfeatures_seen": n["xfeatures_seen"],
                           "avoidable_bytes": n["avoidable_bytes"]})
        for k, cls in enumerate(CLASS_NAMES):
            df[f"xsave_{cls}"] = n["xsave_class"][:, k]
            df[f"xrstor_{cls}"] = n["xrstor_class"][:, k]
            df[f"xsave_bytes_{cls}"] = n["xsave_class_bytes"][:, k]
            df[f"xrstor_bytes_{cls}"] = n["xrstor_class_bytes"][:, k]
        for i, p in enumerate(self.policies):
            pol = n["policy"][:, i]
            df[f"avoidable_xrstor_{p.name}"] = pol["avoidable"]
            df[f"avoidable_bytes_{p.name}"] = pol["avoidable_bytes"]
        return df

    def xfeatures_seen(self, active_only: bool = True) -> np.ndarray:
        """Per task, in the rows and order of ``tasks``: the OR of its events' xfeatures."""
        return self._task_rows(active_only)["xfeatures_seen"].copy()

    def class_totals(self) -> pd.DataFrame:
        """One row per (side, class): side ``measured`` or a replayed policy's name; columns
        ``xsave``, ``xrstor``, ``xsave_bytes``, ``xrstor_bytes`` summed over every task ever seen."""
        rows = []
        sides = [("measured", self._sum("xsave_class"), self._sum("xrstor_class"),
                  self._sum("xsave_class_bytes"), self._sum("xrstor_class_bytes"))]
        for i, p in enumerate(self.policies):
            sides.append((p.name, self._policy_sum(i, "xsave"), self._policy_sum(i, "xrstor"),
                          self._policy_sum(i, "xsave_bytes"), self._policy_sum(i, "xrstor_bytes")))
        for side, xs, xr, xsb, xrb in sides:
            for k, cls in enumerate(CLASS_NAMES):
                rows.append({"side": side, "class": cls, "xsave": int(xs[k]), "xrstor": int(xr[k]),
                             "xsave_bytes": int(xsb[k]), "xrstor_bytes": int(xrb[k])})
        return pd.DataFrame(rows, columns=["side", "class", "xsave", "xrstor", "xsave_bytes",
                                           "xrstor_bytes"])

    def newest(self, tid: int) -> np.void | None:
        """The newest generation of tid (live or kept), as a TASK_COUNTS record."""
        n = self.task_counts()
        n = take(n, n["tid"] == tid)
        return n[np.argmax(n["uid"])] if len(n) else None

    def task_identity(self, task_ids) -> pd.DataFrame:
        """tid, generation, tgid, comm, kthread of the given task ids (unknown ids: no row)."""
        n = self.task_counts()
        n = take(n, np.isin(n["uid"], np.asarray(task_ids, np.int64)))
        return pd.DataFrame({"task_id": n["uid"], "tid": n["tid"], "generation": n["generation"],
                             "tgid": n["tgid"],
                             "comm": [c.decode("utf-8", "replace") for c in n["comm"].tolist()],
                             "kthread": n["kthread"].astype(bool)})

    # ------------------------------------------------------------ totals and small tables

    def totals(self) -> dict:
        e = self._e
        first, last = int(e["first_ts"]), int(e["last_ts"])
        live = self._live["n"]
        hist = e["hist"]
        max_ns = int(max(live["kfpu_max_ns"].max(initial=0), e["retired"]["kfpu_max_ns"]))
        return {
            "events": int(e["nevents"]),
            "duration_ns": max(0, last - first) if first >= 0 else 0,
            "tasks": int(is_active(live).sum() + e["retired_tasks"]),
            "xsave": int(self._sum("xsave")[:NXS].sum()),
            "xrstor": int(self._sum("xrstor")[:NXR].sum()),
            "avoidable_xrstor": int(self._sum("avoidable").sum()),
            "kfpu_sections": int(self._sum("kfpu_sections")),
            "kfpu_sections_inferred": int(self._sum("kfpu_inferred")),
            "kfpu_p50_ns": hist_quantile(hist, 0.5),
            "kfpu_p99_ns": hist_quantile(hist, 0.99),
            "kfpu_max_ns": max_ns,
            "xsave_bytes": int(self._sum("xsave_class_bytes").sum()),
            "xrstor_bytes": int(self._sum("xrstor_class_bytes").sum()),
            "xsave_inferred_unseen": int(e["unseen_saves"]),
            "unexplained_xrstor": int(e["unexplained"]),
            "lost_events": int(e["lost"]),
            "gap_flagged": bool(e["gap"]),
        }

    def causes(self) -> pd.DataFrame:
        xs, xr = self._sum("xsave"), self._sum("xrstor")
        rows = [("XSAVE", name, int(xs[v])) for v, name in XSAVE_CAUSE_NAMES.items()]
        rows += [("XRSTOR", name, int(xr[v])) for v, name in XRSTOR_CAUSE_NAMES.items()]
        df = pd.DataFrame(rows, columns=["kind", "cause", "count"])
        return df[df["count"] > 0].reset_index(drop=True)

    def owner(self, code: int) -> tuple[str, int, str]:
        """(kind, tid, comm) of a CPU owner code."""
        if code >= 0:
            n = self._state.tasks[code]["n"]
            return "TASK", int(n["tid"]), n["comm"].decode("utf-8", "replace")
        return {OWN_NONE: "NONE", OWN_KERNEL: "KERNEL"}.get(code, "UNKNOWN"), 0, ""

    def cpus(self) -> pd.DataFrame:
        C = self._state.cpu_rows()
        own = [self.owner(int(o)) for o in C["owner"].tolist()]
        return pd.DataFrame({"cpu": np.arange(len(C)), "xsave": C["xsave"], "xrstor": C["xrstor"],
                             "kfpu_sections": C["kfpu_sections"], "lost_events": C["lost"],
                             "owner": [o[0] for o in own], "owner_tid": [o[1] for o in own]})

    def cpu_owners(self) -> list[tuple[str, int, str]]:
        return [self.owner(int(o)) for o in self._state.cpu_rows()["owner"].tolist()]

    def callers(self) -> pd.DataFrame:
        CA = self._state.caller_rows()
        rows = []
        for r in CA:
            h = r["hist"]
            rows.append({"caller": self._caller_name(int(r["address"])),
                         "address": f"0x{int(r['address']) & ((1 << 64) - 1):x}",
                         "sections": int(r["sections"]), "inferred_sections": int(r["inferred"]),
                         "total_ns": int(r["total_ns"]), "max_ns": int(r["max_ns"]),
                         "p50_ns": hist_quantile(h, 0.5), "p99_ns": hist_quantile(h, 0.99)})
        cols = ["caller", "address", "sections", "inferred_sections", "total_ns", "max_ns",
                "p50_ns", "p99_ns"]
        df = pd.DataFrame(rows, columns=cols)
        return df.sort_values(["sections", "caller"], ascending=[False, True]).reset_index(drop=True)

    def kfpu_hist(self) -> pd.DataFrame:
        hist = self._e["hist"]
        nz = np.flatnonzero(hist)
        return pd.DataFrame({"lo_ns": [bucket_bounds(b)[0] for b in nz],
                             "hi_ns": [bucket_bounds(b)[1] for b in nz],
                             "count": hist[nz]}, columns=["lo_ns", "hi_ns", "count"])

    # ------------------------------------------------------------ policies

    def _policy_sum(self, i: int, field: str):
        return (self._live["n"]["policy"][:, i][field].sum(axis=0)
                + self._e["retired"]["policy"][i][field])

    def policy_totals(self, names=None) -> pd.DataFrame:
        """Per replayed policy: xsave, xrstor, avoidable_xrstor, bytes, cycles."""
        rows = []
        for i, p in enumerate(self.policies):
            if names is not None and p.name not in names:
                continue
            pxs, pxr = self._policy_sum(i, "xsave"), self._policy_sum(i, "xrstor")
            xs, xr = int(pxs.sum()), int(pxr.sum())
            rows.append({"policy": p.name, "xsave": xs, "xrstor": xr,
                         "avoidable_xrstor": int(self._policy_sum(i, "avoidable")),
                         "bytes": int(self._policy_sum(i, "xsave_bytes").sum()
                                      + self._policy_sum(i, "xrstor_bytes").sum()),
                         "cycles": float(self.cost_model.charge(pxs, pxr))})
        return pd.DataFrame(rows, columns=["policy", "xsave", "xrstor", "avoidable_xrstor",
                                           "bytes", "cycles"]).set_index("policy")

    def measured_totals(self) -> dict:
        xs = int(self._sum("xsave")[:NXS].sum())
        xr = int(self._sum("xrstor")[:NXR].sum())
        return {"xsave": xs, "xrstor": xr,
                "bytes": int(self._sum("xsave_class_bytes").sum()
                             + self._sum("xrstor_class_bytes").sum()),
                "cycles": float(self.cost_model.charge(self._sum("xsave_class"),
                                                       self._sum("xrstor_class")))}

    def self_check(self) -> float | None:
        """Agreement of the recorded policy's replay with the measured counts, task by task:
        1 - sum |replayed - measured| / sum measured (XSAVE and XRSTOR), clipped to 0..1."""
        rp = int(self._e["rec_policy"])
        if rp < 0:
            return None
        n = self._live["n"]
        # the replay also makes the saves inferred but not shown (engine.c: unseen_kfpu_save)
        xs = n["xsave"].sum(axis=1) + n["xsave_unseen"]
        xr = n["xrstor"].sum(axis=1)
        pol = n["policy"][:, rp]
        diff = (np.abs(pol["xsave"].sum(axis=1) - xs).sum()
                + np.abs(pol["xrstor"].sum(axis=1) - xr).sum()
                + int(self._e["retired_selfcheck_diff"]))
        r = self._e["retired"]
        total = xs.sum() + xr.sum() + r["xsave"].sum() + r["xsave_unseen"] + r["xrstor"].sum()
        if total == 0:
            return 1.0 if diff == 0 else 0.0
        return float(max(0.0, 1.0 - diff / total))

    def owners(self) -> dict:
        """Current owner per CPU as a task id (< 0: no task), measured and per policy replay
        (tests: one owner per CPU)."""
        C = self._state.cpu_rows()
        T = self._state.tasks

        def uid(o: int) -> int:
            return int(T[o]["n"]["uid"]) if o >= 0 else o

        valid = {}
        for i, p in enumerate(self.policies):
            valid[p.name] = [uid(o) if o >= 0 and T[o]["ps"][i]["last_cpu"] == c else -1
                             for c, o in enumerate(C["policy_owner"][:, i].tolist())]
        return {"measured": [uid(o) for o in C["owner"].tolist()], "policies": valid}
