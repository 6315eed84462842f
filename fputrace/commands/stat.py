"""``fputrace stat``: FPU save/restore counts as plain text, per interval like ``perf stat -I``."""
from __future__ import annotations

import argparse

HELP = "count FPU save/restore traffic as plain text, per interval like perf stat -I (needs root)"
EXAMPLES = """examples:
    sudo fputrace stat -I 1000                  # every second: XSAVE, XRSTOR, ..., top tasks
    sudo fputrace stat -I 500 --count 10 --json # ten half-second intervals as JSON lines
    sudo fputrace stat -- make -j2              # totals while a command runs (like perf stat)
    sudo fputrace stat -d 10s --top 10          # totals of 10 seconds, ten busiest tasks
    fputrace stat --replay run.fpt -I 1000      # a recording, per second of its own time

Every line starts with the time (seconds since the start), so `grep XRSTOR` or awk picks a series.
Counts come from the same model as report and the exporter; in tracepoint mode kernel-FPU
sections are inferred (a lower bound), as `fputrace report` says under "exactness".
"""

from .argtypes import number, trailing_command

_interval_ms = number(int, 10, unit="milliseconds", symbol="ms")
_positive = number(int, 1)


def add_arguments(p) -> None:
    from .record import parse_duration
    p.add_argument("-I", "--interval", type=_interval_ms, metavar="MS",
                   help="print counts every MS milliseconds (default: totals at the end)")
    p.add_argument("-n", "--count", type=_positive, metavar="N", help="stop after N intervals")
    p.add_argument("-d", "--duration", type=parse_duration, metavar="TIME",
                   help="stop after this long (10s, 500ms, 2m)")
    p.add_argument("--json", action="store_true", help="one JSON object per interval and line")
    p.add_argument("--top", type=_positive, default=3, metavar="N",
                   help="busiest tasks shown per interval (default 3)")
    p.add_argument("-m", "--mode", default="auto", choices=["auto", "fentry", "kprobe", "tracepoint"],
                   help="attach mode (default auto: the best this kernel allows, per event)")
    p.add_argument("--replay", metavar="FILE", help="a recording instead of live tracing; "
                   "intervals in the recording's own time (no root needed)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="run this command and stop when it exits")


class _Printer:
    def __init__(self, args):
        import sys
        self.args, self.out = args, sys.stdout
        self.header_done = False

    def interval(self, iv) -> None:
        from ..export.stat import HEADER, interval_json, interval_lines
        if self.args.json:
            self.out.write(interval_json(iv, self.args.top) + "\n")
        else:
            if not self.header_done:
                self.out.write(HEADER + "\n")
                self.header_done = True
            self.out.write("\n".join(interval_lines(iv, self.args.top)) + "\n")
        self.out.flush()

    def summary(self, iv, rep, what: str) -> None:
        import json

        from ..export.log2hist import log2_hist
        from ..export.stat import interval_dict
        if self.args.json:
            d = interval_dict(iv, self.args.top)
            d["kfpu_hist"] = [{"lo_ns": int(r.lo_ns), "hi_ns": int(r.hi_ns), "count": int(r.count)}
                              for r in iv.hist.itertuples()]
            self.out.write(json.dumps(d, separators=(",", ":")) + "\n")
            return
        t = iv.totals
        w = self.out.write
        w(f"\n FPU save/restore counts for {what}:\n\n")
        for count, event in ((f"{t['xsave']:,}", "XSAVE"), (f"{t['xrstor']:,}", "XRSTOR"),
                             (f"{t['avoidable_xrstor']:,}", "XRSTOR avoidable"),
                             (f"{t['kfpu_sections']:,}", "kernel-FPU sections"),
                             (f"{t['kfpu_ns'] / 1e6:,.3f} ms", "kernel-FPU time"),
                             (f"{t['xsave_bytes'] + t['xrstor_bytes']:,}", "bytes saved/restored"),
                             (f"{t['lost_events']:,}", "lost events")):
            w(f"{count:>20}      {event}\n")
        top = iv.top_tasks(self.args.top)
        if len(top):
            w("\n  busiest tasks:\n")
            for r in top.itertuples():
                w(f"{int(r.xsave):>20,} XSAVE {int(r.xrstor):>10,} XRSTOR  {r.comm or '?'}/{r.tid}\n")
        hist = log2_hist(iv.hist)
        if hist:
            w("\n  kernel-FPU section lengths (preemption off):\n")
            w("\n".join(hist) + "\n")
        w(f"\n{iv.end_s - iv.start_s:20.9f} seconds time elapsed\n\n")
        self.out.flush()


def _replay(args, printer) -> int:
    import fputrace
    from ..export.feed import replay_intervals
    from ..export.intervals import Intervals
    from ..model import Model

    trace = fputrace.load(args.replay)
    model = Model(trace.meta)
    intervals = Intervals(start_s=0.0)
    step = int(args.interval * 1e6) if args.interval else 1 << 62
    first: list[int] = []                     # the recording's first record: time zero

    def feed(batch):
        if not first and len(batch):
            first.append(int(batch["ts_ns"][0]))
        model.feed(batch)

    done = 0
    for end_ns in replay_intervals(trace, step, feed):
        rep = model.report()
        iv = intervals.advance(rep, (end_ns - first[0]) / 1e9)
        if args.interval:
            printer.interval(iv)
            done += 1
            if args.count and done >= args.count:
                return 0
        else:
            printer.summary(iv, rep, f"{args.replay} ({trace.meta.get('capture_mode') or trace.meta.get('source')})")
    return 0


def _live(args, printer, cmd) -> int:
    import shlex
    import signal
    import sys
    import threading
    import time

    from ..capture import CaptureOptions
    from ..capture.command import start_command, stop_command
    from ..errors import CaptureError
    from ..export.feed import LiveFeed
    from ..export.intervals import Intervals

    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    feed = child = None
    try:
        feed = LiveFeed(CaptureOptions(mode=args.mode))
        intervals = Intervals(start_s=0.0)
        feed.start()
        if cmd:
            child = start_command(cmd)
        print(f"Tracing FPU save/restore (mode: {feed.meta.get('capture_mode')})... "
              f"Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        step = args.interval / 1000 if args.interval else None
        deadline = t0 + args.duration if args.duration else None
        done = 0
        next_t = t0 + step if step else None
        while True:
            wake = min(x for x in (next_t, deadline, time.monotonic() + 0.1) if x is not None)
            if stop.wait(max(0.0, wake - time.monotonic())):
                break
            now = time.monotonic()
            if feed.error is not None:
                raise CaptureError(f"live capture failed: {feed.error}")
            if step and now >= next_t:
                printer.interval(intervals.advance(feed.report(), now - t0))
                done += 1
                next_t += step * max(1, int((now - next_t) // step) + 1)   # skip missed ticks
                if args.count and done >= args.count:
                    return 0
            if (deadline and now >= deadline) or (child is not None and child.poll() is not None):
                break
        end = time.monotonic() - t0
        feed.close()                                   # detach, drain: the last events counted
        rep = feed.report()
        iv = intervals.advance(rep, end)
        what = f"'{shlex.join(cmd)}' (system wide)" if cmd else "system wide"
        if step:
            printer.interval(iv)                       # the last, partial interval
        else:
            printer.summary(iv, rep, what)
        if child is None:
            return 0
        child.wait()
        return child.returncode if child.returncode >= 0 else 128 - child.returncode
    finally:
        if feed is not None:
            feed.close()
        for s, h in old.items():
            signal.signal(s, h)
        stop_command(child)


def run(args) -> int:
    from ..errors import UsageError
    cmd = trailing_command(args.cmd)
    if args.count and not args.interval:
        raise UsageError("--count counts intervals: give -I MS as well")
    if args.replay and (cmd or args.duration):
        raise UsageError("--replay reads a recording: it takes no command and no --duration")
    printer = _Printer(args)
    return _replay(args, printer) if args.replay else _live(args, printer, cmd)
