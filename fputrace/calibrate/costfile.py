"""The benchmark's raw ticks -> a cost-model file (``per_xfeatures``: one entry per component set).

Per set and instruction: min and median over all runs, minus the timing overhead (the median of an
empty timed region), divided by the instructions per region. A set is kept only if the
benchmark saw it live in every timed run (XINUSE where the CPU has XGETBV(1), and the XSTATE_BV
the save wrote) and nothing of a larger set was live beside it; otherwise it is left out with the
reason. The entry's ``xfeatures`` is that XSTATE_BV: what the kernel's tracepoint would show for
a task in that state; ``bytes`` = 576 + CPUID leaf 0xD sizes of its components (the compacted
XSAVES count the model charges per event).
"""
from __future__ import annotations

import platform

from ..capture.xstate import FEATURE_NAMES
from ..hostinfo import cpu_model
from ..model.cost import LEGACY_AND_HEADER_BYTES, XSTATE_CLASSES
from .bench import CalibrationError

SET_LABELS = {"sse": "x87/SSE only", "avx": "+AVX", "avx512": "+AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM)",
              "amx": "+AMX tile data (TILECFG, TILEDATA)"}
# The kernel's instruction family, and the user-mode instructions measured in its place.
FAMILIES = {
    "XSAVES/XRSTORS": ("xsavec", "xrstor_compacted",
                       "XSAVEC stands in for XSAVES (compacted, skips init components; XSAVES also "
                       "has the modified optimisation), XRSTOR of the compacted area for XRSTORS; "
                       "supervisor components (IA32_XSS, e.g. CET) are out of user mode's reach"),
    "XSAVEOPT/XRSTOR": ("xsaveopt", "xrstor_standard", "XSAVEOPT and XRSTOR, as the kernel uses them"),
    "XSAVE/XRSTOR": ("xsave", "xrstor_standard", "XSAVE and XRSTOR, as the kernel uses them"),
}


OP_NAMES = {"xsave": "XSAVE", "xsaveopt": "XSAVEOPT", "xsavec": "XSAVEC",
            "xrstor_compacted": "XRSTOR (compacted)", "xrstor_standard": "XRSTOR (standard)"}


def _family(cpu: dict) -> str:
    # Linux: XSAVES where the CPU has it, else XSAVEOPT, else XSAVE (arch/x86/kernel/fpu/xstate.h)
    if cpu.get("xsaves") and cpu.get("xsavec"):
        return "XSAVES/XRSTORS"
    return "XSAVEOPT/XRSTOR" if cpu.get("xsaveopt") else "XSAVE/XRSTOR"


def _net(cycles: dict, per_region: int) -> dict:
    # One overhead figure for both statistics (the empty region's median): a VM's TSC advances in
    # steps of ~24 ticks, so the empty region's min and median differ by a step, and subtracting
    # each from its own would make some medians smaller than the minima.
    over = cycles["overhead"]["median"]
    return {name: {"min_cycles": round(max(0, v["min"] - over) / per_region, 1),
                   "median_cycles": round(max(0, v["median"] - over) / per_region, 1)}
            for name, v in cycles.items() if name != "overhead"}


def _not_live(s: dict, has_xinuse: bool) -> str | None:
    """Why a measured set cannot stand for its components, or None."""
    live, bv_all, bv_any = s["live"], s["xstate_bv_all_runs"], s["xstate_bv_any_run"]
    need = live & ~1               # x87 (bit 0) may read as init after FLD/FSTP on some CPUs
    if has_xinuse and (s["xinuse_all_runs"] & need) != need:
        return (f"the set did not stay live: XINUSE read 0x{s['xinuse_all_runs']:x} in some run, "
                f"without 0x{need & ~s['xinuse_all_runs']:x}")
    if (bv_all & need) != need:
        return f"the saves did not contain the set: XSTATE_BV 0x{bv_all:x} lacks 0x{need & ~bv_all:x}"
    names = [n for n, _ in XSTATE_CLASSES]
    larger = sum(mask for _, mask in XSTATE_CLASSES[names.index(s["name"]) + 1:])
    extra = (s["xinuse_any_run"] if has_xinuse else bv_any) & larger
    if extra:
        return f"state of a larger set was live beside it (0x{extra:x})"
    return None


