"""``fputrace import``: turn perf script output or a CSV of events into an fputrace recording."""
from __future__ import annotations

import sys

HELP = "convert `perf script` output or a CSV of events into a recording"

EXAMPLES = """examples:
    # hosts where only perf is allowed: record the kernel's FPU and scheduler tracepoints ...
    sudo perf record -e 'x86_fpu:*' -e sched:sched_switch -e 'sched:sched_process_*' -a -k mono -- sleep 10
    # ... print them with nanosecond times, tgids, lost-event counts and the header, then import
    sudo perf script -F comm,tid,pid,cpu,time,event,trace --ns --show-lost-events --header > run.txt
    fputrace import run.txt -o run.fpt
    perf script ... | fputrace import - -o run.fpt            # from a pipe
    fputrace import events.csv -o scenario.fpt                 # a CSV of normalised events
    fputrace report run.fpt

perf script: the default layout works too (microsecond times, tgid = tid). Without --header,
give the recording kernel's release with --kernel-release (it decides the recorded policy).

CSV format (one header row; columns in any order; # comments and blank lines skipped):
    ts_ns,cpu,tid,tgid,kind,a0,a1[,comm][,kthread][,inferred]
    kind: SWITCH KFPU_BEGIN KFPU_END XSAVE XRSTOR USER_RETURN FORK EXEC EXIT KVM_FPU LOST
          (case-insensitive); a0/a1 decimal or 0x-hex, per kind as in SPEC 5.1;
    comm: task name; kthread: 1 = kernel thread; inferred: 1 = not observed directly.
    1000,0,101,101,SWITCH,102,1,a
    1200,0,101,101,XSAVE,0x207,1,a
"""


def add_arguments(p) -> None:
    p.add_argument("source", metavar="SRC", help="perf script text or CSV file ('-' reads standard input)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the recording to write (mode 0600)")
    p.add_argument("--format", choices=("auto", "perf-script", "csv"), default="auto",
                   help="input format (default: auto-detect)")
    p.add_argument("--kernel-release", metavar="REL",
                   help="release of the kernel that was traced, e.g. 6.1.0-18-amd64 (default: from the "
                        "perf script --header)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def run(args) -> int:
    from ..importers import import_file
    meta, n = import_file(args.source, args.output, args.format, kernel_release=args.kernel_release)
    if not args.quiet:
        lost = sum((meta.get("lost_per_cpu") or {}).values())
        source = meta.get("source")
        print(f"fputrace: imported {n} records from {args.source} ({source}) into {args.output}"
              + (f"; {lost} events were lost by perf" if lost else ""), file=sys.stderr)
        for note in meta.get("import_notes", []):
            print(f"fputrace: note: {note}", file=sys.stderr)
    return 0
