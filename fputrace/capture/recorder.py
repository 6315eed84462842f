"""The loop behind ``fputrace record``: session -> RecordingWriter, a status line, clean stops.

Stops on: --duration elapsed, the traced command exiting, SIGINT or SIGTERM (the handler only
sets a flag; the loop notices within one poll, ~100 ms). Every stop path detaches the probes,
drains the ring, writes end_ns / lost_per_cpu / symbols and closes the file: exit status 0.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time

from ..errors import CaptureError, LoadError, UsageError
from ..heap import bound_heap, trim_heap
from . import progstats
from .command import start_command, stop_command
from .options import CaptureOptions

STATUS_INTERVAL_S = 0.5
WRITE_QUEUE_BYTES = 4 << 20      # beyond this the consumer writes and the ring absorbs (or LOSTs):
                                 # 0 lost in the storm with 4 MiB as with 16 or 64 (CAPTURE.md (e))
WRITER_BATCH_EVENTS = 1 << 16    # events per file batch: 2.5 MiB raw while it fills, and its
                                 # encoding's copies; 4x as many batches cost ~3% in bytes/event


class _WriterThread:
    """Encoding and compressing a batch takes about as long as reading it from the ring: on its
    own thread (pyarrow releases the GIL while compressing) the ring keeps draining meanwhile.
    At most WRITE_QUEUE_BYTES wait to be written. Beyond that the caller writes the oldest queued
    batches itself before queueing more: memory stays bounded, and a writer thread the scheduler
    starves (a loaded host) does not stall the reading of the ring, which would overflow it."""

    def __init__(self, writer):
        import collections
        self.writer = writer
        self.error: BaseException | None = None
        self._queue: "collections.deque" = collections.deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()      # guards the queue
        self._io = threading.Lock()             # one batch written at a time, in queue order
        self._done = False
        self.thread = threading.Thread(target=self._run, name="fputrace-record-writer", daemon=True)
        self.thread.start()

    def _write_next(self) -> bool:
        """Pop the oldest batch and write it (holding _io from pop to write: order kept)."""
        with self._io:
            with self._cond:
                if not self._queue:
                    return False
                batch = self._queue.popleft()
                self._queued_bytes -= batch.nbytes
            if self.error is None:
                try:
                    self.writer.write(batch)
                except BaseException as err:      # surfaced by put()/finish() in the main thread
                    self.error = err
            return True

    def _run(self):
        while True:
            with self._cond:
                while not self._queue and not self._done:
                    self._cond.wait()
                if not self._queue and self._done:
                    return
            self._write_next()

    def put(self, batch) -> None:
        if self.error is not None:
            raise self.error
        if not len(batch):
            return
        while self._queued_bytes > WRITE_QUEUE_BYTES and self._write_next():
            pass
        with self._cond:
            self._queue.append(batch)
            self._queued_bytes += batch.nbytes
            self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()
        self.thread.join()
        if self.error is not None:
            raise self.error


def _check_output(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")
    if not os.access(parent, os.W_OK):
        raise CaptureError(f"{path}: cannot write in {parent}")


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def record(path: str, opts: CaptureOptions, *, duration_s: float | None = None,
           cmd: list[str] | None = None, quiet: bool = False, verbose: bool = False,
           stats: bool = False) -> int:
    """``stats``: BPF run-time statistics on for the recording (BPF_ENABLE_STATS), the cost of each
    program in the status line, a table at the end and in meta ``program_stats``."""
    from .progstats import run_time_stats
    try:
        if stats:
            with run_time_stats() as on:
                if not on:
                    raise CaptureError("--stats: the kernel refused BPF_ENABLE_STATS (needs CAP_SYS_ADMIN, 5.8+)")
                return _record(path, opts, duration_s=duration_s, cmd=cmd, quiet=quiet, verbose=verbose,
                               costed=True)
        return _record(path, opts, duration_s=duration_s, cmd=cmd, quiet=quiet, verbose=verbose,
                       costed=progstats.stats_enabled())
    except LoadError as err:
        if verbose and err.log:           # before the one-line error the caller prints
            print(f"fputrace: load log:\n{err.log}", file=sys.stderr)
        raise


def _record(path: str, opts: CaptureOptions, *, duration_s: float | None, cmd: list[str] | None,
            quiet: bool, verbose: bool, costed: bool) -> int:
    """``costed``: run-time statistics are on (--stats, or the sysctl, which says nothing about
    the BPF_ENABLE_STATS fd --stats holds)."""
    bound_heap()
    import pyarrow
    # the system allocator gives freed batches back to the OS; Arrow's default pool keeps them
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    from ..recording import RecordingWriter
    from .session import CaptureSession

    _check_output(path)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    child = None
    status_tty = sys.stderr.isatty() and not quiet
    try:
        with CaptureSession(opts) as cap:
            meta = cap.meta
            if verbose and cap.fentry_log and meta["modes"]["kfpu_begin"]["refused"].get("fentry"):
                print(f"fputrace: the fentry test load was refused:\n{cap.fentry_log}", file=sys.stderr)
            meta["command"] = shlex.join(sys.argv) if sys.argv else "fputrace record"
            if cmd:
                child = start_command(cmd)
                meta["traced_command"] = shlex.join(cmd)
                meta["traced_pid"] = child.pid
            # as a context manager: a failure below marks the file aborted instead of complete
            with RecordingWriter(path, meta, max_batch_events=WRITER_BATCH_EVENTS) as writer:
                wthread = _WriterThread(writer)
                try:
                    if not quiet:
                        print(f"Tracing FPU save/restore (mode: {cap.plan.effective_mode})... "
                              f"Hit Ctrl-C to end.", file=sys.stderr, flush=True)
                    t0 = time.monotonic()
                    deadline = t0 + duration_s if duration_s else None
                    last_status = 0.0
                    lost_reported, skipped_reported = {}, {}
                    symbols_reported, last_symbols, last_trim = 0, t0, t0
                    for batch in cap.batches(stop):
                        wthread.put(batch)
                        if cap.meta.get("lost_per_cpu") != lost_reported:
                            lost_reported = dict(cap.meta["lost_per_cpu"])
                            writer.update_meta(lost_per_cpu=lost_reported)
                        if cap.meta.get("recursion_misses") != skipped_reported:
                            skipped_reported = cap.meta["recursion_misses"]
                            writer.update_meta(recursion_misses=skipped_reported)
                        now = time.monotonic()
                        if now - last_trim >= 1.0:
                            last_trim = now
                            trim_heap()
                        if cap.callers_seen != symbols_reported and now - last_symbols >= 5.0:
                            # so that a killed recording can still name its kernel-FPU callers
                            symbols_reported, last_symbols = cap.callers_seen, now
                            writer.update_meta(symbols=cap.symbols())
                        if deadline and now >= deadline:
                            stop.set()
                        if child is not None and child.poll() is not None:
                            stop.set()
                        if status_tty and now - last_status >= STATUS_INTERVAL_S:
                            last_status = now
                            st = cap.stats
                            costs = progstats.cost_summary(cap.program_infos) if costed else ""
                            sys.stderr.write(f"\r{st['events']:>12,} events  {st['events_per_s']:>10,.0f}/s  "
                                             f"lost {st['lost']:,}  skipped {st['skipped']:,}  "
                                             f"{_fmt_bytes(writer.bytes_written)}  {costs}   ")
                            sys.stderr.flush()
                    wthread.finish()
                    st = cap.stats
                    if costed:
                        meta["program_stats"] = progstats.as_meta(cap.program_infos)
                        writer.update_meta(program_stats=meta["program_stats"])
                    writer.update_meta(end_ns=cap.meta["end_ns"], symbols=cap.meta["symbols"],
                                       lost_per_cpu=cap.meta.get("lost_per_cpu", {}),
                                       recursion_misses=cap.meta.get("recursion_misses"),
                                       capture_stats={k: v for k, v in st.items() if v is not None},
                                       bpf_counters=cap.bpf_counters())
                finally:
                    if wthread.thread.is_alive():
                        wthread.finish()
        if status_tty:
            sys.stderr.write("\n")
        if not quiet:
            per = writer.bytes_written / st["events"] if st["events"] else 0.0
            print(f"fputrace: {st['events']:,} events, {st['lost']:,} lost, {st['skipped']:,} probe runs "
                  f"the kernel skipped, {_fmt_bytes(writer.bytes_written)} ({per:.1f} bytes/event) -> {path}",
                  file=sys.stderr)
            if st["lost"]:
                print("fputrace: events were lost: increase --buffer-pages or narrow with --pid/--comm",
                      file=sys.stderr)
            if costed:
                print("fputrace: kernel-side cost of each program (bpf_prog_info run_time_ns / run_cnt):",
                      file=sys.stderr)
                for line in progstats.cost_table(cap.program_infos, st["elapsed_s"]):
                    print(f"fputrace:   {line}", file=sys.stderr)
            if st["skipped"]:
                which = ", ".join(f"{k} {v:,}" for k, v in cap.meta["recursion_misses"].items())
                print(f"fputrace: the kernel skipped probe runs while another BPF program ran on the same "
                      f"CPU ({which}): those events were not seen", file=sys.stderr)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        stop_command(child)
