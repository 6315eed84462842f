"""Import a CSV of normalised events (tests, other tracers, hand-made scenarios).

Format (UTF-8, comma-separated, one header row naming the columns, in any order):

    ts_ns,cpu,tid,tgid,kind,a0,a1[,comm][,kthread][,inferred]

  ts_ns     event time in nanoseconds (CLOCK_MONOTONIC or any one clock), integer >= 0
  cpu       CPU number, 0..65535
  tid,tgid  task and process ids, 0..2**32-1
  kind      a SPEC 5.1 kind name, case-insensitive: SWITCH KFPU_BEGIN KFPU_END XSAVE XRSTOR
            USER_RETURN FORK EXEC EXIT KVM_FPU LOST (and COMM, TASK; but use the columns below)
  a0,a1     the kind's arguments (fputrace/events.py), decimal or 0x-hex, 0..2**64-1;
            an empty cell is 0
  comm      optional: the task's name; a change (or the first one) becomes a COMM record
  kthread   optional: 1 for a kernel thread (no user FPU state), 0 otherwise; becomes a TASK record
  inferred  optional: 1 when the event was inferred rather than observed

Blank lines and lines starting with # are skipped. Rows need not be sorted: the import sorts
them by ts_ns (stable, so rows with equal times keep their order). A bad value is an error naming
the file, the line and the column. Example:

    ts_ns,cpu,tid,tgid,kind,a0,a1,comm
    1000,0,101,101,SWITCH,102,1,a
    1200,0,101,101,XSAVE,0x207,1,a
    1500,0,102,102,XRSTOR,0x207,1,b
"""
from __future__ import annotations

import csv

import numpy as np

from ..errors import FileFormatError
from ..events import FLAG_INFERRED, KIND_BY_NAME, TASK_KTHREAD, Kind, comm_to_args
from . import EventRows

REQUIRED = ("ts_ns", "cpu", "tid", "tgid", "kind", "a0", "a1")
OPTIONAL = ("comm", "kthread", "inferred")
LIMITS = {"ts_ns": 2**64 - 1, "cpu": 2**16 - 1, "tid": 2**32 - 1, "tgid": 2**32 - 1,
          "a0": 2**64 - 1, "a1": 2**64 - 1}


def looks_like_header(line: str) -> bool:
    cells = {c.strip().lower() for c in line.split(",")}
    return set(REQUIRED) <= cells


def _int(text: str, column: str) -> int:
    t = text.strip()
    if column in ("a0", "a1") and t == "":
        return 0
    try:
        value = int(t, 16) if t[:2].lower() == "0x" else int(t)
    except ValueError:
        raise ValueError(f"{column} = {text!r} is not an integer") from None
    if not 0 <= value <= LIMITS[column]:
        raise ValueError(f"{column} = {text!r} is out of range 0..{LIMITS[column]}")
    return value


def _flag(text: str, column: str) -> bool:
    t = text.strip()
    if t in ("", "0"):
        return False
    if t == "1":
        return True
    raise ValueError(f"{column} = {text!r} must be 0 or 1")


class CsvImporter:
    def __init__(self, src: str, kernel_release: str | None = None):
        self.src = src
        self.kernel_release = kernel_release
        self.rows = EventRows()
        self.comm_of: dict[int, str] = {}
        self.kthread_of: dict[int, bool] = {}
        self.lost_per_cpu: dict[str, int] = {}
        self.events = 0

    def feed_lines(self, lines) -> None:
        numbered = ((n, line) for n, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#"))
        header_line = None
        columns: list[str] = []

        def rows():
            for n, line in numbered:
                yield n, next(csv.reader([line]))

        it = rows()
        for header_line, cells in it:
            columns = [c.strip().lower() for c in cells]
            break
        if header_line is None:
            raise FileFormatError(f"{self.src}: empty: no CSV header (expected {','.join(REQUIRED)})")
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise FileFormatError(f"{self.src}:{header_line}: CSV header lacks column(s) {', '.join(missing)} "
                                  f"(expected {','.join(REQUIRED)}[,{','.join(OPTIONAL)}])")
        unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise FileFormatError(f"{self.src}:{header_line}: unknown CSV column(s) {', '.join(unknown)} "
                                  f"(known: {','.join(REQUIRED + OPTIONAL)})")
        pos = {c: i for i, c in enumerate(columns)}
        for lineno, cells in it:
            if len(cells) != len(columns):
                raise FileFormatError(f"{self.src}:{lineno}: {len(cells)} fields, the header has {len(columns)}")
            try:
                self._row(cells, pos)
            except ValueError as err:
                raise FileFormatError(f"{self.src}:{lineno}: {err}") from None

    def _row(self, cells: list[str], pos: dict[str, int]) -> None:
        ts, cpu, tid, tgid, a0, a1 = (_int(cells[pos[c]], c) for c in ("ts_ns", "cpu", "tid", "tgid", "a0", "a1"))
        name = cells[pos["kind"]].strip().upper()
        if name not in KIND_BY_NAME:
            raise ValueError(f"kind = {cells[pos['kind']]!r} is not one of {' '.join(KIND_BY_NAME)}")
        kind = KIND_BY_NAME[name]
        flags = FLAG_INFERRED if "inferred" in pos and _flag(cells[pos["inferred"]], "inferred") else 0
        if "comm" in pos:
            comm = cells[pos["comm"]]
            if comm and self.comm_of.get(tid) != comm:
                self.comm_of[tid] = comm
                self.rows.add(ts, cpu, tid, tgid, Kind.COMM, 0, *comm_to_args(comm))
        if "kthread" in pos and cells[pos["kthread"]].strip() != "":
            kthread = _flag(cells[pos["kthread"]], "kthread")
            if self.kthread_of.get(tid) != kthread:
                self.kthread_of[tid] = kthread
                self.rows.add(ts, cpu, tid, tgid, Kind.TASK, 0, TASK_KTHREAD if kthread else 0, 0)
        if kind == Kind.LOST:
            self.lost_per_cpu[str(cpu)] = self.lost_per_cpu.get(str(cpu), 0) + a0
        self.rows.add(ts, cpu, tid, tgid, kind, flags, a0, a1)
        self.events += 1

    def finish(self):
        if self.events == 0:
            raise FileFormatError(f"{self.src}: no events after the CSV header")
        ev = EventRows.sort_task_records_first(self.rows.array_unsorted())
        facts = ev[~np.isin(ev["kind"], np.array([Kind.COMM, Kind.TASK], np.uint8))]
        seen = {Kind(k).name.lower() for k in set(facts["kind"].tolist()) if k in Kind._value2member_map_}
        meta = {
            "source": "csv",
            "source_file": self.src,
            "clock": "as in the CSV (ts_ns)",
            "nr_cpus": int(ev["cpu"].max()) + 1,
            "start_ns": int(facts["ts_ns"].min()),
            "end_ns": int(facts["ts_ns"].max()),
            "lost_per_cpu": self.lost_per_cpu,
            "kinds_present": sorted(seen),
        }
        if self.kernel_release:
            from .perf_script import recorded_policy_of
            meta["kernel_release"] = self.kernel_release
            if recorded_policy_of(self.kernel_release):
                meta["recorded_policy"] = recorded_policy_of(self.kernel_release)
        return ev, meta
