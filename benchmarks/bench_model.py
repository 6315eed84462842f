"""Model throughput and memory (issue 13: >= 10M events/s on one core, memory that follows the
tasks alive, not the trace).

    .venv/bin/python benchmarks/bench_model.py --events 50000000       # generated trace
    .venv/bin/python benchmarks/bench_model.py --events 5000000 --churn   # tasks fork and exit
    .venv/bin/python benchmarks/bench_model.py --file storm.fpt          # a real recording
    .venv/bin/python benchmarks/bench_model.py --events 5000000 --history  # + the dashboard's sink
    .venv/bin/python benchmarks/bench_model.py --startup                 # fputrace report, start to output

Generated events come from the simulated kernel in ``bench_model_tracegen`` in chunks; only the
model's ``feed`` is timed (generation and file decoding are not: ``--file`` decodes every batch
first, outside the clock). events/s is given for wall-clock time and for the process's CPU time
(the figure that matters on a shared machine), with the load average. Peak RSS is the process's
ru_maxrss (run each size in its own process); with ``--file`` it includes the decoded batches,
so ``rss_before_feed_mib`` is printed too. One JSON line on stdout, a summary on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batches(a):
    """(meta, iterator of batches, label). Generated traces stream; a file is decoded up front."""
    if a.file:
        import fputrace
        tr = fputrace.load(a.file)
        data = list(tr.batches())
        return tr.meta, iter(data), Path(a.file).name
    from bench_model_tracegen import TraceGen
    gen = TraceGen(cpus=a.cpus, tasks=a.tasks, kthreads=a.kthreads, seed=a.seed,
                   policy=a.policy, mode=a.mode, exits=a.churn, churn=a.churn)
    return gen.meta(), gen.chunks(a.events, a.chunk), "generated" + (" churn" if a.churn else "")


def startup(runs: int) -> int:
    """`fputrace report fputrace/data/demo.fpt` as a user runs it: wall time from exec to the end
    of its output, and its CPU time, over ``runs`` fresh processes (no warm Python state)."""
    import statistics
    import subprocess
    root = Path(__file__).resolve().parent.parent
    exe = Path(sys.executable).parent / "fputrace"
    cmd = [str(exe), "report", str(root / "fputrace" / "data" / "demo.fpt")]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert "fputrace report:" in out
    load = os.getloadavg()[0]
    print(json.dumps({"command": " ".join(cmd[1:]), "runs": runs, "wall_s_min": round(min(walls), 3),
                      "wall_s_median": round(statistics.median(walls), 3),
                      "cpu_s_median": round(statistics.median(cpus), 3), "load_avg_1m": round(load, 2)}))
    print(f"startup: fputrace report fputrace/data/demo.fpt: {min(walls):.2f} s wall (min of {runs}, "
          f"median {statistics.median(walls):.2f} s), {statistics.median(cpus):.2f} s of CPU "
          f"(load {load:.2f})", file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--cpus", type=int, default=8)
    p.add_argument("--tasks", type=int, default=512)
    p.add_argument("--kthreads", type=int, default=16)
    p.add_argument("--policy", choices=("deferred", "eager"), default="deferred")
    p.add_argument("--mode", choices=("probe", "tracepoint"), default="probe")
    p.add_argument("--chunk", type=int, default=1 << 20, help="events per batch fed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--churn", action="store_true",
                   help="a fork storm: short-lived tasks with fresh tids (memory must stay flat)")
    p.add_argument("--file", help="a recording (fputrace record) instead of a generated trace")
    p.add_argument("--history", action="store_true",
                   help="with the dashboard's recent-activity sink (owner strips, rates)")
    p.add_argument("--top", type=int, default=20,
                   help="rows of exited tasks the model keeps (the report's --top; 0: none)")
    p.add_argument("--startup", action="store_true",
                   help="time `fputrace report` on the bundled recording instead (start to output)")
    p.add_argument("--runs", type=int, default=5, help="with --startup: processes to time")
    a = p.parse_args()
    if a.startup:
        return startup(a.runs)

    from fputrace.model import Model
    meta, chunks, label = batches(a)
    activity = None
    if a.history:
        from fputrace.tui.activity import RecentActivity
        activity = RecentActivity()
    model = Model(meta, history=activity, top=a.top)
    rss_before = rss_mib()
    fed = 0
    feed_s = feed_cpu_s = 0.0
    t_wall = time.perf_counter()
    for batch in chunks:
        t0, c0 = time.perf_counter(), time.process_time()
        model.feed(batch)
        feed_s += time.perf_counter() - t0
        feed_cpu_s += time.process_time() - c0
        fed += len(batch)
    wall_s = time.perf_counter() - t_wall
    t0 = time.perf_counter()
    rep = model.report()
    est = model.estimate()
    report_s = time.perf_counter() - t0
    out = {"input": label, "events": fed, "history": a.history,
           "feed_s": round(feed_s, 3), "events_per_s": round(fed / feed_s),
           "feed_cpu_s": round(feed_cpu_s, 3), "events_per_cpu_s": round(fed / feed_cpu_s),
           "load_avg_1m": round(os.getloadavg()[0], 2),
           "wall_s_incl_input": round(wall_s, 3), "report_estimate_s": round(report_s, 3),
           "rss_before_feed_mib": round(rss_before, 1), "peak_rss_mib": round(rss_mib(), 1),
           "tasks_seen": rep.totals["tasks"], **model.stats(),
           "xsave": rep.totals["xsave"], "xrstor": rep.totals["xrstor"],
           "self_check": est.self_check}
    print(json.dumps(out))
    print(f"{fed:,} events ({label}{', history' if a.history else ''}): "
          f"{fed / feed_s / 1e6:.1f}M events/s wall, {fed / feed_cpu_s / 1e6:.1f}M events/s of "
          f"CPU time (load {out['load_avg_1m']}); peak RSS {out['peak_rss_mib']} MiB (before "
          f"feeding {out['rss_before_feed_mib']} MiB); {out['tasks_seen']:,} tasks, "
          f"self-check {est.self_check}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
