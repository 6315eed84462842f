"""Live capture: BPF programs -> buffer -> time-ordered numpy batches of EVENT_DTYPE.

    from fputrace.capture import CaptureSession, CaptureOptions
    with CaptureSession(CaptureOptions(mode="auto")) as cap:
        for batch in cap.batches(stop):
            ...

Modules: features (host probing, once), headers (kernel header tree for bcc), plan (attach
strategy per logical event), loader (bcc compile/attach), ringbuf (buffer adapters), reorder
(time order), tasks (/proc snapshot), tif (TIF_NEED_FPU_LOAD calibration), xstate (CPUID 0xD),
session (the context manager), recorder (`fputrace record`), command (the traced `-- CMD`).
"""
from .options import CaptureOptions
from .session import CaptureSession

__all__ = ["CaptureOptions", "CaptureSession"]
