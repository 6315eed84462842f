"""Where the dashboard's pictures come from: a live capture or a recording replayed on a clock.

Both sources own the one ``Model`` and run it in a single worker thread (``run``), so the model is
never touched by two threads. The UI talks to a source only through ``command(...)`` (a queue the
worker drains) and hears from it only through ``post`` (Textual's thread-safe ``post_message``),
at most ``SNAPSHOT_HZ`` times per second.

Live path, one direction, nothing blocks upstream::

    capture thread --put_nowait--> bounded batch queue --> worker: model.feed --> snapshot --> UI

If the queue is ever full the capture thread drops the batch instead of waiting (so the kernel's ring
buffer never fills because of us), counts it, and the drop reaches the model as LOST events on the
affected CPUs: the dashboard then shows lost events and UNKNOWN owners, never invented certainty.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..events import EVENT_DTYPE, TASK_KTHREAD, Kind, comm_to_args
from .messages import SnapshotReady, SourceFailed, SourceNotice, SourceStatus

SNAPSHOT_HZ = 10
NS_PER_S = 1_000_000_000
QUEUE_EVENTS = 4_000_000     # bounded: 8 s of slack at 500k ev/s, 160 MB at worst
PICTURE_SHARE = 0.25          # pictures may take at most this share of the worker's time
BACKLOG_FOR_PICTURES = 1 / 16  # ... and wait while the queue holds more than this share of its bound
MAX_STALE_S = 5.0             # ... unless the screen is older than this


class ModelLike(Protocol):
    def feed(self, batch: np.ndarray) -> None: ...
    def snapshot(self, window_ns: int): ...
    def task_detail(self, tid: int): ...


@dataclass
class SourceConfig:
    window_ns: int = 10 * NS_PER_S      # span of the CPU strips and rate sparklines
    snapshot_hz: float = SNAPSHOT_HZ


def default_model_factory(meta: dict) -> Callable[[], ModelLike]:
    def make() -> ModelLike:
        from ..model import Model
        return Model(meta=meta)
    return make


class Source:
    """What the app needs from any source; subclasses implement ``run`` and the commands."""
    live: bool = False

    def __init__(self, meta: dict, model_factory: Callable[[], ModelLike] | None = None,
                 config: SourceConfig | None = None) -> None:
        self.meta = meta                      # live: the session's own dict, kept current by it
        self.config = config or SourceConfig()
        self._make_model = model_factory or default_model_factory(self.meta)
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.detail_tid: int | None = None
        self.paused = False
        self.stopping = False                 # set by the UI on quit; run() returns soon after
        self.done = threading.Event()         # set when run() has cleaned up (writer, probes)

    # --- UI side (any thread) -------------------------------------------------------------------
    def command(self, name: str, arg: Any = None) -> None:
        self._commands.put((name, arg))

    # --- worker side ----------------------------------------------------------------------------
    def run(self, post: Callable[[Any], Any], is_cancelled: Callable[[], bool]) -> None:
        """Blocking, in the app's worker thread; returns when ``is_cancelled()``."""
        try:
            self._run(post, is_cancelled)
        finally:
            self.done.set()

    def _run(self, post, is_cancelled) -> None:
        raise NotImplementedError

    def _picture(self, model: ModelLike, status: SourceStatus) -> SnapshotReady:
        snap = model.snapshot(self.config.window_ns)
        detail = model.task_detail(self.detail_tid) if self.detail_tid is not None else None
        return SnapshotReady(snap, status, detail)

    def _drain_commands(self) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                yield self._commands.get_nowait()
            except queue.Empty:
                return


# ------------------------------------------------------------------------------------------------
# Live


class BatchProducer(Protocol):
    """A capture session seen from the dashboard: ``poll`` returns the batches ready now."""
    meta: dict

    def poll(self, timeout_s: float) -> list[np.ndarray]: ...
    def close(self) -> None: ...


@dataclass
class DropLedger:
    """Batches the UI path could not take, kept per CPU until they can be sent on as LOST events."""
    dropped_batches: int = 0
    dropped_events: int = 0
    pending: dict[int, tuple[int, int]] = field(default_factory=dict)   # cpu -> (count, last ts)

    def drop(self, batch: np.ndarray) -> None:
        self.dropped_batches += 1
        self.dropped_events += len(batch)
        cpus, counts = np.unique(batch["cpu"], return_counts=True)
        for cpu, n in zip(cpus.tolist(), counts.tolist()):
            last_ts = int(batch["ts_ns"][batch["cpu"] == cpu][-1])
            old, _ = self.pending.get(cpu, (0, 0))
            self.pending[cpu] = (old + n, last_ts)

    def take_lost_batch(self) -> np.ndarray | None:
        if not self.pending:
            return None
        items = sorted(self.pending.items(), key=lambda kv: kv[1][1])
        self.pending = {}
        lost = np.zeros(len(items), dtype=EVENT_DTYPE)
        for i, (cpu, (n, ts)) in enumerate(items):
            lost[i]["ts_ns"], lost[i]["cpu"], lost[i]["kind"], lost[i]["a0"] = ts, cpu, Kind.LOST, n
        return lost


