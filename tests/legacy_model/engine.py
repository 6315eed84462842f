"""The compiled heart of the model: one pass over a batch, updating ownership, counts and policy replays.

Why numba: the model must keep up with millions of events per second on one core (SPEC 3); a Python
loop per event manages ~1M/s at best. All state lives in int64 arrays (see ``layout``); this loop
reads the batch's columns and updates them in place, and returns early when the task table is full
so that Python can grow it and call again (streaming: memory follows tasks, not events).

Semantics (SPEC 5.2-5.4), per CPU:
* The measured side counts the XSAVE/XRSTOR events of the trace, infers their causes from context
  (a save right after a switch of that task is a switch save; after a kernel FPU begin, a kfpu save)
  and tracks who owns the registers (a task's user state, KERNEL, NONE, UNKNOWN after LOST).
* The replay side drives every policy from the trace's *logical* actions (switch, kernel FPU
  begin/end, return to user) and lets each policy decide itself where it saves and restores.
* SWITCH, KFPU_BEGIN, KFPU_END and USER_RETURN are held back until the next event on that CPU: the
  kernel's own save/restore follows them, and whether it happened is evidence (a deferred kernel
  saves at switch-out only if the task went back to user mode since it last lost its registers).
"""
from __future__ import annotations

import numpy as np

from .jitcache import ensure_writable_cache

ensure_writable_cache()
from numba import njit  # noqa: E402  (after the cache location is settled)

from fputrace.events import Kind, XrstorCause, XsaveCause
from .layout import *  # noqa: F401,F403  (numba freezes these module constants at compile time)

K_SWITCH = int(Kind.SWITCH)
K_KFPU_BEGIN = int(Kind.KFPU_BEGIN)
K_KFPU_END = int(Kind.KFPU_END)
K_XSAVE = int(Kind.XSAVE)
K_XRSTOR = int(Kind.XRSTOR)
K_USER_RETURN = int(Kind.USER_RETURN)
K_FORK = int(Kind.FORK)
K_EXEC = int(Kind.EXEC)
K_EXIT = int(Kind.EXIT)
K_KVM = int(Kind.KVM_FPU)
K_LOST = int(Kind.LOST)
K_COMM = int(Kind.COMM)
K_TASK = int(Kind.TASK)

XS_UNKNOWN = int(XsaveCause.UNKNOWN)
XS_SWITCH = int(XsaveCause.SWITCH)
XS_KFPU = int(XsaveCause.KFPU)
XS_FORK = int(XsaveCause.FORK)
XS_KVM = int(XsaveCause.KVM)
XR_UNKNOWN = int(XrstorCause.UNKNOWN)
XR_USER_RETURN = int(XrstorCause.USER_RETURN)
XR_SWITCH_IN = int(XrstorCause.SWITCH_IN)
XR_KFPU_END = int(XrstorCause.KFPU_END)
XR_KVM = int(XrstorCause.KVM)
XR_INIT = int(XrstorCause.INIT)

MASK63 = (1 << 63) - 1


@njit(cache=True, inline="always")
def xstate_bytes(xfeat, FS, full_mask):
    """Bytes an XSAVES/XRSTORS moves: legacy area + header, plus each non-init extended component."""
    x = xfeat & full_mask
    if x == 0:
        x = full_mask
    b = 576
    bit = 2
    x >>= 2
    while x != 0:
        if x & 1:
            b += FS[bit]
        x >>= 1
        bit += 1
    return b


@njit(cache=True, inline="always")
def is_user(T, t):
    return t >= 0 and T[t, TF_KTHREAD] == 0


# ---------------------------------------------------------------- tasks

@njit(cache=True)
def new_task(tid, slot, T, PT, S, npol):
    old = slot[tid]
    t = S[S_NTASKS]
    S[S_NTASKS] = t + 1
    T[t, TF_TID] = tid
    T[t, TF_GEN] = T[old, TF_GEN] + 1 if old >= 0 else 0
    T[t, TF_KTHREAD] = 1 if tid == 0 else 0
    T[t, TF_OWNER_CPU] = -1
    T[t, TF_LAST_CPU] = -1
    T[t, TF_FIRST_TS] = -1
    for p in range(npol):
        PT[p, t, PF_LASTCPU] = -1
    slot[tid] = t
    return t


