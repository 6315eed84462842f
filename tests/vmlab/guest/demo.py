"""Record the bundled demo INSIDE a lab guest (plain python3): the kernel subsystems set up, then
``fputrace record --mode fentry -- python3 demo.py --play`` while three phases of real kernel FPU
traffic run, two or three workloads at a time:

  1. dm-crypt writes and reads (kcryptd kworkers) while a process hashes with AF_ALG sha256
  2. WireGuard TCP between two namespaces (crypt workers, softirq) while md raid6 writes stripes
  3. btrfs writes and reads back (crc32c) while AF_ALG gcm(aes) encrypts and two processes
     ping-pong on one CPU

Usage: python3 demo.py OUT_DIR FPUTRACE_BIN      (writes OUT_DIR/demo.fpt, OUT_DIR/demo.json)
       python3 demo.py --play SUBSYSTEMS_JSON    (the traced command)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import subsystems  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = {"dmcrypt": 4, "wireguard": 2, "raid6": 4, "btrfs": 4}
PHASES = (
    (("dmcrypt", None), ("sha256", ["sha256", "150", "65536"])),
    (("wireguard", None), ("raid6", None)),
    (("btrfs", None), ("gcm", ["gcm", "150", "65536"]), ("pingpong", ["pingpong", "1500"])),
)


def play(argv_by_name: dict[str, list[str]]) -> int:
    for phase in PHASES:
        procs = []
        for name, argv in phase:
            argv = argv or argv_by_name[name]
            procs.append(subprocess.Popen([sys.executable, str(HERE / "workloads.py"), *argv],
                                          stdout=subprocess.DEVNULL))
        if any(p.wait() for p in procs):
            return 1
        time.sleep(0.5)
    return 0


def main() -> int:
    if sys.argv[1] == "--play":
        return play(json.loads(Path(sys.argv[2]).read_text()))
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
