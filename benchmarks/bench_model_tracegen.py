"""Synthetic FPU traces: a small simulated kernel (eager or deferred restore) emitting EVENT_DTYPE.

Used by the model benchmark (tens of millions of events, generated in chunks so memory stays flat)
and by the property tests (small traces from a hypothesis-drawn seed). The simulation follows the
kernel rules of SPEC 4/5.3: tasks run on CPUs, switch, make syscalls with kernel-FPU sections, block
inside the kernel, return to user, fork (reusing dead tids), exit; kernel threads use SIMD; the
events are what a probe-mode (or tracepoint-mode, with inference) capture would emit.

    gen = TraceGen(cpus=4, tasks=64, seed=1, policy="deferred", mode="probe")
    for batch in gen.chunks(total_events=1_000_000, chunk=262_144): ...
"""
from __future__ import annotations

import numpy as np
from numba import njit

from fputrace.events import EVENT_DTYPE, FLAG_INFERRED, TASK_KTHREAD, Kind, XrstorCause, XsaveCause

K_SWITCH, K_KB, K_KE, K_XS, K_XR, K_UR = (int(Kind.SWITCH), int(Kind.KFPU_BEGIN), int(Kind.KFPU_END),
                                           int(Kind.XSAVE), int(Kind.XRSTOR), int(Kind.USER_RETURN))
K_FORK, K_EXIT, K_LOST, K_TASK = int(Kind.FORK), int(Kind.EXIT), int(Kind.LOST), int(Kind.TASK)
XS_FORK = int(XsaveCause.FORK)
XR_UR = int(XrstorCause.USER_RETURN)
MODE_PROBE, MODE_TRACEPOINT = 0, 1

# generator state: G[...]
G_CLOCK, G_N, G_EAGER, G_MODE, G_LOST_PPM, G_NCPU, G_NTASK, G_NO_EXIT, G_EXIT_ODDS, G_FORK_ODDS, \
    G_NEXT_TID = range(11)
# task columns: TK[task, ...]
TK_TID, TK_KTHREAD, TK_ALIVE, TK_CPU, TK_INUSER, TK_NEED, TK_LAST = range(7)


@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@njit(cache=True)
def _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, kind, tid, a0, a1,
          flags):
    G[G_CLOCK] += 50 + (G[G_CLOCK] * 7919) % 199    # jitter without the RNG: modes share a path
    if DROP[c] > 0:                       # a lost stretch on this CPU: the kernel acted, we saw nothing
        DROP[c] -= 1
        return
    i = G[G_N]
    o_ts[i] = G[G_CLOCK]
    o_a0[i] = a0
    o_a1[i] = a1
    o_tid[i] = tid
    o_tgid[i] = tid
    o_cpu[i] = c
    o_kind[i] = kind
    o_flags[i] = flags
    G[G_N] = i + 1