def _components(xf: int) -> list[str]:
    return [FEATURE_NAMES.get(b, f"bit{b}") for b in range(64) if xf >> b & 1]


def cost_model_from(raw: dict) -> dict:
    """Cost-model file contents from the benchmark's JSON (``bench.measure``)."""
    per_region = int(raw.get("per_region", 1))
    cpu = raw.get("cpu", {})
    has_xinuse = bool(cpu.get("xgetbv1"))
    family = _family(cpu)
    save_op, rstor_op, stand_in = FAMILIES[family]
    sizes = {int(f["bit"]): int(f["size_bytes"]) for f in raw["features"]}
    entries, left_out = [], []
    for s in raw["sets"]:
        if "reason" in s:
            left_out.append({"set": s["name"], "reason": s["reason"]})
            continue
        why = _not_live(s, has_xinuse)
        if why:
            left_out.append({"set": s["name"], "reason": why})
            continue
        net = _net(s["cycles"], per_region)
        xf = s["xstate_bv_all_runs"]
        entries.append({
            "set": s["name"], "label": SET_LABELS[s["name"]],
            "xfeatures": f"0x{xf:x}", "components": _components(xf),
            "bytes": LEGACY_AND_HEADER_BYTES + sum(sizes.get(b, 0) for b in range(2, 64) if xf >> b & 1),
            "xsave_cycles": net[save_op]["min_cycles"], "xrstor_cycles": net[rstor_op]["min_cycles"],
            "xsave_cycles_median": net[save_op]["median_cycles"],
            "xrstor_cycles_median": net[rstor_op]["median_cycles"],
            "instruction": f"{OP_NAMES[save_op]} / {OP_NAMES[rstor_op]} for the kernel's {family}",
            "xinuse": f"0x{s['xinuse_all_runs']:x}" if has_xinuse else None,
            "instructions": net,
        })
    if raw.get("build_note"):
        for lo in left_out:
            if lo["set"] == "amx" and "-DXB_NO_AMX" in lo["reason"]:
                lo["reason"] = raw["build_note"]
    if not entries:
        raise CalibrationError("no component set could be measured: "
                         + "; ".join(f"{lo['set']}: {lo['reason']}" for lo in left_out))
    base = entries[0]
    name = cpu_model()
    return {
        # single figures for readers of the old format: the smallest set's medians
        "xsave_cycles": base["xsave_cycles_median"],
        "xrstor_cycles": base["xrstor_cycles_median"],
        "family": family,
        "instruction": stand_in,
        "charge": "each save/restore is charged the median cycles of the nearest calibrated "
                  "superset of its components (per_xfeatures); xsave_cycles/xrstor_cycles there "
                  "are the minima",
        "source": f"fputrace calibrate on {name} ({platform.node()}), {raw['runs']} runs per set "
                  f"and instruction, TSC ticks after subtracting the timing overhead",
        "per_xfeatures": entries,
        "left_out": left_out,
        "details": {"cpu_model": name, "xcr0": hex(raw["xcr0"]), "runs": raw["runs"],
                    "per_region": per_region, "cpu": cpu, "xinuse_checked": has_xinuse,
                    "timing_overhead_ticks": {s["name"]: s["cycles"]["overhead"]
                                              for s in raw["sets"] if "cycles" in s},
                    "xsave_area_bytes": raw["xsave_area_bytes"],
                    "xsavec_area_bytes": raw.get("xsavec_area_bytes"),
                    "features": raw["features"], "hidden": raw.get("hidden") or None,
                    "assumed": raw.get("assumed") or None},
    }
