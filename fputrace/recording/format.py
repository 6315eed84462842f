"""The fputrace recording format, version 1: what is on disk and how events are encoded.

A recording is an Arrow IPC *stream* (https://arrow.apache.org/docs/format/Columnar.html#ipc-streaming-format):
a schema message, then self-contained record-batch messages, then (when closed cleanly) the
end-of-stream marker. Every message is complete in itself, so a recorder killed with SIGKILL leaves
a file whose complete batches still load; only the message it was writing is lost (SPEC 6).

Header: the schema's metadata holds one JSON object under the key ``fputrace`` with at least
``format`` = "fputrace-recording", ``format_version`` (int), ``fputrace_version``; the recorder adds
the rest (kernel release, modes per logical event, CPU model, xstate layout, clock, host, start...).

Well-known meta keys (a reader must not require more than the three above):
  source ("record" | "perf-script" | "csv"), host, kernel_release, cpu_model, nr_cpus, clock,
  start_ns, end_ns, recorded_policy ("eager" | "deferred"), capture_mode, modes {logical event:
  {attach, exact, refused, note}}, lost_per_cpu {cpu: n}, symbols {address: name}, xstate, ...
  (fputrace/capture/session.py and fputrace/importers/ document what each producer writes).
  The writer adds ``closed`` and ``events`` when it closes the file, ``late_events`` if needed;
  the reader adds ``truncated`` (bool) and ``truncated_reason``.

Each record batch carries custom metadata:
  ``fputrace.base_ts_ns``  absolute timestamp the batch's first delta is relative to (decimal)
  ``fputrace.crc32``       CRC-32 of the batch's uncompressed column data, in column order
                           (decimal): zstd frames carry no checksum, so corruption would otherwise
                           decode silently into wrong events
  ``fputrace.meta``        optional JSON object: meta updates, merged (top-level keys replace) into
                           the header in file order; the last batch of a cleanly closed file has
                           ``{"closed": true, ...}``.

Columns (narrow, then compressed with zstd per buffer; ~4-6 bytes per event on realistic streams):
  ts_delta_ns   uint32  ts_ns minus the previous event's (the first: minus base_ts_ns)
  cpu           uint16
  kind          uint8   ``fputrace.events.Kind``
  flags         uint8   ``FLAG_*``
  tid           uint32
  tgid_xor_tid  uint32  tgid ^ tid (0 for a process's main thread, so it compresses away)
  a0, a1        uint64

Events are sorted by ts_ns within a batch (the writer sorts a batch that is not). A gap of 2**32 ns
or more (4.3 s) starts a new batch. Batches may overlap in time only if a producer handed the
writer events older than ones already flushed; the writer counts those in meta ``late_events`` and
``fputrace.load`` sorts the whole trace when that count is non-zero.
"""
from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa

from .. import __version__
from ..events import EVENT_DTYPE

FORMAT_NAME = "fputrace-recording"
FORMAT_VERSION = 1
SCHEMA_META_KEY = b"fputrace"
BATCH_BASE_KEY = b"fputrace.base_ts_ns"
BATCH_META_KEY = b"fputrace.meta"
BATCH_CRC_KEY = b"fputrace.crc32"
REQUIRED_META = ("format", "format_version", "fputrace_version")
MAX_DELTA_NS = (1 << 32) - 1

SCHEMA_FIELDS = [
    ("ts_delta_ns", pa.uint32()),
    ("cpu", pa.uint16()),
    ("kind", pa.uint8()),
    ("flags", pa.uint8()),
    ("tid", pa.uint32()),
    ("tgid_xor_tid", pa.uint32()),
    ("a0", pa.uint64()),
    ("a1", pa.uint64()),
]


def _json_default(value):
    # producers hand over numpy scalars and arrays (counts, masks); store them as plain JSON
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"meta value {value!r} ({type(value).__name__}) cannot be stored as JSON")


def meta_json(meta: dict) -> str:
    """JSON of a meta dict (header or update); TypeError for values JSON cannot hold."""
    return json.dumps(meta, sort_keys=True, default=_json_default)


def make_schema(meta: dict) -> pa.Schema:
    return pa.schema(SCHEMA_FIELDS, metadata={SCHEMA_META_KEY: meta_json(meta)})


