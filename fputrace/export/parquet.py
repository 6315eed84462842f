"""``fputrace export --format parquet``: one row per event, for DuckDB, Spark, Trino, pandas.

Columns (one row per event; COMM and TASK records are folded into ``comm`` and ``kthread``):

  ts_ns     uint64   absolute event time (the recording's clock, meta ``clock``: CLOCK_MONOTONIC)
  cpu       uint16
  tid       uint32   the task the event is about (SWITCH: the previous task)
  tgid      uint32   its process
  kind      string   SWITCH KFPU_BEGIN KFPU_END XSAVE XRSTOR USER_RETURN FORK EXEC EXIT KVM_FPU LOST
  cause     string   XSAVE/XRSTOR only (else null): the cause the event itself carries, as the probe
                     or the importer saw it (names as in the report: switch, kfpu, user_return, ...);
                     ``unknown`` where the source could not tell. The report resolves those from
                     context; this column does not (the model offers no per-event annotations yet)
  a0, a1    uint64   the kind's arguments (fputrace/events.py: XSAVE/XRSTOR a0 = xfeatures)
  inferred  bool     the mode could not observe the event directly (SPEC 5.4)
  comm      string   the task's name at that moment (null if never named; a forked child has its
                     parent's name until it execs)
  kthread   bool     a kernel thread (no user FPU state)
  caller    string   KFPU_BEGIN/KFPU_END only: the kernel-FPU caller, symbolised from the
                     recording's ``symbols`` where it can be, else hex
  host      string   the recording's host (meta ``host``): many hosts' files query as one table

The Parquet key-value metadata holds the recording's meta as JSON (``fputrace.meta``) and, for
engines that read single keys, ``fputrace.host``, ``fputrace.kernel_release``,
``fputrace.recorded_policy``, ``fputrace.capture_mode``, ``fputrace.version``.

Streaming: the recording is read batch by batch and written in row groups of about
``ROW_GROUP_ROWS`` rows, so memory stays bounded by one row group whatever the file's length.
The file appears under its name only when complete (written aside, then renamed).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..events import FLAG_INFERRED, TASK_KTHREAD, Kind, args_to_comm
from .rows import Interned, PerTidValue, cause_names, is_task_record, kind_name

ROW_GROUP_ROWS = 1 << 20
FORMAT_TAG = "fputrace-events-parquet/1"

_DICT = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema([
    ("ts_ns", pa.uint64()), ("cpu", pa.uint16()), ("tid", pa.uint32()), ("tgid", pa.uint32()),
    ("kind", _DICT), ("cause", _DICT), ("a0", pa.uint64()), ("a1", pa.uint64()),
    ("inferred", pa.bool_()), ("comm", _DICT), ("kthread", pa.bool_()), ("caller", _DICT),
    ("host", _DICT),
])


def _dict_column(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    """Codes into ``values`` (-1 = null) as a dictionary array holding only the values used."""
    used, inv = np.unique(codes, return_inverse=True)
    names = [values[c] if c >= 0 else "" for c in used.tolist()]
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32), mask=mask if mask.any() else None),
                                          pa.array(names, pa.string()))


def _object_dict_column(values: np.ndarray) -> pa.DictionaryArray:
    return pa.array(values, pa.string()).dictionary_encode()


class TaskColumns:
    """comm and kthread of every row, at the time of the row (see rows.py)."""

    def __init__(self):
        self.names = Interned()
        self.comm = PerTidValue(default=-1)
        self.kthread = PerTidValue(default=0)
        self.kthread.current[0] = 1              # tid 0 is the idle task on every CPU

    def batch(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kind = b["kind"]
        comm_changes, kthread_changes = [], []
        pos = np.flatnonzero(np.isin(kind, np.array([Kind.COMM, Kind.TASK, Kind.FORK], np.uint8)))
        latest_comm, latest_kthread = {}, {}     # values set earlier in this batch (for FORK)
        for p in pos.tolist():
            k, tid = int(kind[p]), int(b["tid"][p])
            if k == Kind.COMM:
                code = self.names.code(args_to_comm(int(b["a0"][p]), int(b["a1"][p])))
                comm_changes.append((p, tid, code))
                latest_comm[tid] = code
            elif k == Kind.TASK:
                flag = 1 if int(b["a0"][p]) & TASK_KTHREAD else 0
                kthread_changes.append((p, tid, flag))
                latest_kthread[tid] = flag
            else:                                 # FORK: the child starts as a copy of the parent
                child = int(b["a0"][p]) & 0xFFFFFFFF
                code = latest_comm.get(tid, self.comm.current.get(tid, -1))
                flag = latest_kthread.get(tid, self.kthread.current.get(tid, 0))
                comm_changes.append((p, child, code))
                kthread_changes.append((p, child, flag))
                latest_comm[child], latest_kthread[child] = code, flag
        tids = b["tid"].astype(np.int64)
        return self.comm.rows(tids, comm_changes), self.kthread.rows(tids, kthread_changes)


def caller_names(kind: np.ndarray, a1: np.ndarray, symbols: dict) -> np.ndarray:
    out = np.full(len(kind), None, dtype=object)
    m = ((kind == Kind.KFPU_BEGIN) | (kind == Kind.KFPU_END)) & (a1 != 0)
    if m.any():
        addrs, inv = np.unique(a1[m], return_inverse=True)
        names = np.array([symbols.get(f"0x{a:x}") or symbols.get(f"0x{a:016x}") or f"0x{a:x}"
                          for a in addrs.tolist()], dtype=object)
        out[m] = names[inv]
    return out


def event_table(b: np.ndarray, tasks: TaskColumns, symbols: dict, host: str | None) -> pa.Table:
    comm_codes, kthread = tasks.batch(b)
    keep = ~is_task_record(b["kind"])
    ev = b[keep]
    kind = ev["kind"]
    uniq_kinds, kinv = np.unique(kind, return_inverse=True)
    n = len(ev)
    return pa.Table.from_arrays([
        pa.array(ev["ts_ns"]), pa.array(ev["cpu"]), pa.array(ev["tid"]), pa.array(ev["tgid"]),
        pa.DictionaryArray.from_arrays(pa.array(kinv.astype(np.int32)),
                                       pa.array([kind_name(k) for k in uniq_kinds.tolist()], pa.string())),
        _object_dict_column(cause_names(kind, ev["a1"])),
        pa.array(ev["a0"]), pa.array(ev["a1"]),
        pa.array((ev["flags"] & FLAG_INFERRED) != 0),
        _dict_column(comm_codes[keep], tasks.names.values),
        pa.array(kthread[keep] != 0),
        _object_dict_column(caller_names(kind, ev["a1"], symbols)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32), mask=np.full(n, host is None)),
                                       pa.array([host or ""], pa.string())),
    ], schema=SCHEMA)


def kv_metadata(meta: dict) -> dict[bytes, bytes]:
    def s(v) -> bytes:
        return ("" if v is None else str(v)).encode()
    return {
        b"fputrace.format": FORMAT_TAG.encode(),
        b"fputrace.meta": json.dumps(meta, sort_keys=True, default=str).encode(),
        b"fputrace.host": s(meta.get("host")),
        b"fputrace.kernel_release": s(meta.get("kernel_release")),
        b"fputrace.recorded_policy": s(meta.get("recorded_policy")),
        b"fputrace.capture_mode": s(meta.get("capture_mode")),
        b"fputrace.version": __version__.encode(),
    }


def write_parquet(trace, out: str) -> int:
    """Write every event of ``trace`` (a ``fputrace.Trace``) to ``out``; returns the row count."""
    meta = trace.meta
    symbols = meta.get("symbols") or {}
    host = meta.get("host")
    tasks = TaskColumns()
    tmp = f"{out}.partial"
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA.with_metadata(kv_metadata(meta)), compression="zstd") as w:
            for b in trace.batches():
                t = event_table(b, tasks, symbols, host)
                pending.append(t)
                pending_rows += t.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    w.write_table(pa.concat_tables(pending).unify_dictionaries(), row_group_size=pending_rows)
                    rows += pending_rows
                    pending, pending_rows = [], 0
            if pending_rows or rows == 0:
                t = pa.concat_tables(pending).unify_dictionaries() if pending else SCHEMA.empty_table()
                w.write_table(t, row_group_size=max(1, pending_rows))
                rows += pending_rows
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return rows
