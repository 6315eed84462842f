"""The cheapest streaming tracer of fputrace's hot tracepoints: a floor to measure fputrace against.

    sudo .venv/bin/python -m benchmarks.min_streamer [--tracepoints 5|3] [-o SUMMARY.json]

Issue 12 asks fputrace to slow ``perf bench sched pipe`` no more than bpftrace *counting* three
tracepoints, "while still streaming every event". This is what any tracer that streams every hit
of the same tracepoints must do, and nothing else: on each hit one ``bpf_ktime_get_ns`` and one
``bpf_ringbuf_reserve``/``submit`` of a record of fputrace's size (48 bytes: 8 of ring header, a
40-byte ``struct fpt_event``), into this CPU's ring (fputrace's transport here: one ring per CPU,
16 MiB, the consumer woken every ``ringbuf.wakeup_every`` records, else BPF_RB_NO_WAKEUP); a
per-CPU count of records offered and of failed reserves, so that every event is accounted for.
The programs are tp_btf ones on the tracepoints fputrace attaches in tracepoint mode:
sched_switch, x86_fpu_regs_deactivated, x86_fpu_regs_activated and (``--tracepoints 5``, the
default) raw_syscalls sys_enter/sys_exit, which fputrace follows for its inference; ``3``: only
the three bpftrace counts. No field of any kernel struct is read.

``--empty-syscalls`` (with ``--tracepoints 3``): also empty sys_enter/sys_exit programs, to see
what attaching raw_syscalls costs by itself.

``--shape fputrace``: the same on fputrace's 5 tracepoints, but only the records fputrace writes
there: per context switch a clock read at sched_switch, a record at regs_deactivated stamped
with it (fputrace's switch-with-its-save record), a clock read and a record at regs_activated;
empty syscall programs (fputrace runs them for its inference and writes nothing in the common
case). The floor of fputrace's own stream.

User space drains the rings with fputrace's own reader (``ringbuf.PerCpuRings``: mmap, bulk numpy
read, one consumer_pos store per ring and read, epoll with fputrace's 100 ms timeout) and counts
records. It prints "Attached N programs" once attached; on SIGINT or SIGTERM it detaches, drains
what is left and writes {"events", "lost", "offered", "programs"} to ``-o`` (and stdout); exit 1
if events + lost != offered.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import sys
import threading

TRACEPOINTS = {5: ["sched_switch", "x86_fpu_regs_deactivated", "x86_fpu_regs_activated", "sys_enter", "sys_exit"],
               3: ["sched_switch", "x86_fpu_regs_deactivated", "x86_fpu_regs_activated"]}

PROGRAM = r"""
#include "fputrace.h"
BPF_RINGBUF_OUTPUT(events_inner, 1);
BPF_ARRAY_OF_MAPS(events, "events_inner", NCPUS);
BPF_PERCPU_ARRAY(counts, u64, 2);          /* [0] records offered, [1] reserves that failed */

/* one record of `kind` stamped `ts` (0: read the clock once the record is reserved) */
static __always_inline int stream_at(u8 kind, u64 ts)
{
	u32 cpu = bpf_get_smp_processor_id();
	void *ring = events.lookup(&cpu);
	u32 k = 0;
	u64 *offered = counts.lookup(&k);
	if (!ring || !offered)
		return 0;
	u64 seq = ++*offered;
	struct fpt_event *e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e) {
		k = 1;
		u64 *lost = counts.lookup(&k);
		if (lost)
			*lost += 1;
		return 0;
	}
	e->ts_ns = ts ? ts : bpf_ktime_get_ns();
	e->a0 = 0;
	e->a1 = 0;
	e->tid = 0;
	e->tgid = 0;
	e->cpu = cpu;
	e->kind = kind;
	e->flags = 0;
	e->_pad = 0;
	bpf_ringbuf_submit(e, (seq & (WAKEUP_EVERY - 1)) ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP);
	return 0;
}

