"""``fputrace export --format perfetto``: a Perfetto trace (protobuf TrackEvents) for ui.perfetto.dev.

What the trace shows, all of it the model's (``annotated.py``: owner changes, closed sections and
per-event causes and bytes as the model decided them):

* a track per CPU, "CPU n FPU registers", under "FPU register owner": slices for who holds the
  CPU's FPU registers over time: a task (named "comm tid"), ``kernel`` (inside a kernel FPU
  section), ``none`` (nothing valid) or ``unknown`` (start of trace, after lost events);
* a track per task (a thread of its process, tgid): its kernel FPU sections as slices named by
  the caller, begin to end = preemption off; sections the mode only inferred, or whose begin was
  not seen, as instants; and its XSAVEs and XRSTORs as instants named "XSAVE <cause>" /
  "XRSTOR <cause>" with cause, xfeatures, bytes, xstate class and CPU as arguments. The idle
  task (tid 0) runs on every CPU at once: it gets one such track per CPU;
* counter tracks "XSAVE per second" and "XRSTOR per second".

Timestamps are the recording's CLOCK_MONOTONIC nanoseconds: the first packet declares MONOTONIC
the trace's clock, so they can be lined up with other traces of the same host. Event names,
argument names and string argument values are interned. Packets are written chunk by chunk as the model analyses the recording
(StreamingTraceProtoBuilder of the ``perfetto`` package), so memory stays bounded; Perfetto's
trace processor sorts packets by time itself.
"""
from __future__ import annotations


import numpy as np
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

from ..events import Kind
from ..model.sinks import CLASS_NAMES, OWNER_KINDS
from .annotated import annotated_chunks
from .output import complete_or_nothing
from .rows import XRSTOR_CAUSES, XSAVE_CAUSES

SEQUENCE_ID = 7                         # one packet sequence for the whole file
MONOTONIC = pb.BuiltinClock.BUILTIN_CLOCK_MONOTONIC
ROOT_OWNERS, XSAVE_RATE, XRSTOR_RATE = 1, 2, 3   # track uuids; the others are numbered from 16
FIRST_UUID = 16
NS = 1_000_000_000


class _Writer:
    """Packets on one sequence, with interned event and argument names."""

    def __init__(self, f):
        self.out = StreamingTraceProtoBuilder(f)
        self.names: dict[str, int] = {}
        self.arg_names: dict[str, int] = {}
        self.arg_values: dict[str, int] = {}
        self.packets = 0

    def packet(self, ts: int | None = None) -> pb.TracePacket:
        p = pb.TracePacket()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        if self.packets == 0:
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            p.first_packet_on_sequence = True
        else:
            p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        if ts is not None:
            p.timestamp = int(ts)
            p.timestamp_clock_id = MONOTONIC
        self.packets += 1
        return p

    def write(self, p: pb.TracePacket) -> None:
        self.out.write_packet(p)

    def _iid(self, table: dict, text: str, p: pb.TracePacket, field: str) -> int:
        iid = table.get(text)
        if iid is None:
            iid = table[text] = len(table) + 1
            entry = getattr(p.interned_data, field).add()
            entry.iid = iid
            if field == "debug_annotation_string_values":
                entry.str = text.encode()
            else:
                entry.name = text
        return iid

    def event(self, ts: int, track: int, kind, name: str | None = None, args=()) -> None:
        p = self.packet(ts)
        e = p.track_event
        e.type = kind
        e.track_uuid = track
        if name is not None:
            e.name_iid = self._iid(self.names, name, p, "event_names")
        for key, value in args:
            a = e.debug_annotations.add()
            a.name_iid = self._iid(self.arg_names, key, p, "debug_annotation_names")
            if isinstance(value, bool):
                a.bool_value = value
            elif isinstance(value, int) and value >= 0:
                a.uint_value = value
            elif isinstance(value, int):
                a.int_value = value
            else:                          # causes, classes, xfeatures: a few values, many times
                a.string_value_iid = self._iid(self.arg_values, str(value), p,
                                               "debug_annotation_string_values")
        self.write(p)

    def counter(self, ts: int, track: int, value: int) -> None:
        p = self.packet(ts)
        p.track_event.type = pb.TrackEvent.TYPE_COUNTER
        p.track_event.track_uuid = track
        p.track_event.counter_value = int(value)
        self.write(p)

    def track(self, uuid: int, name: str | None = None, parent: int | None = None,
              thread: tuple | None = None, process: tuple | None = None, counter: bool = False,
              rank: int | None = None) -> None:
        p = self.packet()
        d = p.track_descriptor
        d.uuid = uuid
        if name is not None:
            d.name = name
        if parent is not None:
            d.parent_uuid = parent
        if thread is not None:
            d.thread.pid, d.thread.tid, d.thread.thread_name = thread
        if process is not None:
            d.process.pid, d.process.process_name = process
        if counter:
            d.counter.unit = pb.CounterDescriptor.UNIT_COUNT
        if rank is not None:
            d.sibling_order_rank = rank
        self.write(p)


