"""Where the ns of one hot-program run go (issue 12): variants of a program, attached together.

    sudo .venv/bin/python -m benchmarks.bench_capture_breakdown [--loops 50000] [--rounds 3]
    sudo .venv/bin/python -m benchmarks.bench_capture_breakdown --trees BEFORE_DIR . [--mode tracepoint]

Every variant below is a tp_btf program (the kind fputrace runs here) attached to the *same*
tracepoint at the same time, so each context switch or syscall runs all of them one after the
other: same switches, same caches, same moment; the differences between variants are the costs
of the one thing each adds. Kernel-side cost per run is bpf_prog_info's run_time_ns / run_cnt
(BPF_ENABLE_STATS) over ``taskset -c 1 perf bench sched pipe -l LOOPS``; the rings are drained
by this process on another CPU (fputrace's own reader), as the recorder does. Medians of
``--rounds``; one line per variant with its difference to the variant it builds on.

``--trees A B ...``: the same for whole recorders instead: ``fputrace record`` of each source tree
(e.g. ``git archive main | tar -x -C /tmp/before`` beside ``.``) running at the same time, so a
change is measured before/after on the same switches; one line per program and tree.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import threading

from benchmarks.bench_capture import _time_pipe
import benchmarks.bench_capture as bench_capture

# (name, tracepoint, builds on, body). Bodies are cumulative through macros so that each
# variant adds exactly one thing to the one it builds on.
PRELUDE = r"""
#include "fputrace.h"
BPF_RINGBUF_OUTPUT(events_inner, 1);
BPF_ARRAY_OF_MAPS(events, "events_inner", NCPUS);
BPF_RINGBUF_OUTPUT(shared, SHARED_PAGES);
BPF_PERCPU_ARRAY(counters, u64, FPT_CTR_MAX);
BPF_ARRAY(config, u64, FPT_CFG_MAX);
struct st { u32 prev; u32 tgid; u64 ts; u64 x; u32 tid; u32 nr; u32 state; u32 pad; };
BPF_PERCPU_ARRAY(cpu_states, struct st, 1);

/* bcc rewrites map calls only outside macros: the lookups live in functions */
static __always_inline struct st *st_slot(void) { u32 zero = 0; return cpu_states.lookup(&zero); }
static __always_inline u64 *ctr(u32 k) { return counters.lookup(&k); }
static __always_inline u64 *cfg(u32 k) { return config.lookup(&k); }
static __always_inline void *ring_of(u32 cpu) { return events.lookup(&cpu); }
static __always_inline struct fpt_event *shared_reserve(void) { return shared.ringbuf_reserve(sizeof(struct fpt_event)); }
#define IDS  u64 id = bpf_get_current_pid_tgid(); u32 cpu = bpf_get_smp_processor_id();
#define MAPS IDS struct st *s = st_slot(); u64 *nr = ctr(FPT_CTR_EVENTS); \
	u64 *cal = cfg(FPT_CFG_CALIBRATING); void *ring = ring_of(cpu); \
	if (!s || !nr || !cal || !ring) return 0; u64 seq = ++*nr; if (*cal) s->x++;
#define BTF  MAPS void *prev = (void *)ctx[1], *next = (void *)ctx[2]; \
	u32 pid = *(u32 *)(prev + FPT_OFF_TASK_PID), tgid = *(u32 *)(prev + FPT_OFF_TASK_TGID); \
	u32 npid = *(u32 *)(next + FPT_OFF_TASK_PID); s->prev = pid; s->tgid = tgid;
#define FILL(e, ts) e->ts_ns = ts; e->a0 = npid; e->a1 = ctx[3]; e->tid = pid; e->tgid = tgid; \
	e->cpu = cpu; e->kind = FPT_SWITCH; e->flags = 0; e->_pad = 0;
#define RESERVE(map) struct fpt_event *e = bpf_ringbuf_reserve(map, sizeof(*e), 0); if (!e) return 0;
#define SUBMIT bpf_ringbuf_submit(e, (seq & 1023) ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP);

