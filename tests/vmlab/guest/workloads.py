"""Ground-truth workloads, run INSIDE a lab guest (plain python3, no fputrace imports).

  sha256 N SIZE     N AF_ALG sha256 hashes of one SIZE-byte buffer (kernel SIMD: sha256-avx2 ...)
  gcm N SIZE        N AF_ALG gcm(aes) encryptions of SIZE bytes (aesni/vaes under kernel_fpu_begin)
  pingpong N        two processes pinned to one CPU bounce a byte over pipes N times: each round
                    trip is two context switches between user tasks with live FPU state

Each prints one line ``WORKLOAD {json}`` with its pid(s), the kernel driver used and the time.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time

ALG_SET_AEAD_AUTHSIZE = 5
GCM_TAG_BYTES = 16


def crypto_driver(name: str) -> str:
    """The highest-priority driver /proc/crypto lists for algorithm ``name``."""
    best, cur = ("?", -1), {}
    with open("/proc/crypto") as f:
        for line in list(f) + [""]:
            if ":" in line:
                k, v = line.split(":", 1)
                cur[k.strip()] = v.strip()
                continue
            if cur.get("name") == name and int(cur.get("priority", 0)) > best[1]:
                best = (cur.get("driver", "?"), int(cur.get("priority", 0)))
            cur = {}
    return best[0]


def sha256(n: int, size: int) -> dict:
    data = os.urandom(size)
    alg = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    alg.bind(("hash", "sha256"))
    op, _ = alg.accept()
    digest = b""
    for _ in range(n):
        op.sendall(data)
        digest = op.recv(32)
    if digest != hashlib.sha256(data).digest():
        raise SystemExit("sha256 digest mismatch")
    return {"driver": crypto_driver("sha256")}


def gcm(n: int, size: int) -> dict:
    key, iv = os.urandom(32), os.urandom(12)
    data = os.urandom(size)
    alg = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    alg.bind(("aead", "gcm(aes)"))
    alg.setsockopt(socket.SOL_ALG, socket.ALG_SET_KEY, key)
    alg.setsockopt(socket.SOL_ALG, ALG_SET_AEAD_AUTHSIZE, None, GCM_TAG_BYTES)
    op, _ = alg.accept()
    sealed = b""
    for _ in range(n):
        op.sendmsg_afalg([data], op=socket.ALG_OP_ENCRYPT, iv=iv, assoclen=0)
        sealed = op.recv(size + GCM_TAG_BYTES)
    op.sendmsg_afalg([sealed], op=socket.ALG_OP_DECRYPT, iv=iv, assoclen=0)   # one check round trip
    if op.recv(size) != data:
        raise SystemExit("gcm(aes) round trip mismatch")
    return {"driver": crypto_driver("gcm(aes)"), "decrypts": 1}


def pingpong(n: int) -> dict:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})       # both on one CPU: every hand-over is a context switch
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    x = 1.0
    child = os.fork()
    if child == 0:
        for _ in range(n):
            os.read(a_r, 1)
            x = x * 1.000001 + 0.5       # touch the FPU in user mode between hand-overs
            os.write(b_w, b"p")
        os._exit(0)
    for _ in range(n):
        os.write(a_w, b"p")
        os.read(b_r, 1)
        x = x * 1.000001 + 0.5
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise SystemExit(f"pingpong child failed: {status}")
    return {"child_pid": child, "cpu": cpu}


def main(argv: list[str]) -> int:
    name, args = argv[0], [int(a) for a in argv[1:]]
    t0 = time.monotonic()
    fn = {"sha256": sha256, "gcm": gcm, "pingpong": pingpong}[name]
    info = fn(*args)
    info.update(workload=name, args=args, pid=os.getpid(), wall_s=round(time.monotonic() - t0, 3))
    print("WORKLOAD " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
