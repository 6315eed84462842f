"""Model throughput and memory on a generated trace (SPEC/issue 3: >= 3M events/s on one core,
memory bounded by streaming).

    .venv/bin/python benchmarks/bench_model.py --events 50000000
    .venv/bin/python benchmarks/bench_model.py --events 5000000 --mode tracepoint

Events come from the simulated kernel in ``bench_model_tracegen`` in chunks; only the model's
``feed`` is timed (generation is not). Peak RSS is the process's ru_maxrss: run each size in its
own process to compare them. Prints one JSON line (and a readable summary on stderr).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_model_tracegen import TraceGen  # noqa: E402

from fputrace.model import Model  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
                   help="tasks exit and tids are reused (the task table then grows with the trace)")
    a = p.parse_args()

    gen = TraceGen(cpus=a.cpus, tasks=a.tasks, kthreads=a.kthreads, seed=a.seed, policy=a.policy,
                   mode=a.mode, exits=a.churn)
    model = Model(gen.meta())
    warm = TraceGen(cpus=2, tasks=8, seed=0)           # compile/load the JIT code outside the clock
    for b in warm.chunks(2000):
        Model(warm.meta()).feed(b)
    rss_before = rss_mib()
    fed = 0
    feed_s = 0.0
    feed_cpu_s = 0.0
    t_wall = time.perf_counter()
    for batch in gen.chunks(a.events, a.chunk):
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
    out = {"events": fed, "cpus": a.cpus, "tasks": a.tasks, "mode": a.mode, "policy": a.policy,
           "feed_s": round(feed_s, 3), "events_per_s": round(fed / feed_s),
           "feed_cpu_s": round(feed_cpu_s, 3), "events_per_cpu_s": round(fed / feed_cpu_s),
           "load_avg_1m": round(__import__("os").getloadavg()[0], 2),
           "wall_s_incl_generation": round(wall_s, 3), "report_estimate_s": round(report_s, 3),
           "rss_before_feed_mib": round(rss_before, 1), "peak_rss_mib": round(rss_mib(), 1),
           "tasks_seen": rep.totals["tasks"], "xsave": rep.totals["xsave"],
           "xrstor": rep.totals["xrstor"], "self_check": est.self_check}
    print(json.dumps(out))
    print(f"{fed:,} events: {fed / feed_s / 1e6:.2f}M events/s wall, "
          f"{fed / feed_cpu_s / 1e6:.2f}M events/s of CPU time (load {out['load_avg_1m']}); "
          f"peak RSS {out['peak_rss_mib']} MiB (before feeding {out['rss_before_feed_mib']} MiB); "
          f"self-check {est.self_check}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
