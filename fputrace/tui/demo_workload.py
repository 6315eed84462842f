"""The workload recorded into the bundled demo (``fputrace demo --make OUT`` records it):
a pipe ping-pong of two FPU-using processes on one CPU (switch saves and return-path restores),
a reader of /dev/urandom (kernel SIMD where the kernel's chacha uses it), and a task that hops
between CPUs (restores caused by migration). Every task names itself ``fpdemo-*``."""
from __future__ import annotations

import ctypes
import os
import sys
import time

PR_SET_NAME = 15


def _name(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _flops(n: int) -> float:
    x = 1.0001
    for _ in range(n):
        x = x * 1.000001 + 0.5 / x
    return x


def _pingpong(seconds: float, cpu: int) -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        _name("fpdemo-pong")
        os.close(w1)                       # or read() never sees EOF
        os.close(r2)
        os.sched_setaffinity(0, {cpu})
        while os.read(r1, 1):
            _flops(50)
            os.write(w2, b"x")
        os._exit(0)
    os.close(r1)
    os.close(w2)
    os.sched_setaffinity(0, {cpu})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _flops(50)
        os.write(w1, b"x")
        os.read(r2, 1)
        time.sleep(0.0005)
    os.close(w1)
    os.waitpid(pid, 0)


def _urandom(seconds: float, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    end = time.monotonic() + seconds
    with open("/dev/urandom", "rb", buffering=0) as f:
        while time.monotonic() < end:
            f.read(1 << 16)
            time.sleep(0.002)


def _hopper(seconds: float, cpus: list[int]) -> None:
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        os.sched_setaffinity(0, {cpus[i % len(cpus)]})
        _flops(2000)
        time.sleep(0.01)
        i += 1


def main(seconds: float = 4.0) -> int:
    """Each role is exec'd through a symlink named after it: the kernel takes a task's name from
    the file it executes, so the recording names the roles (prctl renames are not traced)."""
    import subprocess
    import tempfile
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=pkg_root)
    with tempfile.TemporaryDirectory(prefix="fpdemo-") as tmp:
        procs = []
        for role in ("ping", "rand", "hop"):
            exe = os.path.join(tmp, f"fpdemo-{role}")
            os.symlink(sys.executable, exe)
            procs.append(subprocess.Popen([exe, "-m", "fputrace.tui.demo_workload", role,
                                           str(seconds)], env=env))
        return max(p.wait() for p in procs)


def role(name: str, seconds: float) -> int:
    cpus = sorted(os.sched_getaffinity(0))
    if name == "ping":
        _pingpong(seconds, cpus[0])
    elif name == "rand":
        _urandom(seconds, cpus[-1])
    else:
        _hopper(seconds, cpus)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(role(sys.argv[1], float(sys.argv[2])))
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0))