class PerfettoExport:
    def __init__(self, f, meta: dict):
        self.w = _Writer(f)
        self.meta = meta
        self.symbols = meta.get("symbols") or {}
        self.cpus: dict[int, str | None] = {}  # cpu -> name of its open owner slice
        self.task_tracks: dict[tuple, int] = {}
        self.task_names: dict[tuple, str] = {}
        self.processes: set[int] = set()
        self.rate_second: int | None = None
        self.rate = [0, 0]
        self.last_ts = 0
        self.counts = {"xsave": 0, "xrstor": 0, "sections": 0, "owner_slices": 0}
        self.uuids: dict[tuple, int] = {}       # small numbers: each event names its track

    def _uuid(self, *key) -> int:
        u = self.uuids.get(key)
        if u is None:
            u = self.uuids[key] = FIRST_UUID + len(self.uuids)
        return u

    # ------------------------------------------------------------------ set-up
    def start(self, first_ts: int) -> None:
        p = self.w.packet()
        p.clock_snapshot.primary_trace_clock = MONOTONIC
        c = p.clock_snapshot.clocks.add()
        c.clock_id, c.timestamp = MONOTONIC, int(first_ts)
        self.w.write(p)
        host = self.meta.get("host") or "this host"
        self.w.track(ROOT_OWNERS, f"FPU register owner ({host}, {self.meta.get('kernel_release') or 'kernel ?'}, "
                                  f"{self.meta.get('capture_mode') or self.meta.get('source') or 'mode ?'})",
                     rank=0)
        self.w.track(XSAVE_RATE, "XSAVE per second", counter=True, rank=1)
        self.w.track(XRSTOR_RATE, "XRSTOR per second", counter=True, rank=2)

    def _cpu_track(self, cpu: int) -> int:
        uuid = self._uuid("cpu", cpu)
        if cpu not in self.cpus:
            self.cpus[cpu] = None
            self.w.track(uuid, f"CPU {cpu} FPU registers", parent=ROOT_OWNERS, rank=cpu)
        return uuid

    def _task_track(self, tasks, task_id: int, cpu: int) -> int:
        tid, gen, tgid, comm, _ = tasks[task_id]
        key = (tid, gen, cpu if tid == 0 else None)
        uuid = self.task_tracks.get(key)
        if uuid is None or self.task_names.get(key) != comm:
            uuid = uuid or self._uuid("task", *key)
            pid = tgid or tid
            if pid not in self.processes:
                self.processes.add(pid)
                self.w.track(self._uuid("process", pid), process=(pid, comm))   # first task seen names it
            name = f"swapper/{cpu}" if tid == 0 else comm
            self.w.track(uuid, parent=self._uuid("process", pid), thread=(pid, tid, name))
            self.task_tracks[key], self.task_names[key] = uuid, comm
        return uuid

    # ------------------------------------------------------------------ one chunk
    def chunk(self, c) -> None:
        ev = c.events
        if len(ev):
            self.last_ts = max(self.last_ts, int(ev["ts_ns"][-1]))
        self._owners(c)
        self._sections(c)
        self._saves_and_restores(c)

    def _owners(self, c) -> None:
        for o in c.owners:
            cpu, ts = int(o["cpu"]), int(o["ts_ns"])
            track = self._cpu_track(cpu)
            if self.cpus[cpu] is not None:
                self.w.event(ts, track, pb.TrackEvent.TYPE_SLICE_END)
            kind = OWNER_KINDS[int(o["owner"])]
            t = c.tasks.get(int(o["task_id"])) if kind == "TASK" else None
            if t is not None:
                name = f"{t.comm} {int(o['tid'])}"
                args = [("owner", "task"), ("tid", int(o["tid"])), ("tgid", t.tgid),
                        ("generation", t.generation)]
            else:
                name = kind.lower() if kind != "TASK" else f"task {int(o['tid'])}"
                args = [("owner", kind.lower())]
            self.w.event(ts, track, pb.TrackEvent.TYPE_SLICE_BEGIN, name, args)
            self.cpus[cpu] = name
            self.counts["owner_slices"] += 1

    def _caller(self, addr: int) -> str:
        addr &= (1 << 64) - 1
        if not addr:
            return "kernel FPU (caller unknown)"
        return self.symbols.get(f"0x{addr:x}") or self.symbols.get(f"0x{addr:016x}") or f"0x{addr:x}"

    def _sections(self, c) -> None:
        for s in c.sections:
            task_id, cpu = int(s["task_id"]), int(s["cpu"])
            if task_id not in c.tasks:
                continue
            track = self._task_track(c.tasks, task_id, cpu)
            caller = self._caller(int(s["caller"]))
            begin, end = int(s["begin_ns"]), int(s["end_ns"])
            args = [("cpu", cpu), ("caller", caller)]
            if int(s["inferred"]) or begin < 0:
                why = "inferred" if int(s["inferred"]) else "begin not seen"
                self.w.event(end, track, pb.TrackEvent.TYPE_INSTANT, f"{caller} ({why})",
                             args + [("untimed", why)])
            else:
                self.w.event(begin, track, pb.TrackEvent.TYPE_SLICE_BEGIN, caller,
                             args + [("preemption_off_ns", end - begin)])
                self.w.event(end, track, pb.TrackEvent.TYPE_SLICE_END)
            self.counts["sections"] += 1

    def _saves_and_restores(self, c) -> None:
        ev = c.events
        kinds = ev["kind"]
        rows = np.flatnonzero(((kinds == Kind.XSAVE) | (kinds == Kind.XRSTOR)) & (c.cause >= 0))
        sel = ev[rows]
        columns = zip(sel["ts_ns"].tolist(), sel["cpu"].tolist(), sel["kind"].tolist(),
                      sel["a0"].tolist(), sel["flags"].tolist(), c.task_id[rows].tolist(),
                      c.cause[rows].tolist(), c.nbytes[rows].tolist(), c.xclass[rows].tolist())
        for ts, cpu, kind, a0, flags, task_id, cause_code, nbytes, xclass in columns:
            save = kind == Kind.XSAVE
            self._count(ts, not save)
            if task_id not in c.tasks:
                continue
            cause = (XSAVE_CAUSES if save else XRSTOR_CAUSES).get(cause_code, "unknown")
            args = [("cause", cause), ("xfeatures", f"0x{a0:x}"), ("bytes", nbytes), ("cpu", cpu)]
            if xclass >= 0:
                args.append(("xstate_class", CLASS_NAMES[xclass]))
            if flags & 1:
                args.append(("inferred", True))
            self.w.event(ts, self._task_track(c.tasks, task_id, cpu), pb.TrackEvent.TYPE_INSTANT,
                         f"{'XSAVE' if save else 'XRSTOR'} {cause}", args)
            self.counts["xsave" if save else "xrstor"] += 1

    def _count(self, ts: int, restore: bool) -> None:
        sec = ts // NS
        if self.rate_second is None:
            self.rate_second = sec
        while sec > self.rate_second:          # close the seconds before this one (zeros too)
            self._flush_rate()
        self.rate[int(restore)] += 1

    def _flush_rate(self) -> None:
        ts = self.rate_second * NS
        self.w.counter(ts, XSAVE_RATE, self.rate[0])
        self.w.counter(ts, XRSTOR_RATE, self.rate[1])
        self.rate = [0, 0]
        self.rate_second += 1

    # ------------------------------------------------------------------ the end
    def finish(self) -> None:
        for cpu, name in self.cpus.items():
            if name is not None:
                self.w.event(self.last_ts, self._uuid("cpu", cpu), pb.TrackEvent.TYPE_SLICE_END)
        if self.rate_second is not None:
            self._flush_rate()
            self.w.counter(self.rate_second * NS, XSAVE_RATE, 0)
            self.w.counter(self.rate_second * NS, XRSTOR_RATE, 0)


def write_perfetto(trace, out: str) -> dict:
    """Write ``trace`` as a Perfetto trace to ``out``; returns what was drawn (counts)."""
    with complete_or_nothing(out) as tmp, open(tmp, "wb") as f:
        export = PerfettoExport(f, trace.meta)
        started = False
        for chunk in annotated_chunks(trace):
            if not started and len(chunk.events):
                export.start(int(chunk.events["ts_ns"][0]))
                started = True
            export.chunk(chunk)
        if not started:
            export.start(0)
        export.finish()
    return export.counts
