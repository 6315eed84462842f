"""Re-record the bundled demo (fputrace/data/demo.fpt) with fputrace's own recorder, fentry mode,
in a stock Debian kernel booted by the lab: dm-crypt, WireGuard, md raid6, btrfs, AF_ALG and a
ping-pong, two or three at a time (guest/demo.py), so the dashboard's first screen shows real
kernel FPU traffic of kernel threads and processes.

    python -m tests.vmlab.demo                  # record in 6.12, print the file and its size
    python -m tests.vmlab.demo --install        # ... and copy it to fputrace/data/demo.fpt
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import kernels, qemu

DEMO = qemu.REPO_DIR / "fputrace" / "data" / "demo.fpt"
MAX_BYTES = 600_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vmlab.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", default="6.12")
    p.add_argument("--install", action="store_true", help="copy the recording to fputrace/data/demo.fpt")
    args = p.parse_args(argv)
    kernel = kernels.fetch(args.kernel)
    run_dir = qemu.new_run_dir()
    guest = Path(__file__).resolve().parent / "guest" / "demo.py"
    res = qemu.run(kernel, f"python3 {guest} {run_dir / 'out'} {qemu.REPO_DIR / '.venv' / 'bin' / 'fputrace'}",
                   timeout_s=1200, mem="3G", run_dir=run_dir)
    fpt = run_dir / "out" / "demo.fpt"
    if res.returncode != 0 or not fpt.exists():
        print(f"demo: guest failed ({res.reason or res.returncode}):\n{res.output[-2000:]}", file=sys.stderr)
        return 1
    info = json.loads((run_dir / "out" / "demo.json").read_text())
    size = fpt.stat().st_size
    print(f"demo: {fpt} {size:,} bytes, {kernel.release}, recorded in {info['wall_s']} s")
    if size > MAX_BYTES:
        print(f"demo: larger than {MAX_BYTES:,} bytes: make guest/demo.py's phases smaller", file=sys.stderr)
        return 1
    if args.install:
        shutil.copy(fpt, DEMO)
        print(f"demo: installed as {DEMO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
