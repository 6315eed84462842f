"""``fputrace export --format parquet``: one row per event, for DuckDB, Spark, Trino, pandas.

Columns (one row per event; COMM and TASK records are folded into ``comm`` and ``kthread``):

  ts_ns     uint64   absolute event time (the recording's clock, meta ``clock``: CLOCK_MONOTONIC)
  cpu       uint16
  tid       uint32   the task the event is about (SWITCH: the previous task)
  tgid      uint32   its process
  kind      string   SWITCH KFPU_BEGIN KFPU_END XSAVE XRSTOR USER_RETURN FORK EXEC EXIT KVM_FPU LOST
  cause     string   XSAVE/XRSTOR only (else null): the cause the model resolved for it, the one the
                     report counts (switch, kfpu, user_return, ...; ``unknown`` where nothing in the
                     trace tells). The cause the probe itself gave is in ``a1`` (events.py codes)
  bytes     uint32   XSAVE/XRSTOR only: bytes it moved (legacy area and header plus every live
                     component, XSAVES-style), as the report sums them; else 0
  xstate_class string  XSAVE/XRSTOR only: sse, avx, avx512 or amx (its highest live component group)
  kfpu_ns   int64    KFPU_END only: the section's length (preemption off) as the report times it;
                     null where it has none (its begin was not seen, or it was inferred)
  a0, a1    uint64   the kind's arguments (fputrace/events.py: XSAVE/XRSTOR a0 = xfeatures)
  inferred  bool     the mode could not observe the event directly (SPEC 5.4)
  comm      string   the task's name at that moment (null if never named; a forked child has its
                     parent's name until it execs)
  generation uint32  the task's generation (0, 1, ... when its tid is reused), as in the report
  kthread   bool     a kernel thread (no user FPU state)
  caller    string   KFPU_BEGIN/KFPU_END only: the kernel-FPU caller, symbolised from the
                     recording's ``symbols`` where it can be, else hex
  host      string   the recording's host (meta ``host``): many hosts' files query as one table

The Parquet key-value metadata holds the recording's meta as JSON (``fputrace.meta``) and, for
engines that read single keys, ``fputrace.host``, ``fputrace.kernel_release``,
``fputrace.recorded_policy``, ``fputrace.capture_mode``, ``fputrace.version``.

Every row is annotated by the model as it analyses the recording (``annotated.py``): the export
tabulates what the model decided, so per-kind, per-cause, byte and kernel-FPU-time sums over the
file are the report's numbers. Streaming: the recording is read batch by batch and written in row groups of about
``ROW_GROUP_ROWS`` rows, so memory stays bounded by one row group whatever the file's length.
The file appears under its name only when complete (written aside, then renamed).
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..events import FLAG_INFERRED, TASK_KTHREAD, Kind, args_to_comm
from ..model.sinks import CLASS_NAMES
from .annotated import annotated_chunks
from .output import complete_or_nothing
from .rows import XRSTOR_CAUSES, XSAVE_CAUSES, Interned, PerTidValue, is_task_record, kind_name

ROW_GROUP_ROWS = 1 << 20
# XSAVE causes are codes 0..7, XRSTOR causes 8..15 of one name table
CAUSE_NAMES = ([XSAVE_CAUSES.get(c, "unknown") for c in range(8)]
               + [XRSTOR_CAUSES.get(c, "unknown") for c in range(8)])
FORMAT_TAG = "fputrace-events-parquet/1"

_DICT = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema([
    ("ts_ns", pa.uint64()), ("cpu", pa.uint16()), ("tid", pa.uint32()), ("tgid", pa.uint32()),
    ("kind", _DICT), ("cause", _DICT), ("bytes", pa.uint32()), ("xstate_class", _DICT),
    ("kfpu_ns", pa.int64()), ("a0", pa.uint64()), ("a1", pa.uint64()), ("inferred", pa.bool_()),
    ("comm", _DICT), ("generation", pa.uint32()), ("kthread", pa.bool_()), ("caller", _DICT),
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


def _names(codes: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    """Small non-negative codes into ``names`` (-1 = null)."""
    return _dict_column(codes.astype(np.int64), names)


def _generation(chunk) -> np.ndarray:
    """Per row: the generation of its task (0 for rows without one, e.g. LOST)."""
    if not chunk.tasks:
        return np.zeros(len(chunk.task_id), np.uint32)
    ids = np.fromiter(chunk.tasks, np.int64, len(chunk.tasks))
    gens = np.array([t.generation for t in chunk.tasks.values()], np.uint32)
    order = np.argsort(ids)
    ids, gens = ids[order], gens[order]
    pos = np.clip(np.searchsorted(ids, chunk.task_id), 0, len(ids) - 1)
    return np.where(ids[pos] == chunk.task_id, gens[pos], 0).astype(np.uint32)


def _kfpu_ns(chunk, keep: np.ndarray) -> pa.Array:
    """The model's section length on the KFPU_END row that closed it (timed sections only)."""
    ev = chunk.events
    out = np.zeros(len(ev), np.int64)
    valid = np.zeros(len(ev), bool)
    s = chunk.sections
    timed = s[(s["begin_ns"] >= 0) & (s["inferred"] == 0)]
    if len(timed):
        length = {(int(c), int(e)): int(e - b) for c, e, b in
                  zip(timed["cpu"], timed["end_ns"], timed["begin_ns"])}
        for i in np.flatnonzero(ev["kind"] == Kind.KFPU_END).tolist():
            d = length.get((int(ev["cpu"][i]), int(ev["ts_ns"][i])))
            if d is not None:
                out[i], valid[i] = d, True
    return pa.array(out[keep], mask=~valid[keep])


def event_table(chunk, tasks: TaskColumns, symbols: dict, host: str | None) -> pa.Table:
    """One annotated chunk (``annotated.Chunk``) as rows of SCHEMA."""
    b = chunk.events
    comm_codes, kthread = tasks.batch(b)
    keep = ~is_task_record(b["kind"])
    ev = b[keep]
    kind = ev["kind"]
    uniq_kinds, kinv = np.unique(kind, return_inverse=True)
    n = len(ev)
    cause = chunk.cause[keep].astype(np.int64)
    is_save = kind == Kind.XSAVE
    cause_code = np.where(cause < 0, -1, np.where(is_save, cause, cause + 8))
    return pa.Table.from_arrays([
        pa.array(ev["ts_ns"]), pa.array(ev["cpu"]), pa.array(ev["tid"]), pa.array(ev["tgid"]),
        pa.DictionaryArray.from_arrays(pa.array(kinv.astype(np.int32)),
                                       pa.array([kind_name(k) for k in uniq_kinds.tolist()], pa.string())),
        _names(cause_code, CAUSE_NAMES),
        pa.array(chunk.nbytes[keep].astype(np.uint32)),
        _names(chunk.xclass[keep], list(CLASS_NAMES)),
        _kfpu_ns(chunk, keep),
        pa.array(ev["a0"]), pa.array(ev["a1"]),
        pa.array((ev["flags"] & FLAG_INFERRED) != 0),
        _dict_column(comm_codes[keep], tasks.names.values),
        pa.array(_generation(chunk)[keep]),
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
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with complete_or_nothing(out) as tmp, \
            pq.ParquetWriter(tmp, SCHEMA.with_metadata(kv_metadata(meta)), compression="zstd") as w:
        for chunk in annotated_chunks(trace):
            t = event_table(chunk, tasks, symbols, host)
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
    return rows
