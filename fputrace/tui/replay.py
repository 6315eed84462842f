"""A recording replayed on a clock: play/pause, step, speed, go to a time, in bounded memory.

The file is never loaded whole. ``Recording.index`` says where each batch lies and when it starts;
``EventCursor`` reads batches one at a time, in time order, and hands the model the events up to
the time asked for. Going forward feeds what lies between; going back restores the newest
``Checkpoint`` before the target (a copy of the model and of the cursor, taken every
``CHECKPOINT_EVENTS`` events on the way forward, within ``CHECKPOINT_BYTES``) and feeds from
there, or starts again from the first event when there is none: the model is a pure function of
the events, so both give the same picture (tests/test_tui_replay.py checks it).

Feeding is done in slices of at most ``FEED_SLICE_S`` of work, so a long seek or a speed the model
cannot follow still shows pictures (of where the replay has got to) and still hears keys.
"""
from __future__ import annotations

import collections
import copy
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..events import EVENT_DTYPE, Kind
from .messages import SourceNotice, SourceStatus
from ..heap import bound_heap, trim_heap
from .sources import NS_PER_S, Source

CHECKPOINT_EVENTS = 1 << 21      # a step back re-feeds at most this many events
CHECKPOINT_BYTES = 32 << 20      # all checkpoints together; beyond it they are thinned out
# and at most this many: a model copy also holds memory its arrays do not show (~3 MB resident
# each in a storm recording, where 24 checkpoints of "28 MB" made RSS 90 MB larger)
MAX_CHECKPOINTS = 8
FEED_SLICE_S = 0.1
PIECE_EVENTS = 1 << 16           # batches (up to 1M events) are decoded this many rows at a time
_EMPTY = np.zeros(0, EVENT_DTYPE)