@njit(cache=True, inline="always")
def get_task(tid, slot, T, PT, S, npol):
    """Dense index of the current generation of ``tid`` (a new one after EXIT + final switch-out)."""
    t = slot[tid]
    if t >= 0 and T[t, TF_DEAD] < 2:
        return t
    return new_task(tid, slot, T, PT, S, npol)


# ---------------------------------------------------------------- measured ownership

@njit(cache=True, inline="always")
def set_owner(c, owner, ts, C, T, OTS, OOWN, OHEAD):
    old = C[c, CF_OWNER]
    if old == owner:
        return
    if old >= 0 and T[old, TF_OWNER_CPU] == c:
        T[old, TF_OWNER_CPU] = -1
        if T[old, TF_PENDING] != 0:      # its freshly restored state thrown away unused
            T[old, TF_AVOID] += 1
            T[old, TF_PENDING] = 0
    if owner >= 0:
        o = T[owner, TF_OWNER_CPU]
        if o >= 0 and o != c and C[o, CF_OWNER] == owner:   # stale elsewhere: one CPU at a time
            C[o, CF_OWNER] = OWN_NONE     # (no recursion: numba's cache mishandles it)
            h = OHEAD[o]
            OTS[o, h % OWNER_RING] = ts
            OOWN[o, h % OWNER_RING] = OWN_NONE
            OHEAD[o] = h + 1
        T[owner, TF_OWNER_CPU] = c
    C[c, CF_OWNER] = owner
    h = OHEAD[c]
    OTS[c, h % OWNER_RING] = ts
    OOWN[c, h % OWNER_RING] = owner
    OHEAD[c] = h + 1


@njit(cache=True, inline="always")
def bump_rate(c, ts, which, RATE, RSEC):
    sec = ts // 1000000000
    i = sec % RATE_SLOTS
    if RSEC[c, i] != sec:
        RSEC[c, i] = sec
        RATE[c, 0, i] = 0
        RATE[c, 1, i] = 0
    RATE[c, which, i] += 1


# ---------------------------------------------------------------- policy replay

@njit(cache=True, inline="always")
def pol_valid(p, c, t, PC, PT):
    return PC[p, c] == t and PT[p, t, PF_LASTCPU] == c


@njit(cache=True, inline="always")
def pol_save(p, t, c, PC, PT, T, FS, full):
    PT[p, t, PF_XSAVE] += 1
    PT[p, t, PF_BYTES] += xstate_bytes(T[t, TF_XFEAT], FS, full)
    if PT[p, t, PF_PENDING] != 0:        # restored, then saved again before any user instruction
        PT[p, t, PF_AVOID] += 1
        PT[p, t, PF_PENDING] = 0
    PT[p, t, PF_NEEDLOAD] = 1
    PT[p, t, PF_LASTCPU] = c
    PC[p, c] = t                          # saving from the registers proves they held its state


@njit(cache=True, inline="always")
def pol_restore(p, t, c, pending, PC, PT, T, FS, full):
    PT[p, t, PF_XRSTOR] += 1
    PT[p, t, PF_BYTES] += xstate_bytes(T[t, TF_XFEAT], FS, full)
    PT[p, t, PF_PENDING] = pending
    PT[p, t, PF_NEEDLOAD] = 0
    PT[p, t, PF_LASTCPU] = c
    PC[p, c] = t


@njit(cache=True, inline="always")
def pol_invalidate(p, c, PC, PT):
    o = PC[p, c]
    if o >= 0 and PT[p, o, PF_PENDING] != 0 and PT[p, o, PF_LASTCPU] == c:
        PT[p, o, PF_AVOID] += 1
        PT[p, o, PF_PENDING] = 0
    PC[p, c] = OWN_NONE