static __always_inline int stream(u8 kind)
{
	return stream_at(kind, 0);
}
"""


# --shape fputrace: fputrace's records and no more, on its 5 tracepoints. Per context switch it
# writes two records (the switch with its save, stamped at sched_switch; the restore) and reads the
# clock twice; the syscall programs write nothing (they run for the inference).
FPUTRACE_SHAPE = r"""
BPF_PERCPU_ARRAY(switch_ts, u64, 1);
int s_sched_switch(u64 *ctx) { u32 k = 0; u64 *ts = switch_ts.lookup(&k); if (ts) *ts = bpf_ktime_get_ns(); return 0; }
int s_x86_fpu_regs_deactivated(u64 *ctx) { u32 k = 0; u64 *ts = switch_ts.lookup(&k); return ts ? stream_at(2, *ts) : 0; }
int s_x86_fpu_regs_activated(u64 *ctx) { return stream(3); }
int s_sys_enter(u64 *ctx) { return 0; }
int s_sys_exit(u64 *ctx) { return 0; }
"""


EMPTY_SYSCALLS = "int s_sys_enter(u64 *ctx) { return 0; }\nint s_sys_exit(u64 *ctx) { return 0; }\n"


def source(tracepoints: list[str], shape: str, empty_syscalls: bool = False) -> str:
    if shape == "fputrace":
        return PROGRAM + FPUTRACE_SHAPE
    return PROGRAM + "".join(f"int s_{tp}(u64 *ctx) {{ return stream({i + 1}); }}\n"
                             for i, tp in enumerate(tracepoints)) + (EMPTY_SYSCALLS if empty_syscalls else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracepoints", type=int, choices=sorted(TRACEPOINTS), default=5)
    ap.add_argument("--shape", choices=["every-hit", "fputrace"], default="every-hit",
                    help="every-hit: a clock read and a record per hit (default); fputrace: fputrace's "
                    "records only, on its 5 tracepoints (2 clock reads and 2 records per switch, empty "
                    "syscall programs)")
    ap.add_argument("--empty-syscalls", action="store_true", help="with --tracepoints 3: also attach empty "
                    "sys_enter/sys_exit programs (what attaching raw_syscalls costs by itself)")
    ap.add_argument("-o", "--output", help="write the summary (JSON) here too")
    args = ap.parse_args()
    from bcc import BPF

    from fputrace.capture import tpbtf
    from fputrace.capture.features import host_features
    from fputrace.capture.headers import apply
    from fputrace.capture.ringbuf import DEFAULT_MAX_PAGES_PER_CPU, PerCpuRings, wakeup_every
    from fputrace.capture.session import POLL_MS
    from fputrace.resources import bpf_dir
    feat = host_features()
    apply(feat.headers)
    cpus, pages = feat.possible_cpus, DEFAULT_MAX_PAGES_PER_CPU      # as fputrace record by default
    tps = TRACEPOINTS[5 if args.shape == "fputrace" else args.tracepoints]
    empty = args.empty_syscalls and args.shape == "every-hit" and args.tracepoints == 3
    b = BPF(text=source(tps, args.shape, empty).encode(), cflags=[f"-I{bpf_dir()}", f"-DNCPUS={cpus}",
                                                f"-DWAKEUP_EVERY={wakeup_every(pages, 1)}"])
    rings = PerCpuRings(b, cpus, pages * mmap.PAGESIZE)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tps = tps + (["sys_enter", "sys_exit"] if empty else [])
    progs, links, events = [], [], 0
    try:
        for tp in tps:
            fd = tpbtf.load(b.dump_func(f"s_{tp}".encode()), feat.btf_types.typedef_id(f"btf_trace_{tp}"), tp)
            progs.append(fd)
            links.append(tpbtf.attach(fd))
        print(f"Attached {len(links)} programs", flush=True)
        while not stop.is_set():
            rings.wait(POLL_MS)
            events += len(rings.read())
        for fd in links:                  # no producer left: what is in the rings is final
            os.close(fd)
        links = []
        while n := len(rings.read()):
            events += n
        per_cpu = b[b"counts"]
        offered = sum(per_cpu[0])
        lost = sum(per_cpu[1])
    finally:
        for fd in links + progs:
            os.close(fd)
        rings.close()
        b.cleanup()
    out = {"events": events, "lost": lost, "offered": offered, "programs": tps}
    text = json.dumps(out)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    print(text, flush=True)
    if events + lost != offered:
        print(f"min_streamer: {events} events + {lost} lost != {offered} offered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