@njit(cache=True)
def _fill(G, TK, CUR, OWN, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags):
    n_out = o_ts.shape[0]
    eager = G[G_EAGER] != 0
    probe = G[G_MODE] == MODE_PROBE
    ncpu, ntask = G[G_NCPU], G[G_NTASK]
    G[G_N] = 0
    while G[G_N] + 40 < n_out:
        c = np.random.randint(0, ncpu)
        if G[G_LOST_PPM] > 0 and np.random.randint(0, 1000000) < G[G_LOST_PPM]:
            lost = 1 + np.random.randint(0, 8)
            _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_LOST, 0,
                  lost, 0, 0)
            DROP[c] = lost
            continue
        x = CUR[c]
        if x < 0 or np.random.randint(0, 10) < 3:
            # switch: pick a runnable task (alive, not running) or idle
            y = np.random.randint(0, ntask)
            if TK[y, TK_ALIVE] == 0 or TK[y, TK_CPU] >= 0:
                y = -1
            if x < 0 and y < 0:
                continue
            exiting = (x >= 0 and TK[x, TK_KTHREAD] == 0 and np.random.randint(0, G[G_EXIT_ODDS]) == 0
                       and G[G_NO_EXIT] == 0)
            if exiting:                   # keep two user tasks alive, or the machine would stall
                alive = 0
                for j in range(ntask):
                    alive += TK[j, TK_ALIVE] * (1 - TK[j, TK_KTHREAD])
                exiting = alive > 2
            prev_tid = 0 if x < 0 else TK[x, TK_TID]
            next_tid = 0 if y < 0 else TK[y, TK_TID]
            if exiting:
                _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_EXIT,
                      prev_tid, 0, 0, 0)
                if OWN[c] == x:
                    OWN[c] = -1
                TK[x, TK_NEED] = 1        # fpu__drop: nothing left to save
            _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_SWITCH,
                  prev_tid, next_tid, 1 if TK[x, TK_INUSER] == 0 else 0, 0)
            if x >= 0:
                if TK[x, TK_KTHREAD] == 0 and (eager or TK[x, TK_NEED] == 0) and not exiting:
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_XS,
                          prev_tid, 0, 0, 0)
                    TK[x, TK_NEED] = 1
                    TK[x, TK_LAST] = c
                TK[x, TK_CPU] = -1
                if exiting:
                    TK[x, TK_ALIVE] = 0
            CUR[c] = y
            if y >= 0:
                TK[y, TK_CPU] = c
                TK[y, TK_INUSER] = 0
                if eager and TK[y, TK_KTHREAD] == 0:
                    if not (OWN[c] == y and TK[y, TK_LAST] == c):
                        _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                              K_XR, next_tid, 0, 0, 0)
                    OWN[c] = y
                    TK[y, TK_LAST] = c
                    TK[y, TK_NEED] = 0
            continue
        tid = TK[x, TK_TID]
        go_user = TK[x, TK_KTHREAD] == 0 and TK[x, TK_INUSER] == 0 and np.random.randint(0, 2) == 0
        if not go_user:
            # in the kernel (a syscall from user mode when it was there): some SIMD sections
            from_user = TK[x, TK_INUSER] != 0
            need_at_entry = TK[x, TK_NEED]
            TK[x, TK_INUSER] = 0
            nsec = np.random.randint(0, 4)
            for _ in range(nsec):
                caller = 0xffffffff81000000 + 0x100 * np.random.randint(0, 8)
                if probe:
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          K_KB, tid, 0, caller, 0)
                if TK[x, TK_KTHREAD] == 0 and (eager or TK[x, TK_NEED] == 0):
                    if probe:
                        _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                              K_XS, tid, 0, 0, 0)
                    TK[x, TK_NEED] = 1
                    TK[x, TK_LAST] = c
                OWN[c] = -1
                if probe:
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          K_KE, tid, 0, caller, 0)
                if eager and TK[x, TK_KTHREAD] == 0:
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          K_XR, tid, 0, 0, 0)
                    OWN[c] = x
                    TK[x, TK_LAST] = c
                    TK[x, TK_NEED] = 0
            if (not probe and from_user and need_at_entry == 0 and TK[x, TK_NEED] != 0
                    and TK[x, TK_KTHREAD] == 0):
                for kk in (K_KB, K_XS, K_KE):     # tracepoint mode: one inferred triple
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          kk, tid, 0, 0, FLAG_INFERRED)
            if TK[x, TK_KTHREAD] == 0 and np.random.randint(0, G[G_FORK_ODDS]) == 0:
                # fork: the child takes a dead slot (its tid is reused) if there is one
                ch = np.random.randint(0, ntask)
                if TK[ch, TK_ALIVE] == 0 and TK[ch, TK_KTHREAD] == 0:
                    if G[G_NEXT_TID] > 0:       # churn: the kernel hands out the next pid
                        TK[ch, TK_TID] = G[G_NEXT_TID]
                        G[G_NEXT_TID] = G[G_NEXT_TID] + 1 if G[G_NEXT_TID] < 4194303 else 300
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          K_FORK, tid, TK[ch, TK_TID], TK[ch, TK_TID], 0)
                    _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c,
                          K_XS, tid, 0, XS_FORK, 0)
                    TK[ch, TK_ALIVE] = 1
                    TK[ch, TK_NEED] = 1
                    TK[ch, TK_CPU] = -1
                    TK[ch, TK_INUSER] = 0
            if not (from_user and np.random.randint(0, 5) != 0):
                continue                  # stays in the kernel (blocks or returns later)
        # return to user mode (only reached for user tasks in the kernel: see above)
        TK[x, TK_INUSER] = 1
        if not eager and TK[x, TK_NEED] != 0:
            if probe:
                _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_UR,
                      tid, 0, 0, 0)
            if not (OWN[c] == x and TK[x, TK_LAST] == c):
                _emit(G, DROP, o_ts, o_a0, o_a1, o_tid, o_tgid, o_cpu, o_kind, o_flags, c, K_XR,
                      tid, 0, XR_UR if probe else 0, 0)
                OWN[c] = x
                TK[x, TK_LAST] = c
            TK[x, TK_NEED] = 0
    return G[G_N]


