"""Compile the model's C engine (engine.c) into a shared library. Standard library only: the
install-time build hook (hatch_build.py) loads this file by path, before numpy exists.

The library's file name carries a hash of its sources and flags (``_engine-<id>.so``), so a
library never outlives the code it was built from: ``native.py`` looks for the name that matches
the sources beside it and builds it (once, ~0.5 s) only when an install did not.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("engine.c", "engine.h", "replay.h")
# -fno-strict-aliasing: add_counts sums a counts struct as an int64_t array (and GCC 12 -O2 once
# mis-scheduled an out-pointer store into a task inlined into fpt_feed; tests/test_model_abi.py
# compares this build with an -O0 one)
CFLAGS = ("-O2", "-std=gnu11", "-fPIC", "-shared", "-fno-strict-aliasing", "-Wall", "-Wextra",
          "-Wno-unused-parameter")


def contract_header() -> Path:
    """bpf/fputrace.h: in a source tree at the top, in an installed package inside it."""
    for d in (HERE.parent / "bpf", HERE.parent.parent / "bpf"):
        if (d / "fputrace.h").is_file():
            return d / "fputrace.h"
    raise FileNotFoundError("fputrace installation is missing bpf/fputrace.h")


def build_id() -> str:
    h = hashlib.sha256()
    for path in [HERE / s for s in SOURCES] + [contract_header()]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(" ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def library_name(bid: str | None = None) -> str:
    return f"_engine-{bid or build_id()}.so"


def compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    return shutil.which("gcc") or shutil.which("cc")


def build(dest_dir: Path, flags: tuple[str, ...] = CFLAGS, name: str | None = None) -> Path:
    """Compile into dest_dir (atomically: concurrent builders never see half a file)."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) to build the model engine")
    bid = build_id()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / (name or library_name(bid))
    fd, tmp = tempfile.mkstemp(prefix=".engine-", suffix=".so", dir=dest_dir)
    os.close(fd)
    cmd = [cc, *flags, f"-I{contract_header().parent}", f'-DFPT_BUILD_ID="{bid}"',
           str(HERE / "engine.c"), "-o", tmp]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"building the model engine failed: {' '.join(cmd)}\n{res.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def remove_stale(dest_dir: Path, keep: str) -> None:
    for old in dest_dir.glob("_engine-*.so"):
        if old.name != keep:
            old.unlink(missing_ok=True)


if __name__ == "__main__":          # python fputrace/model/build_engine.py [DIR]
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    remove_stale(out.parent, out.name)
    print(out)
