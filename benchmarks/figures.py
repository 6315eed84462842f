"""Run the benchmarks whose figures README.md quotes and write their own summary lines, verbatim,
to benchmarks/FIGURES.md (then `python tools/update_readme.py` splices that file into README.md).

    sudo .venv/bin/python -m benchmarks.figures [--quick] [--only WORDS]

``--only WORDS`` reruns the entries whose title contains WORDS and replaces just those sections
of the existing file (each regenerated section then says when, where and at what load it ran).

Each entry is the command a reader can run again; nothing here is typed by hand.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# (what it answers, target, command, lines of its output to keep: those starting with these words)
RUNS = [
    ("capture: consumer throughput at zero loss, default ring (issue 2a)", "≥ 1M events/s",
     [PY, "-m", "benchmarks.bench_capture", "throughput", "--write", "--k", "4", "8"],
     ("throughput",)),
    ("capture: what tracing costs on `perf bench sched pipe` — slowdown beside perf and bpftrace, "
     "kernel-side ns per program run (issues 2b, 12)",
     "slowdown ≤ bpftrace merely counting; ≤ 70 ns per run (aim ≤ 40) for every per-switch/per-syscall program",
     [PY, "-m", "benchmarks.bench_capture", "overhead", "--rounds", "5", "--cost-rounds", "3"], ("overhead", "cost")),
    ("capture: recorder memory in a storm, beside perf and bpftrace (issue 13)",
     "fputrace record ≤ 200 MB RSS (aim ≤ 120), nothing lost",
     [PY, "-m", "benchmarks.bench_capture", "rss", "--loops", "6000000"], ("rss",)),
    ("capture: bytes per event on disk, 10 s busy host (issue 2c)", "≤ 8 bytes/event",
     [PY, "-m", "benchmarks.bench_capture", "size", "--seconds", "10"], ("size",)),
    ("capture: time from start to first event (issue 2d)", "—",
     [PY, "-m", "benchmarks.bench_capture", "startup"], ("startup",)),
    ("model: events/s and peak memory, generated trace (issue 13)",
     "≥ 10M events/s on one core (aim 20M), memory bounded",
     [PY, "benchmarks/bench_model.py", "--events", "50000000"], ("50,", "5,")),
    ("model: the same at 5M events (memory must not grow with length)", "same peak RSS",
     [PY, "benchmarks/bench_model.py", "--events", "5000000"], ("5,",)),
    ("model: task churn, a fork storm of short-lived tasks (issue 13)",
     "≥ 10M events/s; memory follows the tasks alive, not the tasks seen",
     [PY, "benchmarks/bench_model.py", "--events", "5000000", "--churn"], ("5,",)),
    ("model: `fputrace report` on the bundled recording, from start to output (issue 13)",
     "≤ 1 s, no compile wait after install",
     [PY, "benchmarks/bench_model.py", "--startup"], ("startup",)),
    ("dashboard: the live dashboard under the storm, beside record, bpftrace and perf (issue 13)",
     "0 lost at default settings (it refreshes less often instead); ≤ 350 MB RSS",
     [PY, "-m", "benchmarks.bench_tui_live", "storm", "--loops", "6000000"], ("storm",)),
    ("dashboard: `fputrace tui FILE` replaying a 36M-event recording (issue 13)",
     "≤ 300 MB RSS, with play, step, speed and go-to",
     [PY, "-m", "benchmarks.bench_tui_replay", "--generate", "36000000"], ("replay",)),
    ("estimate on the bundled real recording (stock Debian 6.12, fentry mode)", "self-check ≈ 100%",
     [str(Path(PY).parent / "fputrace"), "estimate", "fputrace/data/demo.fpt"], ("",)),
    ("cost model: XSAVE/XRSTOR cycles per component set on this CPU (issue 10)",
     "one entry per set this CPU has; AMX-dirty saves cost more than SSE-only ones",
     [str(Path(PY).parent / "fputrace"), "calibrate", "-o", "benchmarks/cost-model.json",
      "--runs", "20000"], ("",)),
]


def _section(title, target, cmd, keep, stamp: bool) -> list[str]:
    print(f"== {title}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=1800, env={**os.environ, "COLUMNS": "110"})
    lines = [ln.rstrip() for ln in res.stdout.splitlines()
             if ln.strip() and any(ln.lstrip().startswith(k) for k in keep)]
    shown = " ".join(a if a != PY else "python" for a in cmd).replace(str(Path(PY).parent) + "/", "")
    out = [f"**{title}** — target: {target}", ""]
    if stamp:
        out += [f"Rerun alone on {platform.node()} (kernel {platform.release()}), "
                f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
                f"{load:.2f} at start.", ""]
    out += ["```", f"$ {shown}", *lines]
    if res.returncode != 0:
        out.append(f"(exit status {res.returncode}: {res.stdout.strip().splitlines()[-1:]})")
    return out + ["```", ""]


def _split(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header lines, {title: section lines}) of an existing FIGURES.md."""
    head, sections, cur = [], {}, None
    for line in text.splitlines():
        if line.startswith("**") and "** — target:" in line:
            cur = line[2:line.index("** — target:")]
            sections[cur] = []
        (sections[cur] if cur is not None else head).append(line)
    return head, sections


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "FIGURES.md"))
    ap.add_argument("--quick", action="store_true", help="skip the 50M-event model run")
    ap.add_argument("--only", metavar="WORDS", help="rerun only the entries whose title contains WORDS")
    args = ap.parse_args()
    if args.only:
        path = Path(args.output)
        head, old = _split(path.read_text()) if path.exists() else ([], {})
        chosen = [r for r in RUNS if args.only in r[0]]
        if not chosen:
            print(f"figures: no entry title contains {args.only!r}", file=sys.stderr)
            return 2
        out = list(head)
        for run in RUNS:
            if run in chosen:
                out += _section(*run, stamp=True)
            elif run[0] in old:
                out += old[run[0]]
        path.write_text("\n".join(out).rstrip("\n") + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    load = os.getloadavg()[0]
    out = [f"Generated by `python -m benchmarks.figures` on {platform.node()} "
           f"({os.cpu_count()} CPUs, kernel {platform.release()}), "
           f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load:.2f} at start.",
           ""]
    for run in RUNS:
        if args.quick and "50000000" in run[2]:
            continue
        out += _section(*run, stamp=False)
    Path(args.output).write_text("\n".join(out))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
