"""Recording file benchmark: bytes per event on disk, write and read throughput (events/s).

Usage:
    .venv/bin/python -m benchmarks.bench_file                 # synthetic, realistic streams
    .venv/bin/python -m benchmarks.bench_file --events 5000000
    .venv/bin/python -m benchmarks.bench_file --from run.fpt  # re-encode a real recording
    .venv/bin/python -m benchmarks.bench_file --stream 50000000   # write+read 50M events, peak memory

Issue 2 (c) targets <= 8 bytes per event. Figures for this machine are in benchmarks/FILES.md.
Throughput is one run on a shared machine: read it as an order of magnitude, not a measurement.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from fputrace.events import EVENT_DTYPE, Kind, XrstorCause, XsaveCause

XFEATURES = np.array([0x2, 0x202, 0xa02, 0x207], np.uint64)     # SSE, +PKRU, +PKRU/AVX, x87/SSE/AVX/PKRU


def realistic_stream(n: int, *, cpus: int = 2, tids: int = 300, callers: int = 40, mean_gap_ns: int = 4000,
                     seed: int = 0) -> np.ndarray:
    """``n`` ts-sorted events shaped like a busy host in tracepoint mode plus kernel FPU probes:
    per CPU a sequence of slots -- a context switch (SWITCH then the XSAVE of the outgoing task),
    a return-path XRSTOR, or a kernel FPU section (KFPU_BEGIN/KFPU_END from one of ``callers``
    caller addresses) -- the next task drawn from a skewed (Zipf) choice among ``tids`` tasks."""
    rng = np.random.default_rng(seed)
    tid_pool = rng.choice(np.arange(300, 4_000_000), tids, replace=False).astype(np.uint32)
    tgid_pool = np.where(rng.random(tids) < 0.6, tid_pool, tid_pool[rng.integers(0, tids, tids)])
    caller_pool = np.uint64(0xffffffff81000000) + rng.integers(0, 1 << 22, callers).astype(np.uint64) * np.uint64(16)
    parts = []
    per_cpu_slots = int(n / cpus / 1.6) + 16                 # 1.65 events per slot on average
    for cpu in range(cpus):
        m = per_cpu_slots
        slot = rng.choice(3, m, p=[0.35, 0.35, 0.30])            # 0 switch, 1 xrstor, 2 kfpu section
        nxt = (rng.zipf(1.4, m) - 1) % tids
        is_switch = slot == 0
        last_switch = np.maximum.accumulate(np.where(is_switch, np.arange(m), -1))
        cur_after = np.where(last_switch >= 0, nxt[np.maximum(last_switch, 0)], 0)
        cur = np.concatenate([[0], cur_after[:-1]])             # task running when the slot starts
        gap = rng.exponential(mean_gap_ns, m).astype(np.uint64) + np.uint64(200)
        t = np.uint64(10**12) + np.cumsum(gap)
        caller = caller_pool[(rng.zipf(1.3, m) - 1) % callers]
        first = np.zeros(m, EVENT_DTYPE)
        first["ts_ns"], first["cpu"] = t, cpu
        first["tid"], first["tgid"] = tid_pool[cur], tgid_pool[cur]
        first["kind"] = np.select([slot == 0, slot == 1], [Kind.SWITCH, Kind.XRSTOR], Kind.KFPU_BEGIN)
        first["a0"] = np.select([slot == 0, slot == 1], [tid_pool[nxt].astype(np.uint64), XFEATURES[rng.integers(0, 3, m)]], 0)
        first["a1"] = np.select([slot == 0, slot == 1], [(rng.random(m) < 0.7).astype(np.uint64),
                                                         np.uint64(XrstorCause.USER_RETURN)], caller)
        pair = slot != 1
        second = np.zeros(int(pair.sum()), EVENT_DTYPE)
        sp = slot[pair]
        next_gap = np.append(gap[1:], np.uint64(200))[pair]
        second["ts_ns"] = t[pair] + (rng.random(len(second)) * (next_gap - 1)).astype(np.uint64) // 2 + 1
        second["cpu"] = cpu
        second["tid"], second["tgid"] = tid_pool[cur[pair]], tgid_pool[cur[pair]]
        second["kind"] = np.where(sp == 0, Kind.XSAVE, Kind.KFPU_END)
        second["a0"] = np.where(sp == 0, XFEATURES[rng.integers(0, 3, len(second))], 0)
        second["a1"] = np.where(sp == 0, np.uint64(XsaveCause.SWITCH), caller[pair])
        parts += [first, second]
    out = np.concatenate(parts)
    return out[np.argsort(out["ts_ns"], kind="stable")][:n]


def measure(events: np.ndarray, label: str, chunk: int = 16384) -> dict:
    from fputrace.recording import RecordingWriter, open_recording
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.fpt")
        t0 = time.perf_counter()
        with RecordingWriter(path, {"bench": label}, background_flush=False) as w:
            for i in range(0, len(events), chunk):      # the capture engine hands over ~chunk-sized batches
                w.write(events[i:i + chunk])
        t1 = time.perf_counter()
        n = 0
        for b in open_recording(path).batches():
            n += len(b)
        t2 = time.perf_counter()
        size = os.path.getsize(path)
    assert n == len(events)
    return {"label": label, "events": len(events), "bytes": size, "bytes_per_event": size / max(1, len(events)),
            "write_events_per_s": len(events) / (t1 - t0), "read_events_per_s": len(events) / (t2 - t1)}


def peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def streaming(total: int, chunk: int = 1_000_000) -> None:
    """Write ``total`` events chunk by chunk and stream them back: peak memory must not grow with
    the file (the raw events would take total * 40 bytes)."""
    from fputrace.recording import RecordingWriter, open_recording
    base = realistic_stream(chunk, seed=7)
    span = int(base["ts_ns"][-1] - base["ts_ns"][0]) + 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.fpt")
        rss0 = peak_rss_mib()
        t0 = time.perf_counter()
        with RecordingWriter(path, {"bench": "stream"}, background_flush=False) as w:
            for i in range(0, total, chunk):
                part = base[:min(chunk, total - i)].copy()
                part["ts_ns"] += np.uint64(span * (i // chunk))
                for j in range(0, len(part), 16384):
                    w.write(part[j:j + 16384])
        t1 = time.perf_counter()
        rss_write = peak_rss_mib()
        rec = open_recording(path)
        n = 0
        last = 0
        for b in rec.batches():
            n += len(b)
            last = int(b["ts_ns"][-1])
        t2 = time.perf_counter()
        size = os.path.getsize(path)
    assert n == total and last > 0
    print(f"{total:,} events: {size / total:.2f} B/event, file {size / 2**20:.0f} MiB "
          f"(raw {total * 40 / 2**20:.0f} MiB); write {total / (t1 - t0):,.0f} ev/s, read {total / (t2 - t1):,.0f} ev/s")
    print(f"peak RSS: {rss0:.0f} MiB before, {rss_write:.0f} MiB after writing, {peak_rss_mib():.0f} MiB after reading")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--from", dest="source", help="an fputrace recording to re-encode (real data)")
    ap.add_argument("--stream", type=int, metavar="N", help="write and stream back N events; print peak memory")
    args = ap.parse_args(argv)
    if args.stream:
        streaming(args.stream)
        return 0
    runs = []
    if args.source:
        import fputrace
        tr = fputrace.load(args.source)
        ev = np.concatenate(list(tr.batches()))
        runs.append(measure(ev, f"real: {os.path.basename(args.source)}"))
    else:
        from fputrace.recording import RecordingWriter  # noqa: F401  (warm imports before timing)
        measure(realistic_stream(10_000), "warm-up")
        runs.append(measure(realistic_stream(args.events), "2 CPUs, 300 tids, 4 us mean gap"))
        runs.append(measure(realistic_stream(args.events, tids=2000, cpus=8, mean_gap_ns=50_000, seed=1),
                            "8 CPUs, 2000 tids, 50 us mean gap"))
        runs.append(measure(realistic_stream(args.events, tids=4, cpus=2, mean_gap_ns=1500, seed=2),
                            "2 CPUs, pipe ping-pong-like (4 tids, 1.5 us)"))
    print(f"{'stream':48} {'events':>10} {'B/event':>8} {'write ev/s':>12} {'read ev/s':>12}")
    for r in runs:
        print(f"{r['label']:48} {r['events']:>10} {r['bytes_per_event']:>8.2f} "
              f"{r['write_events_per_s']:>12,.0f} {r['read_events_per_s']:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
