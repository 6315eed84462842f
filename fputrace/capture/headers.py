"""Kernel headers for bcc: the exact tree of the running kernel, else a merged generic fallback.

bcc compiles the BPF C at run time against kernel headers. Our BPF code reads no kernel struct
beyond ``thread_info.flags`` at offset 0 of ``task_struct`` (SPEC 4), so any reasonably recent
x86-64 header tree works. Debian splits its header packages into ``linux-headers-<ver>-common``
(sources) and ``linux-headers-<ver>-<flavour>`` (generated files, config): bcc needs one tree, so
we build it once as a directory of symlinks under ``/var/cache/fputrace/headers/<ver>`` and point
``BCC_KERNEL_SOURCE`` at it.
"""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("FPUTRACE_CACHE", "/var/cache/fputrace")) / "headers"
SRC_ROOT = Path("/usr/src")


@dataclass(frozen=True)
class Headers:
    kind: str            # "exact" | "fallback" | "none"
    path: str | None     # tree handed to bcc (None: let bcc find /lib/modules/<rel>/build)
    detail: str          # one line for doctor

    def as_meta(self) -> dict:
        return {"kind": self.kind, "path": self.path}


def _is_tree(path: Path) -> bool:
    return (path / "include" / "linux" / "kconfig.h").exists() or (path / "Makefile").exists()


def _exact(release: str) -> Path | None:
    for cand in (Path(f"/lib/modules/{release}/build"), Path(f"/lib/modules/{release}/source")):
        if cand.exists() and (cand / "include").is_dir():
            return cand
    return None


def _version_key(name: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", name)[:4])


def _debian_pairs() -> list[tuple[Path, Path]]:
    """(flavour tree with include/generated, matching -common tree), newest first."""
    pairs = []
    if not SRC_ROOT.is_dir():
        return pairs
    for flav in SRC_ROOT.glob("linux-headers-*-amd64"):
        common = SRC_ROOT / flav.name.replace("-amd64", "-common")
        if (flav / "include" / "generated").is_dir() and (common / "include").is_dir():
            pairs.append((flav, common))
    # Self-contained trees (Ubuntu's generic flavour ships one tree per version).
    for tree in SRC_ROOT.glob("linux-headers-*"):
        if tree.name.endswith("-common") or any(tree == f for f, _ in pairs):
            continue
        if (tree / "include" / "generated").is_dir() and (tree / "include" / "linux").is_dir():
            pairs.append((tree, tree))
    pairs.sort(key=lambda p: _version_key(p[0].name), reverse=True)
    return pairs


def _merge(flav: Path, common: Path, dest: Path) -> Path:
    """A tree of symlinks: everything from -common, generated/config parts from the flavour."""
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for entry in common.iterdir():
        if entry.name not in ("include", "arch"):
            os.symlink(entry, tmp / entry.name)
    (tmp / "include").mkdir()
    for entry in (common / "include").iterdir():
        os.symlink(entry, tmp / "include" / entry.name)
    for name in ("generated", "config"):
        if (flav / "include" / name).exists():
            target = tmp / "include" / name
            if target.is_symlink():
                target.unlink()
            os.symlink(flav / "include" / name, target)
    (tmp / "arch").mkdir()
    for entry in (common / "arch").iterdir():
        if entry.name != "x86":
            os.symlink(entry, tmp / "arch" / entry.name)
    (tmp / "arch" / "x86").mkdir()
    for entry in (common / "arch" / "x86").iterdir():
        if entry.name != "include":
            os.symlink(entry, tmp / "arch" / "x86" / entry.name)
    (tmp / "arch" / "x86" / "include").mkdir()
    for entry in (common / "arch" / "x86" / "include").iterdir():
        os.symlink(entry, tmp / "arch" / "x86" / "include" / entry.name)
    gen = flav / "arch" / "x86" / "include" / "generated"
    if gen.exists():
        target = tmp / "arch" / "x86" / "include" / "generated"
        if target.is_symlink():
            target.unlink()
        os.symlink(gen, target)
    if (flav / "Module.symvers").exists() and not (tmp / "Module.symvers").exists():
        os.symlink(flav / "Module.symvers", tmp / "Module.symvers")
    (tmp / ".complete").write_text(f"{flav}\n{common}\n")
    try:
        os.rename(tmp, dest)
    except OSError:                      # a concurrent fputrace won the race: use its tree
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def find_headers(release: str | None = None) -> Headers:
    release = release or platform.release()
    exact = _exact(release)
    if exact is not None:
        return Headers("exact", str(exact), f"{exact} (matches {release})")
    for flav, common in _debian_pairs():
        ver = flav.name.removeprefix("linux-headers-")
        if flav == common:
            return Headers("fallback", str(flav), f"generic {ver} headers (no exact ones for {release})")
        tree, errors = None, []
        # /var/cache first; a read-only root (the QEMU lab shares the host's) falls back to /tmp
        import tempfile
        for root in (CACHE_ROOT, Path(tempfile.gettempdir()) / "fputrace-headers"):
            try:
                tree = _merge(flav, common, root / ver)
                break
            except OSError as err:
                errors.append(f"{root}: {err.strerror or err}")
        if tree is None:
            return Headers("none", None, f"cannot build merged header tree for {ver}: {'; '.join(errors)}")
        return Headers("fallback", str(tree),
                       f"generic {ver} headers, merged at {tree} (no exact ones for {release})")
    return Headers("none", None, f"no kernel headers for {release}: apt install linux-headers-amd64")


def apply(headers: Headers) -> None:
    """Point bcc at the tree (bcc reads BCC_KERNEL_SOURCE when it compiles)."""
    if headers.kind == "fallback" and headers.path:
        os.environ["BCC_KERNEL_SOURCE"] = headers.path
