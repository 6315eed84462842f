"""The live dashboard under a context-switch storm: does it lose events, and what does it cost?

    sudo .venv/bin/python -m benchmarks.bench_tui_live storm [--loops 6000000] [--write]
    .venv/bin/python -m benchmarks.bench_tui_live paced [--rate 1e6 --seconds 20]

``storm`` drives the real thing: `fputrace` (the live dashboard) in a real terminal (tmux,
160x48) while `taskset -c 1 perf bench sched pipe -l LOOPS` runs; then the same storm under
`fputrace record`, under bpftrace counting the same tracepoints and under `perf record -a` of
them, for memory figures from the same run. The dashboard writes what its data path did on exit
(hidden `--stats-json`): events the BPF side offered (delivered + lost), captured, fed to the
model, lost (counted by BPF, shown on screen), pictures drawn, time in pictures, the deepest the
queue got, how long the capture waited for the model, and its peak RSS (VmHWM).

``paced`` needs no root: a synthetic producer (benchmarks/bench_model_tracegen.py) hands batches
to the real ``LiveSource`` -> ``Model`` -> Textual app (headless) at a fixed rate; nothing can be
lost there, so it shows how far the refresh slows down to keep the model fed.

The machine is shared and noisy: every line carries the load average; compare within one run.
``--write`` appends the summary lines to benchmarks/TUI.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FPUTRACE = str(Path(sys.executable).parent / "fputrace")
PERF_EVENTS = ["sched:sched_switch", "sched:sched_process_fork", "sched:sched_process_exec",
               "sched:sched_process_exit", "task:task_newtask", "x86_fpu:x86_fpu_regs_activated",
               "x86_fpu:x86_fpu_regs_deactivated", "x86_fpu:x86_fpu_before_save",
               "x86_fpu:x86_fpu_after_save", "raw_syscalls:sys_enter", "raw_syscalls:sys_exit"]


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def storm_cpu() -> int:
    return sorted(os.sched_getaffinity(0))[-1]


def storm(loops: int) -> float:
    """`taskset -c 1 perf bench sched pipe -l LOOPS`: seconds it took."""
    cpu = storm_cpu()
    out = subprocess.run(["taskset", "-c", str(cpu), "perf", "bench", "sched", "pipe", "-l",
                          str(loops)], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Total time:\s*([\d.]+)", out).group(1))


def vm_kb(pid: int, field: str) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss:
    """Samples VmRSS of ``pid`` (and its children) every 0.2 s until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_kb = max(self.peak_kb, vm_kb(self.pid, "VmRSS"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak_kb, vm_kb(self.pid, "VmHWM"))


class CpuHogs:
    """``n`` busy loops pinned to the CPUs the storm leaves (a competing CPU-bound job: the
    dashboard then shares its CPU with one), stopped on exit."""

    def __init__(self, n: int) -> None:
        others = sorted(set(os.sched_getaffinity(0)) - {storm_cpu()}) or [storm_cpu()]
        self.procs = [subprocess.Popen(["taskset", "-c", str(others[i % len(others)]),
                                        sys.executable, "-c", "while True: pass"])
                      for i in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


class Tmux:
    def __init__(self, command: str, cols: int = 160, rows: int = 48) -> None:
        self.name = f"fputrace-bench-{os.getpid()}"
        self.tmux = ["tmux", "-L", self.name, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(cols), "-y",
                        str(rows), f"{command}; sleep 600"], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def child_pid(self) -> int:
        pane = subprocess.run([*self.tmux, "display", "-p", "-t", self.name, "#{pane_pid}"],
                              capture_output=True, text=True).stdout.strip()
        out = subprocess.run(["pgrep", "-P", pane], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else 0

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def events_on_screen(text: str) -> float:
    m = re.search(r"([\d.]+)([kMG]?) events", text)
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)] if m else 0.0


def dashboard_under_storm(loops: int, tmp: Path, tree: str | None = None) -> dict:
    """``tree``: run the dashboard from this source tree (an older version, for before/after)."""
    stats_path = tmp / "stats.json"
    command = f"{FPUTRACE} tui" if tree is None else \
        f"env PYTHONPATH={tree} {sys.executable} -m fputrace tui"
    # (Textual draws on stderr: it stays the terminal)
    term = Tmux(f"cd {tmp} && env -u COLUMNS -u LINES {command} --stats-json {stats_path}")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = term.screen()
            if "LIVE" in text and events_on_screen(text) > 0:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"the dashboard did not come up:\n{term.screen()}")
        pid = term.child_pid()
        rss_before = vm_kb(pid, "VmRSS")
        peak = PeakRss(pid)
        seconds = storm(loops)
        # let the model work through what is still queued: until the count on screen stands still
        shown, still_since = -1.0, time.monotonic()
        while time.monotonic() - still_since < 5 and time.monotonic() - still_since < 300:
            now_shown = events_on_screen(term.screen())
            if now_shown != shown:
                shown, still_since = now_shown, time.monotonic()
            time.sleep(0.5)
        last_screen = term.screen()
        term.keys("q")
        for _ in range(120):
            if stats_path.exists():
                break
            time.sleep(0.25)
        peak_kb = peak.stop()
    finally:
        term.kill()
    if not stats_path.exists():
        raise SystemExit(f"no stats from the dashboard; its last screen:\n{last_screen}")
    stats = json.loads(stats_path.read_text())
    header = "\n".join(last_screen.splitlines()[:3])
    return dict(stats, storm_s=seconds, rss_idle_kb=rss_before, rss_peak_sampled_kb=peak_kb,
                header=header)