def header_meta(meta: dict) -> dict:
    """The caller's meta plus the fields every recording must carry (the caller may not override
    the format identity)."""
    out = dict(meta)
    out.update(format=FORMAT_NAME, format_version=FORMAT_VERSION)
    out.setdefault("fputrace_version", __version__)
    return out


def is_sorted(ts: np.ndarray) -> bool:
    return ts.size < 2 or bool(np.all(ts[1:] >= ts[:-1]))


def split_points(events: np.ndarray) -> list[int]:
    """Indices where a new batch must start because the time gap does not fit in uint32."""
    ts = events["ts_ns"]
    if ts.size < 2:
        return []
    gaps = ts[1:] - ts[:-1]
    return list((np.nonzero(gaps > MAX_DELTA_NS)[0] + 1).tolist())


def encode(events: np.ndarray, schema: pa.Schema) -> tuple[pa.RecordBatch, int, int]:
    """One sorted run of events (no gap >= 2**32 ns) -> (record batch, base_ts_ns, crc32)."""
    ts = events["ts_ns"]
    base = int(ts[0]) if ts.size else 0
    delta = np.empty(ts.size, np.uint32)
    if ts.size:
        delta[0] = 0
        np.subtract(ts[1:], ts[:-1], out=delta[1:], casting="unsafe")
    tid = events["tid"]
    columns = [delta, events["cpu"], events["kind"], events["flags"], tid, events["tgid"] ^ tid,
               events["a0"], events["a1"]]
    contiguous = [np.ascontiguousarray(col, dtype=typ.to_pandas_dtype()) for col, (_, typ) in zip(columns, SCHEMA_FIELDS)]
    # from_buffers, not pa.array: the latter imports pandas (0.6 s) in the recorder.
    arrays = [pa.Array.from_buffers(typ, col.size, [None, pa.py_buffer(col)])
              for col, (_, typ) in zip(contiguous, SCHEMA_FIELDS)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema), base, _crc(contiguous)


def _crc(columns) -> int:
    crc = 0
    for col in columns:
        crc = zlib.crc32(memoryview(col).cast("B"), crc)
    return crc



class ChecksumError(ValueError):
    pass


def _column(batch: pa.RecordBatch, i: int) -> np.ndarray:
    """Column i as a numpy view of its data buffer. (pyarrow's ``to_numpy`` imports pandas, ~0.4 s
    that `fputrace report` would otherwise spend before its first line.)"""
    c = batch.column(i)
    if c.null_count:                       # never written by us: let pyarrow say what it is
        return c.to_numpy(zero_copy_only=False)
    dt = np.dtype(str(c.type))             # the SCHEMA_FIELDS types are numpy's names
    if len(c) == 0:
        return np.zeros(0, dt)
    return np.frombuffer(c.buffers()[1], dtype=dt, count=len(c), offset=c.offset * dt.itemsize)


def _columns(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    return {name: _column(batch, i) for i, (name, _) in enumerate(SCHEMA_FIELDS)}


def verify(batch: pa.RecordBatch, crc32: int) -> None:
    """ChecksumError unless the batch's column data has this CRC-32 (a whole batch, not a slice)."""
    if _crc(np.ascontiguousarray(c) for c in _columns(batch).values()) != crc32:
        raise ChecksumError("checksum mismatch (the data was altered after it was written)")


def decode(batch: pa.RecordBatch, base_ts_ns: int, crc32: int | None = None) -> np.ndarray:
    """Record batch -> EVENT_DTYPE array (the inverse of ``encode``); checks ``crc32`` if given.
    A slice of a batch decodes too: ``base_ts_ns`` is then the timestamp of the row before it."""
    n = batch.num_rows
    out = np.zeros(n, EVENT_DTYPE)
    col = _columns(batch)
    if crc32 is not None:
        verify(batch, crc32)
    if n == 0:
        return out
    np.cumsum(col["ts_delta_ns"], dtype=np.uint64, out=out["ts_ns"])
    out["ts_ns"] += np.uint64(base_ts_ns)
    out["cpu"] = col["cpu"]
    out["kind"] = col["kind"]
    out["flags"] = col["flags"]
    out["tid"] = col["tid"]
    out["tgid"] = col["tgid_xor_tid"] ^ col["tid"]
    out["a0"] = col["a0"]
    out["a1"] = col["a1"]
    return out


def schema_matches(schema: pa.Schema) -> bool:
    return [(f.name, f.type) for f in schema] == SCHEMA_FIELDS
