"""Cost model (SPEC 5.5): bytes per XSAVE/XRSTOR from the xstate layout, cycles per component set.

Bytes: the kernel saves with XSAVES (or XSAVEOPT/XSAVEC/XSAVE where XSAVES is missing), which skip
components in their init state; an event moves the legacy area and header (576 bytes) plus every
enabled extended component set in its ``xfeatures`` (XSTATE_BV), sized by CPUID leaf 0xD (compacted
form). Where a source reports ``xfeatures = 0`` (unknown, probe modes) the task's last known value
is used, else the full enabled set: an upper bound, and the report says so.

Cycles: ``fputrace calibrate`` measures each component set (x87/SSE only, +AVX, +AVX-512, +AMX tile
data) and writes one ``per_xfeatures`` entry per set. An event is charged the set that is the
nearest calibrated superset of its components (by class: the highest live group, see
``XSTATE_CLASSES``); where no calibrated set covers it (a recording from a CPU with AVX-512 or AMX
costed on one without), the largest calibrated set, a lower bound, and the estimate says so. Files
without ``per_xfeatures`` (older ones, and the built-in default) have one figure for every set.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

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

# Component classes of an event by the highest live group of its xfeatures (INTERFACES.md item 2,
# the engine's rule): amx = tile data (bit 18), avx512 = bits 5-7, avx = bit 2, else sse; smallest
# first, the sets ``fputrace calibrate`` adds one by one (its AMX set also has TILECFG, bit 17).
XSTATE_CLASSES = (("sse", 0x3), ("avx", 0x4), ("avx512", 0xE0), ("amx", 0x40000))
CLASS_NAMES = tuple(name for name, _ in XSTATE_CLASSES)
CLASS_LABELS = {"sse": "SSE", "avx": "AVX", "avx512": "AVX-512", "amx": "AMX"}
LARGE_CLASSES = ("avx512", "amx")       # the state whose needless saves and restores cost most
_GROUPS = {name: mask for name, mask in XSTATE_CLASSES}
_ALL_GROUPS = sum(_GROUPS.values())


def components_label(xfeatures: int) -> str:
    """The classes whose groups are live in ``xfeatures`` (e.g. an OR over a task's saves), as
    ``SSE+AVX+AMX``; ``-`` for none seen."""
    if not xfeatures:
        return "-"
    names = [CLASS_LABELS[n] for n, mask in XSTATE_CLASSES if xfeatures & mask]
    return "+".join(names) or "SSE"


def class_rank(xfeatures: int) -> int:
    """0 (SSE) .. 3 (AMX): the index of ``xstate_class`` in ``CLASS_NAMES`` (sort key: largest
    state first)."""
    return CLASS_NAMES.index(xstate_class(xfeatures))


def xstate_class(xfeatures: int) -> str:
    """``sse``, ``avx``, ``avx512`` or ``amx``: the highest group live in ``xfeatures``."""
    for name, mask in reversed(XSTATE_CLASSES):
        if xfeatures & mask:
            return name
    return "sse"


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
class SetCost:
    """One calibrated component set (an entry of the file's ``per_xfeatures``)."""
    set: str                       # sse / avx / avx512 / amx
    xfeatures: int                 # the XSTATE_BV its saves wrote
    bytes: int                     # 576 + CPUID 0xD sizes of its components
    xsave_cycles: float            # minimum over the runs
    xrstor_cycles: float
    xsave_cycles_median: float     # what estimates charge
    xrstor_cycles_median: float
    instruction: str               # the user-mode instructions measured

    @property
    def label(self) -> str:
        return f"{self.set} 0x{self.xfeatures:x}"


@dataclass(frozen=True)
class CostModel:
    name: str                      # "builtin-default" or the file it came from
    xsave_cycles: float            # one figure for every set (files without per_xfeatures)
    xrstor_cycles: float
    family: str = "XSAVES/XRSTORS" # what the kernel uses; user-mode proxies measured for it
    source: str = ("SPEC 5.5 figures of an AMD EPYC VM with XCR0 0x207, not measured here; one "
                   "figure for every component set")
    details: dict = field(default_factory=dict)
    per_xfeatures: tuple[SetCost, ...] = ()
    left_out: tuple[dict, ...] = ()

    def cycles(self, xsave: int, xrstor: int) -> float:
        """Cycles at the one-figure rate (files without per-set calibration)."""
        return xsave * self.xsave_cycles + xrstor * self.xrstor_cycles

    def set_for(self, xfeatures: int) -> tuple[SetCost | None, str]:
        """The calibrated set charged for a save of these components (the nearest calibrated
        superset: fewest bytes among the sets holding all of them), and how it was chosen:
        ``calibrated`` (the set of the event's own class), ``superset`` (its class was not
        calibrated, a larger one was), ``below`` (no calibrated set covers them: the largest one,
        a lower bound) or ``flat`` (no per-set calibration: one figure for all)."""
        if not self.per_xfeatures:
            return None, "flat"
        need = xfeatures & _ALL_GROUPS & ~1          # x87 alone: part of every set
        cover = [e for e in self.per_xfeatures if e.xfeatures & need == need]
        if not cover:
            return max(self.per_xfeatures, key=lambda e: e.bytes), "below"
        best = min(cover, key=lambda e: e.bytes)
        same = xstate_class(best.xfeatures) == xstate_class(xfeatures)
        return best, "calibrated" if same else "superset"

    def set_for_class(self, cls: str) -> tuple[SetCost | None, str]:
        """The set charged for events of a class (``XSTATE_CLASSES``): the nearest calibrated
        superset of that class's whole group."""
        return self.set_for(_GROUPS[cls] if cls != "sse" else 0x2)

    def class_cycles(self, cls: str) -> tuple[float, float]:
        """(cycles per XSAVE, per XRSTOR) charged for an event of class ``cls``."""
        e, _ = self.set_for_class(cls)
        if e is None:
            return self.xsave_cycles, self.xrstor_cycles
        return e.xsave_cycles_median, e.xrstor_cycles_median

    def class_cycles_table(self):
        """(cycles per XSAVE, per XRSTOR) as arrays indexed like ``CLASS_NAMES``."""
        pairs = [self.class_cycles(cls) for cls in CLASS_NAMES]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def charge(self, xsave_by_class, xrstor_by_class):
        """Cycles of counts per class (arrays whose last axis follows ``CLASS_NAMES``: one row per
        task, or one total)."""
        xs, xr = self.class_cycles_table()
        return np.asarray(xsave_by_class) @ xs + np.asarray(xrstor_by_class) @ xr

    def class_charges(self) -> dict:
        """{class: {set, xfeatures, match, xsave_cycles, xrstor_cycles}}: what estimates charge."""
        out = {}
        for cls in CLASS_NAMES:
            e, how = self.set_for_class(cls)
            xs, xr = self.class_cycles(cls)
            out[cls] = {"set": e.set if e else None, "xfeatures": f"0x{e.xfeatures:x}" if e else None,
                        "match": how, "xsave_cycles": xs, "xrstor_cycles": xr}
        return out

    def notes(self, meta: dict | None = None, per_class: bool = True) -> list[str]:
        """What an estimate's cycles rest on, in words. ``per_class``: the estimate charged each
        event's class its own set (else every event the one figure)."""
        out = []
        if self.name == "builtin-default":
            out.append(f"cost model builtin-default is not this CPU's ({self.source}): measure this "
                       "one with `sudo fputrace calibrate`")
        elif not self.per_xfeatures:
            out.append(f"cost model {self.name} has one figure for every component set (written "
                       "before per-set calibration): rerun `fputrace calibrate`")
        elif not per_class:
            base = self.per_xfeatures[0]
            out.append(f"cycles = count x the {base.set} set's median cycles (0x{base.xfeatures:x}, "
                       f"{base.bytes} B) for every save and restore: a lower bound where larger "
                       "state was live")
        else:
            charged = ", ".join(f"{cls}->{e.set} 0x{e.xfeatures:x} ({how})"
                                for cls in CLASS_NAMES
                                for e, how in [self.set_for_class(cls)])
            out.append("cycles: each save/restore is charged the median cycles of the calibrated "
                       f"set that is the nearest superset of its components: {charged}")
            below = [cls for cls in CLASS_NAMES if self.set_for_class(cls)[1] == "below"]
            if below:
                why = "; ".join(f"{lo['set']}: {lo['reason']}" for lo in self.left_out
                                if lo.get("set") in below)
                out.append(f"no calibrated set covers {', '.join(below)} state"
                           + (f" ({why})" if why else "")
                           + ": such events are charged the largest calibrated set, a lower bound")
        if self.per_xfeatures or self.name != "builtin-default":
            rec_cpu = (meta or {}).get("cpu_model")
            cal_cpu = self.details.get("cpu_model")
            if rec_cpu and cal_cpu and rec_cpu != cal_cpu:
                out.append(f"cost model measured on {cal_cpu}, recording made on {rec_cpu}: "
                           "cycles are the calibrating CPU's")
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_xfeatures"] = [dict(asdict(e), xfeatures=f"0x{e.xfeatures:x}") for e in self.per_xfeatures]
        d["left_out"] = list(self.left_out)
        return d


BUILTIN_DEFAULT = CostModel(name="builtin-default", xsave_cycles=135.0, xrstor_cycles=300.0)


def _set_cost(e: dict) -> SetCost:
    xf = e["xfeatures"]
    return SetCost(set=str(e["set"]), xfeatures=int(xf, 0) if isinstance(xf, str) else int(xf),
                   bytes=int(e["bytes"]), xsave_cycles=float(e["xsave_cycles"]),
                   xrstor_cycles=float(e["xrstor_cycles"]),
                   xsave_cycles_median=float(e["xsave_cycles_median"]),
                   xrstor_cycles_median=float(e["xrstor_cycles_median"]),
                   instruction=str(e.get("instruction", "")))


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
                         details=dict(data.get("details", {})),
                         per_xfeatures=tuple(sorted((_set_cost(e) for e in data.get("per_xfeatures", [])),
                                                    key=lambda e: e.bytes)),
                         left_out=tuple(dict(lo) for lo in data.get("left_out", [])))
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
        # the kernel's enabled mask (XCR0 | IA32_XSS): XSAVES also moves live supervisor state
        m = xs.get("mask") or xs["xcr0"]
        mask = int(m, 0) if isinstance(m, str) else int(m)
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
