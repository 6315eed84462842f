"""What the model hands to views (TUI, exporter): an immutable picture of the analysis so far.

This is the contract between ``fputrace.model`` (which fills it, see ``Model.snapshot``) and the
dashboard (which only draws it). Views never compute numbers of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# Owner kinds of a CPU's FPU registers (SPEC 5.2).
TASK, KERNEL, NONE, UNKNOWN = "TASK", "KERNEL", "NONE", "UNKNOWN"


@dataclass(frozen=True)
class OwnerInterval:
    start_ns: int
    end_ns: int
    owner: str                 # TASK / KERNEL / NONE / UNKNOWN
    tid: int = 0               # for TASK


@dataclass(frozen=True)
class CpuView:
    cpu: int
    owner: str                 # current owner kind
    tid: int                   # current owner task (TASK only, else 0)
    comm: str                  # its name ("" unless TASK)
    strip: tuple[OwnerInterval, ...]          # owner intervals over the window, oldest first
    xsave_per_s: tuple[float, ...]            # one value per second of the window, oldest first
    xrstor_per_s: tuple[float, ...]


@dataclass(frozen=True)
class PolicyView:
    name: str                  # "eager", "deferred", ...
    xsave: int
    xrstor: int
    avoidable_xrstor: int
    bytes: int
    cycles: float


@dataclass(frozen=True)
class Snapshot:
    now_ns: int                # trace time of the newest event analysed
    window_ns: int             # the span covered by CpuView strips / rates
    events: int                # events analysed so far
    lost_events: int           # events known to be lost (sum of LOST); non-zero must be shown
    gap_flagged: bool          # some number crossed a LOST gap (SPEC 5.2)
    cpus: tuple[CpuView, ...]
    # one row per task: tid, generation (of a reused tid), tgid, comm, kthread, xsave, xrstor,
    # avoidable_xrstor, kfpu_sections, kfpu_ns, state ("user"/"kernel"/"sleeping"/"exited"/
    # "unknown"), last_cpu, bytes (moved by its saves and restores), components ("SSE+AVX+AMX":
    # classes live at them), xstate_rank (0 SSE .. 3 AMX: sort by it, then bytes, to list the
    # AVX-512/AMX tasks first), bytes_per_xsave, bytes_share and cycles_share (0..1 of all moved),
    # avoidable_bytes (moved by its avoidable restores), fputrace_own (the task belongs to fputrace
    # itself: its tgid is meta fputrace_tgid); the columns of ``report``'s per_task of those names
    tasks: pd.DataFrame
    # one row per caller: caller (symbol+offset or hex), sections, total_ns, max_ns, p99_ns
    kfpu_callers: pd.DataFrame
    # histogram of kernel FPU section lengths: bucket lower bound (ns, power of 2) -> count
    kfpu_hist: pd.DataFrame    # columns: lo_ns, count
    policies: tuple[PolicyView, ...]
    recorded_policy: str       # policy of the kernel that produced the trace
    self_check: float | None   # replay under recorded policy vs measured counts, 0..1; None: unknown
    cost_model: str            # name/path of the cost model used for bytes/cycles
    inferred_kinds: tuple[str, ...] = field(default=())   # kinds whose counts include inferred events
    # what deferred restore saves against eager on this trace (eager minus deferred, as a
    # PolicyView named "saved"), and how many fewer XRSTOR in percent; None unless both replayed
    difference: PolicyView | None = None
    xrstor_fewer_pct: float | None = None


@dataclass(frozen=True)
class TaskDetail:
    tid: int
    tgid: int
    comm: str
    # per kind and cause: kind ("XSAVE"/"XRSTOR"), cause (name), count, avoidable (XRSTOR: the
    # restores of that cause thrown away before a user-mode instruction; XSAVE: 0)
    causes: pd.DataFrame
    # where the task's user state was: start_ns, end_ns, state: "regs:<cpu>" (valid in that CPU's
    # registers), "kernel-fpu" (a kernel FPU section of the task runs; its user state is saved),
    # "memory" (saved, in no registers); oldest first, as far back as the dashboard's activity sink goes
    timeline: pd.DataFrame
