"""What the kernel says about fputrace's own BPF programs: ``bpf_prog_info`` by file descriptor.

    stats = ProgramStats.of(loaded)       # loader.Loaded
    stats.read()   -> {"sched_switch": ProgInfo(run_cnt, run_time_ns, recursion_misses, ...), ...}

* ``recursion_misses`` (kernel 5.12+): runs the kernel skipped because a BPF program was already
  running on that CPU (``bpf_prog_active`` for kprobe and perf-event tracepoint programs, the
  program's own ``active`` counter for raw tracepoints and fentry). A skipped run is an event
  nobody saw: reported beside lost events.
* ``run_cnt`` / ``run_time_ns`` (5.1+): counted only while ``kernel.bpf_stats_enabled`` is 1;
  run_time_ns / run_cnt is what one run of the program costs.

One ``BPF_OBJ_GET_INFO_BY_FD`` syscall per program (ctypes; bcc does not expose these fields).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_GET_FD_BY_ID = 13
BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 32, 0
SYS_BPF = 321                      # x86-64
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
# offsets in struct bpf_prog_info (include/uapi/linux/bpf.h); tests/test_progstats.py checks them
OFF_ID, OFF_NAME, OFF_RUN_TIME, OFF_RUN_CNT, OFF_RECURSION = 4, 64, 192, 200, 208
INFO_BYTES = 232


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass(frozen=True)
class ProgInfo:
    id: int
    kernel_name: str               # the kernel's 15-character name
    run_cnt: int
    run_time_ns: int
    recursion_misses: int | None   # None: kernel < 5.12 does not count them

    @property
    def ns_per_run(self) -> float | None:
        return self.run_time_ns / self.run_cnt if self.run_cnt else None


def prog_info(fd: int, buf=None) -> ProgInfo:
    buf = buf if buf is not None else ctypes.create_string_buffer(INFO_BYTES)
    ctypes.memset(buf, 0, INFO_BYTES)
    attr = _InfoAttr(fd, INFO_BYTES, ctypes.addressof(buf))
    if _libc.syscall(SYS_BPF, BPF_OBJ_GET_INFO_BY_FD, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_OBJ_GET_INFO_BY_FD: {os.strerror(err)}")
    raw = buf.raw
    u64 = lambda off: int.from_bytes(raw[off:off + 8], "little")   # noqa: E731
    # the kernel writes back how much it filled: older kernels stop before recursion_misses
    known = attr.info_len >= OFF_RECURSION + 8
    return ProgInfo(id=int.from_bytes(raw[OFF_ID:OFF_ID + 4], "little"),
                    kernel_name=raw[OFF_NAME:OFF_NAME + 16].split(b"\0", 1)[0].decode(errors="replace"),
                    run_cnt=u64(OFF_RUN_CNT), run_time_ns=u64(OFF_RUN_TIME),
                    recursion_misses=u64(OFF_RECURSION) if known else None)


@contextlib.contextmanager
def run_time_stats():
    """Run counts and times for every BPF program while the block runs (BPF_ENABLE_STATS, 5.8+):
    the kernel keeps them on while any such fd is open, whoever else turns the sysctl on or off.
    Yields whether they are on."""
    attr = ctypes.c_uint32(BPF_STATS_RUN_TIME)
    fd = _libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    try:
        yield fd >= 0 or stats_enabled()
    finally:
        if fd >= 0:
            os.close(fd)


def stats_enabled() -> bool:
    try:
        return STATS_SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


def short_name(func: str) -> str:
    """bcc's function name -> what it traces: ``tracepoint__sched__sched_switch`` -> ``sched_switch``,
    ``raw_tracepoint__sys_enter`` or ``tp_btf__sys_enter`` -> ``sys_enter``, ``kfunc__vmlinux__kernel_fpu_end`` ->
    ``kernel_fpu_end``, ``fpt_kprobe_xsave`` -> ``kprobe:xsave``."""
    for prefix in ("raw_tracepoint__", "tp_btf__", "kfunc__vmlinux__", "kfunc__"):
        if func.startswith(prefix):
            return func[len(prefix):]
    if func.startswith("tracepoint__"):
        return func.split("__", 2)[-1]
    if func.startswith("fpt_kprobe_"):
        return "kprobe:" + func[len("fpt_kprobe_"):]
    return func


class ProgramStats:
    """The loaded programs of one bcc.BPF object, by short name."""

    def __init__(self, fds: dict[str, int]):
        self.fds = fds
        self._buf = ctypes.create_string_buffer(INFO_BYTES)

    @classmethod
    def of(cls, loaded) -> "ProgramStats":
        """Every program of a ``loader.Loaded`` (bcc's and the tp_btf ones)."""
        return cls({short_name(name): fd for name, fd in loaded.program_fds().items() if fd is not None and fd >= 0})

    def read(self) -> dict[str, ProgInfo]:
        out = {}
        for name, fd in self.fds.items():
            try:
                out[name] = prog_info(fd, self._buf)
            except OSError:
                continue                 # closed meanwhile (session ending)
        return out

    @staticmethod
    def recursion_misses(infos: dict[str, ProgInfo]) -> dict[str, int] | None:
        """{program: misses} for programs the kernel skipped at least once; None if the kernel
        does not count misses (< 5.12)."""
        if infos and all(i.recursion_misses is None for i in infos.values()):
            return None
        return {n: i.recursion_misses for n, i in sorted(infos.items()) if i.recursion_misses}


def prog_ids_of(pid: int) -> set[int]:
    """Ids of the BPF programs process ``pid`` holds (its /proc fdinfo: ``prog_id:``)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
        except OSError:
            continue
    return ids


def prog_fd_by_id(prog_id: int) -> int:
    """A new fd of program ``prog_id`` (another process's program: benchmarks, tests)."""
    attr = (ctypes.c_uint32 * 4)(prog_id, 0, 0, 0)
    fd = _libc.syscall(SYS_BPF, BPF_PROG_GET_FD_BY_ID, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_GET_FD_BY_ID {prog_id}: {os.strerror(err)}")
    return fd


HOT = ("sched_switch", "x86_fpu_regs_deactivated", "x86_fpu_regs_activated", "sys_enter", "sys_exit")


def cost_summary(infos: dict[str, ProgInfo]) -> str:
    """The status line's part: ns per run of the per-switch/per-syscall programs that ran."""
    parts = [f"{n.removeprefix('x86_fpu_regs_')} {infos[n].ns_per_run:.0f}"
             for n in HOT if n in infos and infos[n].ns_per_run is not None]
    return ("ns/run " + " ".join(parts)) if parts else ""


def cost_table(infos: dict[str, ProgInfo], seconds: float) -> list[str]:
    """One line per program that ran: runs, runs per second, ns per run (kernel's run_time_ns)."""
    rows = sorted(((n, i) for n, i in infos.items() if i.run_cnt), key=lambda r: -r[1].run_cnt)
    out = [f"{'program':<28s} {'runs':>12s} {'runs/s':>12s} {'ns/run':>8s}"]
    out += [f"{n:<28s} {i.run_cnt:>12,} {i.run_cnt / max(seconds, 1e-9):>12,.0f} {i.ns_per_run:>8.1f}" for n, i in rows]
    return out


def as_meta(infos: dict[str, ProgInfo]) -> dict:
    return {n: {"runs": i.run_cnt, "run_time_ns": i.run_time_ns} for n, i in sorted(infos.items()) if i.run_cnt}
