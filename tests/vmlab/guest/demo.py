"""Record the bundled demo INSIDE a lab guest (plain python3): the kernel subsystems set up, then
``fputrace record --mode fentry -- python3 demo.py --play`` while three phases of real kernel FPU
traffic run, two or three workloads at a time:

  1. dm-crypt writes and reads (kcryptd kworkers) while a process hashes with AF_ALG sha256
  2. WireGuard TCP between two namespaces (crypt workers, softirq) while md raid6 writes stripes
  3. btrfs writes and reads back (crc32c) while AF_ALG gcm(aes) encrypts and two processes
     ping-pong on one CPU

Each workload runs under its own name (the interpreter exec'd through a symlink called, e.g.,
``afalg-sha256``: the recorder learns names at exec and fork), so the dashboard's task table says
what each process is. The AF_ALG workloads send one page per operation: every operation is a
kernel FPU section in the process's own context, so a save of its user state and a restore on the
way back to user mode (the traffic the deferred restore is about), as many as the ping-pong's.

Usage: python3 demo.py OUT_DIR FPUTRACE_BIN      (writes OUT_DIR/demo.fpt, OUT_DIR/demo.json)
       python3 demo.py --play SUBSYSTEMS_JSON    (the traced command)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import subsystems  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = {"dmcrypt": 4, "wireguard": 1, "raid6": 4, "btrfs": 4}
PHASES = (
    (("dmcrypt", None), ("sha256", ["sha256", "2500", "4096"])),
    (("wireguard", None), ("raid6", None)),
    (("btrfs", None), ("gcm", ["gcm", "2500", "4096"]), ("pingpong", ["pingpong", "2500"])),
)
# the process names (comm, at most 15 characters) of the workloads
NAMES = {"dmcrypt": "dmcrypt-io", "sha256": "afalg-sha256", "wireguard": "wg-tcp",
         "raid6": "raid6-io", "btrfs": "btrfs-io", "gcm": "afalg-gcm", "pingpong": "pingpong"}


def named_interpreter(name: str, bin_dir: Path) -> str:
    """A symlink to the interpreter called ``name``: exec'd through it, the process is named so."""
    link = bin_dir / NAMES[name]
    if not link.is_symlink():
        link.symlink_to(os.path.realpath(sys.executable))
    return str(link)


def play(argv_by_name: dict[str, list[str]], bin_dir: Path) -> int:
    for phase in PHASES:
        procs = []
        for name, argv in phase:
            argv = argv or argv_by_name[name]
            procs.append(subprocess.Popen([named_interpreter(name, bin_dir), str(HERE / "workloads.py"),
                                           *argv], stdout=subprocess.DEVNULL))
        if any(p.wait() for p in procs):
            return 1
        time.sleep(0.5)
    return 0


def main() -> int:
    if sys.argv[1] == "--play":
        return play(json.loads(Path(sys.argv[2]).read_text()),
                    Path(tempfile.mkdtemp(prefix="fputrace-demo-bin.")))
    out, fputrace = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    subs = [subsystems.SUBSYSTEMS[name](mib) for name, mib in SIZES.items()]
    info = {"modules": subsystems.modprobe("sha256_ssse3", "aesni_intel", "algif_hash", "algif_aead",
                                           *(m for s in subs for m in s.modules))}
    argv = {}
    for s in subs:
        info[s.name] = s.setup()
        argv[s.name] = s.io_argv()
    (out / "argv.json").write_text(json.dumps(argv))
    t0 = time.monotonic()
    res = subprocess.run([fputrace, "record", "--mode", "fentry", "-q", "-o", str(out / "demo.fpt"), "--",
                          sys.executable, __file__, "--play", str(out / "argv.json")])
    info.update(returncode=res.returncode, wall_s=round(time.monotonic() - t0, 1))
    for s in reversed(subs):
        s.teardown()
    (out / "demo.json").write_text(json.dumps(info, indent=1))
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
