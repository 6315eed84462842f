"""The model behind ``fputrace stat`` and ``fputrace exporter``: fed live, or from a recording.

    feed = LiveFeed(CaptureOptions(mode="auto"))     # compiles and attaches (root), or raises
    feed.start()                                     # a thread: session batches -> model.feed
    rep = feed.report()                              # any time, from any thread (the model locks)
    feed.close()                                     # detaches every probe, drains, joins

``ReplayFeed(path, speed=None)`` is the same face over a recording: analysed up front (its totals
do not change), or fed at ``speed`` times its own pace. ``replay_intervals`` cuts a recording at fixed trace-time steps, for intervals
in the recording's own time (``fputrace stat --replay``): see ``replay_intervals``.

Live events reach the model when they pass the capture's reorder watermark (~100 ms).
"""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np

from ..errors import CaptureError


class LiveFeed:
    live = True

    def __init__(self, opts):
        from ..capture import CaptureSession
        from ..model import Model
        self.session = CaptureSession(opts)
        self.session.__enter__()           # non-root, no BPF, ...: CaptureError, one line
        self.meta = self.session.meta      # kept current by the session (lost_per_cpu, symbols)
        self.model = Model(self.meta)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fputrace-feed", daemon=True)
        self._closed = False

    def start(self) -> "LiveFeed":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for batch in self.session.batches(self._stop):
                if len(batch):
                    self.model.feed(batch)
        except BaseException as err:       # surfaced by report() / close() in the main thread
            self.error = err

    def report(self):
        if self.error is not None:
            raise CaptureError(f"live capture failed: {self.error}")
        return self.model.report()

    def estimate(self):
        return self.model.estimate()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Detach every probe (the session does it when its batch loop sees the stop flag), drain
        the ring into the model. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.session.__exit__(None, None, None)


class ReplayFeed:
    """A recording behind the same face: analysed completely up front (``speed=None``: its totals
    do not change), or fed on a thread at ``speed`` times its own pace, so that rates and
    dashboards look as they did live (demos, tests of rate queries)."""
    live = False
    TICK_S = 0.05

    def __init__(self, path, speed: float | None = None):
        import fputrace
        from ..model import Model
        self.trace = fputrace.load(path)
        self.meta = self.trace.meta
        self.model = Model(self.trace.meta)
        self.speed = speed
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        if speed is None:
            for batch in self.trace.batches():
                self.model.feed(batch)
            self.finished.set()

    def start(self) -> "ReplayFeed":
        if self.speed is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fputrace-replay", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import time
        try:
            step_ns = int(self.TICK_S * self.speed * 1e9)
            t0 = time.monotonic()
            for k, _ in enumerate(replay_intervals(self.trace, step_ns, self.model.feed), 1):
                wait = t0 + k * self.TICK_S - time.monotonic()
                if self._stop.wait(max(0.0, wait)):
                    return
            self.finished.set()
        except BaseException as err:
            self.error = err

    def report(self):
        return self.model.report()

    def estimate(self):
        return self.model.estimate()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def replay_intervals(trace, step_ns: int, feed) -> Iterator[int]:
    """Feed ``trace`` to ``feed`` (a callable taking a batch) and yield the end of each interval of
    ``step_ns`` (from the recording's first record) once every event before it is fed; the last
    interval ends at the last record."""
    end = last = None
    for b in trace.batches():
        if not len(b):
            continue
        if end is None:
            end = int(b["ts_ns"][0]) + step_ns
        last = int(b["ts_ns"][-1])
        lo = 0
        while True:
            cut = int(np.searchsorted(b["ts_ns"], np.uint64(end), side="left"))
            if cut >= len(b):
                feed(b[lo:])               # the interval goes on in the next batch
                break
            feed(b[lo:cut])
            yield end
            lo, end = cut, end + step_ns
    if last is not None:
        yield last