@njit(cache=True, inline="always")
def pol_switch(p, c, prev, nxt, PP, PC, PT, T, FS, full):
    if is_user(T, prev) and PT[p, prev, PF_NEEDLOAD] == 0:
        pol_save(p, prev, c, PC, PT, T, FS, full)           # regs stay valid: owner unchanged
    if is_user(T, nxt):
        if PP[p, PP_EAGER] != 0:
            if not (PP[p, PP_VALIDITY] != 0 and pol_valid(p, c, nxt, PC, PT)):
                pol_restore(p, nxt, c, 1, PC, PT, T, FS, full)
            else:
                PT[p, nxt, PF_NEEDLOAD] = 0
        else:
            PT[p, nxt, PF_NEEDLOAD] = 1


@njit(cache=True, inline="always")
def pol_kfpu_begin(p, c, t, PC, PT, T, FS, full):
    if is_user(T, t) and PT[p, t, PF_NEEDLOAD] == 0:
        pol_save(p, t, c, PC, PT, T, FS, full)
    pol_invalidate(p, c, PC, PT)


@njit(cache=True, inline="always")
def pol_kfpu_end(p, c, t, PP, PC, PT, T, FS, full):
    if PP[p, PP_EAGER] != 0 and is_user(T, t) and PT[p, t, PF_NEEDLOAD] != 0:
        pol_restore(p, t, c, 1, PC, PT, T, FS, full)


@njit(cache=True, inline="always")
def pol_user_return(p, c, t, PP, PC, PT, T, FS, full):
    if not is_user(T, t):
        return
    PT[p, t, PF_PENDING] = 0              # the task executes user instructions now
    if PT[p, t, PF_NEEDLOAD] != 0:
        if PP[p, PP_VALIDITY] != 0 and pol_valid(p, c, t, PC, PT):
            PT[p, t, PF_NEEDLOAD] = 0
        else:
            pol_restore(p, t, c, 0, PC, PT, T, FS, full)


# ---------------------------------------------------------------- evidence -> all policies

@njit(cache=True, inline="always")
def apply_user_return(c, t, PP, PC, PT, T, S, FS):
    """Task ``t`` executes user-mode instructions on ``c`` now (observed or derived)."""
    if not is_user(T, t):
        return
    full = S[S_FULL_MASK]
    for p in range(S[S_NPOL]):
        pol_user_return(p, c, t, PP, PC, PT, T, FS, full)
    T[t, TF_PENDING] = 0
    T[t, TF_STATE] = ST_USER


@njit(cache=True)
def unexplained_restore(c, t, PP, PC, PT, T, S, FS):
    """The kernel restored ``t`` on its way to user mode although the replay of the recorded policy
    holds its registers valid: something we did not see (a kernel thread's or an interrupt's SIMD
    use) clobbered them. Every policy is told the registers are gone."""
    rp = S[S_REC_POLICY]
    if rp < 0 or not is_user(T, t):
        return
    if PT[rp, t, PF_NEEDLOAD] != 0 and not pol_valid(rp, c, t, PC, PT):
        return                            # explained: the replay restores here too
    S[S_UNEXPLAINED] += 1
    full = S[S_FULL_MASK]
    for p in range(S[S_NPOL]):
        if PP[p, PP_EAGER] != 0:
            if pol_valid(p, c, t, PC, PT) and PT[p, t, PF_NEEDLOAD] == 0:
                pol_restore(p, t, c, 0, PC, PT, T, FS, full)   # eager repairs at once
        else:
            pol_invalidate(p, c, PC, PT)
            PT[p, t, PF_NEEDLOAD] = 1


