"""``fputrace export --format csv``: the CSV that ``fputrace import`` reads, so a round trip is exact.

The import format (fputrace/importers/csv_events.py) is one row per event with ``comm`` and
``kthread`` cells; the importer turns a *change* of a tid's cell into a COMM or TASK record just
before that row. The export writes the same columns (``ts_ns,cpu,tid,tgid,kind,a0,a1,comm,
kthread,inferred``) and gives back the recording's task-table records that way where it can, as
explicit ``COMM``/``TASK`` rows (raw arguments, empty cells) where it cannot: ``csv_plan.py``
decides which. That needs a look ahead, so the recording is read twice, batch by batch: memory is
bounded by one batch plus a few integers per task-table record.

A recording made by ``fputrace import`` of a CSV comes back record for record, with one liberty: at
equal timestamps the importer puts records before events, so records of *different* tasks at the
same nanosecond may come back in another order (each task's own records keep theirs); the events,
the task table and every report are the same. A live recording comes back with every event and
every name (carried records move to the row that carries them). The recording's meta (modes,
kernel, xstate) has no place in the import format: it is written as a ``#meta {json}`` comment
line, which the importer skips.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .. import __version__
from ..errors import FputraceError
from ..events import EVENT_DTYPE, FLAG_INFERRED, KIND_NAMES
from .csv_plan import Placement, plan
from .output import complete_or_nothing
from .rows import Interned, PerTidValue, is_task_record

COLUMNS = ("ts_ns", "cpu", "tid", "tgid", "kind", "a0", "a1", "comm", "kthread", "inferred")


def _kind_names(kind: np.ndarray) -> pa.DictionaryArray:
    uniq, inv = np.unique(kind, return_inverse=True)
    unknown = [k for k in uniq.tolist() if k not in KIND_NAMES]
    if unknown:
        raise FputraceError(f"event kind {unknown[0]} (from a newer fputrace) has no name in the "
                            f"import format: use --format parquet")
    return pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32)),
                                          pa.array([KIND_NAMES[k] for k in uniq.tolist()]))


def write_csv(trace, out: str) -> int:
    """Write ``trace`` to ``out`` ("-": standard output) in the import format; returns the rows."""
    placement = plan(trace)
    if out == "-":
        import sys
        return _write(trace, sys.stdout.buffer, placement)
    with complete_or_nothing(out) as tmp, open(tmp, "wb") as f:
        return _write(trace, f, placement)


SCHEMA = pa.schema([("ts_ns", pa.uint64()), ("cpu", pa.uint16()), ("tid", pa.uint32()),
                    ("tgid", pa.uint32()), ("kind", pa.string()), ("a0", pa.uint64()),
                    ("a1", pa.uint64()), ("comm", pa.string()), ("kthread", pa.int8()),
                    ("inferred", pa.int8())])


def _write(trace, f, placement: Placement) -> int:
    """Second pass: the rows, with the cells the importer turns back into the carried records."""
    names = Interned()
    comm = PerTidValue(default=-1)
    kthread = PerTidValue(default=-1)
    changes = placement.changes
    rows = ci = base = 0
    f.write(f"# fputrace {__version__} export of {trace.path} (fputrace import reads this file)\n"
            .encode())
    f.write(b"#meta " + json.dumps(trace.meta, sort_keys=True, default=str).encode() + b"\n")
    f.write(",".join(COLUMNS).encode() + b"\n")   # unquoted: the importer sniffs this line
    plain = pacsv.WriteOptions(include_header=False, quoting_style="none")
    quoted = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for b in trace.batches():
        n = len(b)
        comm_changes, kthread_changes = [], []
        while ci < len(changes) and changes[ci][0] < base + n:
            gpos, tid, what, value = changes[ci]
            if what == "comm":                 # from the carrying row itself on: row - 1
                comm_changes.append((gpos - base - 1, tid, names.code(value)))
            else:
                kthread_changes.append((gpos - base - 1, tid, int(value)))
            ci += 1
        tids = b["tid"].astype(np.int64)
        comm_codes = comm.rows(tids, comm_changes)
        kthread_vals = kthread.rows(tids, kthread_changes)
        rec = is_task_record(b["kind"])
        keep = ~rec
        for p in np.flatnonzero(rec).tolist():  # explicit records written where they were
            g = base + p
            keep[p] = g not in placement.carried and g not in placement.moved_from
        comm_codes[rec] = -1                    # explicit records: the raw record, empty cells
        kthread_vals[rec] = -1
        order = np.flatnonzero(keep)
        sel, codes, kv = b[order], comm_codes[order], kthread_vals[order]
        moved = [(p, r) for p in order.tolist() for r in placement.moved.get(base + p, ())]
        if moved:                               # explicit records written after a carrying row
            extra = np.array([r for _, r in moved], EVENT_DTYPE)
            at = np.searchsorted(order, [p for p, _ in moved], side="right")
            sel = np.insert(sel, at, extra)
            codes = np.insert(codes, at, -1)
            kv = np.insert(kv, at, -1)
        by_code = np.array(names.values + [None], dtype=object)
        cells = by_code[np.where(codes < 0, len(names.values), codes)]
        table = pa.Table.from_arrays([
            pa.array(sel["ts_ns"]), pa.array(sel["cpu"]), pa.array(sel["tid"]),
            pa.array(sel["tgid"]), _kind_names(sel["kind"]).cast(pa.string()),
            pa.array(sel["a0"]), pa.array(sel["a1"]), pa.array(cells, pa.string()),
            pa.array(kv.astype(np.int8), mask=kv < 0),
            pa.array(((sel["flags"] & FLAG_INFERRED) != 0).astype(np.int8)),
        ], schema=SCHEMA)
        out = pa.BufferOutputStream()
        try:                                    # no quotes unless a name needs them (a comma, a quote)
            pacsv.write_csv(table, out, write_options=plain)
        except pa.ArrowInvalid:
            out = pa.BufferOutputStream()
            pacsv.write_csv(table, out, write_options=quoted)
        f.write(out.getvalue().to_pybytes())
        rows += len(sel)
        base += n
    return rows
