"""The independent cross-check: a bpftrace program that counts, per window and per process (tgid),
the same kernel functions and tracepoints fputrace turns into events, plus "syscalls during which
the kernel FPU was used" (what the tracepoint-only inference can see). Plain python3, no fputrace
imports.

Windows: the lab driver calls ``prctl(WINDOW_MAGIC, k)``; bpftrace sees it at ``sys_enter``, prints
``WINDOW k <ns>`` (``nsecs`` is bpf_ktime_get_ns, fputrace's clock) and from then on counts under
key ``k`` until the next marker; ``k = 0`` stops counting. So both tools are compared over the same
stretch of time, for every process that ran in it: bpftrace's maps cover exactly the windows, and
fputrace's events are cut at the printed timestamps.

bpftrace uses kprobes here on purpose (not kfunc): a mechanism independent of fputrace's fentry
programs, and the one bpftrace 0.17 can attach on every lab kernel (its kfunc support chokes on
newer BTF).
"""
from __future__ import annotations

import re

# fact -> the kernel functions that carry it, best first; the first one present on the running
# kernel is probed (one only: kernel_fpu_begin wraps kernel_fpu_begin_mask where both exist, and
# probing both would count a section twice). 5.10 has kernel_fpu_begin and copy_fpregs_to_fpstate
# and restores inline; 5.11+ kernel_fpu_begin_mask; 5.14+ save/restore_fpregs_*.
FACTS = {
    "kfpu_begin": ("kernel_fpu_begin_mask", "kernel_fpu_begin"),
    "kfpu_end": ("kernel_fpu_end",),
    "xsave": ("save_fpregs_to_fpstate", "copy_fpregs_to_fpstate"),
    "xrstor": ("restore_fpregs_from_fpstate", "__restore_fpregs_from_fpstate"),
    "user_return": ("switch_fpu_return",),
}
FUNCS = tuple(f for fns in FACTS.values() for f in fns)
TRACEPOINTS = ("x86_fpu:x86_fpu_regs_activated", "x86_fpu:x86_fpu_regs_deactivated")
SYSCALLS_WITH_KFPU = "syscalls_with_kfpu"
SWITCH_SAVES = "switch_saves"
READY = "BPFTRACE-READY"
WINDOW_MAGIC = 0x46505554          # "FPUT": an invalid prctl option, the call just fails (EINVAL)
NR_PRCTL_X86_64 = 157

_LINE = re.compile(r"^@c\[(\d+), (\d+), ([^\]]+)\]: (\d+)\s*$")
_WINDOW = re.compile(r"^WINDOW (\d+) (\d+) (\d+)\s*$")


def choose(present) -> dict[str, str]:
    """fact -> the function probed for it on this kernel (facts without any function are absent)."""
    return {fact: next(f for f in fns if f in present) for fact, fns in FACTS.items()
            if any(f in present for f in fns)}


def program(probes: dict[str, str], tracepoints: list[str], switch_saves: bool = True) -> str:
    """Counting program: ``probes`` from ``choose``, the tracepoints present on this kernel.
    Counts are keyed by fact name (kfpu_begin, ...), tracepoints by ``tp:<name>``;
    ``switch_saves``: the x86_fpu_regs_deactivated that follow their task's own sched_switch
    (the context-switch saves; the tracepoint also fires for exit/exec drops, which save nothing)."""
    parts = [f'BEGIN {{ printf("{READY}\\n"); }}',
             # the window marker, and the start of a syscall for syscalls_with_kfpu
             "tracepoint:raw_syscalls:sys_enter {\n"
             f"  if (args->id == {NR_PRCTL_X86_64} && args->args[0] == {WINDOW_MAGIC}) {{\n"
             "    @w = args->args[1];\n"
             '    printf("WINDOW %d %llu %d\\n", args->args[1], nsecs, cpu);\n'
             "  }\n"
             + ("  delete(@kfpu[tid]);\n" if "kfpu_begin" in probes else "")
             + "}"]
    for fact, fn in probes.items():
        extra = " @kfpu[tid] = 1;" if fact == "kfpu_begin" else ""
        parts.append(f'kprobe:{fn} /@w/ {{ @c[@w, pid, "{fact}"] = count();{extra} }}')
    for tp in tracepoints:
        parts.append(f'tracepoint:{tp} /@w/ {{ @c[@w, pid, "tp:{tp.split(":")[1]}"] = count(); }}')
    if switch_saves and "x86_fpu:x86_fpu_regs_deactivated" in tracepoints:
        parts.append("tracepoint:sched:sched_switch { @prev[cpu] = (uint64)args->prev_pid; }")
        parts.append("tracepoint:x86_fpu:x86_fpu_regs_deactivated /tid && @prev[cpu] == tid/ {\n"
                     f'  if (@w) {{ @c[@w, pid, "{SWITCH_SAVES}"] = count(); }}\n'
                     "  delete(@prev[cpu]);\n}")
    if "kfpu_begin" in probes:
        parts.append(f'tracepoint:raw_syscalls:sys_exit /@w && @kfpu[tid]/ '
                     f'{{ @c[@w, pid, "{SYSCALLS_WITH_KFPU}"] = count(); delete(@kfpu[tid]); }}')
    maps = ["@w"] + ["@kfpu"] * ("kfpu_begin" in probes) + ["@prev"] * ("@prev[cpu]" in "".join(parts))
    parts.append("END { " + " ".join(f"clear({m});" for m in maps) + " }")
    return "\n".join(parts) + "\n"


def parse(output: str) -> dict[int, dict[int, dict[str, int]]]:
    """``@c[window, pid, name]: n`` lines -> {window: {pid: {name: n}}}."""
    counts: dict[int, dict[int, dict[str, int]]] = {}
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if m:
            w, pid, name, n = int(m.group(1)), int(m.group(2)), m.group(3).strip(), int(m.group(4))
            counts.setdefault(w, {}).setdefault(pid, {})[name] = n
    return counts


def windows(output: str) -> list[dict]:
    """The markers bpftrace saw, in order: [{"window": k, "ns": t, "cpu": c}, ...]."""
    out = []
    for line in output.splitlines():
        m = _WINDOW.match(line.strip())
        if m:
            out.append({"window": int(m.group(1)), "ns": int(m.group(2)), "cpu": int(m.group(3))})
    return out


def lost_lines(output: str) -> int:
    """bpftrace prints 'Lost N events' when its perf buffer overflowed (only the markers use it)."""
    return sum(int(m.group(1)) for m in re.finditer(r"^Lost (\d+) events", output, re.M))