@njit(cache=True)
def unseen_kfpu_save(c, t, PP, PC, PT, T, S, FS):
    """A deferred kernel switched ``t`` out without saving although its registers were live: its
    TIF_NEED_FPU_LOAD was set by a save nobody showed us (kernel FPU use in a syscall that blocked
    before its end, where tracepoint-mode inference cannot see it). Count that save as inferred."""
    full = S[S_FULL_MASK]
    for p in range(S[S_NPOL]):
        pol_kfpu_begin(p, c, t, PC, PT, T, FS, full)
        pol_kfpu_end(p, c, t, PP, PC, PT, T, FS, full)
    T[t, TF_XS_UNSEEN] += 1              # kept apart: measured XSAVE counts stay what was seen
    if S[S_KFPU_EXACT] == 0:             # with probes on kernel_fpu_begin every section is seen:
        T[t, TF_KFPU] += 1               # the unseen save came from elsewhere (e.g. before the
        T[t, TF_KFPU_INF] += 1           # trace), so no section is invented
    S[S_UNSEEN_SAVES] += 1


@njit(cache=True)
def flush_pending(c, restored, PP, PC, PT, T, C, S, FS):
    """Replay the held-back action of CPU ``c`` now that we know whether the kernel saved/restored."""
    pk = C[c, CF_PEND_KIND]
    if pk == 0:
        return
    a = C[c, CF_PEND_A]
    saved = C[c, CF_PEND_SAVED]
    full = S[S_FULL_MASK]
    npol = S[S_NPOL]
    deferred_evidence = S[S_REC_DEFERRED] != 0
    if pk == K_SWITCH:
        b = C[c, CF_PEND_B]
        if is_user(T, a):
            if C[c, CF_PEND_NEW] != 0 and deferred_evidence:
                # first sight of a task at the start of the trace: take its flag from the kernel's act
                for p in range(npol):
                    PT[p, a, PF_NEEDLOAD] = 0 if saved != 0 else 1
            if T[a, TF_DEAD] != 0:
                # an exiting task's last switch: not a policy decision, do what the kernel did
                for p in range(npol):
                    PT[p, a, PF_NEEDLOAD] = 0 if saved != 0 else 1
            elif (deferred_evidence and saved != 0) or S[S_UR_ASSUMED] != 0:
                apply_user_return(c, a, PP, PC, PT, T, S, FS)
            elif (deferred_evidence and saved == 0 and S[S_REC_POLICY] >= 0
                  and PT[S[S_REC_POLICY], a, PF_NEEDLOAD] == 0 and C[c, CF_PEND_NEW] == 0):
                unseen_kfpu_save(c, a, PP, PC, PT, T, S, FS)
        for p in range(npol):
            pol_switch(p, c, a, b, PP, PC, PT, T, FS, full)
        if a >= 0 and T[a, TF_DEAD] == 1 and (S[S_EXIT_STATES] == 0 or (C[c, CF_PEND_ARG] & 0x30) != 0):
            T[a, TF_DEAD] = 2             # exited and switched out: its tid may be reused now
    elif pk == K_KFPU_BEGIN:
        if is_user(T, a) and ((deferred_evidence and saved != 0) or C[c, CF_PEND_INF] != 0
                              or S[S_UR_ASSUMED] != 0):
            apply_user_return(c, a, PP, PC, PT, T, S, FS)   # its regs were live: it came from user
        for p in range(npol):
            pol_kfpu_begin(p, c, a, PC, PT, T, FS, full)
    elif pk == K_KFPU_END:
        for p in range(npol):
            pol_kfpu_end(p, c, a, PP, PC, PT, T, FS, full)
    elif pk == K_USER_RETURN:
        if restored != 0 and deferred_evidence:
            unexplained_restore(c, a, PP, PC, PT, T, S, FS)
        apply_user_return(c, a, PP, PC, PT, T, S, FS)
    C[c, CF_PEND_KIND] = 0
    C[c, CF_PEND_SAVED] = 0
    C[c, CF_PEND_NEW] = 0


@njit(cache=True, inline="always")
def flush_elsewhere(c, t, PP, PC, PT, T, C, S, FS):
    """Task ``t`` shows up on CPU ``c``: an action still held back for it on another CPU must be
    replayed first (its own save/restore would have come before the task could run here)."""
    o = T[t, TF_PEND_CPU] - 1
    if o < 0 or o == c:
        return
    if C[o, CF_PEND_KIND] != 0 and (C[o, CF_PEND_A] == t or C[o, CF_PEND_B] == t):
        flush_pending(o, 0, PP, PC, PT, T, C, S, FS)
    T[t, TF_PEND_CPU] = 0


