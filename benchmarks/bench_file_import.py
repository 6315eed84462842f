"""Import benchmark: lines per second of ``fputrace import`` for perf script text and CSV.

Usage:
    .venv/bin/python -m benchmarks.bench_file_import PERF_SCRIPT.txt     # a real perf script text
    .venv/bin/python -m benchmarks.bench_file_import --csv-events 1000000

Prints wall-clock and CPU-time rates (the development machines are shared: the CPU-time rate is
the one to compare). Figures for this machine: benchmarks/FILES.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks.bench_file import realistic_stream


def timed_import(src: str, fmt: str) -> tuple[int, float, float]:
    from fputrace.importers import import_file
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        _, n = import_file(src, os.path.join(tmp, "out.fpt"), fmt)
        return n, time.perf_counter() - t0, time.process_time() - c0


def write_csv(path: str, n: int) -> None:
    from fputrace.events import KIND_NAMES
    ev = realistic_stream(n)
    with open(path, "w") as f:
        f.write("ts_ns,cpu,tid,tgid,kind,a0,a1\n")
        for e in ev.tolist():
            ts, a0, a1, tid, tgid, cpu, kind = e[:7]
            f.write(f"{ts},{cpu},{tid},{tgid},{KIND_NAMES[kind]},{a0:#x},{a1}\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("perf_script", nargs="?", help="text of perf script (see fputrace import --help)")
    ap.add_argument("--csv-events", type=int, default=0, help="also time a generated CSV of this many events")
    args = ap.parse_args(argv)
    if args.perf_script:
        with open(args.perf_script) as f:
            lines = sum(1 for _ in f)
        n, wall, cpu = timed_import(args.perf_script, "perf-script")
        print(f"perf script: {lines:,} lines -> {n:,} records: {lines / wall:,.0f} lines/s wall, "
              f"{lines / cpu:,.0f} lines/s CPU")
    if args.csv_events:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "events.csv")
            write_csv(src, args.csv_events)
            n, wall, cpu = timed_import(src, "csv")
        print(f"csv: {n:,} events: {n / wall:,.0f} rows/s wall, {n / cpu:,.0f} rows/s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
