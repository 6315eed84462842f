"""Find tracefs, and mount it when fputrace may and nobody has (what perf does).

Minimal VMs and containers often boot without tracefs. bcc needs it for every tracepoint program
(the format files give the argument layout, the ``id`` files the perf event), so a root fputrace
mounts it itself: tracefs at /sys/kernel/tracing, else debugfs at /sys/kernel/debug (whose
``tracing`` directory is tracefs, automounted, or on old kernels a debugfs directory). The mount
stays, as perf's does; ``doctor`` says what was mounted and where. Without the privilege to mount,
the answer says exactly what is missing.

Mounted file systems are read from /proc/self/mounts, not guessed from directories: an
unprivileged user cannot look inside tracefs (mode 0700) but can see that it is mounted.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from pathlib import Path

TRACING = Path("/sys/kernel/tracing")
DEBUGFS = Path("/sys/kernel/debug")
DEBUGFS_TRACING = DEBUGFS / "tracing"
CAP_SYS_ADMIN = 21


@dataclass(frozen=True)
class Tracefs:
    path: Path | None                  # where the events/ directory is readable, or None
    detail: str                        # one line for doctor: where, or what is missing
    mounted: tuple[str, ...] = field(default=())   # what fputrace mounted: "tracefs at /sys/kernel/tracing"

    def as_meta(self) -> dict:
        return {"path": str(self.path) if self.path else None, "mounted_by_fputrace": list(self.mounted)}


def mounts(table: str = "/proc/self/mounts") -> dict[str, str]:
    """mount point -> file system type, for the file systems that matter here."""
    out = {}
    try:
        with open(table) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in ("tracefs", "debugfs"):
                    out[parts[1].replace("\\040", " ")] = parts[2]
    except OSError:
        pass
    return out


def _readable(path: Path) -> bool:
    try:
        return (path / "events").is_dir()
    except OSError:                    # not root: tracefs is mode 0700
        return False


def may_mount() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << CAP_SYS_ADMIN))
    except (OSError, ValueError):
        pass
    return False


def _mount(source: str, target: Path, fstype: str) -> str | None:
    """mount(2); None on success, else the reason."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), ctypes.c_ulong(0), None) == 0:
        return None
    err = ctypes.get_errno()
    return f"mount -t {fstype} {source} {target}: {os.strerror(err)}"


def find(allow_mount: bool | None = None) -> Tracefs:
    """Where tracefs is; mounts it first when it is nowhere and ``allow_mount`` (default: when
    this process has the privilege)."""
    for cand in (TRACING, DEBUGFS_TRACING):
        if _readable(cand):
            return Tracefs(cand, str(cand))
    table = mounts()
    seen = [p for p in (str(TRACING), str(DEBUGFS_TRACING)) if table.get(p) == "tracefs"]
    if seen:
        return Tracefs(None, f"tracefs is mounted at {seen[0]} but this user cannot read it: "
                             "needs root (sudo)")
    where = f"neither at {TRACING} nor at {DEBUGFS_TRACING}"
    if allow_mount is None:
        allow_mount = may_mount()
    if not allow_mount:
        return Tracefs(None, f"tracefs is not mounted ({where}) and mounting it needs root: "
                             f"run as root, or mount -t tracefs nodev {TRACING} first")
    errors = []
    if TRACING.is_dir():
        why = _mount("nodev", TRACING, "tracefs")
        if why is None and _readable(TRACING):
            return Tracefs(TRACING, f"{TRACING} (tracefs was not mounted: fputrace mounted it)",
                           (f"tracefs at {TRACING}",))
        errors.append(why or f"mounted tracefs at {TRACING} but found no events/ in it")
    else:
        errors.append(f"{TRACING} does not exist (kernel older than 4.1)")
    mounted = ()
    if table.get(str(DEBUGFS)) != "debugfs":
        why = _mount("debugfs", DEBUGFS, "debugfs")
        if why is not None:
            errors.append(why)
            return Tracefs(None, f"tracefs is not mounted ({where}) and mounting failed: " + "; ".join(errors))
        mounted = (f"debugfs at {DEBUGFS}",)
    if _readable(DEBUGFS_TRACING):        # the kernel automounts tracefs here on first access
        return Tracefs(DEBUGFS_TRACING, f"{DEBUGFS_TRACING} (tracefs was not mounted: fputrace mounted "
                                        f"{' and '.join(mounted) or 'nothing new'}; " + "; ".join(errors) + ")",
                       mounted)
    errors.append(f"no events/ under {DEBUGFS_TRACING}")
    return Tracefs(None, f"tracefs is not mounted ({where}) and mounting failed: " + "; ".join(errors), mounted)
