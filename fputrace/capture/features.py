"""Everything fputrace needs to know about this host, probed once (libbpf-tools' compat.c idea).

The rest of the capture code reads ``host_features()``; nothing else looks at tracefs, kallsyms,
BTF or privileges. Probing is free of side effects but one: tracefs is mounted where it is
missing (tracefs.py). The one question only a load answers (may fentry programs attach?) is
left open here and settled by ``loader.verify_fentry``, which a capture and ``doctor`` run and
``doctor --no-load`` / ``--ebpf`` do not.
"""
from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

from .. import hostinfo

BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
CAP_PERFMON, CAP_BPF, CAP_SYS_ADMIN = 38, 39, 21


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def expected_tif_bit(version: tuple[int, int]) -> int | None:
    """TIF_NEED_FPU_LOAD by kernel version (SPEC 4); calibration checks it live."""
    if version < (5, 2):
        return None              # eager FPU: no such flag
    return 19 if version >= (6, 18) else 14


@dataclass
class Probe:
    ok: bool
    reason: str = ""             # why not (or a detail when ok)
    tested: bool = True          # False: not decided (fentry before its test load)


@dataclass
class Features:
    release: str = field(default_factory=platform.release)

    @cached_property
    def version(self) -> tuple[int, int]:
        return kernel_version(self.release)

    @cached_property
    def host(self) -> str:
        return socket.gethostname()

    @cached_property
    def cpu_model(self) -> str:
        return hostinfo.cpu_model()

    @cached_property
    def nr_cpus(self) -> int:
        return os.cpu_count() or 1

    @cached_property
    def possible_cpus(self) -> int:
        """Per-CPU BPF maps are sized by possible CPUs, not online ones."""
        try:
            text = Path("/sys/devices/system/cpu/possible").read_text().strip()
            return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
        except (OSError, ValueError):
            return self.nr_cpus

    # ---- privileges -------------------------------------------------------------------
    @cached_property
    def privileges(self) -> Probe:
        if os.geteuid() == 0:
            return Probe(True, "root")
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
                        return Probe(True, "CAP_BPF+CAP_PERFMON")
        except OSError:
            pass
        return Probe(False, "needs root or CAP_BPF+CAP_PERFMON (run with sudo)")

    @cached_property
    def bcc(self) -> Probe:
        # bcc picks its tracefs path once, at import: find (or mount) tracefs before that
        _ = self.tracefs_state
        try:
            import bcc  # noqa: F401  (the distribution's python3-bpfcc)
        except ImportError as err:
            return Probe(False, f"cannot import bcc ({err}): apt install python3-bpfcc, and use a "
                                "venv created with --system-site-packages")
        return Probe(True, getattr(bcc, "__file__", "bcc"))

    # ---- tracefs ----------------------------------------------------------------------
    @cached_property
    def tracefs_state(self):
        """Where tracefs is (mounted here first if root and nobody had: see tracefs.py)."""
        from .tracefs import find
        return find()

    @property
    def tracefs(self) -> Path | None:
        return self.tracefs_state.path

    def tracepoint_format(self, name: str) -> str | None:
        """The format file of ``category:event``, or None where the tracepoint is absent."""
        if self.tracefs is None:
            return None
        cat, ev = name.split(":")
        try:
            return (self.tracefs / "events" / cat / ev / "format").read_text()
        except OSError:
            return None

    def has_tracepoint(self, name: str) -> bool:
        return self.tracepoint_format(name) is not None

    def tracepoint_has_field(self, name: str, field_name: str) -> bool:
        fmt = self.tracepoint_format(name) or ""
        return re.search(rf"field:[^;]*\b{re.escape(field_name)}(\[\d+\])?;", fmt) is not None

    def tracepoint_field_is_data_loc(self, name: str, field_name: str) -> bool:
        fmt = self.tracepoint_format(name) or ""
        return re.search(rf"field:__data_loc [^;]*\b{re.escape(field_name)};", fmt) is not None

    # ---- symbols ----------------------------------------------------------------------
    @cached_property
    def kallsyms(self) -> dict[str, int]:
        """Text symbols of the core kernel and modules -> address (0 when hidden)."""
        syms: dict[str, int] = {}
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in "tTwW":
                        syms.setdefault(parts[2], int(parts[0], 16))
        except OSError:
            pass
        return syms

    # the few symbols planning asks about (plan.PROBE_SYMBOLS and test targets): found in one pass
    # over /proc/kallsyms without keeping its ~120k other names (20 MB) for the whole capture
    SYMBOLS_OF_INTEREST = frozenset({
        "_stext", "schedule", "kernel_fpu_begin_mask", "kernel_fpu_begin", "kernel_fpu_end",
        "save_fpregs_to_fpstate", "copy_fpregs_to_fpstate", "restore_fpregs_from_fpstate",
        "__restore_fpregs_from_fpstate", "switch_fpu_return", "fpu_clone", "fpu__copy"})

    @cached_property
    def _symbols_of_interest(self) -> dict[str, int]:
        if "kallsyms" in self.__dict__:
            return {n: a for n, a in self.kallsyms.items() if n in self.SYMBOLS_OF_INTEREST}
        want, out = self.SYMBOLS_OF_INTEREST, {}
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[2] in want and parts[1] in "tTwW":
                        out.setdefault(parts[2], int(parts[0], 16))
        except OSError:
            pass
        return out

    def symbol(self, name: str) -> int | None:
        """Address of a kernel text symbol (0 when addresses are hidden), None when absent."""
        if name in self.SYMBOLS_OF_INTEREST:
            return self._symbols_of_interest.get(name)
        return self.kallsyms.get(name)

    @cached_property
    def kallsyms_visible(self) -> bool:
        return any(self.symbol(s) for s in ("_stext", "schedule"))

    @cached_property
    def ftrace_functions(self) -> set[str] | None:
        """Functions ftrace can patch (fentry and ftrace-based kprobes need them); None if unknown."""
        if self.tracefs is None:
            return None
        try:
            with open(self.tracefs / "available_filter_functions") as f:
                return {line.split()[0] for line in f if line.strip()}
        except OSError:
            return None

    def symbol_range(self, name: str) -> tuple[int, int]:
        """[start, end) of a text symbol: up to the next symbol's address."""
        start = self.kallsyms.get(name, 0)
        if not start:
            return 0, 0
        following = [a for a in self._sorted_addrs if a > start][:1]
        return start, (following[0] if following else start + 4096)

    @cached_property
    def _sorted_addrs(self) -> list[int]:
        return sorted(set(self.kallsyms.values()))

    # ---- BTF / fentry / kprobes ---------------------------------------------------------
    @cached_property
    def btf(self) -> Probe:
        if BTF_VMLINUX.exists():
            return Probe(True, str(BTF_VMLINUX))
        return Probe(False, "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF)")

    @cached_property
    def _btf_blob(self) -> bytes:
        try:
            return BTF_VMLINUX.read_bytes()
        except OSError:
            return b""

    def in_btf(self, name: str) -> bool:
        # The name in the BTF string table: cheap and good enough (type lookups happen at load).
        return b"\0" + name.encode() + b"\0" in self._btf_blob

    @cached_property
    def kprobes(self) -> Probe:
        pmu = Path("/sys/bus/event_source/devices/kprobe/type").exists()
        legacy = self.tracefs is not None and (self.tracefs / "kprobe_events").exists()
        if pmu or legacy:
            return Probe(True, "kprobe PMU" if pmu else "kprobe_events")
        return Probe(False, "kprobes unavailable (no kprobe PMU, no kprobe_events in tracefs)")

    @cached_property
    def fentry(self) -> Probe:
        """Can a fentry program attach here? Only what is known without loading anything: the
        host-wide preconditions, then a verdict cached for this boot. Nothing else decides it
        but a real test load (``loader.verify_fentry``, run by a capture and by ``doctor``);
        until then the answer is ``tested=False``."""
        if not self.btf.ok:
            return Probe(False, self.btf.reason)
        if not self.bcc.ok or not self.privileges.ok:
            return Probe(False, "not tried: " + (self.bcc.reason if not self.bcc.ok else self.privileges.reason))
        if self.fentry_target is None:
            return Probe(False, "no traceable target symbol in kallsyms")
        cached = self.cached_probe("fentry")
        if cached is not None:
            return cached
        return Probe(False, "not tested (no test load in this run)", tested=False)

    @cached_property
    def fentry_target(self) -> str | None:
        return next((s for s in ("kernel_fpu_end", "schedule") if self.symbol(s) is not None), None)

    @cached_property
    def btf_types(self):
        """The running kernel's BTF, parsed (btf.py); None without BTF or when unreadable."""
        if not self.btf.ok:
            return None
        from .btf import Btf, BtfError
        try:
            return Btf(self._btf_blob)
        except BtfError:
            return None

    @cached_property
    def tp_btf(self) -> Probe:
        """May BTF-typed raw tracepoint programs load here? As for fentry, only a test load
        tells (``loader.verify_tp_btf``); before it: ``tested=False``."""
        if not self.btf.ok:
            return Probe(False, self.btf.reason)
        if not self.privileges.ok:
            return Probe(False, "not tried: " + self.privileges.reason)
        if self.btf_types is None or self.btf_types.typedef_id("btf_trace_sched_switch") is None:
            return Probe(False, "no btf_trace_sched_switch in the kernel's BTF")
        if self.version < (5, 5):
            return Probe(False, f"kernel {self.release} < 5.5 has no tp_btf programs")
        cached = self.cached_probe("tp_btf")
        if cached is not None:
            return cached
        return Probe(False, "not tested (no test load in this run)", tested=False)

    def forget(self, *names: str) -> None:
        """Drop cached answers that take memory (kallsyms: ~20 MB, the parsed BTF: ~30 MB) once
        nothing needs them; they are computed again if asked for."""
        for name in names:
            self.__dict__.pop(name, None)

    def set_tp_btf(self, verdict: Probe) -> None:
        self.__dict__["tp_btf"] = verdict

    def set_fentry(self, verdict: Probe) -> None:
        """The verdict of a real test load, or why none was made (``tested=False``)."""
        self.__dict__["fentry"] = verdict

    def cached_probe(self, name: str) -> Probe | None:
        """A refusal that cannot change before a reboot (EPERM: lockdown, sandboxing), or a
        success, kept per boot by ``cache_probe``."""
        path = self._probe_cache_path(name)
        try:
            ok, reason = path.read_text().split("\n", 1) if path else ("", "")
        except (OSError, ValueError):
            return None
        if ok == "1" or (ok == "0" and "EPERM" in reason):
            return Probe(ok == "1", reason.strip() + " (cached for this boot)")
        return None

    def cache_probe(self, name: str, verdict: Probe) -> None:
        """Keep ``verdict`` for this boot when it cannot change before a reboot: a success or
        EPERM. A compile or header error is fixable (install headers, upgrade bcc): never kept."""
        path = self._probe_cache_path(name)
        if path is None or not (verdict.ok or verdict.reason.startswith("EPERM")):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{int(verdict.ok)}\n{verdict.reason}\n")
        except OSError:
            pass

    def _probe_cache_path(self, name: str) -> Path | None:
        try:
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            return None
        from .headers import CACHE_ROOT
        return CACHE_ROOT.parent / "probes" / f"{name}-{self.release}-{boot_id}"

    @cached_property
    def preemption(self) -> Probe:
        """Can kernel code be preempted here (preempt=full, lazy or rt)? ``reason`` names the
        model and where it was read; unknown counts as not preemptible."""
        model, source = preemption_model(self.release)
        if not model:
            return Probe(False, "preemption model unknown (no debugfs sched/preempt, preempt=, or config)")
        return Probe(model in ("full", "lazy", "rt"), f"preempt={model} ({source})")

    @cached_property
    def ringbuf(self) -> Probe:
        if self.version >= (5, 8):
            return Probe(True, "BPF ring buffer")
        return Probe(False, f"kernel {self.release} < 5.8 has no BPF ring buffer: perf buffer")

    @cached_property
    def ringbuf_percpu(self) -> Probe:
        """Ring buffers as inner maps of an array (one per CPU): 5.10 (map_meta_equal)."""
        if self.version >= (5, 10):
            return Probe(True, "one BPF ring buffer per CPU")
        return Probe(False, f"kernel {self.release} < 5.10 cannot hold ring buffers in a map: one shared ring")

    @cached_property
    def raw_tracepoints(self) -> Probe:
        if self.version >= (4, 17):
            return Probe(True, "")
        return Probe(False, "raw tracepoints need 4.17+")

    @cached_property
    def recorded_policy(self) -> str:
        return "deferred" if self.version >= (5, 2) else "eager"

    @cached_property
    def headers(self):
        from .headers import find_headers
        return find_headers(self.release)

    @cached_property
    def xstate(self) -> dict:
        from .xstate import layout
        return layout()


