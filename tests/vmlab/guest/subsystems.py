"""Real kernel FPU users, set up and torn down INSIDE a lab guest (plain python3, no fputrace).

Each subsystem does its SIMD work where real systems do it: in kernel threads, in softirq
context, in the interrupted task's context. Set-up (modules, devices, keys, mkfs) and tear-down
happen outside the measured windows (they use the kernel FPU too: key expansion, raid6's algorithm
benchmark at load); ``io()`` is the measured part and runs in its own process (workloads.py).

  dmcrypt    aes-xts-plain64 over a loop device on tmpfs: encryption and decryption in kcryptd
             kworkers (O_DIRECT writes and reads, data checked)
  wireguard  two network namespaces joined by veth, one wg interface each; TCP through the tunnel:
             chacha20poly1305 in WireGuard's crypt workers, delivery in NAPI (softirq)
  raid6      md raid6 over four loop devices: gen_syndrome (AVX2) in the md thread, full-stripe
             O_DIRECT writes
  btrfs      btrfs on a loop device: crc32c data checksums computed at writeback and verified on
             read after the page cache is dropped

No udev runs in the guest: every module is modprobed explicitly and device nodes are found through
sysfs (``/dev/mapper/<name>`` does not appear by itself; writing there would create a plain file
and measure nothing, so every device path is checked to be a block device).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from workloads import crypto_driver     # the same directory (guest/lab.py puts it on sys.path)

WORK = Path("/dev/shm/vmlab")       # tmpfs: backing files cost no disk I/O


class SetupError(RuntimeError):
    pass


def sh(*argv: str, check: bool = True, input: str | None = None) -> str:
    res = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and res.returncode != 0:
        raise SetupError(f"{' '.join(argv)}: exit {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
    return res.stdout


def module_names() -> tuple[set[str], set[str]]:
    """This kernel's loadable modules (modules.dep) and built-in ones (modules.builtin)."""
    import platform
    base = Path("/lib/modules") / platform.release()

    def names(path: Path) -> set[str]:
        if not path.exists():
            return set()
        return {os.path.basename(line.split(":", 1)[0]).split(".ko")[0].replace("-", "_")
                for line in path.read_text().splitlines() if line}
    return names(base / "modules.dep"), names(base / "modules.builtin")


def modprobe(*mods: str) -> dict[str, str]:
    """Load the modules this kernel has in one modprobe (one process: each start is seconds
    under emulation), then say per module what happened. Names differ between kernels (7.x
    builds sha256/chacha/poly1305/crc32c SIMD code into lib/crypto): a missing one is said so."""
    mods = tuple(dict.fromkeys(m.replace("-", "_") for m in mods))
    loadable, builtin = module_names()
    res = subprocess.run(["modprobe", "-a", *(m for m in mods if m in loadable)], capture_output=True, text=True)
    out = {}
    for m in mods:
        if m in builtin:
            out[m] = "built in"
        elif m not in loadable:
            out[m] = "no such module on this kernel"
        elif Path(f"/sys/module/{m}").is_dir():
            out[m] = "loaded"
        else:
            out[m] = f"not loaded: {res.stderr.strip()[-200:] or f'modprobe exit {res.returncode}'}"
    return out


def block_device(major_minor: str) -> str:
    """A /dev node for MAJ:MIN (devtmpfs creates it; made here if it is missing)."""
    maj, mnr = (int(x) for x in major_minor.strip().split(":"))
    for d in Path("/sys/dev/block").glob(f"{maj}:{mnr}"):
        name = (d / "uevent").read_text().split("DEVNAME=", 1)[1].split()[0]
        path = f"/dev/{name}"
        if not os.path.exists(path):
            os.mknod(path, 0o600 | stat.S_IFBLK, os.makedev(maj, mnr))
        if not stat.S_ISBLK(os.stat(path).st_mode):
            raise SetupError(f"{path} is not a block device")
        return path
    raise SetupError(f"no block device {major_minor} in /sys/dev/block")


def losetup(size_mib: int, name: str) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    img = WORK / f"{name}.img"
    with open(img, "wb") as f:
        f.truncate(size_mib << 20)
    dev = sh("losetup", "--find", "--show", str(img)).strip()
    if not stat.S_ISBLK(os.stat(dev).st_mode):
        raise SetupError(f"{dev} is not a block device")
    return dev


class Subsystem:
    name = ""
    modules: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    def __init__(self, mib: int):
        self.mib = mib
        self.info: dict = {}

    def missing_tool(self) -> str:
        from shutil import which
        return next((t for t in self.tools if which(t) is None), "")

    def setup(self) -> dict:
        raise NotImplementedError

    def io_argv(self) -> list[str]:
        """workloads.py arguments of the measured part."""
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError


class DmCrypt(Subsystem):
    name = "dmcrypt"
    modules = ("aesni_intel", "xts", "dm_crypt", "loop")
    tools = ("dmsetup", "losetup")
    SECTOR = 4096

    def setup(self) -> dict:
        self.loop = losetup(self.mib + 4, "dmcrypt")
        key = os.urandom(64).hex()
        sectors = self.mib << 11
        # 4 KiB crypto sectors (LUKS2's choice on 4K disks): one skcipher request, one kernel FPU
        # section per 4 KiB; 512-byte sectors would make 8x more, each 8x shorter
        sh("dmsetup", "create", "vmlab-crypt", "--table",
           f"0 {sectors} crypt aes-xts-plain64 {key} 0 {self.loop} 0 1 sector_size:{self.SECTOR}")
        self.dev = block_device(sh("dmsetup", "info", "-c", "--noheadings", "-o", "major,minor", "vmlab-crypt")
                                .replace(" ", ""))
        return {"device": self.dev, "backing": self.loop, "cipher": "aes-xts-plain64", "sector_bytes": self.SECTOR,
                "driver": crypto_driver("xts(aes)")}

    def io_argv(self) -> list[str]:
        return ["blockio", self.dev, str(self.mib), self.loop]

    def teardown(self) -> None:
        sh("dmsetup", "remove", "vmlab-crypt", check=False)
        sh("losetup", "-d", self.loop, check=False)


