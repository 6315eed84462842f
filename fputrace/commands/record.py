"""``fputrace record``: capture FPU save/restore traffic into a kill-safe recording file."""
from __future__ import annotations

import argparse
import re

from .argtypes import number, trailing_command

HELP = "record FPU save/restore events of this host into a file (needs root)"
EXAMPLES = """examples:
    sudo fputrace record -o run.fpt                    # until Ctrl-C
    sudo fputrace record -o run.fpt --duration 30s     # for 30 seconds
    sudo fputrace record -o make.fpt -- make -j2       # while a command runs
    sudo fputrace record -o db.fpt --pid 1234          # one process
    sudo fputrace record -o x.fpt --comm postgres      # tasks named postgres
    sudo fputrace record -o x.fpt --mode tracepoint    # force an attach mode
    sudo fputrace record -o x.fpt -v                   # a refused program: the verifier's log
    sudo fputrace record -o x.fpt --stats              # and what each BPF program costs per run
    fputrace report run.fpt                            # then analyse it
"""

_UNITS_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "": 1.0}


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(ms|s|min|m|h|)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 10s, 500ms, 2m)")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


_positive_int = number(int, 1)


def _pages(text: str) -> int:
    value = _positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two: {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="recording to write (mode 0600)")
    p.add_argument("-d", "--duration", type=parse_duration, metavar="TIME",
                   help="stop after this long (10s, 500ms, 2m); default: until Ctrl-C or CMD exits")
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=_positive_int, help="only this process (all its threads)")
    who.add_argument("-c", "--comm", help="only tasks with this name")
    p.add_argument("-m", "--mode", default="auto", choices=["auto", "fentry", "kprobe", "tracepoint"],
                   help="attach mode (default auto: the best this kernel allows, per event)")
    p.add_argument("--programs", default="auto", choices=["auto", "tp_btf", "raw_tracepoint", "perf_tracepoint"],
                   help="how the per-switch and per-syscall tracepoints are read (default auto: BTF-typed "
                        "raw tracepoints where the kernel allows them, the cheapest)")
    p.add_argument("--transport", default="auto", choices=["auto", "ringbuf_percpu", "ringbuf", "perfbuf"],
                   help="kernel-to-user buffer (default auto: one BPF ring buffer per CPU where the kernel "
                        "allows it, else one shared ring, else the perf buffer)")
    p.add_argument("--buffer-pages", type=_pages, metavar="N",
                   help="buffer memory in 4 KiB pages, a power of two, split between the CPUs' rings "
                        "(default 16384 = 64 MiB, at most 16 MiB per CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    p.add_argument("--stats", action="store_true",
                   help="what tracing costs: BPF run-time statistics on while recording, ns per run of "
                        "each program in the status line and at the end (also shown whenever "
                        "kernel.bpf_stats_enabled is 1)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="on a load failure print the whole log (bcc, clang, the kernel verifier)")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="run this command and stop when it exits")


def run(args) -> int:
    cmd = trailing_command(args.cmd)
    from ..capture.options import CaptureOptions
    opts = CaptureOptions(mode=args.mode, pid=args.pid, comm=args.comm, buffer_pages=args.buffer_pages,
                          programs=args.programs, transport=args.transport)
    opts.validate()
    if args.ebpf:
        from ..capture.ebpf import print_ebpf
        return print_ebpf(opts)
    from ..capture.recorder import record
    return record(args.output, opts, duration_s=args.duration, cmd=cmd, quiet=args.quiet,
                  verbose=args.verbose, stats=args.stats)