def tracer_under_storm(cmd: list[str], loops: int, ready_s: float = 3.0,
                       ready_path: Path | None = None) -> dict:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while ready_path is not None and not ready_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(ready_s)
        peak = PeakRss(proc.pid)
        seconds = storm(loops)
        rss = peak.stop()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    return {"storm_s": seconds, "rss_peak_kb": rss, "stdout": out, "stderr": err}


def bench_storm(args) -> list[str]:
    if os.geteuid() != 0:
        raise SystemExit("storm needs root (BPF); `paced` does not")
    for tool in ("tmux", "perf", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (./setup.sh installs it)")
    lines = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        hogs = CpuHogs(args.hog)
        load0 = load_average()
        with hogs:
            untraced = storm(args.loops)
            dash = dashboard_under_storm(args.loops, tmp, args.tree)
        offered = dash["bpf_counters"].get("bpf_events", 0)
        lost_bpf = dash["bpf_counters"].get("bpf_lost", 0)
        lines.append(
            f"storm (live dashboard): taskset -c 1 perf bench sched pipe -l {args.loops:,} took "
            f"{dash['storm_s']:.1f} s (untraced {untraced:.1f} s); BPF offered {offered:,} events, "
            f"lost {lost_bpf:,} in the kernel ring; the dashboard captured {dash['captured_events']:,},"
            f" fed the model {dash['fed_events']:,}, screen shows lost {dash['lost_events']:,}; "
            f"{dash['pictures_drawn']} pictures; CPU time: capture {dash['capture_cpu_s']:.1f} s, "
            f"model feed {dash['feed_cpu_s']:.1f} s (wall {dash.get('feed_wall_s', 0):.1f} s), snapshots {dash['snapshot_s']:.1f} s, drawing "
            f"{dash['draw_s']:.1f} s; queue peak {dash['queue_peak_events']:,}/"
            f"{dash['queue_bound_events']:,} events, capture waited {dash['capture_wait_s']:.1f} s, "
            f"its longest round {dash.get('capture_max_gap_s', 0):.2f} s; "
            f"RSS idle {dash['rss_idle_kb'] // 1024} MB, peak {dash['rss_peak_kb'] // 1024} MB "
            f"(load average {load0} at start, {load_average()} at the end)"
            + (f"; {args.hog} CPU hog(s) beside it" if args.hog else "")
            + (f"; code from {args.tree}" if args.tree else ""))
        print(lines[-1], flush=True)
        print("   last header:\n" + dash["header"], flush=True)
        if args.dashboard_only:
            return lines
        fpt = tmp / "storm.fpt"
        with CpuHogs(args.hog):             # the same condition as the dashboard's run
            rec = tracer_under_storm([FPUTRACE, "record", "-q", "-o", str(fpt)], args.loops,
                                     ready_path=fpt)
        from fputrace.recording import open_recording
        counters = open_recording(fpt, warn=False).meta.get("bpf_counters") or {}
        lines.append(f"storm (fputrace record): {rec['storm_s']:.1f} s; BPF offered "
                     f"{counters.get('bpf_events', 0):,} events, lost {counters.get('bpf_lost', 0):,};"
                     f" RSS peak {rec['rss_peak_kb'] // 1024} MB"
                     + (f"; {args.hog} CPU hog(s) beside it" if args.hog else ""))
        print(lines[-1], flush=True)
        if args.keep:
            shutil.copy(fpt, args.keep)
        peers = []
        if shutil.which("bpftrace"):
            probes = ",".join(f"tracepoint:{e}" for e in PERF_EVENTS)
            bt = tracer_under_storm(["bpftrace", "-e", f"{probes} {{ @[probe] = count(); }}"],
                                    args.loops, ready_s=8.0)
            peers.append(f"bpftrace counting the same tracepoints {bt['rss_peak_kb'] // 1024} MB "
                         f"({bt['storm_s']:.1f} s)")
        perf = tracer_under_storm(["perf", "record", "-a", "-o", str(tmp / "perf.data"),
                                   *sum((["-e", e] for e in PERF_EVENTS), [])], args.loops)
        peers.append(f"perf record -a of them {perf['rss_peak_kb'] // 1024} MB "
                     f"({perf['storm_s']:.1f} s)")
        lines.append("storm (peers, RSS peak): " + "; ".join(peers) + f" (load average {load_average()})")
        print(lines[-1], flush=True)
    return lines


# ---- paced: a synthetic producer, no root -----------------------------------------------------

class PacedReplay:
    """Pre-generated events handed out at ``rate`` events/s, every 50 ms at most (as the capture
    session releases them), in batches of at most ``batch``."""

    def __init__(self, events, meta: dict, rate: float, batch: int) -> None:
        self.events, self.meta, self.rate, self.batch = events, meta, rate, batch
        self.sent = 0
        self.t0 = None
        self.last = 0.0

    def poll(self, timeout_s: float) -> list:
        if self.t0 is None:
            self.t0 = time.monotonic()
        time.sleep(max(0.0, self.last + 0.05 - time.monotonic()))
        self.last = time.monotonic()
        due = min(len(self.events), int((self.last - self.t0) * self.rate))
        out = []
        while self.sent < due:
            n = min(self.batch, due - self.sent)
            out.append(self.events[self.sent:self.sent + n])
            self.sent += n
        return out

    @property
    def done(self) -> bool:
        return self.sent >= len(self.events)

    def close(self) -> None:
        pass


async def drive(source, producer: PacedReplay, seconds: float) -> dict:
    from fputrace.tui.app import FputraceApp
    app = FputraceApp(source)
    async with app.run_test(size=(160, 48)) as pilot:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds * 4 + 30:
            if producer.done and source.fed_events == producer.sent and source.batches.empty():
                break
            await pilot.pause(0.05)
        elapsed = time.monotonic() - t0
        pictures = app.pictures
        await pilot.press("q")
    return {"elapsed_s": elapsed, "pictures": pictures}


def bench_paced(args) -> list[str]:
    import numpy as np
    sys.path.insert(0, str(HERE))
    from bench_model_tracegen import TraceGen
    from fputrace.model import Model
    from fputrace.tui.live import LiveSource
    total = int(args.rate * args.seconds)
    gen = TraceGen(cpus=args.cpus, tasks=256, seed=7, policy="deferred", mode="probe")
    events = np.concatenate(list(gen.chunks(total, chunk=1 << 20)))
    meta = dict(gen.meta(), host="bench", kernel_release=platform.release())
    warm = Model(meta)                       # load the compiled model before the clock starts
    warm.feed(events[:10_000])
    warm.snapshot(10 ** 10)
    producer = PacedReplay(events, meta, args.rate, args.batch)
    source = LiveSource(producer, model_factory=lambda: Model(meta))
    load0 = load_average()
    res = asyncio.run(drive(source, producer, args.seconds))
    line = (f"paced: {args.rate:,.0f} ev/s for {args.seconds:g} s, {args.cpus} CPUs: produced "
            f"{producer.sent:,}, fed {source.fed_events:,} (nothing can be dropped on this path) in "
            f"{res['elapsed_s']:.1f} s; {res['pictures']} pictures (snapshots "
            f"{source.pacer.snapshot_s:.1f} s, drawing {source.pacer.draw_s:.1f} s); queue peak "
            f"{source.batches.peak_events:,}/{source.batches.max_events:,}, producer waited "
            f"{source.batches.wait_s:.1f} s; RSS peak {vm_kb(os.getpid(), 'VmHWM') // 1024} MB, of which "
            f"{events.nbytes >> 20} MB the pre-generated events "
            f"(load average {load0})")
    print(line)
    return [line]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="which", required=True)
    s = sub.add_parser("storm", help="the real dashboard under perf bench sched pipe (root)")
    s.add_argument("--loops", type=int, default=6_000_000)
    s.add_argument("--keep", metavar="FILE", help="keep the storm recording made by fputrace record")
    s.add_argument("--hog", type=int, default=0, metavar="N",
                   help="N busy loops on the CPUs the storm leaves, while the dashboard runs")
    s.add_argument("--tree", metavar="DIR",
                   help="run the dashboard from this source tree (e.g. an older commit's)")
    s.add_argument("--dashboard-only", action="store_true",
                   help="only the dashboard's run (no record/bpftrace/perf runs for comparison)")
    p = sub.add_parser("paced", help="synthetic producer at a fixed rate (no root)")
    p.add_argument("--rate", type=float, default=1_000_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=65536, help="events per poll")
    p.add_argument("--cpus", type=int, default=os.cpu_count())
    for q in (s, p):
        q.add_argument("--write", action="store_true", help="append the results to benchmarks/TUI.md")
    args = ap.parse_args(argv)
    lines = bench_storm(args) if args.which == "storm" else bench_paced(args)
    if args.write:
        with open(HERE / "TUI.md", "a") as f:
            for line in lines:
                f.write(f"- {time.strftime('%Y-%m-%d %H:%M')} {platform.node()}, "
                        f"{os.cpu_count()} cores: {line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
