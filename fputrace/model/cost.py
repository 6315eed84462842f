"""Cost model (SPEC 5.5): bytes per XSAVE/XRSTOR from the xstate layout, cycles per instruction.

Bytes: the kernel saves with XSAVES (or XSAVEOPT/XSAVEC/XSAVE where XSAVES is missing), which skip
components in their init state; an event moves the legacy area and header (576 bytes) plus every
enabled extended component set in its ``xfeatures`` (XSTATE_BV). Where a source reports
``xfeatures = 0`` (unknown, probe modes) the task's last known value is used, else the full enabled
set: an upper bound, and the report says so.

Cycles: a count times cycles per instruction, from a file written by ``fputrace calibrate`` or the
built-in default measured on the development machine (SPEC 5.5). Calibration runs with every enabled
component dirty, so cycles are an upper bound for events that moved fewer bytes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import FputraceError

# XCR0 0x207 (x87, SSE, AVX, PKRU): the development machines' layout; used when a recording has none.
DEFAULT_XSTATE = {
    "xcr0": 0x207,
    "features": [
        {"bit": 0, "name": "x87", "size_bytes": 160, "offset": 0},
        {"bit": 1, "name": "sse", "size_bytes": 256, "offset": 160},
        {"bit": 2, "name": "avx", "size_bytes": 256, "offset": 576},
        {"bit": 9, "name": "pkru", "size_bytes": 8, "offset": 2688},
    ],
    "total_bytes": 2696,
    "compacted": True,
}
LEGACY_AND_HEADER_BYTES = 576


class CostModelError(FputraceError):
    """A cost-model file that cannot be used."""


def default_cost_model_path() -> Path:
    """Where ``fputrace calibrate`` writes and ``fputrace estimate`` looks by default
    ($FPUTRACE_CACHE_DIR overrides the directory)."""
    if os.environ.get("FPUTRACE_CACHE_DIR"):
        return Path(os.environ["FPUTRACE_CACHE_DIR"]) / "cost-model.json"
    if os.geteuid() == 0:
        return Path("/var/cache/fputrace/cost-model.json")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fputrace" / "cost-model.json"


@dataclass(frozen=True)
class CostModel:
    name: str                      # "builtin-default" or the file it came from
    xsave_cycles: float            # cycles per save of the kernel's instruction family
    xrstor_cycles: float
    family: str = "XSAVES/XRSTORS" # what the kernel uses; user-mode proxies measured for it
    source: str = "SPEC 5.5: AMD EPYC VM, XCR0 0x207, after timing overhead"
    details: dict = field(default_factory=dict)

    def cycles(self, xsave: int, xrstor: int) -> float:
        return xsave * self.xsave_cycles + xrstor * self.xrstor_cycles

    def to_dict(self) -> dict:
        return asdict(self)


BUILTIN_DEFAULT = CostModel(name="builtin-default", xsave_cycles=135.0, xrstor_cycles=300.0)


def load_cost_model(path: str | os.PathLike | None) -> CostModel:
    """The cost model at ``path``; with None: the calibrated default file if any, else built-in."""
    if path is None:
        p = default_cost_model_path()
        if not p.exists():
            return BUILTIN_DEFAULT
    else:
        p = Path(path)
    try:
        data = json.loads(p.read_text())
        return CostModel(name=str(p), xsave_cycles=float(data["xsave_cycles"]),
                         xrstor_cycles=float(data["xrstor_cycles"]),
                         family=str(data.get("family", "XSAVES/XRSTORS")),
                         source=str(data.get("source", "fputrace calibrate")),
                         details=data.get("details", {}))
    except FileNotFoundError:
        raise CostModelError(f"{p}: no such cost-model file (make one with `fputrace calibrate -o {p}`)")
    except (OSError, ValueError, KeyError, TypeError) as err:
        kind = type(err).__name__
        raise CostModelError(f"{p}: not a fputrace cost-model file ({kind}: {err}); "
                             "regenerate it with `fputrace calibrate`") from None


def xstate_table(meta: dict) -> tuple[list[int], int, str]:
    """(size of each component by bit, enabled mask, note) from a recording's ``xstate`` meta."""
    xs = meta.get("xstate") or {}
    note = "xstate layout from the recording"
    try:
        feats = xs["features"]
        mask = int(xs["xcr0"], 0) if isinstance(xs["xcr0"], str) else int(xs["xcr0"])
        sizes = [0] * 64
        for f in feats:
            sizes[int(f["bit"])] = int(f["size_bytes"])
    except (KeyError, TypeError, ValueError):
        sizes = [0] * 64
        for f in DEFAULT_XSTATE["features"]:
            sizes[f["bit"]] = f["size_bytes"]
        mask = DEFAULT_XSTATE["xcr0"]
        note = "xstate layout not in the recording: assumed XCR0 0x207 (x87, SSE, AVX, PKRU)"
    return sizes, mask, note


def event_bytes(xfeatures: int, sizes: list[int], mask: int) -> int:
    """Python mirror of the engine's byte count (for tests and documentation)."""
    x = xfeatures & mask or mask
    return LEGACY_AND_HEADER_BYTES + sum(sizes[b] for b in range(2, 64) if x >> b & 1)
