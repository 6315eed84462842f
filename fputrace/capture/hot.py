"""How the hot tracepoints are read: the per-switch and per-syscall programs (issue 12).

sched_switch, x86_fpu_regs_deactivated/activated fire on every context switch, raw_syscalls on
every syscall; one run of each is what tracing costs. Best first:

* ``tp_btf``: BTF-typed raw tracepoints. The raw arguments with their kernel types; a task's
  pid or an fpu's xfeatures is a plain load. Needs BTF, the offsets below, and a kernel that
  lets tracing programs load (a test load decides, like fentry's).
* ``raw_tracepoint``: the same raw arguments, fields through bpf_probe_read_kernel at the same
  offsets (a helper call each).
* ``perf_tracepoint``: bcc's TRACEPOINT_PROBE. The perf tracepoint copies every field into a
  record before the program runs; no kernel layout is needed at all.

Offsets come from the running kernel's BTF and are checked at start: any one missing, or a
tracepoint without the arguments used (sched_switch's prev_state: 5.18+), selects the classic
perf tracepoint programs, and ``reason`` (in doctor and meta ``tracepoint_programs``) says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .features import Features

SWITCH, DEACT, ACT = "sched_switch", "x86_fpu_regs_deactivated", "x86_fpu_regs_activated"


@dataclass
class HotPlan:
    kind: str                                   # tp_btf | raw_tracepoint | perf_tracepoint
    reason: str                                 # why not a better kind ("" for tp_btf)
    cflags: list[str] = field(default_factory=list)
    btf_programs: list[tuple[str, str, int]] = field(default_factory=list)  # (bcc function, tracepoint, BTF id)
    offsets: dict[str, int] = field(default_factory=dict)

    def as_meta(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "offsets": dict(self.offsets)}


def offsets(feat: Features) -> tuple[dict[str, int], str]:
    """The struct offsets the raw programs read -> (offsets, what is missing or "")."""
    btf = feat.btf_types
    if btf is None:
        return {}, feat.btf.reason if not feat.btf.ok else "the kernel's BTF is unreadable"
    if (btf.func_proto_params("btf_trace_sched_switch") or 0) < 5:
        return {}, "sched_switch has no prev_state argument before 5.18"
    off = {"FPT_OFF_TASK_PID": btf.offset("task_struct", "pid"),
           "FPT_OFF_TASK_TGID": btf.offset("task_struct", "tgid"),
           "FPT_OFF_TASK_FLAGS": btf.offset("task_struct", "flags"),
           "FPT_OFF_TASK_EXIT_STATE": btf.offset("task_struct", "exit_state")}
    if btf.member_type("fpu", "fpstate") == "ptr:fpstate":              # 5.16+
        off["FPT_OFF_FPU_FPSTATE"] = btf.offset("fpu", "fpstate")
        off["FPT_OFF_XFEATURES"] = btf.offset("fpstate", "regs.xsave.header.xfeatures")
    else:
        off["FPT_OFF_XFEATURES"] = btf.offset("fpu", "state.xsave.header.xfeatures")
    missing = [k for k, v in off.items() if v is None]
    if missing:
        return {}, "BTF lacks " + ", ".join(m.removeprefix("FPT_OFF_").lower() for m in missing)
    return off, ""


def plan_hot(feat: Features, tracepoints: list[str], request: str = "auto") -> HotPlan:
    """``tracepoints``: the hot ones this capture attaches (sched_switch always; the x86_fpu
    ones where present; sys_enter/sys_exit with inference). ``request``: auto or one kind."""
    off, missing = offsets(feat)
    if missing or request == "perf_tracepoint":
        return HotPlan("perf_tracepoint", missing or "requested")
    flags = [f"-D{k}={v}" for k, v in sorted(off.items())]
    tp_btf = feat.tp_btf
    if request in ("auto", "tp_btf") and tp_btf.ok:
        progs = [(f"fpt_btf__{tp}", tp, feat.btf_types.typedef_id(f"btf_trace_{tp}")) for tp in tracepoints]
        return HotPlan("tp_btf", "", ["-DFPT_HOT_BTF", *flags], progs, off)
    why = "requested" if request == "raw_tracepoint" else f"tp_btf refused: {tp_btf.reason}"
    return HotPlan("raw_tracepoint", why, ["-DFPT_HOT_RAW", *flags], [], off)
