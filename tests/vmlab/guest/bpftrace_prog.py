"""The independent cross-check: a bpftrace program that counts, per process (tgid), the same kernel
functions and tracepoints fputrace turns into events, plus "syscalls during which the kernel FPU
was used" (what the tracepoint-only inference can see). Plain python3, no fputrace imports.

bpftrace uses kprobes here on purpose (not kfunc): a mechanism independent of fputrace's fentry
programs, and the one bpftrace 0.17 can attach on every lab kernel (its kfunc support chokes on
newer BTF).
"""
from __future__ import annotations

import re

FUNCS = ("kernel_fpu_begin_mask", "kernel_fpu_end", "save_fpregs_to_fpstate",
         "restore_fpregs_from_fpstate", "switch_fpu_return")
TRACEPOINTS = ("x86_fpu:x86_fpu_regs_activated", "x86_fpu:x86_fpu_regs_deactivated")
SYSCALLS_WITH_KFPU = "syscalls_with_kfpu"
READY = "BPFTRACE-READY"

_LINE = re.compile(r"^@c\[(\d+), ([^\]]+)\]: (\d+)\s*$")


def program(funcs: list[str], tracepoints: list[str]) -> str:
    """Counting program for the functions and tracepoints present on this kernel."""
    parts = [f'BEGIN {{ printf("{READY}\\n"); }}']
    for f in funcs:
        extra = " @kfpu[tid] = 1;" if f == "kernel_fpu_begin_mask" else ""
        parts.append(f'kprobe:{f} {{ @c[pid, "{f}"] = count();{extra} }}')
    for tp in tracepoints:
        parts.append(f'tracepoint:{tp} {{ @c[pid, "tp:{tp.split(":")[1]}"] = count(); }}')
    if "kernel_fpu_begin_mask" in funcs:
        parts.append("tracepoint:raw_syscalls:sys_enter { delete(@kfpu[tid]); }")
        parts.append(f'tracepoint:raw_syscalls:sys_exit /@kfpu[tid]/ '
                     f'{{ @c[pid, "{SYSCALLS_WITH_KFPU}"] = count(); delete(@kfpu[tid]); }}')
    parts.append("END { clear(@kfpu); }")
    return "\n".join(parts) + "\n"


def parse(output: str) -> dict[int, dict[str, int]]:
    """``@c[pid, name]: n`` lines -> {pid: {name: n}}."""
    counts: dict[int, dict[str, int]] = {}
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if m:
            counts.setdefault(int(m.group(1)), {})[m.group(2).strip()] = int(m.group(3))
    return counts
