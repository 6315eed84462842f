"""What the model tells its sinks after each fed chunk (``Model.add_sink``).

A sink is any object with ``on_feed(batch, out)``; the model calls it, under its lock and on the
feeding thread, after the chunk ``batch`` (EVENT_DTYPE) was analysed. ``out`` is a ``FeedOutput``:

  per event row of ``batch`` (numpy arrays of len(batch)):
    task_id        int64  the model's task id of the event's task (unique per task generation:
                          a reused tid gets a new id); -1 for LOST
    other_task_id  int64  SWITCH: the next task's id; FORK: the child's; else -1
    cause          int8   XSAVE/XRSTOR: the resolved cause (the one the report counts:
                          ``fputrace.events.XsaveCause`` / ``XrstorCause`` values); else -1
    xclass         int8   XSAVE/XRSTOR: xstate class index into ``CLASS_NAMES``; else -1
    nbytes         int32  XSAVE/XRSTOR: bytes moved (576 + live components); else 0
  owner_changes    OWNER_CHANGE records, time order: ts_ns, cpu, owner (index into
                   ``OWNER_KINDS``: TASK / NONE / KERNEL / UNKNOWN), tid and task_id (TASK only,
                   else 0 and -1): who holds each CPU's FPU registers from ts_ns on
  kfpu_sections    SECTION records of kernel FPU sections that ended in the chunk: cpu, tid, tgid,
                   task_id, begin_ns (-1 if the begin was not seen), end_ns, caller (address of the
                   kernel_fpu_begin caller, 0 unknown), inferred (0/1)

The arrays are reused by the next feed: a sink copies what it keeps. During ``on_feed`` every task
id in ``out`` can be named with ``Model.task_identity(ids)`` (tid, generation, tgid, comm,
kthread): exited tasks are retired only after the sinks ran, so a sink that needs the names of
exited tasks later keeps them itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import structs as S
from .structs import CLASS_NAMES, OWNER_KINDS  # noqa: F401  (documented above)


@dataclass(frozen=True)
class FeedOutput:
    task_id: np.ndarray
    other_task_id: np.ndarray
    cause: np.ndarray
    xclass: np.ndarray
    nbytes: np.ndarray
    owner_changes: np.ndarray
    kfpu_sections: np.ndarray


class Sink(Protocol):
    def on_feed(self, batch: np.ndarray, out: FeedOutput) -> None: ...


class OutBuffers:
    """The arrays C writes the annotations into (``struct fpt_out``). Reused from feed to feed
    (fresh pages cost more than the annotations); sized for the largest chunk so far: at most
    two owner changes and one closed section per event."""

    def __init__(self):
        self.n = 0
        self.out = np.zeros(1, S.OUT)

    def prepare(self, n: int) -> None:
        if n > self.n:
            self.n = n
            self.task_id = np.empty(n, np.int64)
            self.other_task_id = np.empty(n, np.int64)
            self.cause = np.empty(n, np.int8)
            self.xclass = np.empty(n, np.int8)
            self.nbytes = np.empty(n, np.int32)
            self.owners = np.empty(2 * n + 2, S.OWNER_CHANGE)
            self.sections = np.empty(n + 1, S.SECTION)
            for name in ("task_id", "other_task_id", "cause", "xclass", "nbytes"):
                self.out[name] = getattr(self, name).ctypes.data
            self.out["owners"], self.out["owners_cap"] = self.owners.ctypes.data, len(self.owners)
            self.out["sections"], self.out["sections_cap"] = (self.sections.ctypes.data,
                                                              len(self.sections))
        self.out["owners_len"] = 0
        self.out["sections_len"] = 0

    @property
    def ptr(self) -> int:
        return self.out.ctypes.data

    def result(self, n: int) -> FeedOutput:
        return FeedOutput(self.task_id[:n], self.other_task_id[:n], self.cause[:n],
                          self.xclass[:n], self.nbytes[:n],
                          self.owners[:int(self.out["owners_len"][0])],
                          self.sections[:int(self.out["sections_len"][0])])
