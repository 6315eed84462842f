"""Hand-made model pictures for the dashboard's renderer tests (no model, no kernel needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from fputrace.events import EVENT_DTYPE
from fputrace.model.snapshot import (KERNEL, NONE, TASK, UNKNOWN, CpuView, OwnerInterval,
                                     PolicyView, Snapshot, TaskDetail)

S = 1_000_000_000
META = {"host": "testhost", "kernel_release": "6.18.0-test", "capture_mode": "tracepoint",
        "modes": {"switch_save": {"attach": "tracepoint:x86_fpu:x86_fpu_regs_deactivated", "exact": True},
                  "user_return_restore": {"attach": "tracepoint:x86_fpu:x86_fpu_regs_activated",
                                          "exact": True},
                  "kfpu": {"attach": "inference:raw_syscalls", "exact": False}},
        "xstate": {"features": [{"name": n} for n in ("x87", "SSE", "AVX", "PKRU")],
                   "total_bytes": 832}}


def hand_made_snapshot(now_ns: int = 20 * S, lost: int = 0) -> Snapshot:
    w = 10 * S
    t0 = now_ns - w
    cpu0 = CpuView(0, TASK, 101, "firefox", (
        OwnerInterval(t0, t0 + 3 * S, TASK, 101), OwnerInterval(t0 + 3 * S, t0 + 4 * S, KERNEL),
        OwnerInterval(t0 + 4 * S, t0 + 7 * S, TASK, 202), OwnerInterval(t0 + 7 * S, now_ns, TASK, 101)),
        tuple(float(x) for x in range(10)), tuple(float(2 * x) for x in range(10)))
    cpu1 = CpuView(1, UNKNOWN if lost else NONE, 0, "", (
        OwnerInterval(t0, t0 + 5 * S, NONE), OwnerInterval(t0 + 5 * S, now_ns, UNKNOWN)),
        (0.0,) * 10, (1.0,) * 10)
    tasks = pd.DataFrame({
        "tid": [101, 202, 7], "tgid": [101, 202, 7], "comm": ["firefox", "cc1", "kworker/0:1"],
        "kthread": [False, False, True], "xsave": [1500, 300, 0], "xrstor": [1400, 350, 0],
        "avoidable_xrstor": [0, 12, 0], "kfpu_sections": [40, 0, 900], "kfpu_ns": [50_000, 0, 2_000_000],
        "state": ["user", "sleeping", "kernel"], "last_cpu": [0, 0, 1],
        "generation": [0, 0, 0], "bytes": [2432 * 2900, 832 * 650, 0],
        "components": ["SSE+AVX+AVX-512", "SSE+AVX", "-"], "xstate_rank": [2, 1, 0],
        "bytes_per_xsave": [2432.0, 832.0, 0.0], "bytes_share": [0.93, 0.07, 0.0],
        "cycles_share": [0.9, 0.1, 0.0], "avoidable_bytes": [0, 12 * 832, 0],
        "fputrace_own": [False, False, False]})
    callers = pd.DataFrame({"caller": ["sha256_avx2_update+0x3c", "xor_avx_5+0x12"],
                            "sections": [900, 40], "total_ns": [2_000_000, 50_000],
                            "max_ns": [9_000, 4_000], "p99_ns": [7_000, 3_500]})
    hist = pd.DataFrame({"lo_ns": [512, 1024, 2048, 4096, 8192], "count": [100, 500, 300, 39, 1]})
    policies = (PolicyView("eager", 2000, 2600, 700, 2_000_000, 1.1e6),
                PolicyView("deferred", 1800, 1750, 12, 1_500_000, 0.8e6))
    return Snapshot(now_ns=now_ns, window_ns=w, events=123_456, lost_events=lost,
                    gap_flagged=bool(lost), cpus=(cpu0, cpu1), tasks=tasks, kfpu_callers=callers,
                    kfpu_hist=hist, policies=policies, recorded_policy="deferred", self_check=0.998,
                    cost_model="builtin-epyc", inferred_kinds=("KFPU_BEGIN",) if True else (),
                    # what the model computes (eager minus deferred; the panel only draws it)
                    difference=PolicyView("saved", 200, 850, 688, 500_000, 0.3e6),
                    xrstor_fewer_pct=100 * 850 / 2600)


def hand_made_detail(tid: int = 101, now_ns: int = 20 * S) -> TaskDetail:
    causes = pd.DataFrame({"kind": ["XSAVE", "XSAVE", "XRSTOR"], "cause": ["switch", "kfpu", "user-return"],
                           "count": [1400, 100, 1400], "avoidable": [0, 0, 0]})
    timeline = pd.DataFrame({"start_ns": [now_ns - 8 * S, now_ns - 5 * S, now_ns - 4 * S],
                             "end_ns": [now_ns - 5 * S, now_ns - 4 * S, now_ns],
                             "state": ["regs:0", "memory", "regs:1"]})
    return TaskDetail(tid, tid, "firefox", causes, timeline)


class HandModel:
    """Model stand-in that counts what it is fed and answers with the hand-made picture."""

    def __init__(self, lost: int = 0) -> None:
        self.fed_events = 0
        self.lost_records = 0          # LOST events received
        self.lost_seen = 0             # sum of their counts
        self.lost = lost
        self.last_ts = 0

    def feed(self, batch: np.ndarray) -> None:
        self.fed_events += len(batch)
        lost = batch["kind"] == 11
        self.lost_records += int(lost.sum())
        self.lost_seen += int(batch["a0"][lost].sum())
        if len(batch):
            self.last_ts = int(batch["ts_ns"][-1])

    def snapshot(self, window_ns: int, final: bool = False) -> Snapshot:
        return hand_made_snapshot(lost=self.lost + self.lost_seen)

    def task_detail(self, tid: int, final: bool = False) -> TaskDetail:
        return hand_made_detail(tid)


def synthetic_events(n: int, t0_ns: int = 0, span_ns: int = 20 * S, cpus: int = 2) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["ts_ns"] = t0_ns + np.linspace(0, span_ns, n, dtype=np.int64)
    ev["cpu"] = np.arange(n) % cpus
    ev["kind"] = 4
    ev["tid"] = 101
    return ev


class PacedProducer:
    """A capture stand-in: ``rate`` events/s in batches of ``batch`` events, on the wall clock,
    for ``seconds`` (then empty polls). Timestamps advance with the wall clock, like the kernel's."""

    def __init__(self, rate: float, seconds: float, batch: int = 5000, meta: dict | None = None,
                 make=None) -> None:
        import time
        self.meta = dict(meta or META)
        self.rate, self.seconds, self.batch = rate, seconds, batch
        self.t0 = time.monotonic()
        self.sent = 0
        self.closed = False
        self._make = make or (lambda n, t0_ns: synthetic_events(n, t0_ns, int(n / rate * 1e9)))

    def poll(self, timeout_s: float) -> list:
        import time
        now = time.monotonic() - self.t0
        due = int(min(now, self.seconds) * self.rate)
        out = []
        while self.sent + self.batch <= due:
            out.append(self._make(self.batch, int((self.sent / self.rate) * 1e9)))
            self.sent += self.batch
        if not out:
            time.sleep(min(timeout_s, self.batch / self.rate))
        return out

    @property
    def finished(self) -> bool:
        import time
        return time.monotonic() - self.t0 >= self.seconds and self.sent + self.batch > self.seconds * self.rate

    def close(self) -> None:
        self.closed = True


