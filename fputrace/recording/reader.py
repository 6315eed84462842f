"""``open_recording``: validate a recording, read its meta, stream its event batches.

Opening walks the message frames once (cheap: bodies are skipped) to merge the header with every
meta update and to find out whether the file ends cleanly. A file cut short (recorder killed) keeps
every complete batch; the reader says so in ``meta["truncated"]`` / ``meta["truncated_reason"]`` and
on stderr. Everything else that is not a readable recording raises ``FileFormatError`` with one
line naming the file and what is wrong.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..errors import FileFormatError
from ..events import EVENT_DTYPE
from . import format as fmt
from . import framing

# First bytes of files people hand to the wrong command, and what to tell them.
_FOREIGN_MAGIC = [
    (b"PAR1", "a Parquet file"),
    (b"ARROW1", "an Arrow IPC *file* (recordings are Arrow IPC streams)"),
    (b"\x7fELF", "an ELF executable or object"),
    (b"PERFILE2", "a perf.data file: convert it with `perf script -F comm,tid,pid,cpu,time,event,trace "
                  "--ns > x.txt` and `fputrace import x.txt -o x.fpt`"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (decompress it first)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file (decompress it first)"),
    (b"BZh", "a bzip2-compressed file (decompress it first)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
]


def _describe_foreign(head: bytes) -> str:
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file (for CSV events or `perf script` output use `fputrace import`)"
    return "unrecognised binary data"


def _warn(msg: str) -> None:
    print(f"fputrace: warning: {msg}", file=sys.stderr)


@dataclass(frozen=True)
class BatchRef:
    """Where one record batch of a recording lies and what it holds, from the walk at open (no
    batch is decoded to build it). Events within a batch are sorted, so ``first_ts_ns`` is its
    earliest timestamp; batches of a file without ``late_events`` follow each other in time."""
    offset: int              # byte offset of its IPC message
    end: int                 # byte offset of the next message
    events: int
    first_ts_ns: int
    crc32: int | None


class Recording:
    """An opened recording: ``meta`` (dict), ``batches()`` (EVENT_DTYPE arrays, streamed),
    ``index`` (a ``BatchRef`` per non-empty batch) and ``read_batch(ref)`` (one batch, by offset:
    a replay seeks without reading what comes before)."""

    def __init__(self, path, *, warn: bool = True):
        self.path = os.fspath(path)
        p = self.path
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise FileFormatError(f"{p}: no such file") from None
        except OSError as err:
            raise FileFormatError(f"{p}: cannot read: {err.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise FileFormatError(f"{p}: is a directory, not a recording")
        try:
            with open(p, "rb") as f:
                head = f.read(64)
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise FileFormatError(f"{p}: empty file, not an fputrace recording")
                if len(head) < 4 and b"\xff\xff\xff\xff".startswith(head):
                    raise FileFormatError(f"{p}: truncated before its header was complete ({size} bytes)")
                if not head.startswith(b"\xff\xff\xff\xff"):
                    raise FileFormatError(f"{p}: not an fputrace recording: {_describe_foreign(head)}")
                f.seek(0)
                try:
                    walk = framing.walk(f, size)
                except framing.FramingError as err:
                    raise FileFormatError(f"{p}: corrupt recording: {err}") from None
        except PermissionError as err:
            raise FileFormatError(f"{p}: cannot read: {err.strerror}") from None
        self.size_bytes = size
        msgs = walk.messages
        if not msgs:
            raise FileFormatError(f"{p}: truncated before its header was complete ({size} bytes)")
        if msgs[0].header_type != framing.HEADER_SCHEMA:
            raise FileFormatError(f"{p}: not an fputrace recording: an Arrow stream that does not start with a schema")
        self.meta = self._read_header(msgs[0].end)
        self._batch_msgs = [m for m in msgs[1:] if m.header_type == framing.HEADER_RECORD_BATCH]
        if len(self._batch_msgs) != len(msgs) - 1:
            raise FileFormatError(f"{p}: not an fputrace recording: unexpected Arrow message types")
        self.num_events = sum(m.num_rows for m in self._batch_msgs)
        self.index = [ref for ref in map(self._ref, self._batch_msgs) if ref.events]
        for m in self._batch_msgs:
            raw = m.custom_metadata.get(fmt.BATCH_META_KEY)
            if raw:
                try:
                    self.meta.update(json.loads(raw))
                except (ValueError, TypeError):
                    raise FileFormatError(f"{p}: corrupt meta update in the batch at byte {m.offset}") from None
        closed = bool(self.meta.get("closed"))
        reason = None
        if walk.truncated_at is not None and closed and size - walk.truncated_at < 8:
            pass                       # only the end-of-stream marker is cut: nothing is missing
        elif walk.truncated_at is not None:
            reason = (f"the last batch is cut short at byte {walk.truncated_at} of {size} "
                      f"(recorder killed?): it is dropped, {self.num_events} complete events kept")
        elif not closed:
            reason = (f"the recorder did not close the file (killed, or still recording?): "
                      f"events after the last flush are missing, {self.num_events} events kept")
        elif self.meta.get("aborted"):
            reason = f"the recorder stopped on an error ({self.meta['aborted']}): the recording ends early"
        self.meta["truncated"] = reason is not None
        if reason:
            self.meta["truncated_reason"] = reason
            if warn:
                _warn(f"{p}: incomplete recording: {reason}")

    def _read_header(self, schema_end: int) -> dict:
        p = self.path
        try:
            with open(p, "rb") as f:
                schema = pa.ipc.read_schema(pa.py_buffer(f.read(schema_end)))
        except (pa.ArrowException, OSError) as err:
            raise FileFormatError(f"{p}: corrupt header: {err}") from None
        raw = (schema.metadata or {}).get(fmt.SCHEMA_META_KEY)
        if raw is None:
            raise FileFormatError(f"{p}: not an fputrace recording: an Arrow stream without an fputrace header")
        try:
            meta = json.loads(raw)
        except ValueError:
            raise FileFormatError(f"{p}: corrupt header: its metadata is not valid JSON") from None
        if not isinstance(meta, dict):
            raise FileFormatError(f"{p}: corrupt header: its metadata is not a JSON object")
        if meta.get("format") != fmt.FORMAT_NAME:
            raise FileFormatError(f"{p}: not an fputrace recording: header format is {meta.get('format')!r}")
        missing = [k for k in fmt.REQUIRED_META if k not in meta]
        if missing:
            raise FileFormatError(f"{p}: header lacks required field(s): {', '.join(missing)}")
        version = meta["format_version"]
        if not isinstance(version, int):
            raise FileFormatError(f"{p}: header format_version {version!r} is not an integer")
        if version > fmt.FORMAT_VERSION:
            raise FileFormatError(
                f"{p}: recording format version {version} is newer than this fputrace reads "
                f"(version {fmt.FORMAT_VERSION}; written by fputrace {meta['fputrace_version']}): upgrade fputrace")
        if version < 1:
            raise FileFormatError(f"{p}: header format_version {version} is not a valid version")
        if not fmt.schema_matches(schema):
            raise FileFormatError(f"{p}: corrupt recording: its columns are not those of format version {version}")
        self._schema = schema
        return meta

    def _ref(self, m: framing.MessageInfo) -> BatchRef:
        try:
            base = int(m.custom_metadata[fmt.BATCH_BASE_KEY])
            crc = int(m.custom_metadata[fmt.BATCH_CRC_KEY]) if fmt.BATCH_CRC_KEY in m.custom_metadata \
                else None
        except (KeyError, ValueError):
            raise FileFormatError(f"{self.path}: corrupt batch at byte {m.offset}: "
                                  "no base timestamp in its metadata") from None
        return BatchRef(m.offset, m.end, m.num_rows, base, crc)

    def load_batch(self, ref: BatchRef, f=None) -> "LoadedBatch":
        """One batch read at its offset, checked, still in its compact columns (~26 bytes per
        event) to decode a slice at a time; ``f``: an open binary file of this recording
        (default: open it for this call). Plain reads, not a memory map, so the file's pages
        never count as this process's memory."""
        try:
            if f is None:
                with open(self.path, "rb") as own:
                    return self.load_batch(ref, own)
            f.seek(ref.offset)
            data = f.read(ref.end - ref.offset)
            rb = pa.ipc.read_record_batch(pa.ipc.read_message(pa.py_buffer(data)), self._schema)
            if ref.crc32 is not None:
                fmt.verify(rb, ref.crc32)
            return LoadedBatch(self.path, ref, rb)
        except (pa.ArrowException, OSError, ValueError, TypeError) as err:
            raise FileFormatError(f"{self.path}: corrupt batch at byte {ref.offset}: {_first_line(err)}") \
                from None

    def read_batch(self, ref: BatchRef, f=None) -> np.ndarray:
        """The events of one batch (EVENT_DTYPE), read at its offset (see ``load_batch``)."""
        loaded = self.load_batch(ref, f)
        return loaded.events(0, loaded.rows)

    def batches(self) -> Iterator[np.ndarray]:
        """Every complete batch as an EVENT_DTYPE array, in file order; memory bounded by one batch."""
        p = self.path
        with pa.OSFile(p, "rb") as source:
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowException as err:
                raise FileFormatError(f"{p}: corrupt header: {err}") from None
            for m in self._batch_msgs:
                try:
                    rb, custom = reader.read_next_batch_with_custom_metadata()
                    base = int(custom[fmt.BATCH_BASE_KEY])
                    crc = int(custom[fmt.BATCH_CRC_KEY]) if fmt.BATCH_CRC_KEY in custom else None
                    events = fmt.decode(rb, base, crc)
                except (pa.ArrowException, StopIteration, KeyError, ValueError, TypeError) as err:
                    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
                    raise FileFormatError(f"{p}: corrupt batch at byte {m.offset}: {detail}") from None
                if events.size:
                    yield events

    def read_all(self) -> np.ndarray:
        parts = list(self.batches())
        return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class LoadedBatch:
    """A batch in memory as Arrow columns; ``events(start, stop)`` decodes rows [start, stop)."""

    def __init__(self, path: str, ref: BatchRef, rb: pa.RecordBatch) -> None:
        self.path, self.ref, self._rb = path, ref, rb
        self.rows = rb.num_rows
        self._deltas = fmt._column(rb, 0)                       # ts_delta_ns, a view
        self._next_row, self._next_base = 0, ref.first_ts_ns     # where the last slice ended

    def events(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.rows)
        if start != self._next_row:        # the timestamp of row start-1: base + deltas up to it
            self._next_base = self.ref.first_ts_ns + int(self._deltas[:start].sum(dtype=np.uint64))
        try:
            out = fmt.decode(self._rb.slice(start, stop - start), self._next_base)
        except (pa.ArrowException, ValueError, TypeError) as err:
            raise FileFormatError(f"{self.path}: corrupt batch at byte {self.ref.offset}: "
                                  f"{_first_line(err)}") from None
        if len(out):
            self._next_row, self._next_base = stop, int(out["ts_ns"][-1])
        return out


def open_recording(path, *, warn: bool = True) -> Recording:
    """Open and validate a recording (see ``Recording``); raises ``FileFormatError``."""
    return Recording(path, warn=warn)
