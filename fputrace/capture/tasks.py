"""The task table at the start of a capture, from /proc: COMM and TASK records (events.py).

Later changes come from the BPF side (comm at fork and exec, kthreads as children of kthreadd).
"""
from __future__ import annotations

import os

import numpy as np

from ..events import EVENT_DTYPE, TASK_KTHREAD, Kind, comm_to_args

PF_KTHREAD = 0x00200000
PF_USER_WORKER = 0x00004000     # io_uring / vhost workers (6.4+): no user FPU state either


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:              # the task exited while we looked
        return None


def _stat_flags(stat: str) -> int:
    # comm may contain spaces and parentheses: fields restart after the last ')'
    rest = stat[stat.rfind(")") + 2:].split()
    return int(rest[6])          # field 9 of proc(5): flags


def snapshot(ts_ns: int) -> np.ndarray:
    rows = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            comm = _read(f"{base}/comm")
            stat = _read(f"{base}/stat")
            if comm is None or stat is None:
                continue
            try:
                flags = _stat_flags(stat)
            except (IndexError, ValueError):
                flags = 0
            rows.append((int(tid), int(pid), comm.rstrip("\n"), flags))
    out = np.zeros(2 * len(rows), dtype=EVENT_DTYPE)
    for i, (tid, tgid, comm, flags) in enumerate(rows):
        a0, a1 = comm_to_args(comm)
        kthread = bool(flags & (PF_KTHREAD | PF_USER_WORKER))
        out[2 * i] = (ts_ns, a0, a1, tid, tgid, 0, Kind.COMM, 0, 0)
        out[2 * i + 1] = (ts_ns, TASK_KTHREAD if kthread else 0, 0, tid, tgid, 0, Kind.TASK, 0, 0)
    return out