# An AMX host's xstate (XCR0 0x602e7, compacted): a save of x87/SSE moves 576 B, +AVX 832,
# +AVX-512 2432, +AMX tile data 10,696 (576 + 256 + 64 + 512 + 1024 + 8 + 64 + 8192)
AMX_META = {"xstate": {"xcr0": "0x602e7", "compacted": True, "total_bytes": 11008, "features": [
    {"bit": 0, "name": "x87", "size_bytes": 160, "offset": 0},
    {"bit": 1, "name": "sse", "size_bytes": 256, "offset": 160},
    {"bit": 2, "name": "avx", "size_bytes": 256, "offset": 576},
    {"bit": 5, "name": "opmask", "size_bytes": 64, "offset": 832},
    {"bit": 6, "name": "zmm_hi256", "size_bytes": 512, "offset": 896},
    {"bit": 7, "name": "hi16_zmm", "size_bytes": 1024, "offset": 1408},
    {"bit": 9, "name": "pkru", "size_bytes": 8, "offset": 2432},
    {"bit": 17, "name": "tilecfg", "size_bytes": 64, "offset": 2440},
    {"bit": 18, "name": "tiledata", "size_bytes": 8192, "offset": 2504}]},
    "recorded_policy": "deferred", "kernel_release": "6.12.0", "nr_cpus": 1, "host": "hand-made",
    "modes": {e: {"attach": "fentry", "exact": True}
              for e in ("kfpu_begin", "kfpu_end", "xsave", "xrstor", "user_return")}}


def xstate_scenario() -> str:
    """Four tasks on one CPU, each saving and restoring its own state class, the smallest state
    the busiest (so ``components`` order is the reverse of XSAVE order): S (SSE) 9 rounds,
    V (AVX) 7, Z (AVX-512) 5, M (AVX-512 and AMX) 3, N (AVX and AMX, no AVX-512: 9,088 B a save)
    4: N moves more bytes than M, and its label sorts below Z's as a string."""
    text = "task S 400\ntask V 300\ntask Z 200\ntask M 100\ntask N 150\n"
    for name, xf, rounds in (("S", "0x3", 9), ("V", "0x7", 7), ("Z", "0xe7", 5),
                             ("M", "0x602e7", 3), ("N", "0x60007", 4)):
        text += f"""
            0 {name} USER_RETURN
        """ + f"""
            0 {name} KFPU_BEGIN caller=0xffffffff81a00010
            0 {name} XSAVE xf={xf}
            0 {name} KFPU_END caller=0xffffffff81a000f0
            0 {name} USER_RETURN
            0 {name} XRSTOR xf={xf}
        """ * rounds
    return text
