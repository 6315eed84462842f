"""Where the dashboard's pictures come from: a live capture (``live.LiveSource``) or a recording
replayed on a clock (``replay.ReplaySource``). What both share lives here.

A source owns the one ``Model`` and runs it in a single worker thread (``run``), so the model is
never touched by two threads. The UI talks to a source only through ``command(...)`` (a queue the
worker drains) and hears from it only through ``post`` (Textual's thread-safe ``post_message``).

Pictures are the expensive part of a busy dashboard (the model builds a snapshot, the UI lays it
out and renders it), so ``PicturePacer`` spaces them by what they cost: at most ``snapshot_hz`` a
second, one at a time (the next waits until the UI says it drew the last one), and together at
most ``PICTURE_SHARE`` of the wall clock. Under load the dashboard refreshes less often; it never
skips events.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .messages import SnapshotReady, SourceStatus

SNAPSHOT_HZ = 10
NS_PER_S = 1_000_000_000
PICTURE_SHARE = 0.25     # pictures (snapshot + drawing) may take at most this share of the time
MAX_STALE_S = 5.0        # ... and come at least this often, even while the model is behind
DRAW_TIMEOUT_S = 30.0    # a picture the UI never acknowledged (it is gone) stops blocking others


class ModelLike(Protocol):
    def feed(self, batch: np.ndarray) -> None: ...
    def snapshot(self, window_ns: int): ...
    def task_detail(self, tid: int): ...


@dataclass
class SourceConfig:
    window_ns: int = 10 * NS_PER_S      # span of the CPU strips and rate sparklines
    snapshot_hz: float = SNAPSHOT_HZ


# Exited tasks whose rows the dashboard keeps: the most XSAVEs first (an exited task's rank is
# final). The table shows 200 rows at most; every count and total stays exact; a fork storm of
# 100k short tasks would otherwise keep ~80 MB of rows, and every replay checkpoint a copy of them.
KEPT_EXITED_TASKS = 2000


def default_model_factory(meta: dict) -> Callable[[], ModelLike]:
    """The model with the dashboard's own sink for strips, rates and timelines."""
    def make() -> ModelLike:
        from ..model import Model
        from .activity import RecentActivity
        return Model(meta=meta, history=RecentActivity(), top=KEPT_EXITED_TASKS)
    return make


class PicturePacer:
    """When the next picture may be taken. The worker asks ``due``; ``taken`` records what the
    snapshot cost (wall time: the worker feeds nothing meanwhile); the UI calls ``drawn`` (from its
    own thread) with what drawing it cost (that thread's CPU time: its wall time includes waiting
    for the worker, which is feeding)."""

    def __init__(self, hz: float, share: float = PICTURE_SHARE, max_stale_s: float = MAX_STALE_S):
        self.period_s = 1.0 / hz
        self.share = share
        self.max_stale_s = max_stale_s
        self.acknowledged = False     # set by an app that calls drawn(); else pictures go unwaited
        self.pictures = 0
        self.snapshot_s = 0.0         # totals, for benchmarks
        self.draw_s = 0.0
        self._last_at = -1e18
        self._next_at = 0.0
        self._cost_s = 0.0            # snapshot + drawing of the last picture
        self._in_flight = False

    @property
    def interval_s(self) -> float:
        """The current spacing of pictures (what the header shows when it grows)."""
        return max(self.period_s, self._cost_s / self.share)

    def due(self, now: float, behind: bool = False) -> bool:
        """``behind``: the model has a backlog; feeding it comes first unless the screen is stale."""
        if self._in_flight and now - self._last_at < DRAW_TIMEOUT_S:
            return False
        if now < self._next_at:
            return False
        return not behind or now - self._last_at >= self.max_stale_s

    def taken(self, now: float, snapshot_s: float) -> None:
        self.pictures += 1
        self.snapshot_s += snapshot_s
        self._last_at = now
        self._cost_s = snapshot_s
        self._in_flight = self.acknowledged
        self._next_at = now + self.interval_s

    def drawn(self, draw_s: float) -> None:
        self.draw_s += draw_s
        self._cost_s += draw_s
        self._in_flight = False
        self._next_at = self._last_at + self.interval_s

    def forget(self) -> None:
        """The next ``due`` answers at once (a command changed what the screen must show)."""
        self._next_at = 0.0


class Source:
    """What the app needs from any source; subclasses implement ``_run`` and the commands."""
    live: bool = False

    def __init__(self, meta: dict, model_factory: Callable[[], ModelLike] | None = None,
                 config: SourceConfig | None = None) -> None:
        self.meta = meta                      # live: the session's own dict, kept current by it
        self.config = config or SourceConfig()
        self._make_model = model_factory or default_model_factory(self.meta)
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.pacer = PicturePacer(self.config.snapshot_hz)
        self.detail_tid: int | None = None
        self.paused = False
        self.model: ModelLike | None = None
        self.stopping = False                 # set by the UI on quit; run() returns soon after
        self.done = threading.Event()         # set when run() has cleaned up (writer, probes)

    # --- UI side (any thread) -------------------------------------------------------------------
    def command(self, name: str, arg: Any = None) -> None:
        self._commands.put((name, arg))

    def picture_drawn(self, draw_s: float) -> None:
        """The UI finished drawing the last picture (``draw_s`` of its thread's CPU time)."""
        self.pacer.drawn(draw_s)

    def stats(self) -> dict:
        """What the source did (``fputrace tui --stats-json``, benchmarks/bench_tui_live.py)."""
        snap = self.model.snapshot(self.config.window_ns) if self.model is not None else None
        return {"pictures": self.pacer.pictures, "snapshot_s": round(self.pacer.snapshot_s, 3),
                "draw_s": round(self.pacer.draw_s, 3),
                "model_events": snap.events if snap is not None else 0,
                "lost_events": snap.lost_events if snap is not None else 0}

    # --- worker side ----------------------------------------------------------------------------
    def run(self, post: Callable[[Any], Any], is_cancelled: Callable[[], bool]) -> None:
        """Blocking, in the app's worker thread; returns when ``is_cancelled()``."""
        try:
            self._run(post, is_cancelled)
        finally:
            self.done.set()

    def _run(self, post, is_cancelled) -> None:
        raise NotImplementedError

    def _post_picture(self, post, model: ModelLike, status: SourceStatus, final: bool = False) -> None:
        """``final``: the stream has ended (a replay at the end of its recording): the picture
        then holds what report and estimate say, the held-back actions included."""
        t0 = time.monotonic()
        kw = {"final": True} if final else {}
        snap = model.snapshot(self.config.window_ns, **kw)
        detail = model.task_detail(self.detail_tid, **kw) if self.detail_tid is not None else None
        self.pacer.taken(t0, time.monotonic() - t0)
        post(SnapshotReady(snap, status, detail))

    def _drain_commands(self) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                yield self._commands.get_nowait()
            except queue.Empty:
                return
