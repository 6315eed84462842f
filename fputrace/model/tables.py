"""``ModelView``: the model's accessors. Every number report, estimate, the dashboard and the
exports show comes from here: ``Columns`` tables (``.frame()`` for a pandas DataFrame;
documented columns, units in the names) and dicts.

A view reads one ``EngineState`` (the live one, or a finished copy) plus the rows of exited tasks
the model kept; nothing outside ``fputrace.model`` touches the engine's arrays.
"""
from __future__ import annotations

import numpy as np

from .columns import Columns
from .cost import LARGE_CLASSES, components_label
from .structs import (CLASS_NAMES, NHIST, OWN_KERNEL, OWN_NONE, STATE_NAMES, TASK_COUNTS,
                      XRSTOR_CAUSE_NAMES, XSAVE_CAUSE_NAMES, XSTATE_CLASSES, concat, put, take)

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


SORT_KEYS = ("xsave", "bytes", "components", "cycles")


def rank_keys(counts: np.ndarray, sort: str = "xsave", cost=None) -> list[np.ndarray]:
    """np.lexsort keys (last = first key) of ``rank``."""
    xs = counts["xsave"].sum(axis=1)
    xr = counts["xrstor"].sum(axis=1)
    keys = [counts["uid"], counts["tid"], -xr, -xs]
    if sort != "xsave":
        moved = (counts["xsave_class_bytes"].sum(axis=1) + counts["xrstor_class_bytes"].sum(axis=1))
        if sort == "bytes":
            keys += [counts["tid"], -moved]
        elif sort == "cycles":
            keys += [counts["tid"], -task_cycles(counts, cost)]
        elif sort == "components":
            keys += [counts["tid"], -moved, -class_rank(counts["xfeatures_seen"])]
        else:
            raise ValueError(f"unknown sort key {sort!r} (choose among {', '.join(SORT_KEYS)})")
    return keys


def rank(counts: np.ndarray, sort: str = "xsave", cost=None) -> np.ndarray:
    """Order of task rows: most XSAVEs first, then XRSTORs, then tid, generation (``xsave``, the
    default); ``bytes``: most bytes moved first; ``components``: the largest live state first (AMX,
    AVX-512, AVX, SSE; then bytes); ``cycles`` (at ``cost``): most cycles first; ties by tid, then
    the default order. An exited task's rank is final under every key (the model keeps top N by
    it)."""
    return np.lexsort(rank_keys(counts, sort, cost))


def ranked(parts: list[np.ndarray], sort: str = "xsave", cost=None) -> np.ndarray:
    """The rows of ``parts`` together, in ``rank`` order: one new array (no joined copy first)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros(0, TASK_COUNTS)
    keys = [np.concatenate(k) for k in zip(*(rank_keys(p, sort, cost) for p in parts))]
    order = np.lexsort(keys)
    dest = np.empty(len(order), np.int64)
    dest[order] = np.arange(len(order))
    out = np.empty(len(order), TASK_COUNTS)
    at = 0
    for p in parts:
        put(out, dest[at:at + len(p)], p)
        at += len(p)
    return out


def primary_key(counts: np.ndarray, sort: str = "xsave", cost=None) -> np.ndarray:
    """The first key of ``rank`` (larger ranks first): rows whose key is below the N-th kept
    row's can never be among the first N."""
    if sort == "xsave":
        return counts["xsave"].sum(axis=1)
    if sort == "bytes":
        return counts["xsave_class_bytes"].sum(axis=1) + counts["xrstor_class_bytes"].sum(axis=1)
    if sort == "cycles":
        return task_cycles(counts, cost)
    return class_rank(counts["xfeatures_seen"])


def task_cycles(counts: np.ndarray, cost) -> np.ndarray:
    """Cycles of each task's measured saves and restores, each class at its calibrated set."""
    return np.asarray(cost.charge(counts["xsave_class"], counts["xrstor_class"]), dtype=float)


def class_rank(xfeatures: np.ndarray) -> np.ndarray:
    """Index in CLASS_NAMES of the largest class live in each xfeatures (``cost.xstate_class``)."""
    out = np.zeros(len(xfeatures), np.int64)
    for i, (_, mask) in enumerate(XSTATE_CLASSES):
        if i:
            out[(xfeatures & mask) != 0] = i
    return out


