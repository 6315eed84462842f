"""CaptureSession: compile, attach, stream time-ordered event batches, detach on exit.

    with CaptureSession(CaptureOptions(mode="auto")) as cap:
        writer = RecordingWriter(path, cap.meta)
        for batch in cap.batches(stop_event):      # numpy EVENT_DTYPE, sorted by ts_ns
            writer.write(batch)

``meta`` (the recording header) holds:
  source="record", host, kernel_release, cpu_model, nr_cpus, clock="CLOCK_MONOTONIC",
  start_ns, start_wall (ISO 8601 UTC), end_ns (set when the stream ends),
  capture_mode ("fentry"|"kprobe"|"tracepoint": how kernel FPU sections were seen),
  modes {logical_event: {attach, exact, refused{better option: why}, note}},
  recorded_policy ("deferred" for >= 5.2 else "eager"),
  tif_need_fpu_load_bit (+ tif_calibration: expected, verified, candidates, samples, source),
  xstate {xcr0, mask, features[{bit,name,size_bytes,offset}], total_bytes, compacted},
  lost_per_cpu {cpu: n} (kept current: read ``cap.meta`` after each batch),
  recursion_misses {program: n}: runs of our programs the kernel skipped because a BPF program
    was already running on that CPU (bpf_prog_info, 5.12+; None where the kernel does not count
    them; kept current, read about once a second and at the end),
  fputrace_tgid (the recorder's own process: reports can mark its tasks),
  symbols {"0xffff...": "func+0x1a"} (kallsyms subset for the kernel-FPU callers seen),
  command (set by the caller), filter {pid, comm}, headers {kind, path},
  tracefs {path, mounted_by_fputrace: ["tracefs at /sys/kernel/tracing"] when it mounted it},
  transport {"kind": "ringbuf_percpu"|"ringbuf"|"perfbuf", "buffer_pages": pages per ring, "rings"},
  tracepoint_programs {kind: tp_btf|raw_tracepoint|perf_tracepoint, reason, offsets}: how the
    per-switch and per-syscall tracepoints were read (hot.py).

``batches(stop)`` yields the /proc task table first (COMM/TASK records), then events as they
pass the reorder watermark (reorder.py), LOST events in-band (exact per-CPU counts of failed
reserves), and an empty batch at least every ~100 ms so the caller can check the time. When
``stop`` is set it detaches every probe, drains the buffer, flushes and returns.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import os
import threading
import time
from bisect import bisect_right

import numpy as np

from ..errors import CaptureError
from ..events import EVENT_DTYPE, Kind, empty_batch
from . import abi, tif
from .features import expected_tif_bit, host_features
from .headers import apply as apply_headers
from .options import CaptureOptions
from .plan import make_plan
from .progstats import ProgramStats
from .reorder import Reorderer

POLL_MS = 100
RELEASE_EVERY_NS = 50_000_000      # reorder bookkeeping cadence under load
RELEASE_PENDING = 1 << 18          # ... or as soon as this many events wait (a backlog read in pieces)
PROGRAM_STATS_EVERY_NS = 1_000_000_000   # bpf_prog_info of our programs (recursion misses)


class CaptureSession:
    def __init__(self, opts: CaptureOptions | None = None):
        self.opts = opts or CaptureOptions()
        self.meta: dict = {}
        self.plan = None
        self.cflags: list[str] = []
        self._loaded = None
        self._reader = None
        self._reorder = Reorderer()
        self._lost_seen: list[int] = []
        self._early: list[np.ndarray] = []      # read during the TIF calibration, before batches()
        self._last_ts = np.zeros(0, np.uint64)   # per CPU: timestamp of the last event delivered
        self._progs = None                       # progstats.ProgramStats of our programs
        self._progs_read_ns = 0
        self.program_infos: dict = {}            # short name -> progstats.ProgInfo, last read
        self._callers: set[int] = set()
        self._events = 0
        self._lost = 0
        self._t0 = 0.0
        self.first_event_s: float | None = None   # seconds from __enter__ to the first BPF event
        self.fentry_log = ""                      # the fentry test load's log (-v), if one ran
        self._stopped = False

    # ---- set-up ------------------------------------------------------------------------
    def __enter__(self) -> "CaptureSession":
        t_enter = time.monotonic()
        self.opts.validate()
        feat = host_features()
        if not feat.privileges.ok:
            raise CaptureError(f"live capture {feat.privileges.reason}")
        if not feat.bcc.ok:
            raise CaptureError(feat.bcc.reason)
        headers = feat.headers
        if headers.kind == "none":
            raise CaptureError(headers.detail)
        apply_headers(headers)
        from .loader import final_cflags, load, verify_fentry, verify_tp_btf
        if self.opts.mode in ("auto", "fentry"):
            self.fentry_log = verify_fentry(feat)     # questions only a load answers
        if self.opts.programs in ("auto", "tp_btf"):
            verify_tp_btf(feat)
        self.plan = plan = make_plan(feat, self.opts.mode, self.opts.programs)
        # what only planning needed (the plan keeps its offsets and BTF ids): ~30 MB before the
        # compiler's own peak; symbols stay where kernel-FPU callers can be seen
        feat.forget("btf_types", "_btf_blob", *(("kallsyms", "_sorted_addrs")
                                                if plan.effective_mode == "tracepoint" else ()))
        from . import ringbuf
        self.transport = transport = ringbuf.choose(feat, self.opts.transport, self.opts.pages, self.opts.buffer_pages is not None)
        self.cflags = final_cflags(plan.cflags + self.opts.filter_cflags(), transport.cflags())
        start_ns = time.monotonic_ns()
        start_wall = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
        self._loaded = load(plan, self.cflags)
        try:
            bpf = self._loaded.bpf
            expected = expected_tif_bit(feat.version)
            self._set_tif_bit(expected)
            import ctypes.util
            ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)   # clang's heap, freed
            from .loader import release_compiler_pages
            self.compiler_pages_released = release_compiler_pages()
            self._reader = ringbuf.open_reader(transport, bpf)
            if transport.kind == "ringbuf_percpu":    # nothing was kept before the rings existed
                start_ns = time.monotonic_ns()
                start_wall = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
            self._lost_seen = [0] * feat.possible_cpus
            self._last_ts = np.zeros(feat.possible_cpus, np.uint64)
            self._progs = ProgramStats.of(self._loaded)
            self._set_config(abi.CFG_CALIBRATING, 1)
            tif_info = tif.calibrate(bpf, expected, self.opts.calibrate_s, feat.version,
                                     drain=lambda: self._early.append(self._reader.read()))
            self._set_config(abi.CFG_CALIBRATING, 0)       # the programs stop sampling flags
            if tif_info["bit"] != expected:
                self._set_tif_bit(tif_info["bit"])
        except BaseException:
            self.close()
            raise
        self._t0 = t_enter
        self._t_start = time.monotonic()
        self.meta = {
            "source": "record",
            "host": feat.host,
            "kernel_release": feat.release,
            "cpu_model": feat.cpu_model,
            "nr_cpus": feat.nr_cpus,
            "clock": "CLOCK_MONOTONIC",
            "start_ns": start_ns,
            "start_wall": start_wall,
            "end_ns": None,
            "capture_mode": plan.effective_mode,
            "modes": plan.modes_meta(),
            "recorded_policy": feat.recorded_policy,
            "tif_need_fpu_load_bit": tif_info["bit"],
            "tif_calibration": {k: v for k, v in tif_info.items() if k != "bit"},
            "xstate": feat.xstate,
            "lost_per_cpu": {},
            "recursion_misses": {},
            "fputrace_tgid": os.getpid(),
            "symbols": {},
            "command": None,
            "filter": {"pid": self.opts.pid, "comm": self.opts.comm},
            "headers": headers.as_meta(),
            "tracefs": feat.tracefs_state.as_meta(),
            "transport": transport.as_meta(),
            "tracepoint_programs": plan.hot.as_meta(),
        }
        self._start_ns = start_ns
        return self

    def _set_tif_bit(self, bit: int | None) -> None:
        self._set_config(abi.CFG_TIF_MASK, 0 if bit is None else 1 << bit)

    def _set_config(self, slot: int, value: int) -> None:
        self._loaded.bpf[b"config"][ctypes.c_int(slot)] = ctypes.c_uint64(value)

    # ---- streaming ---------------------------------------------------------------------
    def batches(self, stop: threading.Event):
        from .tasks import snapshot
        self._reorder.push(snapshot(self._start_ns))
        for got in self._early:
            self._ingest(got)
        self._early = []
        last = 0
        while not stop.is_set():
            self._reader.wait(POLL_MS)
            # the release clock is read before the buffers: an event stamped before `now` was
            # committed by then (programs run with preemption off) and so is in this read, even
            # when this thread is descheduled between the read and the release
            now = time.monotonic_ns()
            got = self._reader.read()
            self._ingest(got)
            if len(got) and now - last < RELEASE_EVERY_NS and self._reorder.pending() < RELEASE_PENDING:
                continue
            last = now
            if now - self._progs_read_ns >= PROGRAM_STATS_EVERY_NS:
                self._read_programs(now)
            yield self._reorder.pop_ready(now, self._reader.holdback_ns())
        yield from self._finish()

    def _finish(self):
        if self._stopped:
            return
        self._loaded.detach_all()          # no producer left: what is in the ring is final
        while True:
            now = time.monotonic_ns()
            got = self._reader.read()
            if not len(got):
                break
            self._ingest(got)
            if self._reorder.pending() >= RELEASE_PENDING:
                yield self._reorder.pop_ready(now, self._reader.holdback_ns())
        self._ingest(empty_batch())        # last lost counts, after the drain
        self._read_programs(time.monotonic_ns())   # programs detached: these counts are final
        self._stopped = True
        out = self._reorder.flush()
        self.meta["end_ns"] = max(time.monotonic_ns(), int(out["ts_ns"][-1]) if len(out) else 0)
        self.meta["symbols"] = self.symbols()
        yield out

    def _ingest(self, got: np.ndarray) -> None:
        if len(got):
            got = abi.split_switch_saves(got)
            if self.first_event_s is None:
                self.first_event_s = time.monotonic() - self._t0
            self._events += len(got)
            kfpu = got[((got["kind"] == Kind.KFPU_BEGIN) | (got["kind"] == Kind.KFPU_END)) & (got["a1"] != 0)]
            if len(kfpu):
                self._callers.update(int(a) for a in np.unique(kfpu["a1"]))
            np.maximum.at(self._last_ts, got["cpu"], got["ts_ns"])
            self._reorder.push(got)
        # every read: a drop is stamped before the events that reached the buffer after it
        lost = self._lost_events()
        if len(lost):
            self._reorder.push(lost)

    def _lost_events(self) -> np.ndarray:
        """LOST events for the failed reserves counted since the last look, per CPU, each stamped
        at the last event that CPU delivered before it: records of one buffer cannot overtake a
        failed one (the buffer was full), so the gap on that CPU starts there (never later than
        what was already released in time order)."""
        per_cpu = [int(v) for v in self._loaded.bpf[b"counters"][ctypes.c_int(abi.CTR_LOST)]]
        rows = []
        for cpu, total in enumerate(per_cpu):
            delta = total - self._lost_seen[cpu]
            if delta > 0:
                self._lost_seen[cpu] = total
                ts = max(int(self._last_ts[cpu]) or self._start_ns, self._reorder.released_upto)
                rows.append((ts, delta, 0, 0, 0, cpu, Kind.LOST, 0, 0))
                self.meta.setdefault("lost_per_cpu", {})[str(cpu)] = total
                self._lost += delta
        return np.array(rows, dtype=EVENT_DTYPE) if rows else empty_batch()

    def _read_programs(self, now_ns: int) -> None:
        self._progs_read_ns = now_ns
        self.program_infos = self._progs.read()
        self.meta["recursion_misses"] = ProgramStats.recursion_misses(self.program_infos)

    def ring_fill(self) -> float:
        """How full the fullest kernel ring is, 0..1 (0 for the perf buffer, which cannot say):
        a reader that lets it grow is about to lose events (the live dashboard then draws less)."""
        fill = getattr(self._reader, "fill", None)
        return fill() if fill is not None else 0.0

    # ---- results -----------------------------------------------------------------------
    def bpf_counters(self) -> dict:
        out = {}
        table = self._loaded.bpf[b"counters"]
        for cid, name in abi.COUNTER_NAMES.items():
            out[name] = sum(int(v) for v in table[ctypes.c_int(cid)])
        return out

    @property
    def stats(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - getattr(self, "_t_start", time.monotonic()))
        skipped = sum((self.meta.get("recursion_misses") or {}).values())
        return {"events": self._events, "lost": self._lost, "skipped": skipped,
                "events_per_s": self._events / elapsed,
                "late_events": self._reorder.late_events, "elapsed_s": elapsed,
                "first_event_s": self.first_event_s}

    @property
    def callers_seen(self) -> int:
        return len(self._callers)

    def symbols(self) -> dict[str, str]:
        """kallsyms subset for the kernel-FPU callers seen: {"0xffff...": "func+0x1a"}."""
        if not self._callers:
            return {}
        if getattr(self, "_sym_table", None) is None:
            feat = host_features()
            pairs = sorted((a, n) for n, a in feat.kallsyms.items() if a)
            self._sym_table = (pairs, [a for a, _ in pairs])
        pairs, addrs = self._sym_table
        out = {}
        for addr in sorted(self._callers):
            i = bisect_right(addrs, addr) - 1
            if i >= 0:
                base, name = pairs[i]
                out[f"{addr:#x}"] = f"{name}+{addr - base:#x}"
        return out

    # ---- tear-down ---------------------------------------------------------------------
    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def __exit__(self, *exc) -> None:
        self.close()
