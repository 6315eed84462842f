"""Read-only ext4 images of host folders that the guest reads file by file.

Why: over virtio-9p under TCG every path lookup is a round trip to QEMU, and 6.1's 9p revalidates
cached dentries, so ``import pandas, pyarrow`` costs ~35 s and bcc's compile spends most of its
time opening kernel headers. The same trees as a virtio-blk ext4 disk use the guest's own dentry
and page cache: seconds instead of minutes. The guest mounts each image at the same path as the
host folder, so nothing else changes. Images are cached and rebuilt when the folder changes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FolderImage:
    image: Path       # raw ext4 file on the host
    mountpoint: str   # host folder it mirrors, mounted over in the guest
    serial: str       # virtio-blk serial the guest finds it by (<= 20 chars)


def _fingerprint(folder: Path) -> str:
    """Cheap change detector: names, sizes and mtimes two levels deep (pip replaces whole
    package folders, so their mtimes move)."""
    h = hashlib.sha256(str(folder).encode())
    for top in sorted(os.scandir(folder), key=lambda e: e.name):
        st = top.stat(follow_symlinks=False)
        h.update(f"{top.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        if top.is_dir(follow_symlinks=False):
            for sub in sorted(os.scandir(top.path), key=lambda e: e.name):
                sst = sub.stat(follow_symlinks=False)
                h.update(f"{sub.name}:{sst.st_size}:{sst.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _tree_bytes(folder: Path) -> int:
    out = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def folder_image(folder: Path, serial: str, cache_dir: Path, name: str | None = None) -> FolderImage:
    """An ext4 image with the content of ``folder`` (built once per content fingerprint; ``name``
    keys the cache file, one current image per name)."""
    name = name or serial
    folder = folder.resolve()
    fp = _fingerprint(folder)
    img_dir = cache_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    img = img_dir / f"{name}-{fp}.ext4"
    if not img.exists():
        for old in img_dir.glob(f"{name}-*.ext4"):
            old.unlink()
        size_mib = _tree_bytes(folder) * 13 // 10 // (1 << 20) + 64
        tmp = img.with_suffix(f".{os.getpid()}.tmp")   # two builders of one image do not collide
        # no journal and no metadata checksums: mounted read-only, and ext4 then needs no crc32c
        res = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", serial[:16], "-O", "^has_journal,^metadata_csum",
                              "-E", "root_owner=0:0", "-d", str(folder), str(tmp), f"{size_mib}M"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"mkfs.ext4 -d {folder}: {res.stderr.strip()[-300:]}")
        tmp.rename(img)
    return FolderImage(image=img, mountpoint=str(folder), serial=serial)


def guest_mount_script(images: list[FolderImage]) -> str:
    """Shell run in the guest before the command: find each disk by serial, mount it read-only."""
    if not images:
        return ""
    lines = ["modprobe -a virtio_blk ext4",
             "for i in $(seq 50); do [ -e /sys/block/vda ] && break; sleep 0.1; done"]
    for im in images:
        lines.append(
            f"for b in /sys/block/vd*; do [ \"$(cat $b/serial 2>/dev/null)\" = {im.serial} ] && "
            f"mount -t ext4 -o ro,noload /dev/${{b##*/}} {im.mountpoint} || true; done")
        lines.append(f"mountpoint -q {im.mountpoint} || echo 'vmlab: image {im.serial} not mounted, "
                     f"{im.mountpoint} stays on 9p (slow)'")
    return "\n".join(lines) + "\n"


def qemu_args(images: list[FolderImage]) -> list[str]:
    args = []
    for i, im in enumerate(images):
        args += ["-drive", f"file={im.image},if=none,id=img{i},format=raw,readonly=on",
                 "-device", f"virtio-blk-pci,drive=img{i},serial={im.serial}"]
    return args


def have_mkfs() -> bool:
    return shutil.which("mkfs.ext4") is not None
