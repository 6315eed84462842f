"""``RecordingWriter``: append event batches to a kill-safe recording (format.py describes it).

Events are buffered and written as one compressed batch at least once per second (a background
thread flushes when the producer is quiet), so SIGKILL loses at most the last second. Each flush
serialises whole messages in memory and hands them to the kernel with ``os.write``: a kill can cut
the last message short, never corrupt an earlier one, and the reader detects and drops the cut one.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pyarrow as pa

from ..errors import FputraceError
from ..events import EVENT_DTYPE
from . import format as fmt

DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_MAX_BATCH_EVENTS = 1 << 20      # bounds the buffer (40 MiB raw) at high event rates
ZSTD_LEVEL = 1                          # measured: as small as level 3 here, and faster


class _Collector:
    """A write-only file object for pyarrow that keeps the bytes until we write them ourselves."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class RecordingWriter:
    """Write a recording. ``meta`` becomes the header; ``update_meta`` adds to it later."""

    def __init__(self, path, meta: dict, *, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
                 max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS, background_flush: bool = True):
        self.path = os.fspath(path)
        self.meta = fmt.header_meta(meta)
        self.flush_interval_s = flush_interval_s
        self.max_batch_events = max_batch_events
        self.bytes_written = 0
        self.events_written = 0
        self._buf = np.zeros(0, EVENT_DTYPE)   # one copy of the caller's events, grown as needed
        self._pending_events = 0
        self._pending_meta: dict = {}
        self._last_ts = 0
        self._late_events = 0
        self._lock = threading.RLock()
        self._closed = False
        self._background_error: FputraceError | None = None
        self._schema = fmt.make_schema(self.meta)   # a bad meta fails before the file exists
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.fchmod(self._fd, 0o600)   # an existing file keeps its mode through O_TRUNC
        except OSError as err:
            raise FputraceError(f"{self.path}: cannot create recording: {err.strerror}") from None
        self._sink = _Collector()
        options = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", compression_level=ZSTD_LEVEL),
                                         use_threads=False)
        self._ipc = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), self._schema, options=options)
        self._last_flush = time.monotonic()
        # pyarrow writes the schema with the first batch: an empty one puts the header on disk now
        rb, _, crc = fmt.encode(np.zeros(0, EVENT_DTYPE), self._schema)
        self._ipc.write_batch(rb, custom_metadata={fmt.BATCH_BASE_KEY: b"0", fmt.BATCH_CRC_KEY: str(crc).encode()})
        self._emit()
        self._stop = threading.Event()
        self._thread = None
        if background_flush:
            self._thread = threading.Thread(target=self._flush_loop, name="fputrace-recording-flush",
                                            daemon=True)
            self._thread.start()

    # -- public API ---------------------------------------------------------------------------
    def write(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray) or batch.dtype != EVENT_DTYPE:
            raise TypeError("RecordingWriter.write takes a numpy array of fputrace.events.EVENT_DTYPE")
        if batch.size == 0:
            return
        with self._lock:
            self._check_open()
            self._raise_background_error()
            while batch.size:
                room = self.max_batch_events - self._pending_events
                part, batch = batch[:room], batch[room:]
                self._append(part)
                if self._pending_events >= self.max_batch_events:
                    self._flush_locked()
            if time.monotonic() - self._last_flush >= self.flush_interval_s:
                self._flush_locked()

    def _append(self, part: np.ndarray) -> None:
        need = self._pending_events + part.size
        if need > self._buf.size:
            grown = np.zeros(min(max(need, 2 * self._buf.size, 4096), self.max_batch_events), EVENT_DTYPE)
            grown[:self._pending_events] = self._buf[:self._pending_events]
            self._buf = grown
        self._buf[self._pending_events:need] = part
        self._pending_events = need

    def update_meta(self, **changes) -> None:
        """Merge ``changes`` into the meta; persisted with the next flush (at most a second away)."""
        fmt.meta_json(changes)             # fail now, in the caller, if it is not JSON-able
        with self._lock:
            self._check_open()
            self._pending_meta.update(changes)
            self.meta.update(changes)

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._raise_background_error()
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._stop.set()
            self._raise_background_error()
            self._flush_locked(closing=True)
            self._ipc.close()              # end-of-stream marker
            self._emit()
            os.fsync(self._fd)
            os.close(self._fd)
            self._closed = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt) and not self._closed:
            # the producer failed: the file must not claim to be a whole recording
            try:
                self.update_meta(aborted=f"{exc_type.__name__}: {exc}")
            except (TypeError, ValueError):
                pass
        self.close()

    # -- internals ----------------------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise ValueError(f"{self.path}: recording already closed")

    def _raise_background_error(self):
        if self._background_error is not None:
            err, self._background_error = self._background_error, None
            raise err

    def _flush_loop(self):
        tick = min(0.25, self.flush_interval_s / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if self._closed:
                    return
                if (self._pending_events or self._pending_meta) and \
                        time.monotonic() - self._last_flush >= self.flush_interval_s:
                    try:
                        self._flush_locked()
                    except FputraceError as err:   # e.g. disk full: the producer hears of it
                        self._background_error = err
                        return

    def _flush_locked(self, closing: bool = False):
        self._last_flush = time.monotonic()
        events = self._buf[:self._pending_events]
        self._pending_events = 0
        if events.size:
            if not fmt.is_sorted(events["ts_ns"]):
                events = events[np.argsort(events["ts_ns"], kind="stable")]
            late = int(np.count_nonzero(events["ts_ns"] < self._last_ts))
            if late:
                self._late_events += late
                self._pending_meta["late_events"] = self.meta["late_events"] = self._late_events
            self._last_ts = max(self._last_ts, int(events["ts_ns"][-1]))
            self.events_written += int(events.size)
        if closing:
            self._pending_meta.update(closed=True, events=self.events_written)
            self.meta.update(closed=True, events=self.events_written)
        if not events.size and not self._pending_meta:
            return
        cuts = [0, *fmt.split_points(events), events.size]
        runs = [events[a:b] for a, b in zip(cuts[:-1], cuts[1:])] or [events]
        for i, run in enumerate(runs):
            rb, base, crc = fmt.encode(run, self._schema)
            custom = {fmt.BATCH_BASE_KEY: str(base).encode(), fmt.BATCH_CRC_KEY: str(crc).encode()}
            if i == len(runs) - 1 and self._pending_meta:
                custom[fmt.BATCH_META_KEY] = fmt.meta_json(self._pending_meta).encode()
            self._ipc.write_batch(rb, custom_metadata=custom)
        self._pending_meta = {}
        self._emit()

    def _emit(self):
        data = self._sink.take()
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as err:
            raise FputraceError(f"{self.path}: write failed: {err.strerror}") from None
        self.bytes_written += len(data)
