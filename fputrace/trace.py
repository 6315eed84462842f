"""``fputrace.load(path)`` -> ``Trace``: a recording as pandas tables, plus the model's views of it.

    tr = fputrace.load("run.fpt")
    tr.meta      dict: the header merged with every update in the file; ``truncated`` says whether
                 the file is incomplete (a killed recorder): then ``truncated_reason`` says how
    tr.events    DataFrame, one row per event, ts order: ts_ns (uint64, CLOCK_MONOTONIC unless
                 meta["clock"] says otherwise), cpu (uint16), tid, tgid (uint32), kind (categorical
                 of ``fputrace.events.Kind`` names), a0, a1 (uint64; meaning per kind: events.py),
                 inferred (bool). COMM and TASK records are not events: they make up ``tasks``.
    tr.tasks     DataFrame, one row per tid seen in COMM, TASK or FORK records: tid, tgid, comm,
                 kthread (bool). The last name wins when a task execs (a tid reused by a new task
                 keeps the newest name).
    tr.batches() the raw EVENT_DTYPE batches, streamed (memory bounded by one batch)
    tr.report(**kw), tr.estimate(**kw)   the model (``fputrace.model.Model``) fed with every batch

``events`` and ``tasks`` are built on first use, so ``report()`` on a huge file never holds the
whole trace in memory. A file whose batches are out of time order (meta ``late_events``) is sorted
(stable) before anything sees it.
"""
from __future__ import annotations

from functools import cached_property
from typing import Iterator

import numpy as np

from .events import EVENT_DTYPE, FLAG_INFERRED, KIND_NAMES, TASK_KTHREAD, Kind, args_to_comm
from .recording import open_recording

_TASK_TABLE_KINDS = (Kind.COMM, Kind.TASK)
SORT_CHUNK_EVENTS = 1 << 20


def load(path, *, warn: bool = True) -> "Trace":
    """Open and validate ``path`` (raises ``FileFormatError`` with one line naming the file);
    warns on stderr when the recording is incomplete (``warn=False`` for full-screen views, which
    should show ``meta["truncated_reason"]`` themselves)."""
    return Trace(path, warn=warn)


class Trace:
    def __init__(self, path, *, warn: bool = True):
        self._recording = open_recording(path, warn=warn)
        self.path = self._recording.path
        self.meta: dict = self._recording.meta

    @property
    def truncated(self) -> bool:
        return bool(self.meta.get("truncated"))

    def __repr__(self) -> str:
        state = "incomplete" if self.truncated else "complete"
        return f"<fputrace.Trace {self.path!r}: {self._recording.num_events} records, {state}>"

    def batches(self) -> Iterator[np.ndarray]:
        """EVENT_DTYPE batches in time order (task-table records included, as the model wants)."""
        if not self.meta.get("late_events"):
            yield from self._recording.batches()
            return
        every = self._recording.read_all()            # rare: a producer wrote out of order
        every = every[np.argsort(every["ts_ns"], kind="stable")]
        for i in range(0, len(every), SORT_CHUNK_EVENTS):
            yield every[i:i + SORT_CHUNK_EVENTS]

    @cached_property
    def events(self):
        import pandas as pd
        parts = []
        for b in self.batches():
            keep = ~np.isin(b["kind"], np.array(_TASK_TABLE_KINDS, np.uint8))
            parts.append(b[keep] if not keep.all() else b)
        ev = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
        names = [k.name for k in Kind]
        unknown = sorted(set(np.unique(ev["kind"]).tolist()) - set(KIND_NAMES))
        categories = names + [f"KIND_{k}" for k in unknown]   # from a newer writer: kept, named
        code_of = np.full(256, -1, np.int16)
        for i, k in enumerate([k.value for k in Kind] + unknown):
            code_of[k] = i
        kind = pd.Categorical.from_codes(code_of[ev["kind"]], categories=categories)
        return pd.DataFrame({
            "ts_ns": ev["ts_ns"], "cpu": ev["cpu"], "tid": ev["tid"], "tgid": ev["tgid"], "kind": kind,
            "a0": ev["a0"], "a1": ev["a1"], "inferred": (ev["flags"] & FLAG_INFERRED) != 0,
        })

    @cached_property
    def tasks(self):
        import pandas as pd
        table: dict[int, dict] = {}

        def row(tid: int, tgid: int) -> dict:
            r = table.setdefault(tid, {"tid": tid, "tgid": tgid, "comm": "", "kthread": False})
            if tgid:
                r["tgid"] = tgid
            return r

        wanted = np.array([Kind.COMM, Kind.TASK, Kind.FORK], np.uint8)
        for b in self.batches():
            for e in b[np.isin(b["kind"], wanted)]:
                kind, tid, tgid = int(e["kind"]), int(e["tid"]), int(e["tgid"])
                if kind == Kind.COMM:
                    row(tid, tgid)["comm"] = args_to_comm(e["a0"], e["a1"])
                elif kind == Kind.TASK:
                    row(tid, tgid)["kthread"] = bool(int(e["a0"]) & TASK_KTHREAD)
                else:                                   # FORK: the child inherits name and kind
                    parent = row(tid, tgid)
                    child = row(int(e["a0"]), int(e["a1"]))
                    child["comm"] = child["comm"] or parent["comm"]
                    child["kthread"] = child["kthread"] or parent["kthread"]
        df = pd.DataFrame(list(table.values()), columns=["tid", "tgid", "comm", "kthread"])
        return df.astype({"tid": "uint32", "tgid": "uint32", "kthread": bool}).sort_values("tid", ignore_index=True)

    def model(self, **model_kw):
        """A ``fputrace.model.Model`` of this recording's meta, fed with every batch (``top``,
        ``pid``, ``sort``, ``policies``, ``cost_model``, ``history``: as for Model)."""
        from .model import Model                        # the analysis lives in fputrace.model
        model = Model(self.meta, **model_kw)
        for batch in self.batches():
            model.feed(batch)
        return model

    def report(self, *, policies=None, cost_model=None, top=None, pid=None, **kw):
        """The model's report over the whole trace (``fputrace.model.Model.report``); ``top``
        and ``pid`` limit the per-task rows (and the memory for them)."""
        return self.model(top=top, pid=pid, **_model_options(policies, cost_model)).report(**kw)

    def estimate(self, *, policies=None, cost_model=None, **kw):
        """Policy estimates: ``policies`` ("eager,deferred" or a list; default: the model's),
        ``cost_model`` (a file from ``fputrace calibrate`` or a CostModel; default: the model's)."""
        return self.model(top=0, **_model_options(policies, cost_model)).estimate(**kw)


def _model_options(policies, cost_model) -> dict:
    out = {}
    if policies is not None:
        out["policies"] = policies
    if cost_model is not None:
        out["cost_model"] = cost_model
    return out
