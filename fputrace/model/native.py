"""The compiled engine, loaded with ctypes: found beside the package (built at install time by
hatch_build.py), else in a per-user cache, else built there now (once, ~1 s with gcc).

Why C through ctypes (benchmarks/MODEL.md has the measurements): the loop runs ~8x faster than
the numba version it replaced, loading takes ~15 ms instead of numba's ~0.6 s (import and cache),
and no JIT compile ever stands between a fresh install and the first report. ctypes releases the GIL for the
call, so a worker thread can feed while the UI thread draws.
"""
from __future__ import annotations

import ctypes
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import FputraceError
from . import build_engine, structs

_P = ctypes.c_void_p
_I = ctypes.c_int64


class EngineBuildError(FputraceError):
    """The model engine is not built and cannot be built here."""


def _cache_dirs() -> list[Path]:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [base / "fputrace" / "engine",
            Path(tempfile.gettempdir()) / f"fputrace-{os.getuid()}" / "engine"]


def library_path() -> Path:
    name = build_engine.library_name()
    candidates = [build_engine.HERE / name] + [d / name for d in _cache_dirs()]
    for path in candidates:
        if path.is_file():
            return path
    if os.environ.get("FPUTRACE_NO_ENGINE_BUILD"):
        raise EngineBuildError(f"the model engine {name} is not built (reinstall fputrace)")
    errors = []
    for d in [build_engine.HERE] + _cache_dirs():       # the first writable place
        try:
            built = build_engine.build(d)
            if d == build_engine.HERE:                 # older builds of this tree's sources
                build_engine.remove_stale(d, built.name)   # (a per-user cache may serve others)
            return built
        except (OSError, RuntimeError) as err:
            errors.append(str(err).splitlines()[0])
    raise EngineBuildError("the model engine is not built and cannot be built here ("
                           + ("; ".join(errors) or "no writable place") +
                           "): reinstall fputrace with gcc present (pip install .)")


@lru_cache(maxsize=1)
def lib() -> ctypes.CDLL:
    path = library_path()
    so = ctypes.CDLL(str(path))
    for name, res, args in (
            ("fpt_engine_version", _I, []),
            ("fpt_engine_build_id", ctypes.c_char_p, []),
            ("fpt_sizeof", _I, [_I]),
            ("fpt_init_cpus", None, [_P, _I, _I]),
            ("fpt_feed", _I, [_P, _P, _I, _I, _P]),
            ("fpt_finish", None, [_P]),
            ("fpt_rehash_callers", None, [_P]),
            ("fpt_retire", _I, [_P, _P, _I]),
            ("fpt_preload", _I, [_P, _I, _I, _I, ctypes.c_char_p])):
        fn = getattr(so, name)
        fn.restype, fn.argtypes = res, args
    order = ["fpt_engine", "fpt_task", "fpt_task_counts", "fpt_cpu", "fpt_caller", "fpt_tid",
             "fpt_out", "fpt_owner_change", "fpt_section"]
    for i, struct in enumerate(order):
        if so.fpt_sizeof(i) != structs.STRUCTS[struct].itemsize:
            raise EngineBuildError(f"{path}: struct {struct} is {so.fpt_sizeof(i)} bytes, "
                                   f"fputrace/model/structs.py says {structs.STRUCTS[struct].itemsize}")
    return so
