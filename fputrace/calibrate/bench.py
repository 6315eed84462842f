"""Build and run the XSAVE micro-benchmark (``xsave_bench.c``, shipped in the package).

It is C because the instructions must be issued back to back between fenced TSC reads; Python
cannot time 100-cycle events. It is compiled on first use with the system compiler (``$CC``, else
``cc``/``gcc``/``clang``) into the cache directory next to the default cost-model file and reused
while the source is unchanged. A compiler that cannot assemble AMX instructions gets a second try
without them (``-DXB_NO_AMX``); the AMX set is then left out with that reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from importlib import resources
from pathlib import Path

from ..errors import FputraceError
from ..model.cost import default_cost_model_path

EXIT_NO_XSAVE = 3
SETS = ("sse", "avx", "avx512", "amx")     # cumulative component sets, smallest first
HIDE_ENV = "FPUTRACE_CALIBRATE_HIDE"       # comma list of avx, avx512, amx: act as if the CPU lacked them
ASSUME_ENV = "FPUTRACE_CALIBRATE_ASSUME"   # skip their CPUID check: XCR0 and the kernel still decide


class CalibrationError(FputraceError):
    """Calibration impossible here (no compiler, no XSAVE, the benchmark failed)."""


def _source() -> bytes:
    return resources.files(__package__).joinpath("xsave_bench.c").read_bytes()


def find_compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return cc if shutil.which(cc.split()[0]) else None
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _compile(cc: str, c_file: Path, exe: Path, defines: list[str]) -> str | None:
    """None on success, else the compiler's first error line."""
    tmp = exe.with_suffix(".tmp")
    res = subprocess.run([*cc.split(), "-O2", *defines, "-o", str(tmp), str(c_file)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
        return (lines or ["no output"])[0].strip()
    tmp.replace(exe)
    return None


def build(cache_dir: Path | None = None) -> tuple[Path, str | None]:
    """(path of the compiled benchmark, note on what the build left out), building it if needed."""
    src = _source()
    tag = hashlib.sha256(src).hexdigest()[:12]
    cache_dir = cache_dir or default_cost_model_path().parent / "bin"
    full, basic = cache_dir / f"xsave_bench-{tag}", cache_dir / f"xsave_bench-{tag}-noamx"
    if full.exists():
        return full, None
    cc = find_compiler()
    if not cc:
        where = f"CC={os.environ['CC']} is not a program" if os.environ.get("CC") else "no cc/gcc/clang in PATH"
        raise CalibrationError(f"no C compiler found ({where}; set CC, or apt-get install gcc); "
                               "estimates keep using the builtin-default cost model")
    note_file = basic.with_suffix(".why")
    if basic.exists() and note_file.exists():
        return basic, note_file.read_text().strip()
    c_file = cache_dir / f"xsave_bench-{tag}.c"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        c_file.write_bytes(src)
    except OSError as err:
        raise CalibrationError(f"cannot build the XSAVE benchmark in {cache_dir}: {err.strerror} "
                               "(set FPUTRACE_CACHE_DIR to a writable directory)") from None
    err = _compile(cc, c_file, full, [])
    if err is None:
        return full, None
    if _compile(cc, c_file, basic, ["-DXB_NO_AMX"]) is not None:
        raise CalibrationError(f"building the XSAVE benchmark with {cc} failed: {err}")
    note = f"{cc} cannot build the AMX part ({err})"
    note_file.write_text(note + "\n")
    return basic, note


def _set_list(env: str) -> str:
    names = [n.strip() for n in os.environ.get(env, "").split(",") if n.strip()]
    bad = [n for n in names if n not in SETS[1:]]
    if bad:
        raise CalibrationError(f"{env}={os.environ[env]!r}: cannot apply to {', '.join(bad)} "
                               f"(choose among {', '.join(SETS[1:])})")
    return ",".join(names)


def measure(runs: int = 5000, sets: list[str] | None = None, cache_dir: Path | None = None) -> dict:
    """The benchmark's JSON: layout, and per set either min/median ticks per instruction or the
    reason it was left out. ``sets`` restricts the sets measured (default: all the CPU has)."""
    exe, build_note = build(cache_dir)
    hidden, assumed = _set_list(HIDE_ENV), _set_list(ASSUME_ENV)
    args = [str(exe), str(runs), ",".join(sets or ()), hidden, assumed]
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise CalibrationError("the XSAVE benchmark did not finish within 600 s (try fewer --runs)")
    if res.returncode == EXIT_NO_XSAVE:
        raise CalibrationError(f"this CPU/OS does not expose XSAVE ({res.stderr.strip()}); "
                               "nothing to calibrate")
    if res.returncode < 0:
        sig = signal.Signals(-res.returncode).name
        raise CalibrationError(f"the XSAVE benchmark was killed by {sig}"
                               + (" (an instruction this CPU or kernel does not allow); "
                                  f"leave that set out with --sets or {HIDE_ENV}"
                                  if sig == "SIGILL" else ""))
    if res.returncode != 0:
        raise CalibrationError(f"the XSAVE benchmark failed (exit {res.returncode}): "
                               f"{res.stderr.strip()[:200]}")
    try:
        raw = json.loads(res.stdout)
    except ValueError as err:
        raise CalibrationError(f"the XSAVE benchmark printed no valid JSON ({err})") from None
    raw["build_note"] = build_note
    raw["hidden"], raw["assumed"] = hidden, assumed
    return raw