class LiveSource(Source):
    live = True

    def __init__(self, producer: BatchProducer, model_factory=None, config=None,
                 writer_factory: Callable[[str, dict], Any] | None = None,
                 queue_events: int = QUEUE_EVENTS) -> None:
        super().__init__(producer.meta, model_factory, config)
        self.producer = producer
        self.batches: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self.queue_events = queue_events      # the bound, in events (batches vary in size)
        self.queued_events = 0
        self.max_queued_events = 0
        self._queue_lock = threading.Lock()
        self.ledger = DropLedger()
        self.captured_events = 0
        self.fed_events = 0
        self.first_ts_ns = 0
        self.picture_s = 0.0                  # worker time spent building pictures
        self._stop = threading.Event()
        self._writer_factory = writer_factory or _default_writer_factory
        self._writer = None
        self._recording_path = ""
        self._recorded_events = 0
        self.capture_error: str = ""

    # capture thread: never waits for anyone downstream
    def _capture_loop(self) -> None:
        try:
            while not self._stop.is_set():
                for batch in self.producer.poll(0.05):
                    if not len(batch):
                        continue
                    self.captured_events += len(batch)
                    with self._queue_lock:
                        room = self.queued_events + len(batch) <= self.queue_events
                        if room:
                            self.queued_events += len(batch)
                            self.max_queued_events = max(self.max_queued_events, self.queued_events)
                    if room:
                        self.batches.put(batch)
                    else:
                        self.ledger.drop(batch)
        except Exception as err:  # noqa: BLE001 -- shown to the user, the dashboard stays up
            self.capture_error = f"capture stopped: {err}"
        finally:
            self.producer.close()             # in this thread: the one that polls it

    def _run(self, post, is_cancelled) -> None:
        capture = threading.Thread(target=self._capture_loop, name="fputrace-capture", daemon=True)
        capture.start()
        model = self._make_model()
        period_s = 1.0 / self.config.snapshot_hz
        next_emit, last_emit = 0.0, 0.0
        rate_t0, rate_n0, events_per_s = time.monotonic(), 0, 0.0
        try:
            while not is_cancelled():
                self._handle_commands(model, post)
                lost = self.ledger.take_lost_batch()
                if lost is not None:
                    model.feed(lost)
                try:
                    batch = self.batches.get(timeout=period_s / 2)
                except queue.Empty:
                    batch = None
                while batch is not None:      # drain what is there, then look at the clock
                    self._feed(model, batch)
                    if time.monotonic() >= next_emit:
                        break                 # time for a picture; the queue keeps the rest
                    try:
                        batch = self.batches.get_nowait()
                    except queue.Empty:
                        batch = None
                now = time.monotonic()
                if now - rate_t0 >= 1.0:
                    events_per_s = (self.fed_events - rate_n0) / (now - rate_t0)
                    rate_t0, rate_n0 = now, self.fed_events
                if self.capture_error:
                    post(SourceFailed(self.capture_error))
                    self.capture_error = ""
                # Feeding comes first: a picture of a busy host can take long (the model builds
                # every interval of the window), so pictures wait for a short queue and are
                # spaced so that they take at most PICTURE_SHARE of this thread's time.
                backlog_ok = self.queued_events <= self.queue_events * BACKLOG_FOR_PICTURES
                if now >= next_emit and not self.paused and \
                        (backlog_ok or now - last_emit >= MAX_STALE_S):
                    post(self._picture(model, self._status(events_per_s)))
                    cost = time.monotonic() - now
                    self.picture_s += cost
                    last_emit, next_emit = now, now + max(period_s, cost / PICTURE_SHARE)
        finally:
            self._stop.set()
            capture.join(timeout=5)
            self._close_writer()

    def _feed(self, model, batch: np.ndarray) -> None:
        with self._queue_lock:
            self.queued_events -= len(batch)
        if not self.first_ts_ns:
            self.first_ts_ns = int(batch["ts_ns"][0])
        model.feed(batch)
        self.fed_events += len(batch)
        if self._writer is not None:
            self._writer.write(batch)
            self._recorded_events += len(batch)

    def _status(self, events_per_s: float) -> SourceStatus:
        return SourceStatus(live=True, paused=self.paused, events_per_s=events_per_s,
                            recording_path=self._recording_path,
                            recorded_events=self._recorded_events,
                            dropped_batches=self.ledger.dropped_batches,
                            trace_start_ns=self.first_ts_ns)

    def _handle_commands(self, model, post) -> None:
        for name, arg in self._drain_commands():
            if name == "pause":
                self.paused = not self.paused if arg is None else bool(arg)
                post(self._picture(model, self._status(0.0)))
            elif name == "watch":
                self.detail_tid = arg
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


# ------------------------------------------------------------------------------------------------
# Replay


