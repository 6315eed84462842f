"""A small DSL for hand-made event streams (one line per event), built straight into EVENT_DTYPE.

    events = build('''
        task A 100          # user task "A" is tid 100 (tgid = tid unless given: task A 101 100)
        kthread K 7         # kernel thread (emits a TASK record with TASK_KTHREAD)
        0 A KFPU_BEGIN caller=0xffffffff81000010
        0 A XSAVE xf=0x7
        0 A KFPU_END
        @5000 0 A SWITCH B blocked     # "@ts" sets the time (ns); else +1000 ns per line
        1 B XRSTOR inferred            # flags: "inferred"
    ''')

Fields: ``[@ts] cpu task KIND [args]``. Args by kind: SWITCH next [blocked|preempted|zombie];
XSAVE/XRSTOR [xf=N] [cause=NAME]; KFPU_BEGIN/END [caller=ADDR]; FORK child [tgid=N];
KVM_FPU 1|0; LOST n. Task names must be declared (``task``/``kthread``) or be numbers.
"""
from __future__ import annotations

import numpy as np

from fputrace.events import (EVENT_DTYPE, FLAG_INFERRED, KIND_BY_NAME, TASK_KTHREAD, Kind,
                             XrstorCause, XsaveCause, comm_to_args)


def build(text: str, step_ns: int = 1000) -> np.ndarray:
    tids: dict[str, tuple[int, int]] = {"idle": (0, 0)}
    rows = []
    ts = 0

    def tid_of(name: str) -> tuple[int, int]:
        if name in tids:
            return tids[name]
        return int(name), int(name)

    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] in ("task", "kthread"):
            name, tid = words[1], int(words[2])
            tgid = int(words[3]) if len(words) > 3 else tid
            tids[name] = (tid, tgid)
            a0, a1 = comm_to_args(name)
            rows.append((ts, a0, a1, tid, tgid, 0, Kind.COMM, 0))
            if words[0] == "kthread":
                rows.append((ts, TASK_KTHREAD, 0, tid, tgid, 0, Kind.TASK, 0))
            continue
        if words[0].startswith("@"):
            ts = int(words.pop(0)[1:])
        else:
            ts += step_ns
        cpu, who, kind_name, args = int(words[0]), words[1], words[2].upper(), words[3:]
        kind = KIND_BY_NAME[kind_name]
        tid, tgid = tid_of(who)
        flags = FLAG_INFERRED if "inferred" in args else 0
        args = [a for a in args if a != "inferred"]
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        a0 = a1 = 0
        if kind == Kind.SWITCH:
            a0 = tid_of(pos[0])[0]
            state = pos[1] if len(pos) > 1 else "preempted"      # prev_state (TASK_REPORT bits)
            a1 = {"blocked": 1, "preempted": 0, "zombie": 0x20}[state]
        elif kind in (Kind.XSAVE, Kind.XRSTOR):
            a0 = int(kv.get("xf", "0"), 0)
            causes = XsaveCause if kind == Kind.XSAVE else XrstorCause
            a1 = int(causes[kv["cause"].upper()]) if "cause" in kv else 0
        elif kind in (Kind.KFPU_BEGIN, Kind.KFPU_END):
            a1 = int(kv.get("caller", "0"), 0)
        elif kind == Kind.FORK:
            child = tid_of(pos[0])
            a0, a1 = child[0], int(kv.get("tgid", child[1]))
        elif kind in (Kind.KVM_FPU, Kind.LOST):
            a0 = int(pos[0])
        rows.append((ts, a0, a1, tid, tgid, cpu, kind, flags))
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (t, a0, a1, tid, tgid, cpu, kind, flags) in enumerate(rows):
        out[i] = (t, a0, a1, tid, tgid, cpu, int(kind), flags, 0)
    return out
