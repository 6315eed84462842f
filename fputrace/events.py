"""The normalised event model (SPEC 5.1): the one contract between capture, files, import and model.

Events travel as numpy structured arrays of ``EVENT_DTYPE`` (a *batch*), sorted by ``ts_ns``.
Every producer (BPF capture, file reader, perf-script and CSV import, synthetic generators in tests)
yields such batches; every consumer (recorder, model, views) takes them. Nothing else crosses.

Columns:
  ts_ns   CLOCK_MONOTONIC nanoseconds
  cpu     CPU the event happened on
  tid     the task the event is about (for SWITCH: the previous task)
  tgid    its thread group (process) id
  kind    a ``Kind`` code
  flags   bit field, ``FLAG_*``
  a0, a1  two arguments whose meaning depends on ``kind`` (table below)

  kind         a0                      a1
  SWITCH       next tid                prev state (0 = runnable/preempted, else blocked)
  KFPU_BEGIN   mask (kernel_fpu_begin_mask argument)   caller address (0 if unknown)
  KFPU_END     0                       caller address (0 if unknown)
  XSAVE        xfeatures (XSTATE_BV)   ``XsaveCause`` (UNKNOWN when the source cannot tell)
  XRSTOR       xfeatures               ``XrstorCause``
  USER_RETURN  0                       0
  FORK         child tid               child tgid
  EXEC         0                       0
  EXIT         0                       0
  KVM_FPU      1 = guest FPU loaded, 0 = put back      0
  LOST         number of events dropped on ``cpu``     0
  COMM         comm bytes 0..7 (little-endian)          comm bytes 8..15   (task-table record:
               names ``tid``; the model folds it into the task table, it is not an FPU fact)
  TASK         flags of the task, ``TASK_*`` bits      0   (task-table record, like COMM)
"""
from __future__ import annotations

import enum

import numpy as np


class Kind(enum.IntEnum):
    SWITCH = 1
    KFPU_BEGIN = 2
    KFPU_END = 3
    XSAVE = 4
    XRSTOR = 5
    USER_RETURN = 6
    FORK = 7
    EXEC = 8
    EXIT = 9
    KVM_FPU = 10
    LOST = 11
    COMM = 12
    TASK = 13


class XsaveCause(enum.IntEnum):
    UNKNOWN = 0
    SWITCH = 1
    KFPU = 2
    SYNC = 3
    FORK = 4
    SIGNAL = 5
    KVM = 6


class XrstorCause(enum.IntEnum):
    UNKNOWN = 0
    USER_RETURN = 1
    SWITCH_IN = 2
    KFPU_END = 3
    SIGNAL = 4
    KVM = 5
    INIT = 6


# flags column
FLAG_INFERRED = 1 << 0   # the mode could not observe this event directly (SPEC 5.4)

# TASK record a0 bits
TASK_KTHREAD = 1 << 0    # PF_KTHREAD or PF_USER_WORKER: no user FPU state, never saved/restored

EVENT_DTYPE = np.dtype([
    ("ts_ns", "<u8"),
    ("a0", "<u8"),
    ("a1", "<u8"),
    ("tid", "<u4"),
    ("tgid", "<u4"),
    ("cpu", "<u2"),
    ("kind", "u1"),
    ("flags", "u1"),
    ("_pad", "<u4"),
])  # 40 bytes, the layout of ``struct fpt_event`` in bpf/fputrace.h

KIND_NAMES = {k.value: k.name for k in Kind}
KIND_BY_NAME = {k.name: k.value for k in Kind}


def empty_batch(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def comm_to_args(comm: str | bytes) -> tuple[int, int]:
    """Pack a task name (at most 15 bytes + NUL) into the two arguments of a COMM event."""
    raw = comm.encode("utf-8", "replace") if isinstance(comm, str) else bytes(comm)
    raw = raw[:16].ljust(16, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def args_to_comm(a0: int, a1: int) -> str:
    raw = int(a0).to_bytes(8, "little") + int(a1).to_bytes(8, "little")
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
