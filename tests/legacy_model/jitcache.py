"""Where numba keeps the model's compiled machine code.

numba caches next to the source (``__pycache__``) and, when that is read-only, in ``~/.cache``; a
user with neither writable (``nobody``, a locked-down service account) gets "no locator available"
at import. Point it at a per-user directory that is writable instead, before numba is imported.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ensure_writable_cache() -> None:
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    here = Path(__file__).resolve().parent
    if os.access(here, os.W_OK):
        return                                   # numba's default (__pycache__ beside the code) works
    for base in (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"),
                 Path(tempfile.gettempdir()) / f"fputrace-{os.getuid()}"):
        target = base / "fputrace" / "numba"
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(target, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(target)
            return
