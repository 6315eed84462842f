"""``fputrace doctor``: can this host be traced, how, and what is missing."""
from __future__ import annotations

import argparse

HELP = "check privileges, bcc, headers, BTF and attach points; say which capture mode works"
EXAMPLES = """examples:
    sudo fputrace doctor             # one table: what works, what was refused and why
    sudo fputrace doctor --json      # the same, machine-readable
    sudo fputrace doctor --no-load   # skip the test load of the BPF program (faster)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-load", action="store_true",
                   help="do not compile and attach the BPF program as a final check")
    p.add_argument("-m", "--mode", default="auto", choices=["auto", "fentry", "kprobe", "tracepoint"],
                   help="check this attach mode (default auto)")


def run(args) -> int:
    import json
    import sys

    from ..capture.diagnose import diagnose
    report = diagnose(args.mode, load=not args.no_load)
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        from ..capture.diagnose import render_table
        render_table(report)
    if not report["ok"]:
        print(f"fputrace: no capture mode works here: {report['remedy']}", file=sys.stderr)
        return 1
    return 0