def is_active(counts: np.ndarray) -> np.ndarray:
    return (counts["xsave"].sum(axis=1) + counts["xrstor"].sum(axis=1)
            + counts["kfpu_sections"]) > 0


def _comms(n: np.ndarray) -> list[str]:
    return [c.decode("utf-8", "replace") for c in n["comm"].tolist()]


OWN_MARK = "◆"      # every view puts it before the name of a task of fputrace itself (fputrace_own)


def _own_tgid(meta: dict) -> int | None:
    try:
        return int(meta["fputrace_tgid"])
    except (KeyError, TypeError, ValueError):
        return None


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
        return concat([self._live["n"], self._finished])

    def _sum(self, field: str):
        """A count summed over every task ever seen: live rows + the retired totals."""
        return self._live["n"][field].sum(axis=0) + self._e["retired"][field]

    def _task_rows(self, active_only: bool, sort: str = "xsave") -> np.ndarray:
        """The task rows in ``rank`` order (one copy of the records: a fork storm's are many)."""
        live = self._live["n"]
        if active_only:
            live = take(live, is_active(live))            # (kept rows are active ones)
        return ranked([live, self._finished], sort, self.cost_model)

    def task_columns(self, active_only: bool = True, sort: str = "xsave") -> Columns:
        """The per-task table (SCHEMA.md ``per_task``), ranked by ``sort`` (``rank``)."""
        n = self._task_rows(active_only, sort)
        xs, xr = n["xsave"][:, :NXS], n["xrstor"][:, :NXR]
        nxs = xs.sum(axis=1)
        xs_bytes = n["xsave_class_bytes"].sum(axis=1)
        xr_bytes = n["xrstor_class_bytes"].sum(axis=1)
        own = _own_tgid(self.meta)
        cols = {
            "tid": n["tid"], "generation": n["generation"], "tgid": n["tgid"], "comm": _comms(n),
            "kthread": n["kthread"].astype(bool),
            "xsave": nxs, "xrstor": xr.sum(axis=1),
            "avoidable_xrstor": n["avoidable"].sum(axis=1),
            "kfpu_sections": n["kfpu_sections"], "kfpu_sections_inferred": n["kfpu_inferred"],
            "kfpu_ns": n["kfpu_ns"], "kfpu_max_ns": n["kfpu_max_ns"],
            "xsave_bytes": xs_bytes, "xrstor_bytes": xr_bytes,
            "gap": n["gap"].astype(bool),
            "state": [STATE_NAMES[s] for s in n["state"].tolist()],
            "last_cpu": n["last_cpu"],
        }
        for v, name in XSAVE_CAUSE_NAMES.items():
            cols[f"xsave_{name}"] = xs[:, v]
        for v, name in XRSTOR_CAUSE_NAMES.items():
            cols[f"xrstor_{name}"] = xr[:, v]
        # the state it moved (issue 10): shares of everything the recording moved
        seen = n["xfeatures_seen"]
        cycles = task_cycles(n, self.cost_model)
        moved = xs_bytes + xr_bytes
        all_bytes = int(self._sum("xsave_class_bytes").sum() + self._sum("xrstor_class_bytes").sum())
        all_cycles = float(self.cost_model.charge(self._sum("xsave_class"),
                                                  self._sum("xrstor_class")))
        cols["xfeatures_seen"] = [f"0x{x:x}" for x in seen.tolist()]
        cols["components"] = [components_label(x) for x in seen.tolist()]
        cols["xstate_class"] = [CLASS_NAMES[k] for k in class_rank(seen).tolist()]
        cols["bytes_per_xsave"] = np.round(np.where(nxs > 0, xs_bytes / np.maximum(nxs, 1), 0.0), 1)
        cols["bytes_share"] = moved / all_bytes if all_bytes else np.zeros(len(n))
        cols["cycles"] = cycles
        cols["cycles_share"] = cycles / all_cycles if all_cycles else np.zeros(len(n))
        cols["avoidable_bytes"] = n["avoidable_bytes"]
        cols["fputrace_own"] = (n["tgid"] == own) if own is not None else np.zeros(len(n), bool)
        return Columns(cols, {"state": STATE_NAMES})

    def tasks(self, active_only: bool = True):
        """DataFrame of ``task_columns``."""
        return self.task_columns(active_only).frame()

    def xfeatures_seen(self, active_only: bool = True) -> np.ndarray:
        """Per task, in the rows and order of ``tasks``: the OR of its events' xfeatures."""
        return self._task_rows(active_only)["xfeatures_seen"].copy()

    def task_xstate(self, active_only: bool = True):
        """DataFrame per task, in the rows and order of ``tasks``: ``tid``, ``generation``,
        ``xfeatures_seen`` (OR over its XSAVE/XRSTOR events, an int), ``avoidable_bytes``
        (measured), per class of ``CLASS_NAMES`` ``xsave_<class>``, ``xrstor_<class>``,
        ``xsave_bytes_<class>``, ``xrstor_bytes_<class>``, and per replayed policy
        ``avoidable_xrstor_<policy>`` and ``avoidable_bytes_<policy>``."""
        return self.task_xstate_columns(active_only).frame()

    def task_xstate_columns(self, active_only: bool = True) -> Columns:
        n = self._task_rows(active_only)
        cols = {"tid": n["tid"], "generation": n["generation"],
                "xfeatures_seen": n["xfeatures_seen"], "avoidable_bytes": n["avoidable_bytes"]}
        for k, cls in enumerate(CLASS_NAMES):
            cols[f"xsave_{cls}"] = n["xsave_class"][:, k]
            cols[f"xrstor_{cls}"] = n["xrstor_class"][:, k]
            cols[f"xsave_bytes_{cls}"] = n["xsave_class_bytes"][:, k]
            cols[f"xrstor_bytes_{cls}"] = n["xrstor_class_bytes"][:, k]
        for i, p in enumerate(self.policies):
            pol = n["policy"][:, i]
            cols[f"avoidable_xrstor_{p.name}"] = pol["avoidable"]
            cols[f"avoidable_bytes_{p.name}"] = pol["avoidable_bytes"]
        return Columns(cols)

    def large_state_columns(self, names: list[str]) -> Columns:
        """Tasks whose saves held AVX-512 or AMX state, with the restores each policy would throw
        away unused (SPEC 5.3) and the bytes those moved for nothing."""
        n = self._task_rows(True)
        big = np.isin(class_rank(n["xfeatures_seen"]),
                      [CLASS_NAMES.index(c) for c in LARGE_CLASSES])
        n = take(n, big)
        nxs = n["xsave"].sum(axis=1)
        xs_bytes = n["xsave_class_bytes"].sum(axis=1)
        cols = {"tid": n["tid"], "generation": n["generation"], "comm": _comms(n),
                "components": [components_label(x) for x in n["xfeatures_seen"].tolist()],
                "bytes_per_xsave": np.round(np.where(nxs > 0, xs_bytes / np.maximum(nxs, 1), 0.0), 1)}
        for i, p in enumerate(self.policies):
            if p.name in names:
                cols[f"avoidable_xrstor_{p.name}"] = n["policy"][:, i]["avoidable"]
                cols[f"avoidable_bytes_{p.name}"] = n["policy"][:, i]["avoidable_bytes"]
        return Columns(cols)

    def newest(self, tid: int) -> np.void | None:
        """The newest generation of tid (live or kept), as a TASK_COUNTS record."""
        n = self.task_counts()
        n = take(n, n["tid"] == tid)
        return n[np.argmax(n["uid"])] if len(n) else None

    def is_alive(self, task_id: int) -> bool:
        live = self._live
        return bool(((live["n"]["uid"] == task_id) & (live["dead"] == 0)).any())

    def task_identity(self, task_ids):
        """DataFrame: task_id, tid, generation, tgid, comm, kthread of the given task ids (ids of
        tasks the model no longer holds: no row)."""
        n = self.task_counts()
        n = take(n, np.isin(n["uid"], np.asarray(task_ids, np.int64)))
        return Columns({"task_id": n["uid"], "tid": n["tid"], "generation": n["generation"],
                        "tgid": n["tgid"], "comm": _comms(n),
                        "kthread": n["kthread"].astype(bool)}).frame()

    # ------------------------------------------------------------ xstate classes (#10)

    def class_totals_columns(self) -> Columns:
        """One row per (side, class): side ``measured`` or a replayed policy's name; ``xsave``,
        ``xrstor``, ``xsave_bytes``, ``xrstor_bytes`` summed over every task ever seen."""
        sides = [("measured", self._sum("xsave_class"), self._sum("xrstor_class"),
                  self._sum("xsave_class_bytes"), self._sum("xrstor_class_bytes"))]
        for i, p in enumerate(self.policies):
            sides.append((p.name, self._policy_sum(i, "xsave"), self._policy_sum(i, "xrstor"),
                          self._policy_sum(i, "xsave_bytes"), self._policy_sum(i, "xrstor_bytes")))
        rows = [(side, cls, int(xs[k]), int(xr[k]), int(xsb[k]), int(xrb[k]))
                for side, xs, xr, xsb, xrb in sides for k, cls in enumerate(CLASS_NAMES)]
        names = ["side", "class", "xsave", "xrstor", "xsave_bytes", "xrstor_bytes"]
        return Columns({k: [r[i] for r in rows] if i < 2 else np.array([r[i] for r in rows], np.int64)
                        for i, k in enumerate(names)})

    def class_totals(self):
        """DataFrame of ``class_totals_columns``."""
        return self.class_totals_columns().frame()

    def class_table(self, side: str = "measured") -> Columns:
        """Per class for one side (``measured`` or a policy): xsave, xrstor, bytes, cycles and
        the calibrated set charged (``charged_set``, ``match`` as in ``CostModel.set_for``)."""
        t = self.class_totals_columns()
        t = t.take(np.asarray(t["side"], dtype=object) == side)
        cost = self.cost_model
        per = [cost.class_cycles(c) for c in t["class"]]
        sets = [cost.set_for_class(c) for c in t["class"]]
        return Columns({
            "class": t["class"], "xsave": t["xsave"], "xrstor": t["xrstor"],
            "bytes": t["xsave_bytes"] + t["xrstor_bytes"],
            "cycles": np.array([x * a + r * b for (a, b), x, r in
                                zip(per, t["xsave"].tolist(), t["xrstor"].tolist())], float),
            "charged_set": [f"{e.set} 0x{e.xfeatures:x}" if e else "flat" for e, _ in sets],
            "match": [how for _, how in sets]})

    def policy_task_columns(self) -> Columns:
        """Per task and replayed policy: xsave, xrstor, bytes, avoidable_xrstor,
        avoidable_bytes (tasks the model holds, ranked as in ``per_task``)."""
        n = self._task_rows(False)
        cols: dict[str, list] = {k: [] for k in ("task_id", "tid", "generation", "policy", "xsave",
                                                  "xrstor", "bytes", "avoidable_xrstor",
                                                  "avoidable_bytes")}
        for i, p in enumerate(self.policies):
            pol = n["policy"][:, i]
            cols["task_id"] += n["uid"].tolist()
            cols["tid"] += n["tid"].tolist()
            cols["generation"] += n["generation"].tolist()
            cols["policy"] += [p.name] * len(n)
            cols["xsave"] += pol["xsave"].sum(axis=1).tolist()
            cols["xrstor"] += pol["xrstor"].sum(axis=1).tolist()
            cols["bytes"] += (pol["xsave_bytes"].sum(axis=1) + pol["xrstor_bytes"].sum(axis=1)).tolist()
            cols["avoidable_xrstor"] += pol["avoidable"].tolist()
            cols["avoidable_bytes"] += pol["avoidable_bytes"].tolist()
        return Columns({k: (v if k == "policy" else np.asarray(v, np.int64)) for k, v in cols.items()})

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
            "avoidable_bytes": int(self._sum("avoidable_bytes")),
            "xfeatures_seen": f"0x{int(np.bitwise_or.reduce(self.task_counts()['xfeatures_seen'], initial=0) | e['retired']['xfeatures_seen']):x}",
        }

    def cause_columns(self) -> Columns:
        xs, xr, av = self._sum("xsave"), self._sum("xrstor"), self._sum("avoidable")
        rows = [("XSAVE", name, int(xs[v]), 0) for v, name in XSAVE_CAUSE_NAMES.items()]
        rows += [("XRSTOR", name, int(xr[v]), int(av[v])) for v, name in XRSTOR_CAUSE_NAMES.items()]
        rows = [r for r in rows if r[2] > 0]
        return Columns({"kind": [r[0] for r in rows], "cause": [r[1] for r in rows],
                        "count": np.array([r[2] for r in rows], np.int64),
                        "avoidable": np.array([r[3] for r in rows], np.int64)})

    def owner(self, code: int) -> tuple[str, int, str]:
        """(kind, tid, comm) of a CPU owner code."""
        if code >= 0:
            n = self._state.tasks[code]["n"]
            return "TASK", int(n["tid"]), n["comm"].decode("utf-8", "replace")
        return {OWN_NONE: "NONE", OWN_KERNEL: "KERNEL"}.get(code, "UNKNOWN"), 0, ""

    def cpu_owners(self) -> list[tuple[str, int, str]]:
        return [self.owner(int(o)) for o in self._state.cpu_rows()["owner"].tolist()]

    def cpu_columns(self) -> Columns:
        C = self._state.cpu_rows()
        own = self.cpu_owners()
        return Columns({"cpu": np.arange(len(C)), "xsave": C["xsave"], "xrstor": C["xrstor"],
                        "kfpu_sections": C["kfpu_sections"], "lost_events": C["lost"],
                        "owner": [o[0] for o in own], "owner_tid": [o[1] for o in own]})

    def caller_columns(self) -> Columns:
        CA = self._state.caller_rows()
        rows = []
        for r in CA:
            h = r["hist"]
            rows.append((self._caller_name(int(r["address"])),
                         f"0x{int(r['address']) & ((1 << 64) - 1):x}", int(r["sections"]),
                         int(r["inferred"]), int(r["total_ns"]), int(r["max_ns"]),
                         hist_quantile(h, 0.5), hist_quantile(h, 0.99)))
        rows.sort(key=lambda r: (-r[2], r[0]))
        names = ["caller", "address", "sections", "inferred_sections", "total_ns", "max_ns",
                 "p50_ns", "p99_ns"]
        return Columns({k: ([r[i] for r in rows] if i < 2 else np.array([r[i] for r in rows], np.int64))
                        for i, k in enumerate(names)})

    def hist_columns(self) -> Columns:
        hist = self._e["hist"]
        nz = np.flatnonzero(hist)
        return Columns({"lo_ns": np.array([bucket_bounds(b)[0] for b in nz], np.int64),
                        "hi_ns": np.array([bucket_bounds(b)[1] for b in nz], np.int64),
                        "count": hist[nz]})

    # ------------------------------------------------------------ policies

    def _policy_sum(self, i: int, field: str):
        return (self._live["n"]["policy"][:, i][field].sum(axis=0)
                + self._e["retired"]["policy"][i][field])

    def policy_rows(self, names=None) -> list[dict]:
        """Per replayed policy: policy, xsave, xrstor, avoidable_xrstor, bytes, cycles (each class
        at its calibrated set), avoidable_bytes (bytes its avoidable restores moved)."""
        rows = []
        for i, p in enumerate(self.policies):
            if names is not None and p.name not in names:
                continue
            pxs, pxr = self._policy_sum(i, "xsave"), self._policy_sum(i, "xrstor")
            rows.append({"policy": p.name, "xsave": int(pxs.sum()), "xrstor": int(pxr.sum()),
                         "avoidable_xrstor": int(self._policy_sum(i, "avoidable")),
                         "bytes": int(self._policy_sum(i, "xsave_bytes").sum()
                                      + self._policy_sum(i, "xrstor_bytes").sum()),
                         "cycles": float(self.cost_model.charge(pxs, pxr)),
                         "avoidable_bytes": int(self._policy_sum(i, "avoidable_bytes"))})
        return rows

    def measured_totals(self) -> dict:
        xs = int(self._sum("xsave")[:NXS].sum())
        xr = int(self._sum("xrstor")[:NXR].sum())
        return {"xsave": xs, "xrstor": xr,
                "bytes": int(self._sum("xsave_class_bytes").sum()
                             + self._sum("xrstor_class_bytes").sum()),
                "cycles": float(self.cost_model.charge(self._sum("xsave_class"),
                                                       self._sum("xrstor_class"))),
                "avoidable_xrstor": int(self._sum("avoidable").sum()),
                "avoidable_bytes": int(self._sum("avoidable_bytes"))}

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
