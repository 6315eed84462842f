"""Capture benchmarks (not tests: figures, no pass/fail). Run as root from the repository:

    .venv/bin/python -m benchmarks.bench_capture throughput   # (a) zero-loss consumer rate
    .venv/bin/python -m benchmarks.bench_capture overhead     # (b) perf bench sched pipe ratios
    .venv/bin/python -m benchmarks.bench_capture size         # (c) bytes per event on disk
    .venv/bin/python -m benchmarks.bench_capture startup      # (d) start -> first event
    .venv/bin/python -m benchmarks.bench_capture all

Results go to stdout as one line per figure; benchmarks/CAPTURE.md records this machine's.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FPUTRACE = [str(Path(sys.executable).parent / "fputrace")]

# A syscall flood in C: Python's loop would be the bottleneck, not the consumer.
FLOOD_C = r"""
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    double secs = atof(argv[1]);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long n = 0;
    for (;;) {
        for (int i = 0; i < 1000; i++) syscall(SYS_getppid);
        n += 1000;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs) break;
    }
    return 0;
}
"""


def _flood_binary() -> str:
    d = Path(tempfile.gettempdir()) / "fputrace-bench"
    d.mkdir(exist_ok=True)
    exe = d / "flood"
    if not exe.exists():
        src = d / "flood.c"
        src.write_text(FLOOD_C)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


def _consume(opts, seconds: float, flood_cpu: int | None, write_path: str | None = None) -> dict:
    from fputrace.capture import CaptureSession
    stop = threading.Event()
    with CaptureSession(opts) as cap:
        writer = None
        if write_path:       # the same path as `fputrace record`: a writer thread behind a queue
            from fputrace.capture.recorder import _WriterThread
            from fputrace.recording import RecordingWriter
            raw_writer = RecordingWriter(write_path, cap.meta)
            writer = _WriterThread(raw_writer)
        cmd = [_flood_binary(), str(seconds)]
        if flood_cpu is not None:
            cmd = ["taskset", "-c", str(flood_cpu)] + cmd
        t0 = time.monotonic()
        ev0 = cap.stats["events"]
        flood = subprocess.Popen(cmd)
        n = 0
        for batch in cap.batches(stop):
            n += len(batch)
            if writer is not None:
                writer.put(batch)
            if flood.poll() is not None:
                stop.set()
        dt = time.monotonic() - t0
        if writer is not None:
            writer.finish()
            raw_writer.close()
        st = cap.stats
        cnt = cap.bpf_counters()
    events = st["events"] - ev0
    return {"events": events, "lost": st["lost"], "rate": events / dt, "attempted": cnt["bpf_events"],
            "seconds": dt}


def bench_throughput(args) -> None:
    """(a) Events/s the consumer keeps up with at zero loss, default ring size."""
    from fputrace.capture import CaptureOptions
    cpus = sorted(os.sched_getaffinity(0))
    flood_cpu = cpus[-1] if len(cpus) > 1 else None
    if flood_cpu is not None:
        os.sched_setaffinity(0, set(cpus[:-1]))    # consumer on the other core(s)
    best = None
    for k in args.k:
        opts = CaptureOptions(mode="tracepoint", synthetic=k, calibrate_s=0.1)
        r = _consume(opts, args.seconds, flood_cpu)
        ok = r["lost"] == 0
        print(f"throughput: synthetic={k:<3d} {r['rate']:>12,.0f} events/s consumed  lost={r['lost']:,} "
              f"({'zero loss' if ok else 'LOSS'})", flush=True)
        if ok and (best is None or r["rate"] > best):
            best = r["rate"]
    for k in (args.k if args.write else []):
        opts = CaptureOptions(mode="tracepoint", synthetic=k, calibrate_s=0.1)
        with tempfile.TemporaryDirectory() as d:
            r = _consume(opts, args.seconds, flood_cpu, write_path=f"{d}/t.fpt")
            size = os.path.getsize(f"{d}/t.fpt")
        print(f"throughput+file: synthetic={k:<3d} {r['rate']:>12,.0f} events/s written  lost={r['lost']:,} "
              f"({'zero loss' if r['lost'] == 0 else 'LOSS'})", flush=True)
    print(f"throughput: best zero-loss rate {best or 0:,.0f} events/s (one consumer core, default ring)")


PIN = None   # CPU for both ends of the pipe benchmark (set by bench_overhead)


def _time_pipe(loops: int) -> float:
    # Both ends on one CPU: every message is a context switch (the cost we trace), and no time
    # goes to waking an idle CPU, which a tracer's consumer thread would otherwise distort.
    pin = ["taskset", "-c", str(PIN)] if PIN is not None else []
    out = subprocess.run([*pin, "perf", "bench", "sched", "pipe", "-l", str(loops)], capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"Total time:\s*([\d.]+)", out).group(1))


PERF_EVENTS_SAME = ["sched:sched_switch", "sched:sched_process_fork", "sched:sched_process_exec",
                    "sched:sched_process_exit", "task:task_newtask", "x86_fpu:x86_fpu_regs_activated",
                    "x86_fpu:x86_fpu_regs_deactivated", "x86_fpu:x86_fpu_before_save",
                    "x86_fpu:x86_fpu_after_save", "raw_syscalls:sys_enter", "raw_syscalls:sys_exit"]


def _with_tracer(start_cmd: list[str], ready, loops: int) -> float:
    proc = subprocess.Popen(start_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready(proc)
        return _time_pipe(loops)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)


def bench_overhead(args) -> None:
    """(b) perf bench sched pipe: untraced vs fputrace vs perf record of the same tracepoints.

    The host is shared and noisy, so configurations alternate for ``--rounds`` rounds and the
    medians are compared; every ratio comes from the same run."""
    import statistics
    global PIN
    PIN = sorted(os.sched_getaffinity(0))[-1]
    loops = args.loops
    times = {"untraced": [], "fputrace": [], "perf_same": [], "perf_no_syscalls": []}
    sizes = {}
    with tempfile.TemporaryDirectory() as d:
        fpt = f"{d}/o.fpt"

        def fputrace_ready(proc):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not os.path.exists(fpt):
                time.sleep(0.05)
            time.sleep(0.5)

        def perf_ready(proc):
            time.sleep(2.0)     # perf opens its events in well under that

        for _ in range(args.rounds):
            times["untraced"].append(_time_pipe(loops))
            if os.path.exists(fpt):
                os.unlink(fpt)
            times["fputrace"].append(_with_tracer([*FPUTRACE, "record", "-q", "-o", fpt], fputrace_ready, loops))
            sizes["fputrace"] = os.path.getsize(fpt)
            times["perf_same"].append(_with_tracer(
                ["perf", "record", "-a", "-o", f"{d}/p1.data", *sum((["-e", e] for e in PERF_EVENTS_SAME), [])],
                perf_ready, loops))
            sizes["perf_same"] = os.path.getsize(f"{d}/p1.data")
            times["perf_no_syscalls"].append(_with_tracer(
                ["perf", "record", "-a", "-o", f"{d}/p2.data", *sum((["-e", e] for e in PERF_EVENTS_SAME[:-2]), [])],
                perf_ready, loops))
    med = {k: statistics.median(v) for k, v in times.items()}
    b = med["untraced"]
    print(f"overhead: taskset -c {PIN} perf bench sched pipe -l {loops}, {args.rounds} rounds, medians")
    for k, label in (("untraced", "untraced"), ("fputrace", "fputrace record (tracepoint mode)"),
                     ("perf_same", "perf record -a, same tracepoints"),
                     ("perf_no_syscalls", "perf record -a, same minus raw_syscalls")):
        extra = f"  file {sizes[k]:,} B" if k in sizes else ""
        print(f"overhead: {label:<42s} {med[k]:.2f} s  ratio {med[k] / b:.2f}  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times[k])}){extra}")


def bench_size(args) -> None:
    """(c) Bytes per event on disk for a real recording of a busy host."""
    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/s.fpt"
        load = subprocess.Popen(["perf", "bench", "sched", "pipe", "-l", "100000000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)   # its worker is a separate process
        try:
            subprocess.run([*FPUTRACE, "record", "-q", "-o", out, "--duration", f"{args.seconds}s"], check=True)
        finally:
            os.killpg(load.pid, 15)
            load.wait()
        import fputrace
        tr = fputrace.load(out)
        n = len(tr.events)
        size = os.path.getsize(out)
    print(f"size: {args.seconds:.0f} s busy host (perf bench sched pipe running): {n:,} events, {size:,} bytes, "
          f"{size / max(1, n):.2f} bytes/event")


def bench_startup(args) -> None:
    """(d) Time from starting a capture to its first event, and where it goes."""
    from fputrace.capture import CaptureOptions, CaptureSession
    from fputrace.capture.features import host_features
    t0 = time.monotonic()
    feat = host_features()
    _ = feat.kallsyms, feat.headers, feat.xstate, feat.ftrace_functions
    t_feat = time.monotonic() - t0
    t1 = time.monotonic()
    _ = feat.fentry
    t_fentry = time.monotonic() - t1
    stop = threading.Event()
    t2 = time.monotonic()
    with CaptureSession(CaptureOptions(mode="auto", calibrate_s=0.3)) as cap:
        t_enter = time.monotonic() - t2
        for batch in cap.batches(stop):
            stop.set()
        first = cap.first_event_s
    print(f"startup: host probing {t_feat:.2f} s, fentry test load {t_fentry:.2f} s, "
          f"compile+attach+TIF calibration {t_enter:.2f} s, first event {first:.2f} s after the session started")
    t3 = time.monotonic()
    proc = subprocess.Popen([*FPUTRACE, "record", "-o", "/dev/null", "--duration", "1s"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    t_banner = time.monotonic() - t3
    proc.communicate(timeout=60)
    print(f"startup: `fputrace record` prints 'Tracing...' {t_banner:.2f} s after exec ({line.strip()[:40]}...)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["throughput", "overhead", "size", "startup", "all"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--loops", type=int, default=30000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write", action="store_true", help="(a) also write the flood to a file")
    args = p.parse_args()
    for name in (["throughput", "overhead", "size", "startup"] if args.which == "all" else [args.which]):
        globals()[f"bench_{name}"](args)


if __name__ == "__main__":
    main()
