"""Ground-truth workloads, run INSIDE a lab guest (plain python3, no fputrace imports).

  sha256 N SIZE            N AF_ALG sha256 hashes of one page-aligned SIZE-byte buffer (kernel SIMD:
                           sha256-avx2 ...)
  gcm N SIZE               N AF_ALG gcm(aes) encryptions of SIZE bytes (aesni/vaes)
  pingpong N               two processes pinned to one CPU bounce a byte over pipes N times: each
                           round trip is two context switches between user tasks with live FPU state
  blockio DEV MIB [BACKING [BS_KIB]]
                           O_DIRECT writes of MIB MiB of random data to block device DEV, then reads
                           them back and compares; with BACKING, checks that the bytes stored there
                           differ (the device encrypts: dm-crypt)
  fileio DIR MIB           writes a MIB MiB file in DIR, fsync, drops the page cache, reads it back
                           (a file system with data checksums computes and verifies them)
  tcp-netns NS_SRV IP NS_CLI MIB
                           a TCP server in network namespace NS_SRV on IP, a client in NS_CLI sending
                           MIB MiB to it (through a tunnel between the namespaces: WireGuard)

Each prints one line ``WORKLOAD {json}`` with its pid(s), the kernel driver used and the time.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import socket
import sys
import time

ALG_SET_AEAD_AUTHSIZE = 5
GCM_TAG_BYTES = 16
TCP_PORT = 9100
CHUNK = 1 << 20


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


def aligned(size: int) -> mmap.mmap:
    """A page-aligned buffer of random bytes: AF_ALG maps user pages into a scatterlist, so the
    number of pages a buffer spans (and with it the kernel FPU sections per hash) depends on its
    alignment; an mmap starts on a page."""
    buf = mmap.mmap(-1, max(size, mmap.PAGESIZE))
    buf.write(os.urandom(size))
    return buf


def sha256(n: int, size: int) -> dict:
    buf = aligned(size)
    data = memoryview(buf)[:size]
    alg = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    alg.bind(("hash", "sha256"))
    op, _ = alg.accept()
    digest = b""
    for _ in range(n):
        op.sendall(data)
        digest = op.recv(32)
    if digest != hashlib.sha256(data).digest():
        raise SystemExit("sha256 digest mismatch")
    return {"driver": crypto_driver("sha256"), "pages_per_buffer": -(-size // mmap.PAGESIZE)}


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


def blockio(dev: str, mib: int, backing: str | None = None, bs_kib: int | None = None) -> dict:
    """O_DIRECT: every byte goes through the device's own path now, not at some later writeback."""
    bs = (bs_kib or 1024) << 10
    total = (mib << 20) // bs * bs
    buf = aligned(bs)
    pattern = bytes(buf[:bs])
    digest = hashlib.sha256()
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        for off in range(0, total, bs):
            buf.seek(0)
            buf.write(os.urandom(bs) if off else pattern)
            digest.update(buf[:bs])
            if os.pwritev(fd, [buf], off) != bs:
                raise SystemExit(f"short write on {dev}")
        os.fsync(fd)
        back = hashlib.sha256()
        for off in range(0, total, bs):
            if os.preadv(fd, [buf], off) != bs:
                raise SystemExit(f"short read on {dev}")
            back.update(buf[:bs])
    finally:
        os.close(fd)
    if back.digest() != digest.digest():
        raise SystemExit(f"{dev}: data read back differs from data written")
    out = {"device": dev, "bytes": 2 * total, "block_bytes": bs}
    if backing:
        with open(backing, "rb") as f:
            stored = f.read(bs)
        if stored == pattern:
            raise SystemExit(f"{backing} holds the plaintext: {dev} did not encrypt")
        out["backing_differs"] = True
    return out


def fileio(directory: str, mib: int) -> dict:
    path = os.path.join(directory, "vmlab.data")
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    back = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            back.update(chunk)
    os.unlink(path)
    if back.digest() != digest.digest():
        raise SystemExit(f"{path}: data read back differs")
    return {"bytes": 2 * (mib << 20)}


def enter_netns(name: str) -> None:
    """Move this process into network namespace ``name`` (ip netns: /run/netns/<name>)."""
    import ctypes
    clone_newnet = 0x40000000
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, clone_newnet) != 0:
        raise SystemExit(f"setns {name}: errno {ctypes.get_errno()}")
    os.close(fd)


def tcp_netns(ns_srv: str, ip: str, ns_cli: str, mib: int) -> dict:
    """Server and client as forks of this process (no new interpreter: startup is slow in a
    guest), each in its own namespace."""
    nbytes = mib << 20
    ready_r, ready_w = os.pipe()
    server = os.fork()
    if server == 0:
        os.close(ready_r)
        try:
            enter_netns(ns_srv)
            srv = socket.create_server((ip, TCP_PORT))
            os.write(ready_w, b"1")
            conn, _ = srv.accept()
            got = 0
            while got < nbytes:
                chunk = conn.recv(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
            conn.sendall(b"k")
            conn.close()
            os._exit(0 if got == nbytes else 3)
        except BaseException:
            os._exit(2)
    os.close(ready_w)
    if os.read(ready_r, 1) != b"1":
        raise SystemExit("tcp server did not start")
    client = os.fork()
    if client == 0:
        try:
            enter_netns(ns_cli)
            data = os.urandom(CHUNK)
            with socket.create_connection((ip, TCP_PORT), timeout=60) as s:
                sent = 0
                while sent < nbytes:
                    n = min(CHUNK, nbytes - sent)
                    s.sendall(data[:n])
                    sent += n
                os._exit(0 if s.recv(1) == b"k" else 3)
        except BaseException:
            os._exit(2)
    status = {name: os.waitpid(pid, 0)[1] for name, pid in (("client", client), ("server", server))}
    if any(status.values()):
        raise SystemExit(f"tcp-netns failed: {status}")
    return {"bytes": nbytes, "tcp-server_pid": server, "tcp-client_pid": client}


WORKLOADS = {"sha256": (sha256, int, int), "gcm": (gcm, int, int), "pingpong": (pingpong, int),
             "blockio": (blockio, str, int, str, int), "fileio": (fileio, str, int),
             "tcp-netns": (tcp_netns, str, str, str, int)}


def main(argv: list[str]) -> int:
    name, raw = argv[0], argv[1:]
    fn, *types = WORKLOADS[name]
    args = [t(a) if a != "" else None for t, a in zip(types, raw)]   # "": that argument's default
    t0 = time.monotonic()
    info = fn(*args)
    info.update(workload=name, args=args, pid=os.getpid(), wall_s=round(time.monotonic() - t0, 3))
    print("WORKLOAD " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