int v_empty(u64 *ctx) { return 0; }
int v_ids(u64 *ctx) { IDS struct st *s = st_slot(); if (s) s->x += id + cpu; return 0; }
int v_maps(u64 *ctx) { MAPS return 0; }
int v_btf(u64 *ctx) { BTF return 0; }
int v_ktime(u64 *ctx) { BTF s->ts = bpf_ktime_get_ns(); return 0; }
int v_boot(u64 *ctx) { BTF s->ts = bpf_ktime_get_boot_ns(); return 0; }
int v_ring(u64 *ctx) { BTF RESERVE(ring) FILL(e, 0) SUBMIT return 0; }
int v_shared(u64 *ctx) { BTF struct fpt_event *e = shared_reserve(); if (!e) return 0; FILL(e, 0) SUBMIT return 0; }
int v_output(u64 *ctx) { BTF struct fpt_event ev = {}; struct fpt_event *e = &ev; FILL(e, 0)
	bpf_ringbuf_output(ring, e, sizeof(*e), (seq & 1023) ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP); return 0; }
int v_ring2(u64 *ctx) { BTF { RESERVE(ring) FILL(e, 0) SUBMIT } { RESERVE(ring) FILL(e, 0) SUBMIT } return 0; }
int v_full(u64 *ctx) { BTF u64 ts = bpf_ktime_get_ns(); s->ts = ts; RESERVE(ring) FILL(e, ts) SUBMIT return 0; }

/* x86_fpu_regs_deactivated / activated: the raw argument is struct fpu * */
#define XF  MAPS void *fps = *(void **)((void *)ctx[0] + FPT_OFF_FPU_FPSTATE); \
	u64 xf = *(u64 *)(fps + FPT_OFF_XFEATURES); s->x += xf;
int f_empty(u64 *ctx) { return 0; }
int f_maps(u64 *ctx) { MAPS return 0; }
int f_xfeatures(u64 *ctx) { XF return 0; }
int f_flags(u64 *ctx) { XF s->x += *(u64 *)bpf_get_current_task_btf(); return 0; }

/* raw_syscalls: sys_enter (regs, id) */
int y_empty(u64 *ctx) { return 0; }
int y_slot(u64 *ctx) { struct st *s = st_slot(); if (s) { s->tid = bpf_get_current_pid_tgid(); s->nr = ctx[1]; } return 0; }
int y_slot_cfg(u64 *ctx) { struct st *s = st_slot();
	u64 *bit = cfg(FPT_CFG_TIF_MASK), *cal = cfg(FPT_CFG_CALIBRATING); if (!s || !bit || !cal) return 0;
	if (*cal) s->x++; s->tid = bpf_get_current_pid_tgid(); s->nr = ctx[1]; s->state = *bit != 0; return 0; }
int y_flags(u64 *ctx) { struct st *s = st_slot();
	u64 *bit = cfg(FPT_CFG_TIF_MASK), *cal = cfg(FPT_CFG_CALIBRATING); if (!s || !bit || !cal) return 0;
	u64 flags = *(u64 *)bpf_get_current_task_btf();
	if (*cal) s->x++; s->tid = bpf_get_current_pid_tgid(); s->nr = ctx[1]; s->state = (flags & *bit) != 0; return 0; }
