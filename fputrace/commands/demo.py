"""``fputrace demo``: the dashboard replaying a small real recording shipped with fputrace.

The bundled fputrace/data/demo.fpt was recorded by `fputrace record --mode fentry` on a stock
Debian 6.12 kernel (6.12.117+deb13-amd64) booted under QEMU by the project's lab
(`python -m tests.vmlab.demo --install`), while real kernel FPU users ran, each process under the
name of its workload: dm-crypt (aes-xts in kworkers) beside AF_ALG sha256, WireGuard between two
network namespaces (chacha20poly1305 in wg-crypt kworkers) beside md raid6 (gen_syndrome in
md0_raid6), btrfs (crc32c) beside AF_ALG gcm(aes) and a pipe ping-pong: every panel has real data
(kernel FPU callers by symbol, section lengths, eager vs deferred). `--make OUT` records this
host instead, with fputrace.tui.demo_workload."""
from __future__ import annotations

import argparse

# the demo's last phase (btrfs, AF_ALG gcm, ping-pong), every earlier one counted: where the
# README's screenshots and the dashboard's tests pause the replay
BUSY_AT_NS = 37_000_000_000

HELP = "replay the bundled demo recording in the dashboard (no root needed)"
EXAMPLES = """examples:
    fputrace demo                 # replay at real speed (space: pause, ←/→ step, g: go to)
    fputrace demo --speed 5       # faster
    fputrace report $(python -c 'import fputrace.commands.demo as d; print(d.demo_path())')
"""


def demo_path():
    from importlib.resources import files
    return files("fputrace") / "data" / "demo.fpt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    p.add_argument("--window", type=float, default=10.0, metavar="SECONDS",
                   help="span of the CPU owner strips and rate sparklines (default 10)")
    p.add_argument("--path", action="store_true", help="print where the demo recording is and exit")
    # maintainers: re-record the bundled demo with the project's own recorder (needs root)
    p.add_argument("--make", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=4.0, help=argparse.SUPPRESS)


def run(args) -> int:
    from ..errors import FileFormatError
    if args.make:
        return make_demo(args.make, args.seconds)
    path = demo_path()
    if args.path:
        print(path)
        return 0
    if not path.is_file():
        raise FileFormatError(f"{path}: the demo recording is missing from this installation")
    from . import tui
    args.file, args.at, args.paused, args.mode, args.record_dir = str(path), None, False, "auto", "."
    args.from_activity = True            # the recorder's start-up (bcc compile) is idle time
    return tui.run(args)


def make_demo(out: str, seconds: float) -> int:
    """Record the demo workload (fputrace.tui.demo_workload) on this host with `fputrace record`."""
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "fputrace", "record", "-q", "-o", out, "--",
           sys.executable, "-m", "fputrace.tui.demo_workload", str(seconds)]
    return subprocess.call(cmd)