class ReplaySource(Source):
    """A recording played on a clock: play/pause, step, speed, go to a time. Rewinding replays the
    file from its start into a fresh model (the model is a pure function of the events)."""
    live = False
    STEP_NS = NS_PER_S
    SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0)

    def __init__(self, events: np.ndarray, meta: dict, model_factory=None, config=None,
                 start_ns: int | None = None, playing: bool = True, speed: float = 1.0) -> None:
        super().__init__(meta, model_factory, config)
        self.events = events
        ts = events["ts_ns"]
        self.t0_ns = int(ts[0]) if len(ts) else 0
        self.duration_ns = int(ts[-1]) - self.t0_ns if len(ts) else 0
        self.playing = playing
        self.speed = speed
        self._start_rel_ns = start_ns
        self.position_ns = 0          # relative to t0
        self._fed = 0                 # events[:_fed] are in the model

    @classmethod
    def from_batches(cls, batches: Iterable[np.ndarray], meta: dict, **kw) -> ReplaySource:
        parts = [b for b in batches if len(b)]
        events = np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)
        if len(events) > 1 and np.any(np.diff(events["ts_ns"].astype(np.int64)) < 0):
            events = events[np.argsort(events["ts_ns"], kind="stable")]
        return cls(events, meta, **kw)

    def _feed_to(self, model, rel_ns: int) -> ModelLike:
        rel_ns = max(0, min(rel_ns, self.duration_ns))
        if rel_ns < self.position_ns or model is None:
            model, self._fed = self._make_model(), 0
        end = int(np.searchsorted(self.events["ts_ns"], self.t0_ns + rel_ns, side="right"))
        if end > self._fed:
            model.feed(self.events[self._fed:end])
            self._fed = end
        self.position_ns = rel_ns
        return model

    def _status(self) -> SourceStatus:
        ts = self.events["ts_ns"]
        now = self.t0_ns + self.position_ns
        lo = int(np.searchsorted(ts, max(self.t0_ns, now - NS_PER_S), side="right"))
        span_s = min(1.0, max(self.position_ns, 1) / NS_PER_S)
        return SourceStatus(live=False, paused=not self.playing,
                            events_per_s=(self._fed - lo) / span_s,
                            position_ns=self.position_ns, duration_ns=self.duration_ns,
                            speed=self.speed, finished=self.position_ns >= self.duration_ns,
                            trace_start_ns=self.t0_ns)

    def _run(self, post, is_cancelled) -> None:
        start = self.duration_ns if self._start_rel_ns is None and not self.playing else \
            (self._start_rel_ns or 0)
        self.position_ns = start
        model = self._feed_to(None, start)
        post(self._picture(model, self._status()))
        period_s = 1.0 / self.config.snapshot_hz
        last = time.monotonic()
        while not is_cancelled():
            time.sleep(period_s / 4)
            changed = False
            for name, arg in self._drain_commands():
                model, did = self._apply(model, name, arg)
                changed |= did
            now = time.monotonic()
            if self.playing:
                target = self.position_ns + int((now - last) * self.speed * NS_PER_S)
                model = self._feed_to(model, target)
                changed = True
                if self.position_ns >= self.duration_ns:
                    self.playing = False
                    post(SourceNotice("end of recording (g: go to a time, space: play again)"))
            last = now
            if changed:
                post(self._picture(model, self._status()))
                # keep the rate at SNAPSHOT_HZ even when commands arrive faster
                time.sleep(max(0.0, period_s - (time.monotonic() - now)))

    def _apply(self, model, name: str, arg) -> tuple[Any, bool]:
        if name in ("pause", "play"):
            if not self.playing and self.position_ns >= self.duration_ns:
                model = self._feed_to(model, 0)       # play again from the start
            self.playing = (not self.playing) if arg is None else bool(arg)
        elif name == "step":
            self.playing = False
            model = self._feed_to(model, self.position_ns + int(arg) * self.STEP_NS)
        elif name == "speed":
            self.speed = _next_speed(self.speed, int(arg), self.SPEEDS)
        elif name == "goto":
            model = self._feed_to(model, int(arg))
        elif name == "watch":
            self.detail_tid = arg
        else:
            return model, False
        return model, True


def _next_speed(speed: float, direction: int, speeds: tuple[float, ...]) -> float:
    if direction > 0:
        return next((s for s in speeds if s > speed), speeds[-1])
    return next((s for s in reversed(speeds) if s < speed), speeds[0])


def open_replay(path: str, *, from_activity: bool = False, **kw) -> ReplaySource:
    """A replay source over a recording file (FileFormatError for anything unreadable).
    ``from_activity``: start a second before the first FPU event (skips a recorder's start-up)."""
    from ..trace import load
    trace = load(path)
    source = ReplaySource.from_batches(trace.batches(), trace.meta, **kw)
    if from_activity and kw.get("start_ns") is None:
        fpu = np.isin(source.events["kind"], (Kind.XSAVE, Kind.XRSTOR, Kind.KFPU_BEGIN))
        if fpu.any():
            first = int(source.events["ts_ns"][np.argmax(fpu)]) - source.t0_ns
            source._start_rel_ns = max(0, first - NS_PER_S)
    return source
