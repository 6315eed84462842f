"""Column indices of the model's state arrays (shared by the numba engine and the Python views).

The engine keeps all state in a few int64 arrays so that one compiled loop can update it and the
views can read it with numpy (no per-task Python objects). Growing an array = concatenating zeros.
"""
from __future__ import annotations

from fputrace.events import XrstorCause, XsaveCause

# Owner codes of a CPU's registers (>= 0: dense task index = that task's user state is valid there).
OWN_NONE, OWN_KERNEL, OWN_UNKNOWN = -1, -2, -3

NCAUSE = 8                       # room for XsaveCause / XrstorCause values 0..7

# --- per task: T[task, TF_*] ---
(TF_TID, TF_TGID, TF_KTHREAD, TF_DEAD, TF_GEN, TF_XFEAT, TF_GAP, TF_KFPU, TF_KFPU_INF, TF_KFPU_NS,
 TF_KFPU_MAX_NS, TF_AVOID, TF_PENDING, TF_STATE, TF_OWNER_CPU, TF_LAST_CPU, TF_XS_BYTES,
 TF_XR_BYTES, TF_FIRST_TS, TF_LAST_TS, TF_PEND_CPU, TF_XS_UNSEEN) = range(22)
TF_XS = 22                       # TF_XS + XsaveCause: measured XSAVE count per cause
TF_XR = TF_XS + NCAUSE           # TF_XR + XrstorCause: measured XRSTOR count per cause
NTF = TF_XR + NCAUSE

# task states (TF_STATE)
ST_UNKNOWN, ST_USER, ST_KERNEL, ST_SLEEPING, ST_EXITED = range(5)
STATE_NAMES = ("unknown", "user", "kernel", "sleeping", "exited")

# --- per policy and task: PT[policy, task, PF_*] ---
PF_XSAVE, PF_XRSTOR, PF_AVOID, PF_BYTES, PF_NEEDLOAD, PF_PENDING, PF_LASTCPU = range(7)
NPF = 7

# --- per CPU: C[cpu, CF_*] ---
(CF_CUR, CF_OWNER, CF_UNKNOWN, CF_KFPU_OPEN, CF_KFPU_TS, CF_KFPU_CALLER, CF_KFPU_TASK, CF_KFPU_INF,
 CF_PEND_KIND, CF_PEND_A, CF_PEND_B, CF_PEND_SAVED, CF_PEND_INF, CF_PEND_NEW, CF_LAST_KIND,
 CF_LAST_TASK, CF_XSAVE, CF_XRSTOR, CF_KFPU, CF_LOST, CF_KVM, CF_PEND_ARG) = range(22)
NCF = 22

# --- scalars: S[S_*] ---
(S_NTASKS, S_NEVENTS, S_LOST, S_UNEXPLAINED, S_HAS_UR_EVENTS, S_REC_DEFERRED, S_UR_ASSUMED,
 S_REC_POLICY, S_FIRST_TS, S_LAST_TS, S_INFERRED, S_GAP, S_NCALLERS, S_FULL_MASK, S_NPOL,
 S_KFPU_UNTIMED, S_UNSEEN_SAVES, S_KFPU_EXACT, S_EXIT_STATES) = range(19)
NS = 19

# --- per caller: CA[caller, CA_*] (+ power-of-two histogram) ---
CA_SECTIONS, CA_TOTAL_NS, CA_MAX_NS, CA_INFERRED = range(4)
CA_HIST = 4
NHIST = 48                       # bucket b counts sections with 2^(b-1) <= ns < 2^b (b=0: 0 ns)
NCA = CA_HIST + NHIST

# --- policy parameters: PP[policy, PP_*] ---
PP_EAGER, PP_VALIDITY = range(2)

RATE_SLOTS = 1024                # per-CPU ring of 1-second XSAVE/XRSTOR counters
OWNER_RING = 1 << 14             # per-CPU ring of owner changes (for the dashboard strips)

XSAVE_CAUSE_NAMES = {c.value: c.name.lower() for c in XsaveCause}
XRSTOR_CAUSE_NAMES = {c.value: c.name.lower() for c in XrstorCause}