class ArrayBatches:
    """Batches held in memory (tests, small imports), with the face of ``FileBatches``."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = [b if _sorted(b) else b[np.argsort(b["ts_ns"], kind="stable")]
                         for b in batches if len(b)]
        self.first_ts = np.array([int(b["ts_ns"][0]) for b in self._batches], np.int64)
        self.last_ts_ns = max((int(b["ts_ns"][-1]) for b in self._batches), default=0)

    def __len__(self) -> int:
        return len(self._batches)

    def rows(self, i: int) -> int:
        return len(self._batches[i])

    def piece(self, i: int, row: int) -> np.ndarray:
        return self._batches[i][row:row + PIECE_EVENTS]


class FileBatches:
    """The batches of a recording file, read by offset when the cursor needs them and decoded a
    piece at a time: memory holds at most a couple of batches in their compact columns."""

    def __init__(self, recording) -> None:
        self.recording = recording
        self._refs = recording.index
        self._file = None
        self._loaded: dict[int, Any] = {}         # batch index -> LoadedBatch, the newest ones:
        self._lock = threading.Lock()             # one, or two where batches overlap in time
        self._keep = 2 if recording.meta.get("late_events") else 1
        self.first_ts = np.array([r.first_ts_ns for r in self._refs], np.int64)
        # the end of the trace: the last event of the batch that ends last (the last one, unless
        # the file has late events; then any batch could, and each is read once to find out)
        tail = range(len(self._refs)) if recording.meta.get("late_events") else \
            range(len(self._refs) - 1, len(self._refs))
        self.last_ts_ns = max((self._last_ts(i) for i in tail if i >= 0), default=0)
        self._loaded.clear()

    def __len__(self) -> int:
        return len(self._refs)

    def rows(self, i: int) -> int:
        return self._refs[i].events

    def _last_ts(self, i: int) -> int:
        batch = self._load(i)
        return int(batch.events(batch.rows - 1, batch.rows)["ts_ns"][-1])

    def _load(self, i: int):
        loaded = self._loaded.get(i)
        if loaded is None:
            if self._file is None:
                self._file = open(self.recording.path, "rb")
            while len(self._loaded) >= self._keep:          # before reading: one at a time
                del self._loaded[next(iter(self._loaded))]
            loaded = self._loaded[i] = self.recording.load_batch(self._refs[i], self._file)
        return loaded

    def piece(self, i: int, row: int) -> np.ndarray:
        with self._lock:
            return self._load(i).events(row, row + PIECE_EVENTS)

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()
            if self._file is not None:
                self._file.close()
                self._file = None


def _sorted(b: np.ndarray) -> bool:
    ts = b["ts_ns"]
    return len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1]))


@dataclass
class OpenBatch:
    index: int                  # file-order batch index
    row: int                    # next row to decode
    frontier_ns: int            # timestamp of the last row decoded (rows are in time order)


@dataclass
class CursorState:
    next: int                   # index into the time order of the next batch to open
    open: list[OpenBatch]       # batches being read (one, unless batches overlap in time)
    pending: np.ndarray         # events decoded but not handed out yet, in time order
    source: np.ndarray          # the file-order batch index of each pending event
    done_ns: int                # every event at or before this time has been handed out
    handed: int                 # events handed out so far

    def copy(self) -> CursorState:
        return CursorState(self.next, [OpenBatch(o.index, o.row, o.frontier_ns) for o in self.open],
                           self.pending.copy(), self.source.copy(), self.done_ns, self.handed)


class EventCursor:
    """The events of a batch store in the time order ``fputrace.load`` gives them (stable by file
    position for equal timestamps), handed out in chunks of at most a piece up to a time.
    Batches are opened in order of their first timestamp and read a piece at a time; an event
    is handed out once no batch still being read, nor any batch not opened yet, can hold an
    earlier one. Batches overlap only in files with late events; then their pieces are merged."""

    def __init__(self, store) -> None:
        self.store = store
        self.order = np.argsort(store.first_ts, kind="stable")
        self.reset()

    def reset(self) -> None:
        self.state = CursorState(0, [], _EMPTY, np.zeros(0, np.int32), -1, 0)

    def save(self) -> CursorState:
        return self.state.copy()

    def restore(self, state: CursorState) -> None:
        self.state = state.copy()

    def next_chunk(self, until_ns: int) -> np.ndarray | None:
        """The next events at or before ``until_ns`` (None when there are no more)."""
        s, first_ts = self.state, self.store.first_ts
        while True:
            while s.next < len(self.order) and first_ts[self.order[s.next]] <= until_ns:
                i = int(self.order[s.next])
                s.open.append(OpenBatch(i, 0, int(first_ts[i])))
                s.next += 1
            s.open = [o for o in s.open if o.row < self.store.rows(o.index)]
            limit = min([until_ns] + [o.frontier_ns - 1 for o in s.open])
            chunk = self._take(limit)
            if chunk is not None:
                return chunk
            unread = [o for o in s.open if o.frontier_ns <= until_ns]
            if not unread:
                s.done_ns = max(s.done_ns, until_ns)
                return None
            o = min(unread, key=lambda o: o.frontier_ns)
            piece = self.store.piece(o.index, o.row)
            o.row += len(piece)
            o.frontier_ns = int(piece["ts_ns"][-1])
            self._merge(piece, o.index)

    def _merge(self, piece: np.ndarray, i: int) -> None:
        s = self.state
        src = np.full(len(piece), i, np.int32)
        if not len(s.pending):
            s.pending, s.source = piece, src
            return
        pending = np.concatenate([s.pending, piece])
        source = np.concatenate([s.source, src])
        if int(s.pending["ts_ns"][-1]) > int(piece["ts_ns"][0]):       # they overlap
            order = np.lexsort((source, pending["ts_ns"]))             # stable: rows keep order
            pending, source = pending[order], source[order]
        s.pending, s.source = pending, source

    def _take(self, limit_ns: int) -> np.ndarray | None:
        s = self.state
        if limit_ns < 0:
            return None
        s.done_ns = max(s.done_ns, limit_ns)     # nothing unread can be at or before the limit
        k = int(np.searchsorted(s.pending["ts_ns"], np.uint64(limit_ns), side="right"))
        if k == 0:
            return None
        chunk = s.pending[:k]
        s.pending, s.source = s.pending[k:], s.source[k:]
        s.handed += k
        return chunk


@dataclass
class Checkpoint:
    at_ns: int                  # the cursor's done_ns when it was taken
    model: Any
    cursor: CursorState
    nbytes: int


def clone_model(model):
    """An independent copy of a model: ``Model.copy()``; a model without one (a test's stand-in)
    is deep-copied, its locks replaced by fresh ones. None if it cannot be copied."""
    if hasattr(model, "copy"):
        return model.copy()
    locks = {id(v): threading.Lock() for v in vars(model).values()
             if isinstance(v, type(threading.Lock()))}
    try:
        return copy.deepcopy(model, locks)
    except (TypeError, copy.Error):
        return None


def _nbytes(obj, seen: set[int] | None = None, depth: int = 0) -> int:
    """Memory held by the numpy arrays reachable from ``obj`` (what a checkpoint costs)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v, seen, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__"):
        return _nbytes(vars(obj), seen, depth + 1)
    return 0


class ReplaySource(Source):
    """A recording played on a clock (module docstring). ``store``: ``FileBatches`` over a file
    (``open_replay``) or ``ArrayBatches`` (``from_batches``)."""
    live = False
    STEP_NS = NS_PER_S
    SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0)

    def __init__(self, store, meta: dict, model_factory=None, config=None,
                 start_ns: int | None = None, playing: bool = True, speed: float = 1.0,
                 checkpoint_events: int = CHECKPOINT_EVENTS,
                 checkpoint_bytes: int = CHECKPOINT_BYTES) -> None:
        super().__init__(meta, model_factory, config)
        self.store = store
        self.cursor = EventCursor(store)
        self.t0_ns = int(store.first_ts.min()) if len(store) else 0
        self.duration_ns = max(0, store.last_ts_ns - self.t0_ns) if len(store) else 0
        self.playing = playing
        self.speed = speed
        self._start_rel_ns = start_ns
        self.position_ns = 0          # relative to t0: every event up to here is in the model
        self.target_ns = 0            # where the replay is going
        self.checkpoint_events = checkpoint_events
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoints: list[Checkpoint] = []
        self.rebuilds = 0             # fresh models started (tests, benchmarks)
        self.restores = 0             # checkpoints restored
        self._recent: collections.deque[np.ndarray] = collections.deque()   # ts of the last second

    @classmethod
    def from_batches(cls, batches: Iterable[np.ndarray], meta: dict, **kw) -> ReplaySource:
        return cls(ArrayBatches(batches), meta, **kw)

    def stats(self) -> dict:
        out = super().stats()
        out.update(fed_events=self.fed_events, checkpoints=len(self.checkpoints),
                   checkpoint_bytes=sum(c.nbytes for c in self.checkpoints),
                   rebuilds=self.rebuilds, restores=self.restores)
        return out

    @property
    def fed_events(self) -> int:
        return self.cursor.state.handed

    # --- moving the model through the trace ------------------------------------------------------
    def _seek(self, rel_ns: int) -> None:
        """Aim at ``rel_ns``; going back restores a checkpoint or starts a fresh model."""
        rel_ns = max(0, min(int(rel_ns), self.duration_ns))
        self.target_ns = rel_ns
        at = self.t0_ns + rel_ns
        cp = next((c for c in reversed(self.checkpoints) if c.at_ns <= at), None)
        forward = self.model is not None and rel_ns >= self.position_ns
        if forward and (cp is None or cp.at_ns <= self.cursor.state.done_ns):
            return                            # feeding on from here is the shortest way
        model = clone_model(cp.model) if cp is not None else None
        if model is not None:
            self.model = model
            self.cursor.restore(cp.cursor)
            self.position_ns = max(0, cp.at_ns - self.t0_ns)
            self.restores += 1
        else:
            self.model = self._make_model()
            self.cursor.reset()
            self.position_ns = 0
            self.rebuilds += 1
        self._recent.clear()

    def _advance(self, budget_s: float | None) -> None:
        """Feed toward the target for at most ``budget_s`` of work (None: until there)."""
        t_end = None if budget_s is None else time.monotonic() + budget_s
        until = self.t0_ns + self.target_ns
        while True:
            chunk = self.cursor.next_chunk(until)
            if chunk is None:
                self.position_ns = self.target_ns
                return
            self.model.feed(chunk)
            self._remember(chunk["ts_ns"])
            self.position_ns = max(self.position_ns,
                                   min(self.target_ns, int(chunk["ts_ns"][-1]) - self.t0_ns))
            self._maybe_checkpoint()
            if t_end is not None and time.monotonic() >= t_end:
                return

    def _maybe_checkpoint(self) -> None:
        if not self.checkpoint_events:
            return
        state = self.cursor.state
        last = self.checkpoints[-1].cursor.handed if self.checkpoints else 0
        if state.handed - last < self.checkpoint_events or \
                (self.checkpoints and state.done_ns <= self.checkpoints[-1].at_ns):
            return
        model = clone_model(self.model)
        if model is None:
            self.checkpoint_events = 0        # this model cannot be copied: rewind by re-feeding
            return
        saved = self.cursor.save()
        cp = Checkpoint(state.done_ns, model, saved,
                        _nbytes(model) + saved.pending.nbytes + saved.source.nbytes)
        self.checkpoints.append(cp)
        while (sum(c.nbytes for c in self.checkpoints) > self.checkpoint_bytes or
               len(self.checkpoints) > MAX_CHECKPOINTS) and len(self.checkpoints) > 1:
            del self.checkpoints[::2]         # keep every other one, twice as far apart
            self.checkpoint_events *= 2
        if cp.nbytes > self.checkpoint_bytes:
            self.checkpoints.clear()
            self.checkpoint_events = 0

    def _remember(self, ts: np.ndarray) -> None:
        self._recent.append(ts.copy())            # a copy: a view would keep its piece alive
        lo = int(ts[-1]) - NS_PER_S
        while len(self._recent) > 1 and int(self._recent[0][-1]) <= lo:
            self._recent.popleft()

    def _events_last_second(self) -> float:
        now = self.t0_ns + self.position_ns
        lo = np.uint64(max(self.t0_ns, now - NS_PER_S))
        n = sum(len(t) - int(np.searchsorted(t, lo, side="right")) for t in self._recent)
        return n / min(1.0, max(self.position_ns, 1) / NS_PER_S)

    def _status(self) -> SourceStatus:
        return SourceStatus(live=False, paused=not self.playing,
                            events_per_s=self._events_last_second(),
                            position_ns=self.position_ns, duration_ns=self.duration_ns,
                            speed=self.speed, finished=self.position_ns >= self.duration_ns,
                            trace_start_ns=self.t0_ns, target_ns=self.target_ns,
                            refresh_s=self.pacer.interval_s)

    def _picture(self, post) -> None:
        self._post_picture(post, self.model, self._status(),
                           final=self.position_ns >= self.duration_ns)
        trim_heap()                 # decoded pieces and a picture's frames: back to the OS

    # --- the worker ------------------------------------------------------------------------------
    def _run(self, post, is_cancelled) -> None:
        if self.model is None:
            start = self.duration_ns if self._start_rel_ns is None and not self.playing else \
                (self._start_rel_ns or 0)
            self._seek(start)
            self._advance(None)
        self._picture(post)
        last = time.monotonic()
        changed = False
        try:
            while not is_cancelled():
                for name, arg in self._drain_commands():
                    changed |= self._apply(name, arg)
                now = time.monotonic()
                if self.playing and self.position_ns >= self.duration_ns:
                    self.playing, changed = False, True
                    post(SourceNotice("end of recording (g: go to a time, space: play again)"))
                elif self.playing and self.position_ns >= self.target_ns:
                    # the clock runs from where the model has got to: a speed it cannot follow
                    # plays as fast as it can, not further and further behind
                    self._seek(self.position_ns + int((now - last) * self.speed * NS_PER_S))
                last = now
                if self.position_ns < self.target_ns:
                    self._advance(FEED_SLICE_S)
                    changed = True
                if changed and self.pacer.due(time.monotonic()):
                    self._picture(post)
                    changed = False
                elif self.position_ns >= self.target_ns:
                    time.sleep(self.pacer.period_s / 4)
        finally:
            close = getattr(self.store, "close", None)
            if close is not None:
                close()

    def _apply(self, name: str, arg) -> bool:
        if name in ("pause", "play"):
            if not self.playing and self.position_ns >= self.duration_ns:
                self._seek(0)                               # play again from the start
            self.playing = (not self.playing) if arg is None else bool(arg)
        elif name == "step":
            self.playing = False
            self._seek(self.target_ns + int(arg) * self.STEP_NS)
        elif name == "speed":
            self.speed = _next_speed(self.speed, int(arg), self.SPEEDS)
        elif name == "goto":
            self._seek(int(arg))
        elif name == "watch":
            self.detail_tid = arg
        else:
            return False
        self.pacer.forget()
        return True


