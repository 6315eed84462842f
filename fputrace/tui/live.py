"""The live capture seen by the dashboard: a ``CaptureSession`` behind the ``BatchProducer`` face
(``meta``, ``poll(timeout_s) -> [batches]``, ``close()``) that ``sources.LiveSource`` reads from its
capture thread. The session is entered (BPF compiled and attached) before the dashboard starts, so
anything that makes live capture impossible is one line on the terminal, not a screen."""
from __future__ import annotations

import sys
import threading

from ..errors import CaptureError


class SessionProducer:
    def __init__(self, session) -> None:
        self.session = session
        self.meta = session.meta            # the session keeps it current (lost_per_cpu, symbols)
        self._stop = threading.Event()
        self._batches = session.batches(self._stop)
        self._closed = False

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
        self.session.__exit__(None, None, None)


def open_live_producer(mode: str = "auto") -> SessionProducer:
    try:
        from ..capture import CaptureOptions, CaptureSession
    except ImportError as err:
        raise CaptureError(f"live capture is not available in this installation ({err})") from None
    print(f"fputrace: compiling and attaching probes (mode {mode})...", file=sys.stderr, flush=True)
    session = CaptureSession(CaptureOptions(mode=mode))
    session.__enter__()
    return SessionProducer(session)
