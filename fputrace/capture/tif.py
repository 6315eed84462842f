"""Find the TIF_NEED_FPU_LOAD bit of this kernel live instead of trusting a constant.

The BPF side samples ``task->thread_info.flags`` (offset 0 of task_struct, SPEC 4):
* at switch saves (``x86_fpu_regs_deactivated`` after a sched_switch): from 6.16 the kernel sets
  the flag in the outgoing task just before the save, so the bit is set in every sample;
* at ``x86_fpu_regs_activated`` (all of 5.2+): the flag is still set while the restore runs;
* at ``sys_enter``: a task coming from user mode always has its registers loaded: the bit is clear.
Candidates are the bits set in every FPU sample and never at sys_enter; the kernel-version
expectation (14 up to 6.17, 19 from 6.18) picks among them and says whether the two agree.
"""
from __future__ import annotations

import ctypes
import time

from . import abi


def read_calibration(bpf) -> dict:
    table = bpf[b"calib"]
    out = {}
    for slot in range(abi.CAL_MAX):
        values = [int(v) for v in table[ctypes.c_int(slot)]]
        out[slot] = values
    return out


def combine(per_cpu: dict) -> dict:
    def and_over(vals_slot, n_slot):
        acc, n = ~0 & (2**64 - 1), 0
        for v, cnt in zip(per_cpu[vals_slot], per_cpu[n_slot]):
            if cnt:
                acc &= v
                n += cnt
        return (acc if n else 0), n

    and_deact, n_deact = and_over(abi.CAL_AND_DEACT, abi.CAL_N_DEACT)
    and_act, n_act = and_over(abi.CAL_AND_ACT, abi.CAL_N_ACT)
    or_enter = 0
    for v in per_cpu[abi.CAL_OR_ENTER]:
        or_enter |= v
    n_enter = sum(per_cpu[abi.CAL_N_ENTER])
    return {"and_deact": and_deact, "n_deact": n_deact, "and_act": and_act, "n_act": n_act,
            "or_enter": or_enter, "n_enter": n_enter}


def decide(c: dict, expected: int | None, version: tuple[int, int] = (6, 18)) -> dict:
    """-> {bit, expected, verified, candidates, samples, source}"""
    fpu_and = ~0 & (2**64 - 1)
    used = []
    # Before 6.16 the outgoing task's flag is set only at its next switch-in, not at the save
    if c["n_deact"] and version >= (6, 16):
        fpu_and &= c["and_deact"]
        used.append("regs_deactivated")
    if c["n_act"]:
        fpu_and &= c["and_act"]
        used.append("regs_activated")
    samples = {"deactivated": c["n_deact"], "activated": c["n_act"], "sys_enter": c["n_enter"]}
    if not used:
        return {"bit": expected, "expected": expected, "verified": False, "candidates": [],
                "samples": samples, "source": "kernel version (no FPU samples seen)"}
    cand = fpu_and & ~c["or_enter"] if c["n_enter"] else fpu_and
    bits = [b for b in range(64) if cand >> b & 1]
    if expected in bits:
        return {"bit": expected, "expected": expected, "verified": True, "candidates": bits,
                "samples": samples, "source": "live: " + "+".join(used)}
    if len(bits) == 1:
        return {"bit": bits[0], "expected": expected, "verified": True, "candidates": bits,
                "samples": samples, "source": f"live: {'+'.join(used)} (kernel version expected {expected})"}
    return {"bit": expected, "expected": expected, "verified": False, "candidates": bits,
            "samples": samples, "source": "kernel version (live samples ambiguous)"}


def provoke_switches(n: int = 10) -> None:
    """Two threads of this process ping-pong over pipes on one CPU: every hand-over switches an
    FPU-using task out (a save) and the other in, which finds the registers owned by someone else
    and restores on its way back to user mode (regs_activated). A lone sleeper would not do: it
    comes back to registers nobody touched, and the kernel skips the restore."""
    import os
    import threading
    try:
        saved = os.sched_getaffinity(0)
        cpu = min(saved)
        os.sched_setaffinity(0, {cpu})
    except OSError:
        saved, cpu = None, None
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()

    def partner():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        y = 1.0
        for _ in range(n):
            os.read(a_r, 1)
            y *= 1.0000001          # live SSE state in this thread too
            os.write(b_w, b"b")

    t = threading.Thread(target=partner, daemon=True)
    t.start()
    x = 1.0
    try:
        for _ in range(n):
            x *= 1.0000001
            os.write(a_w, b"a")
            os.read(b_r, 1)
        t.join(timeout=5)
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)
        if saved is not None:
            os.sched_setaffinity(0, saved)


def calibrate(bpf, expected: int | None, budget_s: float, version: tuple[int, int] = (6, 18),
              drain=None) -> dict:
    """``drain()`` is called between rounds: the capture is already running, and its buffers
    must not fill up while nobody reads them yet."""
    deadline = time.monotonic() + budget_s
    while True:
        provoke_switches(10)
        if drain is not None:
            drain()
        c = combine(read_calibration(bpf))
        fpu_samples = c["n_act"] + (c["n_deact"] if version >= (6, 16) else 0)
        if fpu_samples >= 16 and c["n_enter"] >= 64 or time.monotonic() >= deadline:
            return decide(c, expected, version)