def preemption_model(release: str) -> tuple[str, str]:
    """(model, where it was read): the running model of a PREEMPT_DYNAMIC kernel (debugfs, else
    the command line), else the build's model (kernel config), else '' ."""
    try:
        m = re.search(r"\((\w+)\)", Path("/sys/kernel/debug/sched/preempt").read_text())
        if m:
            return m.group(1), "/sys/kernel/debug/sched/preempt"
    except OSError:
        pass
    try:
        m = re.search(r"(?:^|\s)preempt=(\w+)", Path("/proc/cmdline").read_text())
        if m:
            return m.group(1), "kernel command line"
    except OSError:
        pass
    for path in (Path(f"/boot/config-{release}"), Path(f"/lib/modules/{release}/build/.config"),
                 Path("/proc/config.gz")):
        try:
            if path.suffix == ".gz":
                import gzip
                text = gzip.decompress(path.read_bytes()).decode(errors="replace")
            else:
                text = path.read_text(errors="replace")
        except OSError:
            continue
        for option, model in (("PREEMPT_RT", "rt"), ("PREEMPT_LAZY", "lazy"), ("PREEMPT", "full"),
                              ("PREEMPT_VOLUNTARY", "voluntary"), ("PREEMPT_NONE", "none")):
            if re.search(rf"^CONFIG_{option}=y$", text, re.M):
                return model, f"{path}"
    return "", ""


@cache
def host_features() -> Features:
    return Features()
