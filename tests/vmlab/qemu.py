"""Boot one stock kernel under QEMU, run one command in it as root, return its output and status.

The guest sees the host's root file system read-only (virtio-9p, tmpfs overlay on top), so the
host's Python venv, bcc, bpftrace and this repository are all there at their usual paths. A second,
read-write 9p share (the *run dir*) carries the command in and ``out.log`` + ``rc`` out; it is
mounted in the guest at the same path as on the host, so files the command writes there are the
host's at once.

Hard limits: ``timeout`` kills QEMU; ``-no-reboot`` + ``panic=-1`` make a guest panic end QEMU at
once; both come back as a result with ``returncode=None`` and a reason, never as a hang.
"""
from __future__ import annotations

import hashlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import images as images_mod
from . import initramfs
from .kernels import CACHE_DIR, Kernel

QEMU = "qemu-system-x86_64"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_DIR_MAX_AGE_S = 2 * 24 * 3600
# With stall_s set, the guest command touches $VMLAB_RUNDIR/heartbeat every HEARTBEAT_S (guest/
# lab.py from a thread: no process of its own, so nothing new for the lab to compare), and run()
# kills a guest whose heartbeat is older than stall_s (after BOOT_GRACE_S for the first one): a guest
# kernel livelocked in text patching under TCG spins both vCPUs and prints nothing, and would
# otherwise hold the lab until its timeout.
HEARTBEAT_S = 5
STALL_S = 180
BOOT_GRACE_S = 300


@dataclass
class GuestResult:
    returncode: int | None   # exit status of the command; None if it never finished
    output: str              # the command's stdout+stderr (out.log)
    console: str             # the serial console (kernel messages + output)
    run_dir: Path
    accel: str
    wall_s: float
    timed_out: bool = False
    panicked: bool = False
    stalled: bool = False    # killed: the guest's heartbeat stopped (a kernel livelock, no panic)
    stalled_s: float = 0.0   # how long it had been quiet then
    qemu_returncode: int | None = None
    cpu_s: float = 0.0       # CPU time QEMU used (user + system): what the guest costs on an idle host

    @property
    def reason(self) -> str:
        """Why the command did not report an exit status (empty if it did)."""
        if self.returncode is not None:
            return ""
        if self.stalled:
            return (f"guest stalled: no heartbeat from its user space for {self.stalled_s:.0f}s, killed after "
                    f"{self.wall_s:.0f}s (a kernel livelock, or a hung user space)")
        if self.timed_out:
            return f"guest timed out after {self.wall_s:.0f}s"
        if self.panicked:
            lines = [ln for ln in self.console.splitlines() if "panic" in ln.lower()]
            return "guest kernel panic: " + (lines[0].strip() if lines else "?")
        tail = " | ".join(self.console.strip().splitlines()[-5:])
        return f"guest ended without an exit status (qemu rc={self.qemu_returncode}): {tail}"

    def oops(self) -> dict:
        """The first oops on the console, in a few lines: what faulted, in which task, and the
        reliable frames of its call trace (the '?' ones are stale stack words)."""
        return oops_summary(self.console)


def oops_summary(console: str) -> dict:
    lines = [ln.split("] ", 1)[-1].strip() for ln in console.splitlines()]
    first = next((i for i, ln in enumerate(lines) if ln.startswith(("BUG:", "Oops:", "Kernel panic", "general protection"))), None)
    if first is None:
        return {}
    block = lines[first:first + 80]
    pick = lambda prefix: next((ln for ln in block if ln.startswith(prefix)), "")
    frames = []
    if "Call Trace:" in block:
        for ln in block[block.index("Call Trace:") + 1:]:
            if ln.startswith("</TASK>") or ln.startswith("RIP: 0033"):
                break
            if ln and not ln.startswith(("?", "<")):
                frames.append(ln)
    return {"bug": block[0], "task": pick("CPU:"), "rip": pick("RIP:"), "frames": frames[:8],
            "panic": next((ln for ln in lines if ln.startswith("Kernel panic")), "")}


def choose_accel() -> str:
    """KVM only where a normal KVM module drives /dev/kvm. Here /dev/kvm is PVM (kvm_pvm), which
    cannot run a stock kernel, so those machines use TCG; fentry/kprobes behave the same."""
    normal_kvm = any(os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))
    if os.access("/dev/kvm", os.W_OK) and normal_kvm and not os.path.isdir("/sys/module/kvm_pvm"):
        return "kvm"
    return "tcg"


def _prune_old_runs(runs: Path) -> None:
    if not runs.is_dir():
        return
    now = time.time()
    for d in runs.iterdir():
        try:
            if d.is_dir() and now - d.stat().st_mtime > RUN_DIR_MAX_AGE_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def new_run_dir(cache_dir: Path = CACHE_DIR) -> Path:
    runs = cache_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    _prune_old_runs(runs)
    return Path(tempfile.mkdtemp(prefix="run.", dir=runs))


REPO_DIR = Path(__file__).resolve().parents[2]


def checkout_key() -> str:
    """Names this checkout in the shared cache (its venv image, its results)."""
    return hashlib.sha256(str(REPO_DIR).encode()).hexdigest()[:8]


