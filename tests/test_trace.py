"""``fputrace.load`` -> Trace: the pandas tables, the task table, and the model delegation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fputrace
from fputrace.events import EVENT_DTYPE, FLAG_INFERRED, TASK_KTHREAD, Kind, comm_to_args
from fputrace.recording import RecordingWriter


def ev(ts, kind, tid=1, tgid=1, cpu=0, a0=0, a1=0, flags=0):
    e = np.zeros(1, EVENT_DTYPE)
    e["ts_ns"], e["kind"], e["tid"], e["tgid"], e["cpu"], e["a0"], e["a1"], e["flags"] = \
        ts, kind, tid, tgid, cpu, a0, a1, flags
    return e


def write(path, *events, meta=None):
    with RecordingWriter(path, meta or {"clock": "CLOCK_MONOTONIC", "nr_cpus": 2}) as w:
        w.write(np.concatenate(events))
    return path


def test_events_and_tasks_tables(tmp_path):
    p = write(tmp_path / "t.fpt",
              ev(10, Kind.COMM, tid=5, tgid=5, a0=comm_to_args("bash")[0], a1=comm_to_args("bash")[1]),
              ev(10, Kind.TASK, tid=9, tgid=9, a0=TASK_KTHREAD),
              ev(11, Kind.COMM, tid=9, tgid=9, a0=comm_to_args("kworker/0:1")[0], a1=comm_to_args("kworker/0:1")[1]),
              ev(20, Kind.SWITCH, tid=5, tgid=5, cpu=1, a0=9, a1=1),
              ev(30, Kind.FORK, tid=5, tgid=5, a0=6, a1=6),
              ev(40, Kind.XSAVE, tid=6, tgid=6, a0=0x207, a1=2, flags=FLAG_INFERRED),
              ev(50, 200, tid=6, tgid=6))                     # a kind from a newer writer
    tr = fputrace.load(p)
    e = tr.events
    assert list(e.columns) == ["ts_ns", "cpu", "tid", "tgid", "kind", "a0", "a1", "inferred"]
    assert e["ts_ns"].dtype == np.uint64 and e["cpu"].dtype == np.uint16 and e["tid"].dtype == np.uint32
    assert e["a0"].dtype == np.uint64 and e["inferred"].dtype == bool
    assert isinstance(e["kind"].dtype, pd.CategoricalDtype)
    assert e["kind"].tolist() == ["SWITCH", "FORK", "XSAVE", "KIND_200"]
    assert e["inferred"].tolist() == [False, False, True, False]
    assert {"XSAVE", "XRSTOR", "KFPU_BEGIN"} <= set(e["kind"].cat.categories)
    t = tr.tasks.set_index("tid")
    assert t.loc[5, "comm"] == "bash" and not t.loc[5, "kthread"]
    assert t.loc[9, "comm"] == "kworker/0:1" and t.loc[9, "kthread"]
    assert t.loc[6, "comm"] == "bash" and t.loc[6, "tgid"] == 6      # fork child inherits the name
    assert tr.meta["clock"] == "CLOCK_MONOTONIC" and not tr.truncated
    assert "complete" in repr(tr)


def test_empty_recording_loads_as_empty_tables(tmp_path):
    p = tmp_path / "e.fpt"
    RecordingWriter(p, {}).close()
    tr = fputrace.load(p)
    assert len(tr.events) == 0 and len(tr.tasks) == 0
    assert list(tr.tasks.columns) == ["tid", "tgid", "comm", "kthread"]


def test_batches_are_streamed_raw(tmp_path):
    p = write(tmp_path / "t.fpt", ev(1, Kind.COMM, tid=2), ev(2, Kind.XSAVE, tid=2))
    batches = list(fputrace.load(p).batches())
    assert all(b.dtype == EVENT_DTYPE for b in batches)
    assert np.concatenate(batches)["kind"].tolist() == [Kind.COMM, Kind.XSAVE]   # task records kept for the model


def test_report_and_estimate_delegate_to_the_model(tmp_path):
    """The SPEC 5.3 worked example through tr.report()/tr.estimate(): the numbers are the model's
    (fed every batch), not computed here."""
    model = pytest.importorskip("fputrace.model", reason="fputrace.model (the analysis) is not in this tree")
    caller = 0xffffffff81234560
    p = write(tmp_path / "w.fpt",
              ev(100, Kind.KFPU_BEGIN, tid=7, tgid=7, a1=caller),
              ev(110, Kind.XSAVE, tid=7, tgid=7, a0=0x207, a1=2),
              ev(120, Kind.KFPU_END, tid=7, tgid=7, a1=caller),
              ev(130, Kind.KFPU_BEGIN, tid=7, tgid=7, a1=caller),
              ev(140, Kind.KFPU_END, tid=7, tgid=7, a1=caller),
              ev(150, Kind.USER_RETURN, tid=7, tgid=7),
              ev(160, Kind.XRSTOR, tid=7, tgid=7, a0=0x207, a1=1),
              meta={"recorded_policy": "deferred", "nr_cpus": 1})
    tr = fputrace.load(p)
    direct = model.Model(tr.meta)
    for b in tr.batches():
        direct.feed(b)
    assert tr.report().to_dict()["totals"] == direct.report().to_dict()["totals"]
    totals = tr.report().to_dict()["totals"]
    assert (totals["xsave"], totals["xrstor"]) == (1, 1)
    est = tr.estimate(policies="eager,deferred").to_dict()
    assert est["policies"]["deferred"]["xrstor"] == 1