def _next_speed(speed: float, direction: int, speeds: tuple[float, ...]) -> float:
    if direction > 0:
        return next((s for s in speeds if s > speed), speeds[-1])
    return next((s for s in reversed(speeds) if s < speed), speeds[0])


FPU_KINDS = np.array([Kind.XSAVE, Kind.XRSTOR, Kind.KFPU_BEGIN], np.uint8)


def first_fpu_event_ns(store) -> int | None:
    """Timestamp of the first XSAVE/XRSTOR/kernel-FPU event (reads only the batches before it)."""
    cursor = EventCursor(store)
    while (chunk := cursor.next_chunk(np.iinfo(np.int64).max)) is not None:
        hit = np.isin(chunk["kind"], FPU_KINDS)
        if hit.any():
            return int(chunk["ts_ns"][np.argmax(hit)])
    return None


def open_replay(path: str, *, from_activity: bool = False, **kw) -> ReplaySource:
    """A replay source over a recording file (FileFormatError for anything unreadable).
    ``from_activity``: start a second before the first FPU event (skips a recorder's start-up)."""
    from ..recording import open_recording
    bound_heap()                    # the recorder's heap: big short-lived buffers go back
    recording = open_recording(path, warn=False)
    source = ReplaySource(FileBatches(recording), recording.meta, **kw)
    if from_activity and kw.get("start_ns") is None:
        first = first_fpu_event_ns(source.store)
        if first is not None:
            source._start_rel_ns = max(0, first - source.t0_ns - NS_PER_S)
    return source
