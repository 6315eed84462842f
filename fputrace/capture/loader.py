"""Compile bpf/fputrace.bpf.c with bcc for a Plan, attach it, detach it.

bcc (and clang inside it) print diagnostics straight to file descriptor 2; we catch them so a
refused program becomes one ``LoadError`` line, with the full log (bcc's error text, clang's
diagnostics, the kernel verifier's log) in ``LoadError.log`` for ``-v``/``--verbose``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from ..errors import LoadError
from ..resources import bpf_dir
from . import tpbtf
from .features import Features, Probe

if TYPE_CHECKING:                      # plan -> features; loader -> features: no import circle
    from .plan import Plan

SOURCE_NAME = "fputrace.bpf.c"


@contextlib.contextmanager
def captured_stderr():
    """Redirect fd 2 (where libbcc and clang write) into a buffer: yields a list that receives
    the text when the block ends."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _first_error_line(log: str, default: str) -> str:
    for line in log.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    for pat in (r"(Operation not permitted|Permission denied|Invalid argument|No such file or directory"
                r"|Device or resource busy|Argument list too long|Cannot allocate memory)",):
        m = re.search(pat, log)
        if m:
            return m.group(1)
    return default


def source_path():
    return bpf_dir() / SOURCE_NAME


def final_cflags(plan_cflags: list[str], transport_cflags: list[str], extra: list[str] = ()) -> list[str]:
    return [f"-I{bpf_dir()}", *plan_cflags, *transport_cflags, *extra]


def render(cflags: list[str]) -> str:
    """What --ebpf prints: the flags, then the source bcc compiles."""
    head = "// bcc cflags: " + " ".join(cflags) + "\n"
    return head + source_path().read_text()


@dataclass
class Loaded:
    bpf: object            # bcc.BPF
    cflags: list[str]
    log: str
    attached: bool = True
    btf_programs: dict = field(default_factory=dict)   # tracepoint -> (prog fd, link fd): tp_btf

    def program_fds(self) -> dict[str, int]:
        """bcc function name or tracepoint -> program fd, for every program we loaded."""
        out = {(k.decode() if isinstance(k, bytes) else str(k)): f.fd for k, f in self.bpf.funcs.items()}
        out.update({f"tp_btf__{tp}": fds[0] for tp, fds in self.btf_programs.items()})
        return out

    def detach_all(self) -> None:
        """Detach every probe but keep maps (the ring) open so the consumer can drain them."""
        if not self.attached:
            return
        b = self.bpf
        for ev in list(b.kprobe_fds):
            b.detach_kprobe_event(ev)
        for tp in list(b.tracepoint_fds):
            b.detach_tracepoint(tp)
        for tp in list(b.raw_tracepoint_fds):
            b.detach_raw_tracepoint(tp)
        for fn in list(b.kfunc_entry_fds):
            b.detach_kfunc(fn)
        # sched_switch first: a switch it leaves to regs_deactivated (one record for both) must
        # not find regs_deactivated already gone
        for tp, (prog, link) in sorted(self.btf_programs.items(), key=lambda kv: kv[0] != "sched_switch"):
            if link >= 0:
                os.close(link)
                self.btf_programs[tp] = (prog, -1)
        self.attached = False

    def close(self) -> None:
        self.detach_all()
        for prog, _ in self.btf_programs.values():
            os.close(prog)
        self.btf_programs = {}
        self.bpf.cleanup()


def load(plan: Plan, cflags: list[str]) -> Loaded:
    """Compile and attach (tracepoints, raw tracepoints and fentry auto-attach by name)."""
    from bcc import BPF
    b = None
    with captured_stderr() as log:
        try:
            b = BPF(src_file=str(source_path()).encode(), cflags=cflags)
            for sym, fn in plan.kprobes:
                b.attach_kprobe(event=sym, fn_name=fn)
        except Exception as err:     # bcc raises bare Exception for everything
            failure = err
        else:
            failure = None
    text = log[0] if log else ""
    btf_programs = {}
    if failure is None and plan.hot is not None and plan.hot.btf_programs:
        try:
            btf_programs = _load_tp_btf(b, plan.hot.btf_programs)
        except tpbtf.TpBtfError as err:
            text, failure = (text + "\n" + err.log).strip(), err
    if failure is not None:
        if b is not None:
            with contextlib.suppress(Exception):
                b.cleanup()
        why = _first_error_line(text, str(failure).splitlines()[0] if str(failure) else type(failure).__name__)
        raise LoadError(f"the kernel refused the BPF program: {why} "
                        f"(see the source and flags with --ebpf, the whole log with -v)",
                        log=_full_log(text, failure))
    return Loaded(b, cflags, text, btf_programs=btf_programs)


