"""The live capture seen by the dashboard: a ``CaptureSession`` behind the ``BatchProducer`` face
(``meta``, ``poll(timeout_s) -> [batches]``, ``close()``) that ``sources.LiveSource`` reads."""
from __future__ import annotations

from ..errors import CaptureError


def open_live_producer(mode: str = "auto"):
    try:
        from ..capture import CaptureSession
    except ImportError as err:
        raise CaptureError(f"live capture is not available in this installation ({err})") from None
    return CaptureSession(mode=mode)
