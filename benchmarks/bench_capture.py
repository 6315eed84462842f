"""Capture benchmarks (not tests: figures, no pass/fail). Run as root from the repository:

    .venv/bin/python -m benchmarks.bench_capture throughput   # (a) zero-loss consumer rate
    .venv/bin/python -m benchmarks.bench_capture overhead     # (b) slowdowns and per-program cost
    .venv/bin/python -m benchmarks.bench_capture rss --loops 6000000   # recorder memory in a storm
    .venv/bin/python -m benchmarks.bench_capture size         # (c) bytes per event on disk
    .venv/bin/python -m benchmarks.bench_capture startup      # (d) start -> first event
    .venv/bin/python -m benchmarks.bench_capture all

Results go to stdout as one line per figure; benchmarks/CAPTURE.md records this machine's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
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


def _time_pipe(loops: int) -> tuple[float, float]:
    """-> (wall seconds perf reports, CPU seconds of the benchmark's two processes). The CPU time
    is what tracing adds to the traced tasks (the BPF programs run in their context) and does not
    grow when other work on this shared host delays them: the slowdowns are taken from it."""
    # Both ends on one CPU: every message is a context switch (the cost we trace), and no time
    # goes to waking an idle CPU, which a tracer's consumer thread would otherwise distort.
    pin = ["taskset", "-c", str(PIN)] if PIN is not None else []
    proc = subprocess.Popen([*pin, "perf", "bench", "sched", "pipe", "-l", str(loops)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)      # perf and the worker it waited for
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"perf bench sched pipe exited {proc.returncode}")
    return float(re.search(r"Total time:\s*([\d.]+)", out).group(1)), ru.ru_utime + ru.ru_stime


# what `fputrace import` asks perf for (README): the same FPU and scheduler facts
PERF_EVENTS = ["x86_fpu:*", "sched:sched_switch", "sched:sched_process_*"]
# bpftrace merely counting the three per-switch tracepoints in kernel maps: the floor a BPF tool
# that streams nothing pays on this benchmark
BPFTRACE_COUNT = ("tracepoint:sched:sched_switch { @sw = count(); } "
                  "tracepoint:x86_fpu:x86_fpu_regs_activated { @act = count(); } "
                  "tracepoint:x86_fpu:x86_fpu_regs_deactivated { @deact = count(); }")


# the cheapest tracer that streams every hit of fputrace's hot tracepoints (benchmarks/min_streamer.py):
# a clock read and a 48-byte ring record per hit, nothing else (kind -> its arguments); and the same
# reduced to the records fputrace writes (2 per switch), on its 5 tracepoints
STREAMERS = {"streamer5": ["--tracepoints", "5"], "streamer3": ["--tracepoints", "3"],
             "streamer3_sys": ["--tracepoints", "3", "--empty-syscalls"],   # what attaching raw_syscalls costs
             "streamer_fpt": ["--shape", "fputrace"]}


BASELINE = None   # --baseline TREE: another source tree's recorder, alternated with this one's


def _tracer(kind: str, d: str) -> tuple[list[str], callable]:
    """(command, ready(proc)) of one tracer configuration."""
    if kind in ("fputrace", "baseline"):
        fpt = f"{d}/o.fpt"
        if os.path.exists(fpt):
            os.unlink(fpt)

        def ready(proc):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not os.path.exists(fpt):
                if proc.poll() is not None:
                    raise RuntimeError(f"fputrace record exited: {proc.stderr.read()[-300:]}")
                time.sleep(0.05)
            time.sleep(0.5)
        if kind == "baseline":       # the same interpreter and packages, that tree's fputrace (-P: not ours from the cwd)
            return ["env", f"PYTHONPATH={BASELINE}", sys.executable, "-P", "-m", "fputrace.cli", "record", "-q",
                    "--mode", "tracepoint", "-o", fpt], ready
        return [*FPUTRACE, "record", "-q", "--mode", "tracepoint", "-o", fpt], ready
    if kind == "perf":
        return (["perf", "record", "-q", "-a", "-o", f"{d}/p.data", *sum((["-e", e] for e in PERF_EVENTS), [])],
                lambda proc: time.sleep(2.0))
    if kind in STREAMERS:
        out = f"{d}/{kind}.json"
        if os.path.exists(out):
            os.unlink(out)

        def ready(proc):                       # it prints "Attached N programs" once attached
            line = proc.stdout.readline()
            if "Attached" not in line:
                raise RuntimeError(f"min_streamer did not attach: {line!r} {proc.stderr.read()[-300:]}")
            time.sleep(0.3)
        return [sys.executable, "-m", "benchmarks.min_streamer", *STREAMERS[kind], "-o", out], ready
    if kind == "bpftrace":
        def ready(proc):                       # it prints "Attaching 3 probes..." once attached
            line = proc.stdout.readline()
            if "Attaching" not in line:
                raise RuntimeError(f"bpftrace did not attach: {line!r} {proc.stderr.read()[-300:]}")
            time.sleep(0.3)
        return ["bpftrace", "-e", BPFTRACE_COUNT], ready
    raise ValueError(kind)


def _run_traced(kind: str, d: str, loops: int, inspect=None):
    """The pipe benchmark under tracer ``kind`` (None: untraced). ``inspect(proc, when)`` is
    called with when="before"/"after" around the benchmark itself."""
    if kind is None:
        return _time_pipe(loops)
    cmd, ready = _tracer(kind, d)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready(proc)
        if inspect:
            inspect(proc, "before")
        t = _time_pipe(loops)
        if inspect:
            inspect(proc, "after")
        return t
    finally:
        proc.send_signal(2)
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


def _program_names(ids: set[int]) -> dict[int, str]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return {p["id"]: p.get("name", str(p["id"])) for p in json.loads(out or "[]") if p["id"] in ids}


def _program_costs(kind: str, d: str, loops: int) -> tuple[list[tuple], float]:
    """Per program of the tracer: (name, runs, runs/s, ns/run) over the pipe benchmark alone,
    from bpf_prog_info (run_cnt, run_time_ns) read before and after it."""
    from fputrace.capture import progstats
    seen = {}

    def inspect(proc, when):
        if when == "before":
            ids = progstats.prog_ids_of(proc.pid)
            names = _program_names(ids)
            seen["fds"] = {names.get(i, str(i)): progstats.prog_fd_by_id(i) for i in ids}
            seen["t0"] = time.monotonic()
        seen[when] = {n: progstats.prog_info(fd) for n, fd in seen["fds"].items()}
        if when == "after":
            seen["dt"] = time.monotonic() - seen["t0"]

    with progstats.run_time_stats(), _floor_program() as floor_fd:
        def inspect_with_floor(proc, when):
            inspect(proc, when)
            seen["fds"]["(floor: an empty program on sched_switch)"] = floor_fd
            seen[when]["(floor: an empty program on sched_switch)"] = progstats.prog_info(floor_fd)
        wall = _run_traced(kind, d, loops, inspect_with_floor)
    seen["fds"].pop("(floor: an empty program on sched_switch)")
    a, b = seen["before"].pop("(floor: an empty program on sched_switch)"), \
        seen["after"].pop("(floor: an empty program on sched_switch)")
    floor = (b.run_time_ns - a.run_time_ns) / max(1, b.run_cnt - a.run_cnt)
    rows = []
    for name, fd in seen["fds"].items():
        a, b = seen["before"][name], seen["after"][name]
        runs = b.run_cnt - a.run_cnt
        if runs:
            rows.append((name, runs, runs / seen["dt"], (b.run_time_ns - a.run_time_ns) / runs))
        os.close(fd)
    return sorted(rows, key=lambda r: -r[1]) + [("(floor: empty program, same switches)", 0, 0.0, floor)], wall


def _median_costs(rounds: list[tuple[list[tuple], tuple]]) -> tuple[list[tuple], float]:
    """Per program over several _program_costs rounds: (name, runs, runs/s, median ns/run) of the
    rounds it ran in (runs and runs/s: medians too), and the median benchmark CPU time."""
    import statistics
    by = {}
    for rows, _ in rounds:
        for name, runs, rate, ns in rows:
            by.setdefault(name, []).append((runs, rate, ns))
    rows = [(name, int(statistics.median(r for r, _, _ in v)), statistics.median(x for _, x, _ in v),
             statistics.median(n for _, _, n in v)) for name, v in by.items()]
    floor = [r for r in rows if r[0].startswith("(floor")]
    rows = sorted((r for r in rows if not r[0].startswith("(floor")), key=lambda r: -r[1])
    return rows + floor, statistics.median(w[1] for _, w in rounds)


@contextlib.contextmanager
def _floor_program():
    """An empty raw tracepoint program on sched_switch: what the kernel's own accounting costs
    per run on this host (run_time_ns brackets every run with two clock reads)."""
    from bcc import BPF

    from fputrace.capture.features import host_features
    from fputrace.capture.headers import apply
    apply(host_features().headers)
    b = BPF(text=b"RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }")
    try:
        yield next(iter(b.funcs.values())).fd
    finally:
        b.cleanup()


def bench_overhead(args) -> None:
    """(b) perf bench sched pipe under each tracer, and what each fputrace program costs.

    Slowdown: untraced / fputrace record (tracepoint mode) / the minimal streamer (a clock read and
    a ring record per hit of fputrace's 5 hot tracepoints, or of bpftrace's 3: the floor of
    streaming every event; the 3 with empty raw_syscalls programs beside; or only the records
    fputrace writes: the floor of its own stream) / perf record of the import's tracepoints / bpftrace counting the three
    per-switch tracepoints in kernel maps, alternated for ``--rounds`` rounds, medians, ratios
    within this run (kernel.bpf_stats_enabled as found). Cost: ``--cost-rounds`` more rounds each
    of fputrace, the streamers and bpftrace with BPF run-time statistics on (BPF_ENABLE_STATS):
    per program, runs and ns per run over the benchmark, from bpf_prog_info."""
    import statistics
    global PIN
    PIN = sorted(os.sched_getaffinity(0))[-1]
    loops = args.loops
    kinds = [None, "fputrace", *(["baseline"] if args.baseline else []), *STREAMERS, "perf", "bpftrace"]
    global BASELINE
    BASELINE = args.baseline and os.path.abspath(args.baseline)
    labels = {None: "untraced", "fputrace": "fputrace record (tracepoint mode)",
              "baseline": f"fputrace record of {args.baseline}",
              "streamer5": "minimal streamer, 5 tracepoints",
              "streamer3": "minimal streamer, bpftrace's 3 tracepoints",
              "streamer3_sys": "the same + empty raw_syscalls programs",
              "streamer_fpt": "minimal streamer of fputrace's records",
              "perf": "perf record -a (fputrace import's events)", "bpftrace": "bpftrace counting 3 tracepoints"}
    times = {k: [] for k in kinds}
    from fputrace.capture import progstats
    stats_on = progstats.stats_enabled()
    load0 = os.getloadavg()[0]
    streamed = {k: [] for k in ("fputrace", *STREAMERS)}    # per round: (events streamed, events lost)
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            for k in kinds:
                times[k].append(_run_traced(k, d, loops))
                if k in ("fputrace", "baseline"):
                    from fputrace.recording.reader import open_recording
                    meta = open_recording(f"{d}/o.fpt").meta
                    streamed["fputrace"].append((meta.get("events", 0),
                                                 sum((meta.get("lost_per_cpu") or {}).values())))
                elif k in STREAMERS:
                    with open(f"{d}/{k}.json") as f:
                        summary = json.load(f)
                    streamed[k].append((summary["events"], summary["lost"]))
        measured = {k: [] for k in ("fputrace", *(["baseline"] if args.baseline else []), *STREAMERS, "bpftrace")}
        for _ in range(args.cost_rounds):           # alternated too: the host drifts between rounds
            for k in measured:
                measured[k].append(_program_costs(k, d, loops))
        costs = {k: _median_costs(v) for k, v in measured.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    print(f"overhead: taskset -c {PIN} perf bench sched pipe -l {loops}, {args.rounds} rounds alternated, "
          f"medians of the benchmark's CPU time (load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} "
          f"at end; bpf_stats {'on' if stats_on else 'off'})")
    for k in kinds:
        # each round's ratio to that round's untraced run: drift of the host between rounds cancels
        per_round = statistics.median(c / u for (_, c), (_, u) in zip(times[k], times[None]))
        print(f"overhead: {labels[k]:<44s} cpu {cpu[k]:.3f} s  ratio {cpu[k] / cpu[None]:.2f}  "
              f"(per round {per_round:.2f}; wall {wall[k]:.2f} s, ratio {wall[k] / wall[None]:.2f}; cpu runs: "
              f"{', '.join(f'{c:.3f}' for _, c in times[k])})")
    for k, rounds in streamed.items():
        name = "fputrace" if k == "fputrace" else labels[k]
        runs = ", ".join(f"{e:,} events {lost:,} lost" for e, lost in rounds)
        print(f"overhead: {name} streamed every event: {runs}" if not any(lost for _, lost in rounds) else
              f"overhead: {name} LOST events: {runs}")
    for k, (rows, wall) in costs.items():
        print(f"cost: {labels[k]} ({args.cost_rounds} round(s) with BPF run-time statistics on, median ns/run; "
              f"benchmark cpu {wall:.3f} s):")
        print(f"cost:   {'program':<44s} {'runs':>10s} {'runs/s':>12s} {'ns/run':>8s}")
        for name, runs, rate, ns in rows:
            if runs:
                print(f"cost:   {name:<44s} {runs:>10,} {rate:>12,.0f} {ns:>8.1f}")
            else:
                print(f"cost:   {name:<44s} {'':>10s} {'':>12s} {ns:>8.1f}")


def _status_mb(pid: int) -> dict:
    text = open(f"/proc/{pid}/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) // 1024 for k in ("VmRSS", "RssAnon", "RssFile")}


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_rss(args) -> None:
    """Resident memory of each tracer while `taskset -c 1 perf bench sched pipe -l N` storms the
    host (issue 13: fputrace record <= 200 MB, aim <= 120): peak VmRSS sampled every 0.2 s during
    the storm (and its anonymous / file-backed parts at that moment), the tracer's CPU time over
    the storm, and for fputrace the events recorded and lost."""
    global PIN
    PIN = sorted(os.sched_getaffinity(0))[-1]
    print(f"rss: taskset -c {PIN} perf bench sched pipe -l {args.loops}, one tracer at a time "
          f"(load average {os.getloadavg()[0]:.2f} at start)")
    with tempfile.TemporaryDirectory() as d:
        for kind in ("fputrace", "perf", "bpftrace"):
            cmd, ready = _tracer(kind, d)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            peak, done = {"VmRSS": 0}, threading.Event()

            def sample():
                while not done.is_set():
                    try:
                        st = _status_mb(proc.pid)
                    except OSError:
                        return
                    if st["VmRSS"] > peak["VmRSS"]:
                        peak.update(st)
                    time.sleep(0.2)
            try:
                ready(proc)
                idle = _status_mb(proc.pid)["VmRSS"]
                c0 = _cpu_s(proc.pid)
                t = threading.Thread(target=sample)
                t.start()
                _time_pipe(args.loops)
                done.set()
                t.join()
                cpu = _cpu_s(proc.pid) - c0
            finally:
                done.set()
                proc.send_signal(2)
                proc.communicate(timeout=600)
            extra = ""
            if kind == "fputrace":
                import fputrace
                tr = fputrace.load(f"{d}/o.fpt")
                lost = sum((tr.meta.get("lost_per_cpu") or {}).values())
                extra = f"  {len(tr.events):,} events, {lost:,} lost"
            print(f"rss: {kind:<9s} peak {peak['VmRSS']:>4d} MB (anon {peak.get('RssAnon', 0)}, "
                  f"file {peak.get('RssFile', 0)}; {idle} MB before the storm)  cpu {cpu:.1f} s{extra}", flush=True)


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
    p.add_argument("which", choices=["throughput", "overhead", "rss", "size", "startup", "all"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--loops", type=int, default=100000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cost-rounds", type=int, default=1, help="(b) rounds with BPF run-time statistics on")
    p.add_argument("--write", action="store_true", help="(a) also write the flood to a file")
    p.add_argument("--baseline", metavar="TREE", help="(b) also alternate the recorder of another source tree "
                   "(e.g. `git archive main | tar -x -C /tmp/before`): before/after in one run")
    args = p.parse_args()
    for name in (["throughput", "overhead", "rss", "size", "startup"] if args.which == "all" else [args.which]):
        globals()[f"bench_{name}"](args)


if __name__ == "__main__":
    main()
