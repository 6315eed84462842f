"""The command traced by ``record -- CMD`` and ``stat -- CMD``: started once the probes are
attached (its first instructions are traced), stopped with the tracer if it is still running."""
from __future__ import annotations

import subprocess

from ..errors import CaptureError


def start_command(cmd: list[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(cmd)
    except OSError as err:
        raise CaptureError(f"cannot run {cmd[0]!r}: {err.strerror}") from None


def stop_command(child: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 5 s: a traced command never outlives its tracer."""
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