class WireGuard(Subsystem):
    name = "wireguard"
    modules = ("wireguard", "veth", "chacha_x86_64", "poly1305_x86_64")
    tools = ("ip", "wg")
    NS = ("vmlab-wa", "vmlab-wb")

    def setup(self) -> dict:
        a, b = self.NS
        for ns in self.NS:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "veth-wa", "netns", a, "type", "veth", "peer", "name", "veth-wb", "netns", b)
        keys = {}
        for i, ns in enumerate(self.NS):
            priv = sh("wg", "genkey").strip()
            keys[ns] = (priv, sh("wg", "pubkey", input=priv + "\n").strip())
            sh("ip", "-n", ns, "addr", "add", f"10.201.0.{i + 1}/24", "dev", f"veth-w{'ab'[i]}")
            sh("ip", "-n", ns, "link", "set", f"veth-w{'ab'[i]}", "up")
            sh("ip", "-n", ns, "link", "add", "wg0", "type", "wireguard")
        for i, ns in enumerate(self.NS):
            peer = self.NS[1 - i]
            keyfile = WORK / f"wg-{ns}.key"
            WORK.mkdir(parents=True, exist_ok=True)
            keyfile.write_text(keys[ns][0] + "\n")
            sh("ip", "netns", "exec", ns, "wg", "set", "wg0", "private-key", str(keyfile), "listen-port", "51820",
               "peer", keys[peer][1], "allowed-ips", f"10.202.0.{2 - i}/32", "endpoint", f"10.201.0.{2 - i}:51820")
            sh("ip", "-n", ns, "addr", "add", f"10.202.0.{i + 1}/24", "dev", "wg0")
            sh("ip", "-n", ns, "link", "set", "wg0", "up")
        # the handshake (curve25519, blake2s) happens here, outside the measured window
        sh(sys.executable, str(Path(__file__).with_name("workloads.py")), *self.io_argv()[:-1], "0")
        return {"namespaces": list(self.NS), "tunnel": "10.202.0.1 -> 10.202.0.2 over veth",
                "driver": crypto_driver("rfc7539(chacha20,poly1305)")}

    def io_argv(self) -> list[str]:
        return ["tcp-netns", self.NS[1], "10.202.0.2", self.NS[0], str(self.mib)]

    def teardown(self) -> None:
        for ns in self.NS:
            sh("ip", "netns", "del", ns, check=False)


class Raid6(Subsystem):
    name = "raid6"
    modules = ("raid456", "loop")
    tools = ("mdadm", "losetup")
    DISKS = 4
    CHUNK_KIB = 64

    def setup(self) -> dict:
        self.loops = [losetup(self.mib // 2 + 8, f"raid6-{i}") for i in range(self.DISKS)]
        sh("mdadm", "--create", "/dev/md0", "--run", "--quiet", "--level=6", f"--chunk={self.CHUNK_KIB}",
           f"--raid-devices={self.DISKS}", "--assume-clean", "--metadata=1.2", "--homehost=vmlab", *self.loops)
        md = Path("/sys/block/md0")
        if not md.is_dir():
            raise SetupError("mdadm created no /sys/block/md0")
        self.dev = block_device((md / "dev").read_text())
        level = (md / "md" / "level").read_text().strip()
        algo = ""
        for line in sh("dmesg").splitlines():
            if "raid6: using algorithm" in line:
                algo = line.split("raid6: using algorithm", 1)[1].strip()
        return {"device": self.dev, "level": level, "disks": self.DISKS, "chunk_kib": self.CHUNK_KIB,
                "gen_syndrome": algo or "?"}

    def io_argv(self) -> list[str]:
        # full stripes: (DISKS - 2) data chunks
        return ["blockio", self.dev, str(self.mib), "", str((self.DISKS - 2) * self.CHUNK_KIB)]

    def teardown(self) -> None:
        sh("mdadm", "--stop", self.dev, check=False)
        for lp in self.loops:
            sh("losetup", "-d", lp, check=False)


class Btrfs(Subsystem):
    name = "btrfs"
    modules = ("crc32c_intel", "btrfs", "loop")
    tools = ("mkfs.btrfs", "losetup", "mount")
    MNT = "/run/vmlab-btrfs"

    def setup(self) -> dict:
        self.loop = losetup(max(256, 4 * self.mib), "btrfs")
        sh("mkfs.btrfs", "-q", "-f", "--csum", "crc32c", "-m", "single", "-d", "single", self.loop)
        os.makedirs(self.MNT, exist_ok=True)
        sh("mount", "-t", "btrfs", "-o", "datasum", self.loop, self.MNT)
        return {"device": self.loop, "mount": self.MNT, "csum": "crc32c", "driver": crypto_driver("crc32c")}

    def io_argv(self) -> list[str]:
        return ["fileio", self.MNT, str(self.mib)]

    def teardown(self) -> None:
        sh("umount", self.MNT, check=False)
        sh("losetup", "-d", self.loop, check=False)


SUBSYSTEMS = {cls.name: cls for cls in (DmCrypt, WireGuard, Raid6, Btrfs)}


def settle(seconds: float = 0.5) -> None:
    """Let deferred kernel work (writeback, crypt workers, NAPI) finish before a window closes."""
    os.sync()
    time.sleep(seconds)
