"""``fputrace export``: a recording as Parquet (DuckDB, Spark), CSV (the import format) or Perfetto."""
from __future__ import annotations

import os

HELP = "export a recording as Parquet or CSV (one row per event) or as a Perfetto timeline"
EXAMPLES = """examples:
    fputrace export run.fpt -o run.parquet                 # format from the extension
    fputrace export run.fpt --format csv -o run.csv        # the CSV that fputrace import reads
    fputrace export run.fpt --format csv -o - | head       # CSV to standard output
    fputrace export run.fpt -o run.pftrace                 # open in https://ui.perfetto.dev
    duckdb -c "SELECT comm, count(*) FILTER (kind = 'XSAVE') AS xsave
               FROM 'run.parquet' GROUP BY comm ORDER BY xsave DESC LIMIT 10"

Parquet: ts_ns, cpu, tid, tgid, kind, cause, a0, a1, inferred, comm, kthread, caller, host;
the recording's meta is in the file's key-value metadata (fputrace.meta, JSON).
CSV: ts_ns,cpu,tid,tgid,kind,a0,a1,comm,kthread,inferred; fputrace import rebuilds the same
recording from it (see fputrace import --help).
Perfetto: per CPU the FPU register owner over time, per task its kernel FPU sections and its
XSAVE/XRSTOR (instants with cause, xfeatures, bytes), XSAVE/XRSTOR per second.
"""

FORMATS = {"parquet": (".parquet", ".pq"), "csv": (".csv",),
           "perfetto": (".pftrace", ".perfetto-trace", ".perfetto")}


def add_arguments(p) -> None:
    p.add_argument("file", help="a recording (fputrace record, or fputrace import)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="file to write ('-' = standard output, csv only)")
    p.add_argument("-f", "--format", choices=sorted(FORMATS),
                   help="output format (default: from the extension of OUT)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def _format_of(args) -> str:
    from ..errors import UsageError
    if args.format:
        return args.format
    ext = os.path.splitext(args.output)[1].lower()
    for name, exts in FORMATS.items():
        if ext in exts:
            return name
    raise UsageError(f"cannot tell the format from {args.output!r}: give --format "
                     f"({', '.join(sorted(FORMATS))})")


def _check_output(args, fmt: str) -> None:
    from ..errors import FputraceError, UsageError
    out = args.output
    if out == "-":
        if fmt != "csv":
            raise UsageError(f"--format {fmt} cannot go to standard output: give a file with -o")
        return
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"{out}: directory {parent} does not exist")
    if os.path.isdir(out):
        raise UsageError(f"{out}: is a directory")
    if os.path.exists(out) and os.path.exists(args.file) and os.path.samefile(out, args.file):
        raise UsageError(f"{out}: the output is the input recording; choose another -o")
    if not os.access(parent, os.W_OK):
        raise FputraceError(f"{out}: cannot write in {parent}")


def run(args) -> int:
    import sys

    import fputrace
    from ..errors import FputraceError

    fmt = _format_of(args)
    _check_output(args, fmt)
    trace = fputrace.load(args.file)
    try:
        if fmt == "parquet":
            from ..export.parquet import write_parquet
            rows = write_parquet(trace, args.output)
        elif fmt == "csv":
            from ..export.csv import write_csv
            rows = write_csv(trace, args.output)
        else:
            from ..export.perfetto import write_perfetto
            drawn = write_perfetto(trace, args.output)
            rows = drawn["xsave"] + drawn["xrstor"] + drawn["sections"] + drawn["owner_slices"]
    except OSError as err:
        raise FputraceError(f"{args.output}: cannot write: {err.strerror or err}") from None
    if not args.quiet and args.output != "-":
        size = os.path.getsize(args.output)
        what = "events drawn" if fmt == "perfetto" else "rows"
        print(f"fputrace: {rows:,} {what} ({fmt}, {size:,} bytes) -> {args.output}", file=sys.stderr)
    return 0
