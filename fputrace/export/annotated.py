"""A recording fed through the model, chunk by chunk, with the model's per-event annotations.

    for chunk in annotated_chunks(trace):
        chunk.events        EVENT_DTYPE rows (task-table records included)
        chunk.cause         per row: XSAVE/XRSTOR cause the report counts (-1 elsewhere)
        chunk.nbytes        per row: bytes the save/restore moved (0 elsewhere)
        chunk.xclass        per row: xstate class index (model.sinks.CLASS_NAMES), -1 elsewhere
        chunk.task_id       per row: the model's task id (-1 for LOST)
        chunk.owners        register-owner changes in the chunk (model.sinks OWNER_CHANGE rows)
        chunk.sections      kernel-FPU sections that ended in the chunk (SECTION rows)
        chunk.tasks         task_id -> TaskName(tid, generation, tgid, comm, kthread), every id above
    model                   the model itself, for the report at the end

This is the one way the exports read the model (``Model.add_sink``, fputrace/model/sinks.py):
they draw and tabulate what the model decided, they never re-derive it. Memory is bounded by
one recording batch and its annotations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from ..model import Model


class TaskName(NamedTuple):
    tid: int
    generation: int
    tgid: int
    comm: str
    kthread: bool


@dataclass
class Chunk:
    events: np.ndarray
    task_id: np.ndarray
    other_task_id: np.ndarray
    cause: np.ndarray
    nbytes: np.ndarray
    xclass: np.ndarray
    owners: np.ndarray
    sections: np.ndarray
    tasks: dict[int, TaskName]   # by task id


class _Collector:
    """The sink: copies each chunk's annotations (the model reuses its arrays) and names every
    task they mention while the model still knows them (exited tasks retire after the sinks)."""

    def __init__(self, model: Model):
        self.model = model
        self.chunks: list[Chunk] = []

    def on_feed(self, batch, out) -> None:
        ids = np.unique(np.concatenate([out.task_id, out.other_task_id,
                                        out.owner_changes["task_id"], out.kfpu_sections["task_id"]]))
        ids = ids[ids >= 0]
        names = self.model.task_identity(ids)
        tasks = {int(r.task_id): TaskName(int(r.tid), int(r.generation), int(r.tgid), str(r.comm),
                                          bool(r.kthread)) for r in names.itertuples(index=False)}
        self.chunks.append(Chunk(batch, out.task_id.copy(), out.other_task_id.copy(),
                                 out.cause.copy(), out.nbytes.copy(), out.xclass.copy(),
                                 out.owner_changes.copy(), out.kfpu_sections.copy(), tasks))


def annotated_chunks(trace, model: Model | None = None) -> Iterator[Chunk]:
    """Feed every batch of ``trace`` to ``model`` (default: a new one on the trace's meta) and
    yield the annotated chunks as they come."""
    model = model if model is not None else Model(trace.meta, history=False)
    sink = _Collector(model)
    model.add_sink(sink)
    for batch in trace.batches():
        model.feed(batch)
        yield from sink.chunks
        sink.chunks.clear()
