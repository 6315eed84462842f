"""The live dashboard's data path: capture thread -> bounded batch queue -> worker: model -> UI.

    kernel ring --poll--> capture thread --put (waits when full)--> BatchQueue --> worker: model.feed
                                                                                  `--> snapshot --> UI

Nothing on this path drops events. When the model falls behind, the queue fills and the capture
thread waits; meanwhile the kernel's ring buffer absorbs the burst, and if it overflows the BPF
side counts every event it could not reserve, per CPU, and the session hands those counts to the
model in-band as LOST events: the screen then says exactly how many were lost where, and marks
the numbers that cross the gap. Before it comes to that the dashboard refreshes less often
(``sources.PicturePacer``): pictures wait while the queue holds a backlog.

The consumers come first on the CPU: the capture and model threads run at CONSUMER_NICE (the
dashboard runs as root; the UI thread keeps nice 0), so a CPU-bound job beside the dashboard
takes its CPU from the drawing, not from the ring's reader; and the threads of this process
hand the GIL over every SWITCH_INTERVAL_S (with Python's default, 5 ms, a consumer that gives
the GIL up -- in a ring read, a numpy call, the engine -- may wait that long behind the drawing
to get it back, many times a round).

``SessionProducer`` puts a ``CaptureSession`` behind the face ``LiveSource`` reads from its capture
thread (``meta``, ``poll(timeout_s) -> [batches]``, ``close()``). The session is entered (BPF
compiled and attached) before the dashboard starts, so anything that makes live capture
impossible is one line on the terminal, not a screen.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..capture.priority import CONSUMER_NICE, raise_priority
from ..heap import bound_heap, trim_heap
from ..errors import CaptureError
from ..events import EVENT_DTYPE, TASK_KTHREAD, Kind, comm_to_args
from .messages import SourceFailed, SourceNotice, SourceStatus
from .sources import Source

QUEUE_EVENTS = 1 << 19       # ~0.4 s at 1.2M events/s, 20 MiB: the kernel ring is the real buffer
BEHIND_EVENTS = 1 << 16      # a backlog beyond this holds pictures back (feeding comes first)
LIVE_RING_PAGES_PER_CPU = 8192   # 32 MiB per CPU's ring: ~700k events, >1 s of a storm's CPU
RING_BEHIND = 0.125          # so does a kernel ring this full: its reader is starved of CPU
SWITCH_INTERVAL_S = 0.0005   # GIL hand-over (sys.setswitchinterval) while the live source runs
FEED_EVENTS = 1 << 18        # queued batches are fed together up to this many (a feed has a
                             # fixed cost: small batches at a low rate would pay it thousands of times)


class BatchProducer(Protocol):
    """A capture session seen from the dashboard: ``poll`` returns the batches ready now."""
    meta: dict

    def poll(self, timeout_s: float) -> list[np.ndarray]: ...
    def close(self) -> None: ...


class SessionProducer:
    def __init__(self, session) -> None:
        self.session = session
        self.meta = session.meta            # the session keeps it current (lost_per_cpu, symbols)
        self.counters: dict = {}
        self._stop = threading.Event()
        self._batches = session.batches(self._stop)
        self._closed = False

    def ring_fill(self) -> float:
        return self.session.ring_fill()

    def poll(self, timeout_s: float) -> list:
        """One ring-buffer poll (the session waits at most ~100 ms and yields even when empty)."""
        batch = next(self._batches, None)
        return [batch] if batch is not None and len(batch) else []

    def close(self) -> None:
        """Detach every probe. Called from the capture thread (the generator's own thread)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for _ in self._batches:             # lets the session detach, drain and finish
            pass
        self.counters = self.session.bpf_counters()     # what BPF emitted and lost, for stats
        self.session.__exit__(None, None, None)


def open_live_producer(mode: str = "auto", **options) -> SessionProducer:
    """``options``: more ``CaptureOptions`` (buffer_pages, pid, comm, ...)."""
    try:
        from ..capture import CaptureOptions, CaptureSession
    except ImportError as err:
        raise CaptureError(f"live capture is not available in this installation ({err})") from None
    # the recorder's heap: big short-lived buffers go back to the OS (trimmed after pictures)
    bound_heap()
    # rings deeper than the recorder's: a busy screen's threads make the capture thread wait for
    # the CPU longer than a recorder's (seconds at load 8 on two CPUs)
    options.setdefault("buffer_pages", LIVE_RING_PAGES_PER_CPU * (os.cpu_count() or 1))
    print(f"fputrace: compiling and attaching probes (mode {mode})...", file=sys.stderr, flush=True)
    session = CaptureSession(CaptureOptions(mode=mode, **options))
    session.__enter__()
    return SessionProducer(session)


class BatchQueue:
    """FIFO of batches bounded in events; ``put`` waits for room (a batch larger than the bound
    goes in alone), so a slow consumer slows the producer down instead of losing its batches."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self.events = 0
        self.peak_events = 0
        self.wait_s = 0.0                   # time producers spent waiting for room
        self._items: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()

    def put(self, batch: np.ndarray, stop: threading.Event) -> bool:
        """False if ``stop`` was set while waiting (the batch is then not queued)."""
        with self._cond:
            if self.events and self.events + len(batch) > self.max_events:
                t0 = time.monotonic()
                while self.events and self.events + len(batch) > self.max_events:
                    if stop.is_set():
                        return False
                    self._cond.wait(0.05)
                self.wait_s += time.monotonic() - t0
            self._items.append(batch)
            self.events += len(batch)
            self.peak_events = max(self.peak_events, self.events)
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float, max_events: int = 1) -> np.ndarray | None:
        """The oldest batch, joined with the ones after it up to ``max_events`` (None: empty)."""
        with self._cond:
            if not self._items and timeout_s > 0:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            parts = [self._items.popleft()]
            n = len(parts[0])
            while self._items and n + len(self._items[0]) <= max_events:
                parts.append(self._items.popleft())
                n += len(parts[-1])
            self.events -= n
            self._cond.notify_all()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def empty(self) -> bool:
        return not self._items


class LiveSource(Source):
    live = True

    def __init__(self, producer: BatchProducer, model_factory=None, config=None,
                 writer_factory: Callable[[str, dict], Any] | None = None,
                 queue_events: int = QUEUE_EVENTS) -> None:
        super().__init__(producer.meta, model_factory, config)
        self.producer = producer
        self.batches = BatchQueue(queue_events)
        self.captured_events = 0
        self.fed_events = 0
        self.unfed_at_exit = 0                # still queued when the dashboard quit
        self.capture_cpu_s = 0.0              # CPU time of the capture thread (polls, reorder)
        self.capture_max_gap_s = 0.0          # the longest one round of it took (a stall: loss)
        self.feed_cpu_s = 0.0                 # CPU time of the worker in model.feed
        self.feed_wall_s = 0.0                # ... and its wall time (more: waiting for CPU/GIL)
        self.first_ts_ns = 0
        self._stop = threading.Event()
        self._writer_factory = writer_factory or _default_writer_factory
        self._writer = None
        self._recording_path = ""
        self._recorded_events = 0
        self.capture_error: str = ""
        self.consumer_nice: int | None = None     # the nice the capture thread got (None: kept 0)

    # capture thread: hands every batch on, waiting for room when the model is behind
    def _capture_loop(self) -> None:
        self.consumer_nice = raise_priority(CONSUMER_NICE)
        try:
            last = time.monotonic()
            while not self._stop.is_set():
                for batch in self.producer.poll(0.05):
                    if len(batch) and self.batches.put(batch, self._stop):
                        self.captured_events += len(batch)
                self.capture_cpu_s = time.thread_time()
                now = time.monotonic()
                self.capture_max_gap_s = max(self.capture_max_gap_s, now - last)
                last = now
        except Exception as err:  # noqa: BLE001 -- shown to the user, the dashboard stays up
            self.capture_error = f"capture stopped: {err}"
        finally:
            self.producer.close()             # in this thread: the one that polls it

    def _run(self, post, is_cancelled) -> None:
        raise_priority(CONSUMER_NICE)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        capture = threading.Thread(target=self._capture_loop, name="fputrace-capture", daemon=True)
        capture.start()
        model = self.model = self._make_model()
        rate_t0, rate_n0, events_per_s = time.monotonic(), 0, 0.0
        try:
            while not is_cancelled():
                self._handle_commands(model, post)
                batch = self.batches.get(timeout_s=0.05, max_events=FEED_EVENTS)
                if batch is not None:
                    self._feed(model, batch)
                now = time.monotonic()
                if now - rate_t0 >= 1.0:
                    events_per_s = (self.fed_events - rate_n0) / (now - rate_t0)
                    rate_t0, rate_n0 = now, self.fed_events
                if self.capture_error:
                    post(SourceFailed(self.capture_error))
                    self.capture_error = ""
                if not self.paused and self.pacer.due(now, self.behind):
                    self._post_picture(post, model, self._status(events_per_s))
                    trim_heap()             # a picture's frames are freed: give them back
        finally:
            self._stop.set()
            capture.join(timeout=5)
            sys.setswitchinterval(switch_interval)
            while (batch := self.batches.get(0)) is not None:    # quitting: counted, not fed
                self.unfed_at_exit += len(batch)
            self._close_writer()

    def stats(self) -> dict:
        out = super().stats()
        out.update(captured_events=self.captured_events, fed_events=self.fed_events,
                   unfed_at_exit=self.unfed_at_exit,
                   queue_bound_events=self.batches.max_events,
                   queue_peak_events=self.batches.peak_events,
                   capture_wait_s=round(self.batches.wait_s, 3),
                   capture_cpu_s=round(self.capture_cpu_s, 3), feed_cpu_s=round(self.feed_cpu_s, 3),
                   feed_wall_s=round(self.feed_wall_s, 3),
                   capture_max_gap_s=round(self.capture_max_gap_s, 3),
                   consumer_nice=self.consumer_nice,
                   bpf_counters=getattr(self.producer, "counters", {}))
        return out

    @property
    def behind(self) -> bool:
        """The model has a backlog, or the kernel ring is filling: the capture thread is not
        getting the CPU it needs (a loaded host). Pictures wait (one every few seconds still
        comes): drawing one takes the CPU from the threads that must keep up."""
        fill = getattr(self.producer, "ring_fill", None)
        return self.batches.events > BEHIND_EVENTS or (fill is not None and fill() > RING_BEHIND)

    def _feed(self, model, batch: np.ndarray) -> None:
        if not self.first_ts_ns:
            self.first_ts_ns = int(batch["ts_ns"][0])
        t0, w0 = time.thread_time(), time.monotonic()
        model.feed(batch)
        self.feed_cpu_s += time.thread_time() - t0
        self.feed_wall_s += time.monotonic() - w0
        self.fed_events += len(batch)
        if self._writer is not None:
            self._writer.write(batch)
            self._recorded_events += len(batch)

    def _status(self, events_per_s: float) -> SourceStatus:
        return SourceStatus(live=True, paused=self.paused, events_per_s=events_per_s,
                            recording_path=self._recording_path,
                            recorded_events=self._recorded_events,
                            trace_start_ns=self.first_ts_ns, refresh_s=self.pacer.interval_s,
                            backlog_events=self.batches.events)

    def _handle_commands(self, model, post) -> None:
        for name, arg in self._drain_commands():
            if name == "pause":
                self.paused = not self.paused if arg is None else bool(arg)
                self.pacer.forget()
                if self.paused:               # the frozen picture says PAUSED at once
                    self._post_picture(post, model, self._status(0.0))
            elif name == "watch":
                self.detail_tid = arg
                self.pacer.forget()
            elif name == "record":
                if self._writer is None:
                    self._start_recording(model, arg, post)
                else:
                    path = self._close_writer()
                    post(SourceNotice(f"recording stopped: {path} ({self._recorded_events} events)"))

    def _start_recording(self, model, path: str, post) -> None:
        try:
            self._writer = self._writer_factory(path, self.meta)
        except Exception as err:  # noqa: BLE001 -- a bad path must not end the dashboard
            post(SourceNotice(f"cannot record to {path}: {err}", "error"))
            return
        self._recording_path, self._recorded_events = path, 0
        # The file must name the tasks already running: their COMM records went by before `r`.
        names = task_table_batch(model.snapshot(self.config.window_ns).tasks)
        if len(names):
            self._writer.write(names)
        post(SourceNotice(f"recording to {path}"))

    def _close_writer(self) -> str:
        path = self._recording_path
        if self._writer is not None:
            self._writer.close()
        self._writer, self._recording_path = None, ""
        return path


def _default_writer_factory(path: str, meta: dict):
    from ..recording import RecordingWriter
    return RecordingWriter(path, meta)


def task_table_batch(tasks) -> np.ndarray:
    """COMM and TASK records for the tasks of a snapshot (so a recording started late names them)."""
    if tasks is None or not len(tasks):
        return np.zeros(0, dtype=EVENT_DTYPE)
    out = np.zeros(2 * len(tasks), dtype=EVENT_DTYPE)
    for i, row in enumerate(tasks.itertuples(index=False)):
        a0, a1 = comm_to_args(str(row.comm))
        for j, (kind, x0, x1) in enumerate(((Kind.COMM, a0, a1),
                                            (Kind.TASK, TASK_KTHREAD if row.kthread else 0, 0))):
            ev = out[2 * i + j]
            ev["tid"], ev["tgid"], ev["kind"], ev["a0"], ev["a1"] = row.tid, row.tgid, kind, x0, x1
    return out


