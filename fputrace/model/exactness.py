"""Which numbers are exact, which inferred, which unavailable — per probe mode (SPEC 4, 5.4).

Never invent certainty: every label here is shown beside the number in text and JSON output.
"""
from __future__ import annotations



def _exact(modes: dict, logical: str):
    m = modes.get(logical)
    if not m:
        return None                      # mode unknown (imported trace)
    if str(m.get("attach", "")).lower() in ("none", "unavailable", "n/a", ""):
        return False
    return bool(m.get("exact"))


def exactness(view) -> dict[str, str]:
    """For one ``tables.ModelView``."""
    modes = view.meta.get("modes") or {}
    f = view.flags()
    inferred = f["inferred"] > 0
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

    if f["unseen_saves"]:
        out["xsave"] += (f"; {f['unseen_saves']} kernel-FPU save(s) inferred from switch-outs "
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
    if f["kfpu_untimed"]:
        out["kfpu_durations"] += f"; {f['kfpu_untimed']} section(s) began before the trace or a gap"

    if f["has_ur_events"]:
        out["avoidable_xrstor"] = "exact (returns to user observed at switch_fpu_return)"
    elif f["ur_assumed"]:
        out["avoidable_xrstor"] = ("lower bound: returns to user mode are not observable on an eager "
                                   "kernel; assumed before each switch-out and kernel FPU use")
    else:
        out["avoidable_xrstor"] = ("derived from the deferred kernel's own saves and restores "
                                   "(a consistency check: should be ~0)")
    out["bytes"] = view.xstate_note + (
        "; events without xfeatures use the task's last known value, else all enabled components")
    if f["unexplained"]:
        out["ownership"] = (f"{f['unexplained']} restore(s) with no observed cause (a kernel "
                            "thread's or interrupt's SIMD use the mode cannot see)")
    if f["lost"]:
        out["lost"] = (f"{f['lost']} events lost: counts of tasks flagged gap=true crossed a "
                       "gap and are lower bounds")
    return out
