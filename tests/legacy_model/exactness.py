"""Which numbers are exact, which inferred, which unavailable — per probe mode (SPEC 4, 5.4).

Never invent certainty: every label here is shown beside the number in text and JSON output.
"""
from __future__ import annotations

from .layout import S_HAS_UR_EVENTS, S_INFERRED, S_KFPU_UNTIMED, S_LOST, S_UNEXPLAINED, S_UNSEEN_SAVES, S_UR_ASSUMED


def _exact(modes: dict, logical: str):
    m = modes.get(logical)
    if not m:
        return None                      # mode unknown (imported trace)
    if str(m.get("attach", "")).lower() in ("none", "unavailable", "n/a", ""):
        return False
    return bool(m.get("exact"))


def exactness(model) -> dict[str, str]:
    meta = model.meta
    modes = meta.get("modes") or {}
    S = model._S
    inferred = int(S[S_INFERRED]) > 0
    out: dict[str, str] = {}

    xs = _exact(modes, "xsave")
    if xs:
        out["xsave"] = "exact"
    elif inferred:
        out["xsave"] = ("switch saves exact (tracepoint); kernel-FPU saves inferred, one per "
                        "syscall (lower bound)")
    elif xs is None:
        out["xsave"] = "as in the source (mode unknown); kernel-FPU saves of user tasks not observed"
    else:
        out["xsave"] = "switch saves exact (tracepoint); kernel-FPU saves not observed (lower bound)"

    if int(S[S_UNSEEN_SAVES]):
        out["xsave"] += (f"; {int(S[S_UNSEEN_SAVES])} kernel-FPU save(s) inferred from switch-outs "
                         "that found the registers already saved (not in the counts)")
    xr = _exact(modes, "xrstor")
    if xr:
        out["xrstor"] = "exact"
    elif xr is None:
        out["xrstor"] = "as in the source (mode unknown)"
    else:
        out["xrstor"] = "exact for restores that fire x86_fpu_regs_activated (return path, KVM, sigreturn)"

    kb = _exact(modes, "kfpu_begin")
    if kb:
        out["kfpu_sections"] = "exact"
        out["kfpu_durations"] = "exact"
    elif inferred:
        out["kfpu_sections"] = ("inferred (lower bound: one per syscall that had to save user "
                                "state; kernel threads' and interrupts' sections not seen)")
        out["kfpu_durations"] = "unavailable (no probe on kernel_fpu_begin/end)"
    else:
        out["kfpu_sections"] = "unavailable in this mode" if kb is False or not modes else \
            "as in the source"
        out["kfpu_durations"] = out["kfpu_sections"]
    if int(S[S_KFPU_UNTIMED]):
        out["kfpu_durations"] += f"; {int(S[S_KFPU_UNTIMED])} section(s) began before the trace or a gap"

    if S[S_HAS_UR_EVENTS]:
        out["avoidable_xrstor"] = "exact (returns to user observed at switch_fpu_return)"
    elif S[S_UR_ASSUMED]:
        out["avoidable_xrstor"] = ("lower bound: returns to user mode are not observable on an eager "
                                   "kernel; assumed before each switch-out and kernel FPU use")
    else:
        out["avoidable_xrstor"] = ("derived from the deferred kernel's own saves and restores "
                                   "(a consistency check: should be ~0)")
    out["bytes"] = model.xstate_note + (
        "; events without xfeatures use the task's last known value, else all enabled components")
    if int(S[S_UNEXPLAINED]):
        out["ownership"] = (f"{int(S[S_UNEXPLAINED])} restore(s) with no observed cause (a kernel "
                            "thread's or interrupt's SIMD use the mode cannot see)")
    if int(S[S_LOST]):
        out["lost"] = (f"{int(S[S_LOST])} events lost: counts of tasks flagged gap=true crossed a "
                       "gap and are lower bounds")
    return out
