"""The XSAVE layout of this CPU: enabled components, their sizes and offsets (SPEC 5.5).

Sources, best first: CPUID leaf 0xD and XGETBV executed directly (a few bytes of machine code
through ctypes: exact, no kernel module needed), cross-checked against the kernel's boot lines
``x86/fpu: Enabled xstate features 0x..., context size is N bytes, using 'compacted' format``.
The kernel line wins for the enabled mask and total size: it includes supervisor components
(IA32_XSS) that user space cannot read.
"""
from __future__ import annotations

import ctypes
import mmap
import re
import subprocess
from functools import cache

FEATURE_NAMES = {
    0: "x87", 1: "sse", 2: "avx", 3: "mpx_bndregs", 4: "mpx_bndcsr", 5: "avx512_opmask",
    6: "avx512_zmm_hi256", 7: "avx512_hi16_zmm", 8: "pt", 9: "pkru", 10: "pasid",
    11: "cet_user", 12: "cet_supervisor", 13: "hdc", 14: "uintr", 15: "lbr", 16: "hwp",
    17: "amx_tilecfg", 18: "amx_tiledata", 19: "apx",
}

# Component sizes the architecture fixes (CPUID leaf 0xD gives these on every CPU that has the
# component; Intel SDM vol. 1 table 13-1): a trace from another machine names its components
# (xcomp_bv, xfeatures) but not their sizes. LBR (15) depends on the LBR depth: not here.
ARCHITECTURAL_SIZES = {2: 256, 3: 64, 4: 64, 5: 64, 6: 512, 7: 1024, 9: 8, 10: 8, 11: 16, 12: 24,
                       17: 64, 18: 8192}


def layout_of_mask(mask: int, source: str) -> dict:
    """The layout of a CPU known only by the components it enabled (a trace from elsewhere):
    architectural sizes, offsets unknown; a component without a fixed size counts 0 bytes and is
    named in ``unknown_sizes``. The same shape as ``layout()``, for the cost model and header."""
    mask &= ~(1 << 63)                          # bit 63 of xcomp_bv is the format bit
    features, unknown = [], []
    for bit in range(63):
        if not mask >> bit & 1:
            continue
        size = {0: 160, 1: 256}.get(bit, ARCHITECTURAL_SIZES.get(bit))
        if size is None:
            unknown.append(FEATURE_NAMES.get(bit, f"bit{bit}"))
        features.append({"bit": bit, "name": FEATURE_NAMES.get(bit, f"bit{bit}"), "size_bytes": size or 0,
                         "offset": None})
    out = {"xcr0": mask, "mask": mask, "features": features, "source": source}
    if unknown:
        out["unknown_sizes"] = unknown
    return out


# push rbx; mov r8,rdx; mov eax,edi; mov ecx,esi; cpuid; mov [r8],eax; mov [r8+4],ebx;
# mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret
_CPUID_CODE = bytes.fromhex("534989d089f889f10fa2418900418958044189480841895 00c5bc3".replace(" ", ""))
# mov ecx,edi; xgetbv; shl rdx,32; or rax,rdx; ret
_XGETBV_CODE = bytes.fromhex("89f90f01d048c1e2204809d0c3")


class _Native:
    def __init__(self):
        self._mem = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._mem.write(_CPUID_CODE + b"\x90" * (64 - len(_CPUID_CODE)) + _XGETBV_CODE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._mem))
        self._cpuid = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                       ctypes.POINTER(ctypes.c_uint32 * 4))(base)
        self._xgetbv = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(base + 64)

    def cpuid(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        self._cpuid(leaf, subleaf, ctypes.byref(out))
        return tuple(out)

    def xgetbv(self, index: int = 0) -> int:
        return int(self._xgetbv(index))


@cache
def _native() -> _Native | None:
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        return _Native()
    except (OSError, ValueError):   # W^X policies can forbid executable anonymous memory
        return None


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None:
    nat = _native()
    return nat.cpuid(leaf, subleaf) if nat else None


def _kernel_line() -> dict:
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    m = re.search(r"x86/fpu: Enabled xstate features (0x[0-9a-f]+), context size is (\d+) bytes,"
                  r" using '(\w+)' format", out)
    if not m:
        return {}
    return {"mask": int(m.group(1), 16), "total_bytes": int(m.group(2)),
            "compacted": m.group(3) == "compacted"}


@cache
def layout() -> dict:
    """{xcr0, xss_mask, features: [{bit, name, size_bytes, offset}], total_bytes, compacted, source}"""
    nat = _native()
    kline = _kernel_line()
    if nat is None or not (nat.cpuid(1)[2] >> 26) & 1:          # no XSAVE
        return {"xcr0": 0, "features": [], "total_bytes": kline.get("total_bytes", 512),
                "compacted": False, "source": "none"}
    osxsave = (nat.cpuid(1)[2] >> 27) & 1
    xcr0 = nat.xgetbv(0) if osxsave else 0
    d1 = nat.cpuid(0xD, 1)
    xsaves = bool(d1[0] & (1 << 3))
    mask = kline.get("mask", xcr0)
    compacted = kline.get("compacted", xsaves)
    features = []
    offset = 576
    for bit in range(64):
        if not mask & (1 << bit):
            continue
        if bit == 0:
            features.append({"bit": 0, "name": "x87", "size_bytes": 160, "offset": 0})
            continue
        if bit == 1:
            features.append({"bit": 1, "name": "sse", "size_bytes": 256, "offset": 160})
            continue
        eax, ebx, ecx, _ = nat.cpuid(0xD, bit)
        size = eax
        if compacted:
            if ecx & 2:           # 64-byte aligned in the compacted format
                offset = (offset + 63) & ~63
            off = offset
            offset += size
        else:
            off = ebx
        features.append({"bit": bit, "name": FEATURE_NAMES.get(bit, f"bit{bit}"),
                         "size_bytes": size, "offset": off})
    if "total_bytes" in kline:
        total = kline["total_bytes"]
    elif compacted:
        total = d1[1]
    else:
        total = nat.cpuid(0xD, 0)[1]
    return {"xcr0": xcr0, "mask": mask, "features": features, "total_bytes": total,
            "compacted": bool(compacted), "source": "cpuid+dmesg" if kline else "cpuid"}
