"""``fputrace calibrate``'s engine: build the XSAVE micro-benchmark, run it, make a cost model.

The benchmark is C (``xsave_bench.c``, shipped in the package) because the instructions must be
issued back to back with fenced TSC reads; Python cannot time 100-cycle events. It is compiled on
first use with the system compiler (``$CC``, else ``cc``/``gcc``) into the cache directory next to
the default cost-model file and reused while the source is unchanged. Without a compiler, or on a
CPU/OS without XSAVE, calibration stops with one line saying so; estimates then keep using the
built-in default cost model (SPEC 5.5).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ..errors import FputraceError
from ..hostinfo import cpu_model
from ..model.cost import default_cost_model_path

EXIT_NO_XSAVE = 3


class CalibrationError(FputraceError):
    """Calibration impossible here (no compiler, no XSAVE, the helper failed)."""


def _source() -> bytes:
    return resources.files(__package__).joinpath("xsave_bench.c").read_bytes()


def find_compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) and cc
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(cache_dir: Path | None = None) -> Path:
    """Path of the compiled helper, building it if needed."""
    src = _source()
    tag = hashlib.sha256(src).hexdigest()[:12]
    cache_dir = cache_dir or default_cost_model_path().parent / "bin"
    exe = cache_dir / f"xsave_bench-{tag}"
    if exe.exists():
        return exe
    cc = find_compiler()
    if not cc:
        raise CalibrationError("no C compiler found (set CC, or install gcc: apt-get install gcc); "
                               "estimates keep using the builtin-default cost model")
    cache_dir.mkdir(parents=True, exist_ok=True)
    c_file = cache_dir / f"xsave_bench-{tag}.c"
    c_file.write_bytes(src)
    tmp = exe.with_suffix(".tmp")
    res = subprocess.run([*cc.split(), "-O2", "-o", str(tmp), str(c_file)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["no output"])[0]
        raise CalibrationError(f"building the XSAVE benchmark with {cc} failed: {first}")
    tmp.replace(exe)
    return exe


def measure(runs: int = 2000, cache_dir: Path | None = None) -> dict:
    exe = build(cache_dir)
    res = subprocess.run([str(exe), str(runs)], capture_output=True, text=True, timeout=300)
    if res.returncode == EXIT_NO_XSAVE:
        raise CalibrationError(f"this CPU/OS does not expose XSAVE ({res.stderr.strip()}); "
                               "nothing to calibrate")
    if res.returncode != 0:
        raise CalibrationError(f"the XSAVE benchmark failed (exit {res.returncode}): "
                               f"{res.stderr.strip()[:200]}")
    return json.loads(res.stdout)


def cost_model_from(raw: dict) -> dict:
    """Cost-model file contents: overhead-subtracted min/median per instruction, and the per-event
    cycles estimates use (medians of the user-mode proxies of the kernel's instruction family)."""
    cyc = raw["cycles"]
    over = cyc["overhead"]
    net = {}
    for name, v in cyc.items():
        if name == "overhead" or v is None:
            continue
        net[name] = {"min_cycles": max(0, v["min"] - over["min"]),
                     "median_cycles": max(0, v["median"] - over["median"])}
    if raw.get("xsaves_supported") and "xsavec" in net:
        family, save = "XSAVES/XRSTORS", net["xsavec"]     # compacted + init optimisation, like XSAVES
    elif "xsaveopt" in net:
        family, save = "XSAVEOPT/XRSTOR", net["xsaveopt"]
    else:
        family, save = "XSAVE/XRSTOR", net["xsave"]
    cpu = cpu_model()
    return {
        "xsave_cycles": save["median_cycles"],
        "xrstor_cycles": net["xrstor"]["median_cycles"],
        "family": family,
        "source": f"fputrace calibrate on {cpu} ({platform.node()}), {raw['runs']} runs, TSC ticks "
                  "after subtracting the timing overhead; user-mode proxies "
                  + ("XSAVEC/XRSTOR" if family.startswith("XSAVES") else family),
        "details": {"cpu_model": cpu, "xcr0": hex(raw["xcr0"]), "runs": raw["runs"],
                    "timing_overhead_cycles": over, "instructions": net,
                    "xsave_area_bytes": raw["xsave_area_bytes"], "features": raw["features"]},
    }