class TraceGen:
    def __init__(self, cpus: int = 4, tasks: int = 64, kthreads: int = 4, seed: int = 0,
                 policy: str = "deferred", mode: str = "probe", lost_ppm: int = 0,
                 exits: bool = True, churn: bool = False):
        self.cpus, self.tasks, self.kthreads = cpus, tasks, kthreads
        self.policy, self.mode = policy, mode
        n = tasks + kthreads
        self.G = np.zeros(11, dtype=np.int64)
        # churn (a fork storm): tasks exit after a few switches, forks are frequent, and every
        # child gets a fresh tid as the kernel's pid allocator would (wrapping at pid_max)
        self.G[G_EXIT_ODDS] = 3 if churn else 40
        self.G[G_FORK_ODDS] = 2 if churn else 12
        self.G[G_NEXT_TID] = 100_000 if churn else 0
        self.G[G_EAGER] = int(policy == "eager")
        self.G[G_MODE] = MODE_PROBE if mode == "probe" else MODE_TRACEPOINT
        self.G[G_LOST_PPM] = lost_ppm
        self.G[G_NO_EXIT] = int(not exits)       # no exits: a fixed task population (memory runs)
        self.G[G_NCPU], self.G[G_NTASK] = cpus, n
        self.TK = np.zeros((n, 7), dtype=np.int64)
        self.TK[:, TK_TID] = np.arange(n) + 1000
        self.TK[tasks:, TK_TID] = np.arange(kthreads) + 10
        self.TK[tasks:, TK_KTHREAD] = 1
        self.TK[:, TK_ALIVE] = 1
        self.TK[tasks - tasks // 8:tasks, TK_ALIVE] = 0     # free slots for forks (tid reuse)
        self.TK[:, TK_CPU] = -1
        self.TK[:, TK_NEED] = 1
        self.TK[:, TK_LAST] = -1
        self.CUR = np.full(cpus, -1, dtype=np.int64)
        self.OWN = np.full(cpus, -1, dtype=np.int64)
        self.DROP = np.zeros(cpus, dtype=np.int64)
        self.seed = seed
        self._started = False

    def meta(self) -> dict:
        exact = self.mode == "probe"
        modes = {e: {"attach": "fentry" if exact else "inferred", "exact": exact}
                 for e in ("kfpu_begin", "kfpu_end")}
        modes["xsave"] = {"attach": "fentry" if exact else "tracepoint", "exact": exact}
        modes["xrstor"] = {"attach": "fentry" if exact else "tracepoint", "exact": exact}
        modes["user_return"] = {"attach": "fentry" if exact and self.policy == "deferred" else "none",
                                "exact": exact and self.policy == "deferred"}
        return {"recorded_policy": self.policy, "nr_cpus": self.cpus,
                "kernel_release": "6.12.0" if self.policy == "deferred" else "4.19.0",
                "modes": modes}

    def header(self) -> np.ndarray:
        """TASK records naming the kernel threads (and the idle task)."""
        kt = np.concatenate([[0], self.TK[self.tasks:, TK_TID]])
        out = np.zeros(len(kt), dtype=EVENT_DTYPE)
        out["tid"] = kt
        out["tgid"] = kt
        out["kind"] = K_TASK
        out["a0"] = TASK_KTHREAD
        return out

    def batch(self, n: int) -> np.ndarray:
        if not self._started:
            _seed(self.seed)
            self._started = True
        out = np.zeros(n + 64, dtype=EVENT_DTYPE)
        k = _fill(self.G, self.TK, self.CUR, self.OWN, self.DROP, out["ts_ns"], out["a0"],
                  out["a1"], out["tid"], out["tgid"], out["cpu"], out["kind"], out["flags"])
        return out[:k]

    def chunks(self, total_events: int, chunk: int = 1 << 18):
        yield self.header()
        made = 0
        while made < total_events:
            b = self.batch(min(chunk, total_events - made + 64))
            made += len(b)
            yield b


def generate(events: int, **kw) -> tuple[dict, np.ndarray]:
    """A whole small trace in one array (tests)."""
    g = TraceGen(**kw)
    return g.meta(), np.concatenate(list(g.chunks(events, chunk=max(events, 128))))
