"""Importers: other tools' output -> fputrace event batches + meta, written as a recording.

    perf_script  the text of ``perf script`` for a ``perf record`` of x86_fpu / sched tracepoints
    csv_events   a documented CSV of normalised events (tests, other tracers, hand-made scenarios)

Each importer is a class with ``feed_lines(lines)`` and ``finish() -> (events, meta)``; the
``import_file`` function opens the source, picks the importer and writes the recording.
"""
from __future__ import annotations

import io
import itertools
import os
import sys
from typing import Iterator

import numpy as np

from ..errors import FileFormatError
from ..events import EVENT_DTYPE, Kind

FORMATS = ("auto", "perf-script", "csv")


class EventRows:
    """Collects events as Python tuples and turns them into EVENT_DTYPE chunks (cheap appends)."""

    CHUNK = 1 << 16
    FIELDS = ("ts_ns", "cpu", "tid", "tgid", "kind", "flags", "a0", "a1")

    def __init__(self):
        self.rows: list[tuple] = []
        self.chunks: list[np.ndarray] = []

    def add(self, ts_ns, cpu, tid, tgid, kind, flags, a0, a1) -> None:
        self.rows.append((ts_ns, cpu, tid, tgid, kind, flags, a0, a1))
        if len(self.rows) >= self.CHUNK:
            self._pack()

    def _pack(self) -> None:
        if not self.rows:
            return
        cols = list(zip(*self.rows))
        out = np.zeros(len(self.rows), EVENT_DTYPE)
        for name, col in zip(self.FIELDS, cols):
            out[name] = np.array(col, dtype=np.uint64 if name in ("ts_ns", "a0", "a1") else np.int64)
        self.chunks.append(out)
        self.rows.clear()

    def __len__(self) -> int:
        return len(self.rows) + sum(len(c) for c in self.chunks)

    def array_unsorted(self) -> np.ndarray:
        """Every event so far, in the order added."""
        self._pack()
        ev = np.concatenate(self.chunks) if self.chunks else np.zeros(0, EVENT_DTYPE)
        self.chunks = [ev]
        return ev

    @staticmethod
    def sort_task_records_first(ev: np.ndarray) -> np.ndarray:
        """Sorted by time, stable; at equal times task-table records (COMM/TASK) come first, so
        a task's name and kind are known before its first event."""
        is_event = ~np.isin(ev["kind"], np.array([Kind.COMM, Kind.TASK], np.uint8))
        return ev[np.lexsort((is_event, ev["ts_ns"]))]


def open_source(src: str):
    """A text stream of ``src`` ("-" = stdin) or FileFormatError naming it."""
    if src == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    try:
        f = open(src, "rb")
    except FileNotFoundError:
        raise FileFormatError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{src}: is a directory") from None
    except OSError as err:
        raise FileFormatError(f"{src}: cannot read: {err.strerror}") from None
    head = f.peek(16)[:16] if hasattr(f, "peek") else b""
    if head.startswith(b"PERFILE2"):
        f.close()
        raise FileFormatError(
            f"{src}: a perf.data file, not text: run `perf script -i {src} -F comm,tid,pid,cpu,time,event,trace "
            f"--ns --show-lost-events --header > x.txt` and import x.txt")
    if head.startswith(b"\xff\xff\xff\xff"):
        f.close()
        raise FileFormatError(f"{src}: already an fputrace recording (use it directly: fputrace report {src})")
    if b"\0" in head:
        f.close()
        raise FileFormatError(f"{src}: binary data, not the text of perf script or CSV")
    return io.TextIOWrapper(f, encoding="utf-8", errors="replace")


def detect(src: str, first_lines: list[str]) -> str:
    from . import csv_events, perf_script
    for line in first_lines:
        if not line.strip() or (line.startswith("#") and not perf_script.is_header_line(line)):
            continue
        if csv_events.looks_like_header(line):
            return "csv"
        if perf_script.looks_like_event(line):
            return "perf-script"
        break
    for line in first_lines:
        if perf_script.is_header_line(line):
            return "perf-script"
    raise FileFormatError(f"{src}: neither perf script output nor fputrace CSV (give --format perf-script|csv "
                          f"if it is one of them)")


def import_file(src: str, out: str, fmt: str = "auto", **options) -> tuple[dict, int]:
    """Import ``src`` into the recording ``out``; returns (meta, number of records written)."""
    from ..recording import RecordingWriter
    from . import csv_events, perf_script
    if fmt not in FORMATS:
        raise FileFormatError(f"unknown import format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if src != "-" and os.path.exists(out) and os.path.exists(src) and os.path.samefile(src, out):
        raise FileFormatError(f"{out}: the output is the input file; choose another -o")
    with open_source(src) as stream:
        lines: Iterator[str] = iter(stream)
        if fmt == "auto":
            head = list(itertools.islice(lines, 200))
            fmt = detect(src, head)
            lines = itertools.chain(head, lines)
        importer = (perf_script.PerfScriptImporter(src, **options) if fmt == "perf-script"
                    else csv_events.CsvImporter(src, **options))
        importer.feed_lines(lines)
    events, meta = importer.finish()
    with RecordingWriter(out, meta, background_flush=False) as writer:
        for i in range(0, len(events), 1 << 20):
            writer.write(events[i:i + (1 << 20)])
    return writer.meta, len(events)
