"""BTF-typed raw tracepoint programs (tp_btf), which bcc compiles but cannot load.

A tp_btf program is a tracing program (BPF_PROG_TYPE_TRACING, expected attach type
BPF_TRACE_RAW_TP) whose BTF target is the tracepoint's ``btf_trace_<name>`` typedef: the
verifier then knows the arguments' kernel types, so ``prev->pid`` is a plain load instead of a
``bpf_probe_read_kernel`` call, and the program runs straight from the tracepoint (no perf
record is filled first). bcc compiles the function (maps already resolved to their fds, as
``BPF.dump_func`` returns it); this module loads it (BPF_PROG_LOAD) and attaches it
(BPF_RAW_TRACEPOINT_OPEN with no name: the target comes from the program).

Some kernels refuse tracing programs (the development hosts here refuse fentry with EPERM but
allow tp_btf): ``test_load`` answers with a two-instruction program, nothing compiled.
"""
from __future__ import annotations

import ctypes
import os
import struct

from .features import Probe

SYS_BPF = 321
BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN = 5, 17
BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP = 26, 23
ATTR_BYTES = 144          # union bpf_attr as of 5.x; the kernel accepts any size with zero tail
LOG_BYTES = 1 << 20
# offsets in union bpf_attr (BPF_PROG_LOAD): include/uapi/linux/bpf.h
OFF_INSNS, OFF_LICENSE, OFF_LOG_LEVEL, OFF_NAME, OFF_ATTACH_TYPE, OFF_ATTACH_BTF_ID = 8, 16, 24, 48, 68, 108
EXIT_0 = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)   # r0 = 0; exit

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class TpBtfError(OSError):
    def __init__(self, errno_: int, what: str, log: str = ""):
        super().__init__(errno_, f"{what}: {os.strerror(errno_)}")
        self.log = log


def _bpf(cmd: int, attr: bytearray) -> int:
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    return _libc.syscall(SYS_BPF, cmd, buf, len(attr))


def load(insns: bytes, btf_id: int, name: str) -> int:
    """Load ``insns`` as a tp_btf program on BTF type ``btf_id``; -> program fd."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_BYTES)
    attr = bytearray(ATTR_BYTES)
    struct.pack_into("<II", attr, 0, BPF_PROG_TYPE_TRACING, len(insns) // 8)
    struct.pack_into("<QQ", attr, OFF_INSNS, ctypes.addressof(code), ctypes.addressof(lic))
    struct.pack_into("<IIQ", attr, OFF_LOG_LEVEL, 1, LOG_BYTES, ctypes.addressof(log))
    attr[OFF_NAME:OFF_NAME + 15] = name.encode()[:15].ljust(15, b"\0")
    struct.pack_into("<I", attr, OFF_ATTACH_TYPE, BPF_TRACE_RAW_TP)
    struct.pack_into("<I", attr, OFF_ATTACH_BTF_ID, btf_id)
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        err = ctypes.get_errno()
        raise TpBtfError(err, f"loading tp_btf program {name}", log.value.decode(errors="replace"))
    return fd


def attach(prog_fd: int) -> int:
    """Attach a loaded tp_btf program; -> link fd (closing it detaches)."""
    attr = bytearray(ATTR_BYTES)
    struct.pack_into("<QI", attr, 0, 0, prog_fd)
    fd = _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    if fd < 0:
        err = ctypes.get_errno()
        raise TpBtfError(err, "attaching tp_btf program")
    return fd


def test_load(btf_id: int) -> Probe:
    """Can a tp_btf program load and attach here? A two-instruction one, detached at once."""
    try:
        fd = load(EXIT_0, btf_id, "fpt_tp_btf_test")
    except TpBtfError as err:
        why = "EPERM: the kernel refuses tracing programs" if err.errno == 1 else str(err)
        return Probe(False, why)
    try:
        os.close(attach(fd))
    except TpBtfError as err:
        return Probe(False, ("EPERM: " if err.errno == 1 else "") + str(err))
    finally:
        os.close(fd)
    return Probe(True, "loaded and attached a test program")