"""

VARIANTS = [  # (function, tracepoint, builds on, what it adds)
    ("v_empty", "sched_switch", None, "empty program (kernel accounting floor)"),
    ("v_ids", "sched_switch", "v_empty", "pid_tgid + smp_processor_id + one per-CPU array write"),
    ("v_maps", "sched_switch", "v_ids", "4 lookups: cpu_state, counter (seq), config, ring of this CPU"),
    ("v_btf", "sched_switch", "v_maps", "BTF loads prev->pid, prev->tgid, next->pid"),
    ("v_ktime", "sched_switch", "v_btf", "bpf_ktime_get_ns"),
    ("v_boot", "sched_switch", "v_btf", "bpf_ktime_get_boot_ns instead"),
    ("v_ring", "sched_switch", "v_btf", "reserve + fill + submit, ring of this CPU"),
    ("v_shared", "sched_switch", "v_btf", "the same, one shared ring"),
    ("v_output", "sched_switch", "v_btf", "bpf_ringbuf_output (copy) instead"),
    ("v_ring2", "sched_switch", "v_ring", "a second record in the same run"),
    ("v_full", "sched_switch", "v_btf", "clock + record (fputrace's sched_switch, less its branches)"),
    ("f_empty", "x86_fpu_regs_deactivated", None, "empty program"),
    ("f_maps", "x86_fpu_regs_deactivated", "f_empty", "ids + the 4 lookups"),
    ("f_xfeatures", "x86_fpu_regs_deactivated", "f_maps", "fpu->fpstate->...xfeatures (2 BTF loads)"),
    ("f_flags", "x86_fpu_regs_deactivated", "f_xfeatures", "task flags (get_current_task_btf + load)"),
    ("y_empty", "sys_enter", None, "empty program"),
    ("y_slot", "sys_enter", "y_empty", "sys_state slot written (tid, nr)"),
    ("y_slot_cfg", "sys_enter", "y_slot", "+ config reads (TIF bit, calibrating)"),
    ("y_flags", "sys_enter", "y_slot_cfg", "+ task flags (get_current_task_btf + load)"),
]


def _rounds(fds: dict, n_rounds: int, loops: int) -> tuple[dict, list[float]]:
    """With BPF run-time statistics on, run the pipe benchmark n_rounds times: per program (key ->
    prog fd) the (run_time_ns, run_cnt) each round added, and the load average at each start."""
    from fputrace.capture import progstats
    out = {k: [] for k in fds}
    loads = []
    with progstats.run_time_stats():
        for _ in range(n_rounds):
            loads.append(os.getloadavg()[0])
            before = {k: progstats.prog_info(fd) for k, fd in fds.items()}
            _time_pipe(loops)
            after = {k: progstats.prog_info(fd) for k, fd in fds.items()}
            for k in fds:
                out[k].append((after[k].run_time_ns - before[k].run_time_ns, after[k].run_cnt - before[k].run_cnt))
    return out, loads


def compare_trees(args) -> None:
    """Recorders of several source trees at once; per program ns/run over the same benchmark."""
    import subprocess
    import sys
    import tempfile
    import time

    from fputrace.capture import progstats
    from benchmarks.bench_capture import _program_names
    cpus = sorted(os.sched_getaffinity(0))
    bench_capture.PIN = cpus[-1]
    procs, fds = [], {}
    with tempfile.TemporaryDirectory() as d:
        try:
            for i, tree in enumerate(args.trees):
                tree = os.path.abspath(tree)
                out = f"{d}/t{i}.fpt"
                env = {**os.environ, "PYTHONPATH": tree}
                procs.append((tree, out, subprocess.Popen(
                    ["taskset", "-c", ",".join(map(str, cpus[:-1] or cpus)), sys.executable, "-m", "fputrace.cli",
                     "record", "-q", "--mode", args.mode, "-o", out], cwd=tree, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
            for tree, out, p in procs:
                deadline = time.monotonic() + 180
                while not os.path.exists(out):
                    if p.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"breakdown: recorder of {tree} did not start: {p.stderr.read()[-400:]}")
                    time.sleep(0.1)
            time.sleep(1.0)
            for tree, _, p in procs:
                ids = progstats.prog_ids_of(p.pid)
                names = _program_names(ids)
                for i in ids:
                    fds[(tree, names.get(i, str(i)))] = progstats.prog_fd_by_id(i)
            rounds, loads = _rounds(fds, args.rounds, args.loops)
            per = {k: [(ns / runs, runs) for ns, runs in v if runs] for k, v in rounds.items()}
        finally:
            for fd in fds.values():
                os.close(fd)
            for _, _, p in procs:
                p.send_signal(2)
            for _, _, p in procs:
                p.communicate(timeout=120)
        from fputrace.recording.reader import open_recording
        lost = {tree: sum((open_recording(out).meta.get("lost_per_cpu") or {}).values()) for tree, out, _ in procs}
    print(f"breakdown: recorders of {len(procs)} trees at once, taskset -c {bench_capture.PIN} perf bench sched pipe "
          f"-l {args.loops}, {args.rounds} rounds, ns per run (median; load average "
          f"{', '.join(f'{x:.2f}' for x in loads)} at each round's start)")
    progs = sorted({name for _, name in per}, key=lambda n: -max((r for (t, m), v in per.items() if m == n
                                                                   for _, r in v), default=0))
    for name in progs:
        cells = []
        for tree, _, _ in procs:
            v = per.get((tree, name)) or []
            cells.append(f"{statistics.median(x for x, _ in v):7.1f} ({v[0][1] // args.loops} runs/msg)" if v else f"{'-':>7s}")
        print(f"breakdown: {name:<16s} " + "  ".join(f"{os.path.basename(t) or t}: {c}" for (t, _, _), c in zip(procs, cells)))
    print("breakdown: lost " + ", ".join(f"{os.path.basename(t)}: {n}" for t, n in lost.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loops", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="variant name prefixes (default: all)")
    ap.add_argument("--ring-pages", type=int, default=1024, help="pages of each variant ring (a power of two)")
    ap.add_argument("--trees", nargs="+", help="source trees whose recorders to compare (see above)")
    ap.add_argument("--mode", default="tracepoint")
    args = ap.parse_args()
    if args.trees:
        return compare_trees(args)
    from bcc import BPF

    from fputrace.capture import progstats, tpbtf
    from fputrace.capture.features import host_features
    from fputrace.capture.headers import apply
    from fputrace.capture.hot import offsets
    from fputrace.capture.ringbuf import PerCpuRings, RingBufferReader
    from fputrace.resources import bpf_dir
    feat = host_features()
    apply(feat.headers)
    off, missing = offsets(feat)
    if missing:
        raise SystemExit(f"breakdown: {missing}")
    ncpu = os.cpu_count()
    pages = args.ring_pages
    cflags = [f"-I{bpf_dir()}", f"-DNCPUS={ncpu}", f"-DSHARED_PAGES={pages}",
              *(f"-D{k}={v}" for k, v in off.items())]
    variants = [v for v in VARIANTS if not args.only or any(v[0].startswith(p) for p in args.only)]
    b = BPF(text=PRELUDE.encode(), cflags=cflags)
    rings = PerCpuRings(b, ncpu, pages * mmap.PAGESIZE)
    shared = RingBufferReader(b[b"shared"].map_fd, pages * mmap.PAGESIZE, epoll=False)
    progs, links = {}, []
    try:
        for fn, tp, _, _ in variants:
            fd = tpbtf.load(b.dump_func(fn.encode()), feat.btf_types.typedef_id(f"btf_trace_{tp}"), fn)
            progs[fn] = fd
            links.append(tpbtf.attach(fd))
        stop = threading.Event()

        def drain():
            while not stop.is_set():
                rings.read()
                shared.read()
                stop.wait(0.01)
        cpus = sorted(os.sched_getaffinity(0))
        bench_capture.PIN = cpus[-1]
        os.sched_setaffinity(0, set(cpus[:-1]) or set(cpus))
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        rounds, loads = _rounds(progs, args.rounds, args.loops)
        per = {fn: [ns / max(1, runs) for ns, runs in v] for fn, v in rounds.items()}
        stop.set()
        t.join()
    finally:
        for fd in links + list(progs.values()):
            os.close(fd)
        rings.close()
        shared.close()
        b.cleanup()
    med = {fn: statistics.median(v) for fn, v in per.items()}
    print(f"breakdown: taskset -c {bench_capture.PIN} perf bench sched pipe -l {args.loops}, {args.rounds} rounds, "
          f"all variants attached at once, rings of {pages} pages, ns per run (median; load average "
          f"{', '.join(f'{x:.2f}' for x in loads)} at each round's start)")
    for fn, tp, base, what in variants:
        diff = f"{med[fn] - med[base]:+7.1f} vs {base}" if base in med else ""
        print(f"breakdown: {tp:<25s} {fn:<12s} {med[fn]:7.1f}  {diff:<22s} {what}"
              f"   (rounds: {', '.join(f'{x:.0f}' for x in per[fn])})")


if __name__ == "__main__":
    main()
