"""Run a command as root inside a stock Debian kernel booted under QEMU.

The host root is the guest's root (read-only, with a tmpfs overlay), so paths such as this
repository and its .venv work unchanged. Exits with the command's exit status (124 on a timeout,
125 on a guest panic or a guest that never reported a status).
"""
from __future__ import annotations

import argparse
import sys

from . import kernels, qemu

EXAMPLES = """examples:
  python -m tests.vmlab.harness --kernel 6.1 -- uname -a
  python -m tests.vmlab.harness --kernel 7 -- bash -c 'grep -c . /proc/kallsyms'
  python -m tests.vmlab.harness --kernel 6.12 --fetch-only        # fill the cache, no boot
  python -m tests.vmlab.harness --kernel 6.1 -- /work/main/.venv/bin/fputrace doctor
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vmlab.harness", description=__doc__,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", default="6.1", help=f"one of {', '.join(kernels.KERNELS)} (default 6.1)")
    p.add_argument("--timeout", type=float, default=600, help="hard limit in seconds (default 600)")
    p.add_argument("--mem", default="2G", help="guest memory (default 2G)")
    p.add_argument("--smp", type=int, default=2, help="guest vCPUs (default 2)")
    p.add_argument("--accel", choices=("kvm", "tcg"), help="default: kvm only where a normal KVM is loaded")
    p.add_argument("--fetch-only", action="store_true", help="fetch and unpack the kernel, then exit")
    p.add_argument("--quiet", action="store_true", help="do not stream the guest console")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS (default: uname -a)")
    args = p.parse_args(argv)
    try:
        kernel = kernels.fetch(args.kernel)
    except kernels.FetchError as err:
        print(f"vmlab: {err}", file=sys.stderr)
        return 2
    if args.fetch_only:
        print(f"{kernel.label}: {kernel.release} ({kernel.package_version}) in {kernel.root}")
        return 0
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    res = qemu.run(kernel, cmd or ["uname", "-a"], timeout_s=args.timeout, mem=args.mem, smp=args.smp,
                   accel=args.accel, echo=not args.quiet)
    if args.quiet:
        sys.stdout.write(res.output)
    print(f"[vmlab] kernel={kernel.release} accel={res.accel} rc={res.returncode} wall={res.wall_s:.1f}s cpu={res.cpu_s:.0f}s "
          f"run_dir={res.run_dir}{' : ' + res.reason if res.reason else ''}", file=sys.stderr)
    if res.returncode is not None:
        return res.returncode
    return 124 if res.timed_out else 125


if __name__ == "__main__":
    sys.exit(main())