def default_images(kernel: Kernel, cache_dir: Path = CACHE_DIR) -> list[images_mod.FolderImage]:
    """The trees the lab reads most: the repo venv's site-packages (pandas, pyarrow, numba), the
    system Python's standard library and dist-packages (every interpreter start in the guest;
    bcc), and this kernel's headers (bcc's compile)."""
    if not images_mod.have_mkfs():
        return []
    out = []
    site = sorted((REPO_DIR / ".venv" / "lib").glob("python3*/site-packages"))
    if site:
        # one image per checkout: several worktrees (or CI clones) share the cache, each with its venv
        key = hashlib.sha256(str(site[-1].resolve()).encode()).hexdigest()[:8]
        out.append(images_mod.folder_image(site[-1], "vmlab-venv", cache_dir, name=f"venv-{key}"))
    stdlib = Path("/usr/lib") / Path(os.path.realpath("/usr/bin/python3")).name
    for folder, serial in ((stdlib, "vmlab-pystd"), (Path("/usr/lib/python3/dist-packages"), "vmlab-pydist")):
        if folder.is_dir():
            out.append(images_mod.folder_image(folder, serial, cache_dir))
    src = Path(kernel.headers_dir).parent
    out.append(images_mod.folder_image(src, "vmlab-hdr", cache_dir, name=f"hdr-{kernel.release}"))
    return out


def _wrapper(run_dir: Path, env: dict[str, str], mounts: str) -> str:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"""export PATH={GUEST_PATH}
cd {run_dir}
{mounts}{{ /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 PATH={GUEST_PATH} VMLAB_RUNDIR={run_dir} {exports} \\
    /bin/bash {run_dir}/cmd.sh </dev/null; echo $? > /run/vmlab.rc; }} 2>&1 | tee {run_dir}/out.log
cp /run/vmlab.rc {run_dir}/rc; sync
/bin/busybox poweroff -f
"""


def run(kernel: Kernel, command: list[str] | str, *, timeout_s: float = 600, mem: str = "2G",
        smp: int = 2, accel: str | None = None, run_dir: Path | None = None,
        env: dict[str, str] | None = None, echo: bool = False, cache_dir: Path = CACHE_DIR,
        extra_append: str = "", images: list[images_mod.FolderImage] | None = None,
        stall_s: float | None = None) -> GuestResult:
    """Boot ``kernel`` and run ``command`` (argv list, or a shell script string) as root in it.

    ``stall_s``: kill the guest when the heartbeat ``command`` writes stops for that long
    (``GuestResult.stalled``).

    ``images``: folders to serve as read-only disks (default: ``default_images``; [] for none)."""
    if shutil.which(QEMU) is None:
        raise FileNotFoundError(f"{QEMU} not installed (Debian qemu-system-x86; run ./setup.sh)")
    accel = accel or choose_accel()
    run_dir = run_dir or new_run_dir(cache_dir)
    for stale in ("rc", "out.log", "heartbeat"):
        (run_dir / stale).unlink(missing_ok=True)
    script = command if isinstance(command, str) else shlex.join(command)
    (run_dir / "cmd.sh").write_text(script + "\n")
    images = default_images(kernel, cache_dir) if images is None else images
    (run_dir / ".wrap.sh").write_text(_wrapper(run_dir, env or {}, images_mod.guest_mount_script(images)))
    initrd = initramfs.build(kernel, cache_dir)
    append = (f"console=ttyS0 quiet loglevel=3 panic=-1 vmlab.rundir={run_dir} "
              f"vmlab.kmods={kernel.modules_dir} {extra_append}").strip()
    argv = [QEMU, "-nodefaults", "-no-user-config", "-machine", f"pc,accel={accel}",
            "-cpu", "host" if accel == "kvm" else "max", "-smp", str(smp), "-m", mem,
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel.vmlinux, "-initrd", str(initrd), "-append", append,
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=rundir,path={run_dir},security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=rundir,mount_tag=rundir", *images_mod.qemu_args(images)]
    console: list[str] = []
    t0 = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")

    def pump() -> None:
        for line in proc.stdout:
            line = line.replace("\r", "")
            console.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = stalled = False
    stalled_s = 0.0
    heartbeat = run_dir / "heartbeat"
    while proc.poll() is None:
        now = time.monotonic()
        if now - t0 > timeout_s:
            timed_out = True
        elif stall_s is not None:
            try:
                quiet_s = time.time() - heartbeat.stat().st_mtime
            except FileNotFoundError:
                quiet_s = now - t0 - BOOT_GRACE_S
            stalled = quiet_s > stall_s
            stalled_s = quiet_s
        if timed_out or stalled:
            proc.kill()
            proc.wait()
            break
        time.sleep(1)
    reader.join(timeout=5)
    wall_s = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    console_text = "".join(console)
    (run_dir / "console.log").write_text(console_text)
    rc_file = run_dir / "rc"
    returncode = int(rc_file.read_text().strip()) if rc_file.exists() and not timed_out else None
    out_file = run_dir / "out.log"
    return GuestResult(returncode=returncode,
                       output=out_file.read_text(errors="replace") if out_file.exists() else "",
                       console=console_text, run_dir=run_dir, accel=accel, wall_s=wall_s,
                       timed_out=timed_out, panicked="Kernel panic" in console_text, stalled=stalled, stalled_s=round(stalled_s, 1),
                       qemu_returncode=proc.returncode, cpu_s=round(cpu_s, 1))
