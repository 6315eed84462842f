"""A tiny initramfs: static busybox, the guest kernel's virtio/9p/overlay modules and an /init that
mounts the host root (read-only 9p) under a tmpfs overlay and switch_roots into it.

switch_root rather than chroot: the kernel's request_module() runs /sbin/modprobe of the *new*
root, which must find this kernel's modules, bind-mounted at /lib/modules/<release>.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .kernels import Kernel

BUSYBOX = "/bin/busybox"
# Modules the initramfs itself needs; on kernels where one is built in, modules.dep lacks it.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

# Kernel command line parameters read by /init (set by qemu.py):
#   vmlab.rundir=<path>  read-write 9p share "rundir", mounted at the same path in the new root
#   vmlab.kmods=<path>   this kernel's modules dir (in the cache), bind-mounted at /lib/modules/<rel>
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
fail() { echo "vmlab-init: $*"; poweroff -f; }
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "vmlab-init: insmod $m failed"; done
RUNDIR=$(arg vmlab.rundir); KMODS=$(arg vmlab.kmods)
ok=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower && { ok=1; break; }
  sleep 0.2
done
[ $ok = 1 ] || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=755 tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || fail "overlay mount failed"
N=/newroot
mount -t proc proc $N/proc; mount -t sysfs sysfs $N/sys; mount -t devtmpfs devtmpfs $N/dev
mkdir -p $N/dev/pts $N/dev/shm; mount -t devpts devpts $N/dev/pts; mount -t tmpfs tmpfs $N/dev/shm
# /tmp stays the host's (through the overlay): a checkout under /tmp must be visible in the guest
mount -t tmpfs tmpfs $N/run
mount -t debugfs debugfs $N/sys/kernel/debug; mount -t tracefs tracefs $N/sys/kernel/tracing
mount -t bpf bpf $N/sys/fs/bpf
mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=512000 rundir $N$RUNDIR || fail "cannot mount the run dir"
if [ -n "$KMODS" ]; then
  D=$N/lib/modules/${KMODS##*/}; mkdir -p $D; mount --bind $N$KMODS $D
fi
exec switch_root $N /bin/bash $RUNDIR/.wrap.sh
"""


def _module_index(modules_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (relative path, [dependency names]) from modules.dep."""
    index = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        index[_mod_name(path)] = (path, [_mod_name(d) for d in deps.split()])
    return index


def _mod_name(path: str) -> str:
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _read_module(path: Path) -> bytes:
    """Module bytes, decompressed: busybox insmod does not read .ko.xz / .ko.zst."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-d", "-c"], input=data, capture_output=True, check=True).stdout
    return data


def boot_module_order(kernel: Kernel) -> list[str]:
    """BOOT_MODULES with their dependencies first (built-in ones are absent from modules.dep)."""
    index = _module_index(Path(kernel.modules_dir))
    order: list[str] = []

    def add(name: str) -> None:
        if name in order or name not in index:
            return
        for dep in index[name][1]:
            add(dep)
        order.append(name)

    for m in BOOT_MODULES:
        add(m)
    return order


def build(kernel: Kernel, cache_dir: Path) -> Path:
    """The cpio archive for ``kernel`` (cached; rebuilt when /init or busybox change)."""
    key = hashlib.sha256(INIT_SCRIPT.encode() + Path(BUSYBOX).read_bytes()[:4096]).hexdigest()[:12]
    out = cache_dir / "initramfs" / f"{kernel.release}-{key}.cpio"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    index = _module_index(Path(kernel.modules_dir))
    order = boot_module_order(kernel)
    with tempfile.TemporaryDirectory(prefix="vmlab-initramfs-") as tmp:
        t = Path(tmp)
        (t / "bin").mkdir()
        (t / "mods").mkdir()
        shutil.copy2(BUSYBOX, t / "bin" / "busybox")
        for m in order:
            (t / "mods" / f"{m}.ko").write_bytes(_read_module(Path(kernel.modules_dir) / index[m][0]))
        (t / "mods" / "order").write_text(" ".join(order) + "\n")
        (t / "init").write_text(INIT_SCRIPT)
        (t / "init").chmod(0o755)
        names = subprocess.run(["find", "."], cwd=t, capture_output=True, text=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=t, input=names.encode(),
                              capture_output=True, check=True).stdout
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_bytes(cpio)
    tmp_out.rename(out)
    return out