def _load_tp_btf(b, programs: list[tuple[str, str, int]]) -> dict:
    """Load and attach the tp_btf functions bcc compiled (it cannot load them itself)."""
    out = {}
    try:
        for func, tp, btf_id in programs:
            fd = tpbtf.load(b.dump_func(func.encode()), btf_id, tp)
            out[tp] = (fd, -1)
            out[tp] = (fd, tpbtf.attach(fd))
    except tpbtf.TpBtfError:
        for prog, link in out.values():
            if link >= 0:
                os.close(link)
            os.close(prog)
        raise
    return out


def verify_tp_btf(feat: Features) -> None:
    """Settle ``feat.tp_btf`` by a real (two-instruction) test load, kept for the boot."""
    if feat.tp_btf.tested:
        return
    verdict = tpbtf.test_load(feat.btf_types.typedef_id("btf_trace_sched_switch"))
    feat.cache_probe("tp_btf", verdict)
    feat.set_tp_btf(verdict)


def _full_log(text: str, failure: BaseException) -> str:
    tail = f"bcc: {type(failure).__name__}: {failure}"
    return f"{text.rstrip()}\n{tail}".strip() if text.strip() else tail


def try_fentry(symbol: str) -> tuple[Probe, str]:
    """Load and attach a no-op fentry program on ``symbol``: the only reliable test.
    -> (verdict, the load's log)."""
    from bcc import BPF
    text = f"KFUNC_PROBE({symbol}) {{ return 0; }}"
    with captured_stderr() as log:
        try:
            b = BPF(text=text.encode())
        except Exception as err:
            failure = err
        else:
            failure = None
            b.cleanup()
    out = log[0] if log else ""
    if failure is None:
        return Probe(True, f"attached a test program to {symbol}"), out
    why = _first_error_line(out, str(failure))
    if "Operation not permitted" in why or "EPERM" in why:
        why = "EPERM: the kernel refuses fentry programs (locked down or sandboxed)"
    return Probe(False, why), _full_log(out, failure)


def verify_fentry(feat: Features) -> str:
    """Settle ``feat.fentry`` by a real test load when nothing else decided it; the verdict is
    kept for the boot when it cannot change before a reboot (see Features.cache_probe).
    -> the test load's log ("" when no load was needed)."""
    if feat.fentry.tested:
        return ""
    from .headers import apply
    apply(feat.headers)
    verdict, log = try_fentry(feat.fentry_target)
    feat.cache_probe("fentry", verdict)
    feat.set_fentry(verdict)
    return log


def eperm_hint(err: OSError) -> str:
    return "needs root or CAP_BPF+CAP_PERFMON" if err.errno == errno.EPERM else str(err)


COMPILER_LIBS = ("libLLVM", "libclang")


def release_compiler_pages() -> int:
    """After the programs are loaded the compiler inside bcc (LLVM and clang, ~85 MB of code)
    is not needed: drop its pages from this process's resident set. Only mappings whose pages
    are all clean and file-backed (no copy-on-write page: code, read-only data) are dropped, so
    nothing is lost; a page used again is read back from the page cache. -> bytes dropped."""
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    MADV_DONTNEED = 4
    dropped, region = 0, None
    try:
        lines = open("/proc/self/smaps").read().splitlines()
    except OSError:
        return 0

    def flush(r):
        nonlocal dropped
        if r and r["path"] and any(lib in r["path"] for lib in COMPILER_LIBS) and r["perms"][3] == "p" \
                and "w" not in r["perms"] and r.get("Anonymous", 1) == 0 and r.get("Rss", 0):
            if libc.madvise(ctypes.c_void_p(r["start"]), ctypes.c_size_t(r["end"] - r["start"]), MADV_DONTNEED) == 0:
                dropped += r["Rss"] * 1024

    for line in lines:
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            flush(region)
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            region = {"start": lo, "end": hi, "perms": head[1], "path": head[5] if len(head) > 5 else ""}
        elif region is not None and head[0] in ("Rss:", "Anonymous:"):
            region[head[0][:-1]] = int(head[1])
    flush(region)
    return dropped