"""``fputrace doctor``: can this host be traced, how, and what is missing."""
from __future__ import annotations

import argparse

HELP = "check privileges, bcc, headers, BTF and attach points; say which capture mode works"
EXAMPLES = """examples:
    sudo fputrace doctor             # one table: what works, what was refused and why
    sudo fputrace doctor --json      # the same, machine-readable
    sudo fputrace doctor --no-load   # compile and load nothing (fentry: "not tested")
    sudo fputrace doctor -v          # a refused load: bcc's and the verifier's whole log
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-load", action="store_true",
                   help="compile and load nothing: no test load of fentry, no test capture")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the whole log of a refused load (bcc, clang, the kernel verifier)")
    p.add_argument("-m", "--mode", default="auto", choices=["auto", "fentry", "kprobe", "tracepoint"],
                   help="check this attach mode (default auto)")


def run(args) -> int:
    import json
    import sys

    from ..capture.diagnose import diagnose
    report = diagnose(args.mode, load=not args.no_load, verbose=args.verbose)
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
