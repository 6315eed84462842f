"""``fputrace tui [FILE]``: the Textual dashboard, live (no FILE, needs root) or replaying FILE."""
from __future__ import annotations

import argparse
import os
import sys

HELP = "dashboard: live FPU save/restore traffic of this host, or the replay of a recording"
EXAMPLES = """examples:
    sudo fputrace                     # live dashboard (same as: sudo fputrace tui)
    sudo fputrace tui --window 30     # CPU strips and sparklines over the last 30 s
    fputrace tui run.fpt              # replay a recording (space: play/pause, g: go to a time)
    fputrace tui run.fpt --at 12.5 --paused   # open paused 12.5 s into the recording
    fputrace demo                     # replay the bundled demo recording

keys: q quit, p pause, r record (live), s sort, / filter, Tab panels, Enter task view, ? help
"""

NO_LIVE_HINT = "replay a recording instead: `fputrace tui FILE`, or try `fputrace demo`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE", help="recording to replay (default: live capture)")
    p.add_argument("--window", type=float, default=10.0, metavar="SECONDS",
                   help="span of the CPU owner strips and rate sparklines (default 10)")
    p.add_argument("--at", metavar="TIME", help="replay: start at TIME from the start (s or m:ss)")
    p.add_argument("--paused", action="store_true", help="replay: open paused (default: playing)")
    p.add_argument("--speed", type=float, default=1.0, help="replay: speed factor (default 1)")
    p.add_argument("--mode", default="auto", choices=("auto", "fentry", "kprobe", "tracepoint"),
                   help="live: attach mode (default auto: the best this kernel allows)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="live: on a load failure print the whole log (bcc, clang, the kernel verifier)")
    p.add_argument("--record-dir", default=".", metavar="DIR",
                   help="live: where `r` writes fputrace-<time>.fpt (default: current directory)")
    # benchmarks/bench_tui_live.py: on exit, what the data path did and the peak RSS, as JSON
    p.add_argument("--stats-json", metavar="FILE", help=argparse.SUPPRESS)


def run(args) -> int:
    from ..errors import CaptureError, UsageError
    if args.window <= 0 or args.speed <= 0:
        raise UsageError("--window and --speed must be positive")
    if not args.file and os.geteuid() != 0:     # before any heavy import: say it at once
        raise CaptureError(f"the live dashboard needs root (BPF): run `sudo fputrace`; or {NO_LIVE_HINT}")
    if args.file:
        from ..recording import open_recording
        open_recording(args.file, warn=False)   # a bad file is one line, terminal or not
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UsageError("the dashboard needs a terminal; for text output use "
                         "`fputrace record` and `fputrace report FILE`")
    from ..tui.sources import SourceConfig
    config = SourceConfig(window_ns=int(args.window * 1e9))
    source = replay_source(args.file, config, args.at, args.paused, args.speed,
                           getattr(args, "from_activity", False)) if args.file \
        else live_source(config, args.mode, getattr(args, "verbose", False))
    return run_app(source, args.record_dir, getattr(args, "stats_json", None))


def replay_source(path: str, config, at: str | None, paused: bool, speed: float,
                  from_activity: bool = False):
    from ..errors import UsageError
    from ..tui.app import parse_time_ns
    from ..tui.replay import open_replay
    try:
        start_ns = parse_time_ns(at) if at else None
    except ValueError:
        raise UsageError(f"--at {at!r}: not a time (try 12.5 or 1:02)") from None
    return open_replay(path, config=config, start_ns=start_ns, playing=not paused, speed=speed,
                       from_activity=from_activity)


def live_source(config, mode: str, verbose: bool = False):
    """Attach the probes before the dashboard starts: any reason it cannot work is one line
    (with -v, after the whole load log)."""
    from ..errors import CaptureError
    try:
        from ..tui.live import LiveSource, open_live_producer
        producer = open_live_producer(mode)
    except CaptureError as err:
        if verbose and getattr(err, "log", ""):
            print(f"fputrace: load log:\n{err.log}", file=sys.stderr)
        raise CaptureError(f"{err}; {NO_LIVE_HINT}") from None
    return LiveSource(producer, config=config)


def run_app(source, record_dir: str = ".", stats_json: str | None = None) -> int:
    from ..tui.app import FputraceApp
    app = FputraceApp(source, record_dir=record_dir)
    try:
        app.run()
    finally:
        source.stopping = True
        source.done.wait(timeout=5)       # writer closed, probes detached
        if stats_json:
            write_stats(stats_json, source, app)
    return app.return_code or 0


def write_stats(path: str, source, app) -> None:
    import json
    status = {k: int(v.split()[0]) for k, v in
              (line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Vm"))}
    stats = dict(source.stats(), pictures_drawn=app.pictures, rss_kb=status.get("VmRSS", 0),
                 rss_peak_kb=status.get("VmHWM", 0))
    with open(path, "w") as f:
        json.dump(stats, f, indent=1, default=str)