@njit(cache=True, inline="always")
def hold(c, kind, a, b, inferred, is_new, C, T, arg=0):
    T[a, TF_PEND_CPU] = c + 1
    if b >= 0:
        T[b, TF_PEND_CPU] = c + 1
    C[c, CF_PEND_KIND] = kind
    C[c, CF_PEND_A] = a
    C[c, CF_PEND_B] = b
    C[c, CF_PEND_SAVED] = 0
    C[c, CF_PEND_INF] = inferred
    C[c, CF_PEND_NEW] = is_new
    C[c, CF_PEND_ARG] = arg


@njit(cache=True, inline="always")
def hist_bucket(ns):
    b = 0
    while ns > 0 and b < NHIST - 1:
        ns >>= 1
        b += 1
    return b


# ---------------------------------------------------------------- the loop

@njit(cache=True, nogil=True)
def run_batch(ts, kind, cpu, tid, tgid, a0, a1, flags, caller_idx, start, out_idx, out_other,
              slot, T, PT, C, PC, PP, S, FS, CA, KH, RATE, RSEC, OTS, OOWN, OHEAD):
    n = ts.shape[0]
    npol = S[S_NPOL]
    full = S[S_FULL_MASK]
    cap = T.shape[0]
    for i in range(start, n):
        if S[S_NTASKS] + 3 > cap:
            return i                       # Python grows the task table and calls again
        k = np.int64(kind[i])
        c = np.int64(cpu[i])
        t_ns = np.int64(ts[i])
        S[S_NEVENTS] += 1
        if S[S_FIRST_TS] < 0:
            S[S_FIRST_TS] = t_ns
        S[S_LAST_TS] = t_ns
        inferred = np.int64(flags[i]) & 1
        S[S_INFERRED] += inferred

        if k == K_LOST:
            C[c, CF_PEND_KIND] = 0         # the held-back action may be half of what was lost
            S[S_LOST] += np.int64(a0[i] & MASK63)
            C[c, CF_LOST] += np.int64(a0[i] & MASK63)
            cur = C[c, CF_CUR]
            if cur >= 0:
                T[cur, TF_GAP] = 1
            C[c, CF_CUR] = -1
            C[c, CF_UNKNOWN] = 1
            C[c, CF_KFPU_OPEN] = 0
            set_owner(c, OWN_UNKNOWN, t_ns, C, T, OTS, OOWN, OHEAD)
            for p in range(npol):
                PC[p, c] = OWN_UNKNOWN
            S[S_GAP] = 1
            out_idx[i] = -1
            continue

        t = get_task(np.int64(tid[i]), slot, T, PT, S, npol)
        out_idx[i] = t
        if k == K_TASK:
            T[t, TF_KTHREAD] = 1 if (a0[i] & 1) != 0 else 0
            T[t, TF_TGID] = np.int64(tgid[i])
            continue
        if k == K_COMM:
            T[t, TF_TGID] = np.int64(tgid[i])
            continue
        is_new = 0                         # first sight of the task in an FPU/scheduler event
        if T[t, TF_FIRST_TS] < 0:
            is_new = 1
            T[t, TF_FIRST_TS] = t_ns
            T[t, TF_TGID] = np.int64(tgid[i])
        T[t, TF_LAST_TS] = t_ns
        if C[c, CF_UNKNOWN] != 0:
            T[t, TF_GAP] = 1

        if (k == K_XSAVE or k == K_XRSTOR) and (a0[i] & MASK63) != 0:
            T[t, TF_XFEAT] = np.int64(a0[i] & MASK63)   # before the replay sizes its own save
        # --- resolve held-back actions: the task's on other CPUs, then this CPU's
        if T[t, TF_PEND_CPU] != 0:
            flush_elsewhere(c, t, PP, PC, PT, T, C, S, FS)
        if k == K_SWITCH:
            nx = slot[np.int64(a0[i] & 0xFFFFFFFF)]
            if nx >= 0 and T[nx, TF_PEND_CPU] != 0:
                flush_elsewhere(c, nx, PP, PC, PT, T, C, S, FS)
        pk = C[c, CF_PEND_KIND]
        consumed = 0
        if pk != 0:
            pa = C[c, CF_PEND_A]
            if pk == K_SWITCH and k == K_XSAVE and t == pa and C[c, CF_PEND_SAVED] == 0:
                C[c, CF_PEND_SAVED] = 1    # the switch-out save; the switch-in restore may follow
                consumed = XS_SWITCH
                if (S[S_REC_DEFERRED] != 0 or S[S_UR_ASSUMED] != 0) and T[t, TF_DEAD] == 0:
                    apply_user_return(c, t, PP, PC, PT, T, S, FS)   # evidence: before the switch
            elif (pk == K_SWITCH and k == K_XRSTOR and t == C[c, CF_PEND_B]
                  and S[S_REC_DEFERRED] == 0):     # eager kernels restore at switch-in
                flush_pending(c, 1, PP, PC, PT, T, C, S, FS)
                consumed = XR_SWITCH_IN
            elif pk == K_KFPU_BEGIN and k == K_XSAVE and t == pa:
                C[c, CF_PEND_SAVED] = 1
                flush_pending(c, 0, PP, PC, PT, T, C, S, FS)
                consumed = XS_KFPU
            elif pk == K_KFPU_END and k == K_XRSTOR and t == pa and S[S_REC_DEFERRED] == 0:
                flush_pending(c, 1, PP, PC, PT, T, C, S, FS)
                consumed = XR_KFPU_END
            elif pk == K_USER_RETURN and k == K_XRSTOR and t == pa:
                flush_pending(c, 1, PP, PC, PT, T, C, S, FS)
                consumed = XR_USER_RETURN
            else:
                flush_pending(c, 0, PP, PC, PT, T, C, S, FS)

        if k == K_SWITCH:
            nxt = get_task(np.int64(a0[i] & 0xFFFFFFFF), slot, T, PT, S, npol)
            out_other[i] = nxt
            nxt_new = T[nxt, TF_FIRST_TS] < 0
            if nxt_new:
                T[nxt, TF_FIRST_TS] = t_ns
            T[nxt, TF_LAST_TS] = t_ns
            hold(c, K_SWITCH, t, nxt, 0, is_new, C, T, np.int64(a1[i]))
            if T[t, TF_DEAD] == 0:
                T[t, TF_STATE] = ST_SLEEPING
            else:
                T[t, TF_STATE] = ST_EXITED
            T[nxt, TF_STATE] = ST_KERNEL
            T[nxt, TF_LAST_CPU] = c
            C[c, CF_CUR] = nxt
            if nxt_new and T[nxt, TF_KTHREAD] == 0:
                for p in range(npol):     # first sight of a task being switched in
                    PT[p, nxt, PF_NEEDLOAD] = 1
        elif k == K_KFPU_BEGIN:
            if S[S_UR_ASSUMED] != 0:      # (before its registers are taken: see set_owner)
                apply_user_return(c, t, PP, PC, PT, T, S, FS)
            hold(c, K_KFPU_BEGIN, t, -1, inferred, is_new, C, T)
            C[c, CF_KFPU_OPEN] = 1
            C[c, CF_KFPU_TS] = t_ns
            C[c, CF_KFPU_CALLER] = caller_idx[i]
            C[c, CF_KFPU_TASK] = t
            C[c, CF_KFPU_INF] = inferred
            C[c, CF_CUR] = t
            if T[t, TF_KTHREAD] == 0:
                T[t, TF_STATE] = ST_KERNEL
            set_owner(c, OWN_KERNEL, t_ns, C, T, OTS, OOWN, OHEAD)
            C[c, CF_UNKNOWN] = 0
        elif k == K_KFPU_END:
            hold(c, K_KFPU_END, t, -1, inferred, is_new, C, T)
            ci = caller_idx[i]
            if C[c, CF_KFPU_OPEN] != 0:
                if ci < 0:
                    ci = C[c, CF_KFPU_CALLER]
                dur = t_ns - C[c, CF_KFPU_TS]
                inf = inferred | C[c, CF_KFPU_INF]
            else:
                dur = -1                   # began before the trace (or in a gap): no duration
                inf = inferred
            C[c, CF_KFPU_OPEN] = 0
            C[c, CF_KFPU] += 1
            T[t, TF_KFPU] += 1
            if inf != 0:
                T[t, TF_KFPU_INF] += 1
            if ci >= 0:
                CA[ci, CA_SECTIONS] += 1
                if inf != 0:
                    CA[ci, CA_INFERRED] += 1
            if dur >= 0 and inf == 0:
                b = hist_bucket(dur)
                KH[b] += 1
                T[t, TF_KFPU_NS] += dur
                if dur > T[t, TF_KFPU_MAX_NS]:
                    T[t, TF_KFPU_MAX_NS] = dur
                if ci >= 0:
                    CA[ci, CA_TOTAL_NS] += dur
                    if dur > CA[ci, CA_MAX_NS]:
                        CA[ci, CA_MAX_NS] = dur
                    CA[ci, CA_HIST + b] += 1
            elif inf == 0:
                S[S_KFPU_UNTIMED] += 1
            if C[c, CF_OWNER] == OWN_KERNEL:
                set_owner(c, OWN_NONE, t_ns, C, T, OTS, OOWN, OHEAD)
        elif k == K_USER_RETURN:
            S[S_HAS_UR_EVENTS] = 1
            hold(c, K_USER_RETURN, t, -1, inferred, is_new, C, T)
            C[c, CF_CUR] = t
        elif k == K_XSAVE:
            xf = np.int64(a0[i] & MASK63)
            cause = np.int64(a1[i])
            if cause == XS_UNKNOWN or cause >= NCAUSE:
                if consumed != 0:
                    cause = consumed
                elif C[c, CF_LAST_KIND] == K_FORK and C[c, CF_LAST_TASK] == t:
                    cause = XS_FORK
                elif C[c, CF_KVM] != 0:
                    cause = XS_KVM
                else:
                    cause = XS_UNKNOWN
            if xf != 0:
                T[t, TF_XFEAT] = xf
            nbytes = xstate_bytes(xf if xf != 0 else T[t, TF_XFEAT], FS, full)
            T[t, TF_XS + cause] += 1
            T[t, TF_XS_BYTES] += nbytes
            C[c, CF_XSAVE] += 1
            bump_rate(c, t_ns, 0, RATE, RSEC)
            if T[t, TF_PENDING] != 0 and (cause == XS_SWITCH or cause == XS_KFPU):
                T[t, TF_AVOID] += 1        # (a fork/signal copy keeps the registers: not wasted)
                T[t, TF_PENDING] = 0
            if C[c, CF_OWNER] == OWN_UNKNOWN and consumed == XS_SWITCH:
                set_owner(c, t, t_ns, C, T, OTS, OOWN, OHEAD)   # its state was in the registers
                C[c, CF_UNKNOWN] = 0
            if consumed == 0:              # not a policy decision: the same under every policy
                for p in range(npol):
                    PT[p, t, PF_XSAVE] += 1
                    PT[p, t, PF_BYTES] += nbytes
        elif k == K_XRSTOR:
            if is_new != 0 and T[t, TF_KTHREAD] == 0:
                for p in range(npol):     # first sight is a restore: its state was in memory
                    PT[p, t, PF_NEEDLOAD] = 1
            xf = np.int64(a0[i] & MASK63)
            cause = np.int64(a1[i])
            if cause >= NCAUSE:
                cause = XR_UNKNOWN
            if cause == XR_UNKNOWN:
                if consumed != 0:
                    cause = consumed
                elif C[c, CF_LAST_KIND] == K_EXEC and C[c, CF_LAST_TASK] == t:
                    cause = XR_INIT
                elif C[c, CF_KVM] != 0:
                    cause = XR_KVM
                elif S[S_REC_DEFERRED] != 0 and S[S_HAS_UR_EVENTS] == 0:
                    cause = XR_USER_RETURN     # tracepoint mode: regs_activated on the return path
            if xf != 0:
                T[t, TF_XFEAT] = xf
            nbytes = xstate_bytes(xf if xf != 0 else T[t, TF_XFEAT], FS, full)
            T[t, TF_XR + cause] += 1
            T[t, TF_XR_BYTES] += nbytes
            C[c, CF_XRSTOR] += 1
            bump_rate(c, t_ns, 1, RATE, RSEC)
            set_owner(c, t, t_ns, C, T, OTS, OOWN, OHEAD)
            C[c, CF_UNKNOWN] = 0
            C[c, CF_CUR] = t
            T[t, TF_LAST_CPU] = c
            if consumed == XR_USER_RETURN:
                T[t, TF_PENDING] = 0
            elif consumed != 0:
                T[t, TF_PENDING] = 1       # restored ahead of use: avoidable if thrown away first
            elif cause == XR_USER_RETURN:
                unexplained_restore(c, t, PP, PC, PT, T, S, FS)
                apply_user_return(c, t, PP, PC, PT, T, S, FS)
            else:                          # sigreturn, exec, KVM, ...: the same under every policy
                for p in range(npol):
                    pol_restore(p, t, c, 0, PC, PT, T, FS, full)
                    PT[p, t, PF_BYTES] += nbytes - xstate_bytes(T[t, TF_XFEAT], FS, full)
                T[t, TF_PENDING] = 0
        elif k == K_FORK:
            child_tid = np.int64(a0[i] & 0xFFFFFFFF)
            ch = slot[child_tid]
            if ch < 0 or T[ch, TF_FIRST_TS] >= 0:   # a named-only entry is this child; else reuse
                ch = new_task(child_tid, slot, T, PT, S, npol)
            out_other[i] = ch
            T[ch, TF_TGID] = np.int64(a1[i] & 0xFFFFFFFF)
            T[ch, TF_KTHREAD] = T[t, TF_KTHREAD]
            T[ch, TF_XFEAT] = T[t, TF_XFEAT]
            T[ch, TF_FIRST_TS] = t_ns
            T[ch, TF_LAST_TS] = t_ns
            T[ch, TF_STATE] = ST_SLEEPING
            for p in range(npol):
                PT[p, ch, PF_NEEDLOAD] = 1
        elif k == K_EXEC:
            T[t, TF_XFEAT] = 3             # x87 + SSE: a fresh image starts in init state
            if C[c, CF_OWNER] == t:
                set_owner(c, OWN_NONE, t_ns, C, T, OTS, OOWN, OHEAD)
        elif k == K_EXIT:
            T[t, TF_DEAD] = 1
            T[t, TF_STATE] = ST_EXITED
            T[t, TF_PENDING] = 0           # dying is not "thrown away before use"
            for p in range(npol):
                PT[p, t, PF_PENDING] = 0
            if C[c, CF_OWNER] == t:
                set_owner(c, OWN_NONE, t_ns, C, T, OTS, OOWN, OHEAD)
        elif k == K_KVM:
            C[c, CF_KVM] = 1 if a0[i] != 0 else 0
            if a0[i] != 0:
                set_owner(c, OWN_NONE, t_ns, C, T, OTS, OOWN, OHEAD)   # guest state in the regs
                for p in range(npol):
                    pol_invalidate(p, c, PC, PT)
        C[c, CF_LAST_KIND] = k
        C[c, CF_LAST_TASK] = t
    return n


@njit(cache=True)
def flush_all(ncpu, PP, PC, PT, T, C, S, FS):
    """End of the stream: replay every CPU's held-back action as if nothing followed it."""
    for c in range(ncpu):
        flush_pending(c, 0, PP, PC, PT, T, C, S, FS)
