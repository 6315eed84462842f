"""Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux), parsed here.

The raw tracepoint programs read a few kernel struct fields themselves (a task's pid, an fpu's
xfeatures) instead of letting the perf tracepoint copy every field first. Where those fields
are depends on the kernel build, so the offsets are looked up in the kernel's own type
information at start and handed to the BPF program as constants; a field that is not found
makes the capture fall back to the classic tracepoint programs (and say so).

    types = Btf.load()
    types.offset("task_struct", "pid")                                  # -> 2456 (bytes)
    types.offset("fpu", "fpstate")                                      # -> None if absent

BTF format: include/uapi/linux/btf.h (a header, a type section of ``struct btf_type`` records
with kind-specific trailers, a string section). Only what offsets need is decoded.
"""
from __future__ import annotations

import struct
from functools import cached_property
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
# kinds (BTF_KIND_*)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(ValueError):
    pass


class Btf:
    def __init__(self, blob: bytes):
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        self._types_raw = blob[hdr_len + type_off:hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off:hdr_len + str_off + str_len]
        # type id -> (kind, name_off, size_or_type, vlen, kind_flag, trailer offset); id 0 = void
        self._types: list[tuple] = [(0, 0, 0, 0, 0, 0)]
        self._parse()

    @classmethod
    def load(cls, path: Path = VMLINUX) -> "Btf":
        try:
            return cls(path.read_bytes())
        except OSError as err:
            raise BtfError(f"cannot read {path}: {err.strerror}") from None

    def _parse(self) -> None:
        raw, off, n = self._types_raw, 0, len(self._types_raw)
        while off < n:
            name_off, info, size_type = struct.unpack_from("<III", raw, off)
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            off += 12
            self._types.append((kind, name_off, size_type, vlen, kflag, off))
            if kind == INT or kind == VAR or kind == DECL_TAG:
                off += 4
            elif kind == ARRAY:
                off += 12
            elif kind in (STRUCT, UNION):
                off += 12 * vlen
            elif kind == ENUM:
                off += 8 * vlen
            elif kind == ENUM64:
                off += 12 * vlen
            elif kind == FUNC_PROTO:
                off += 8 * vlen
            elif kind == DATASEC:
                off += 12 * vlen
            # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: no trailer

    def _name(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    @cached_property
    def _by_name(self) -> dict[tuple[int, str], int]:
        out = {}
        for tid, (kind, name_off, *_rest) in enumerate(self._types):
            if kind in (STRUCT, UNION, TYPEDEF) and name_off:
                out.setdefault((kind, self._name(name_off)), tid)
        return out

    def _resolve(self, tid: int) -> int:
        while self._types[tid][0] in MODIFIERS:
            tid = self._types[tid][2]
        return tid

    def _members(self, tid: int):
        kind, _name, _size, vlen, kflag, off = self._types[tid]
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._types_raw, off + 12 * i)
            bits = moff & 0xFFFFFF if kflag else moff      # kind_flag: bitfield size in the top 8 bits
            yield (self._name(name_off) if name_off else ""), mtype, bits

    def _find(self, tid: int, member: str) -> tuple[int, int] | None:
        """(bit offset, member type) of ``member`` in struct/union ``tid``, looking through
        anonymous members (unnamed structs and unions)."""
        for name, mtype, bits in self._members(tid):
            if name == member:
                return bits, mtype
            if not name:
                inner = self._resolve(mtype)
                if self._types[inner][0] in (STRUCT, UNION):
                    got = self._find(inner, member)
                    if got is not None:
                        return bits + got[0], got[1]
        return None

    def struct_id(self, name: str) -> int | None:
        for kind in (STRUCT, UNION):
            tid = self._by_name.get((kind, name))
            if tid is not None and self._types[tid][3]:         # not a forward declaration
                return tid
        tid = self._by_name.get((TYPEDEF, name))
        return self._resolve(tid) if tid is not None else None

    def offset(self, struct_name: str, path: str) -> int | None:
        """Byte offset of ``path`` ("a" or "a.b.c": nested members, not through pointers) in
        ``struct_name``; None when a part is missing or a bitfield."""
        tid = self.struct_id(struct_name)
        total = 0
        for part in path.split("."):
            if tid is None or self._types[tid][0] not in (STRUCT, UNION):
                return None
            got = self._find(tid, part)
            if got is None:
                return None
            bits, mtype = got
            if bits % 8:
                return None
            total += bits // 8
            tid = self._resolve(mtype)
        return total

    def member_type(self, struct_name: str, member: str) -> str | None:
        """The name of a member's type after typedefs ('' for a pointer to it: 'ptr:fpstate')."""
        tid = self.struct_id(struct_name)
        if tid is None:
            return None
        got = self._find(tid, member)
        if got is None:
            return None
        t = self._resolve(got[1])
        kind, name_off, target = self._types[t][0], self._types[t][1], self._types[t][2]
        if kind == PTR:
            t2 = self._resolve(target)
            return "ptr:" + (self._name(self._types[t2][1]) if self._types[t2][1] else "")
        return self._name(name_off) if name_off else ""

    def typedef_id(self, name: str) -> int | None:
        """BTF id of a typedef (``btf_trace_<tracepoint>``: what a tp_btf program attaches to)."""
        return self._by_name.get((TYPEDEF, name))

    def func_proto_params(self, typedef_name: str) -> int | None:
        """Number of parameters of the function type a typedef points to (``btf_trace_X``:
        ``void *data`` plus the tracepoint's arguments)."""
        tid = self.typedef_id(typedef_name)
        if tid is None:
            return None
        t = self._resolve(tid)
        if self._types[t][0] == PTR:
            t = self._resolve(self._types[t][2])
        return self._types[t][3] if self._types[t][0] == FUNC_PROTO else None

    def has_type(self, name: str) -> bool:
        return self._by_name.get((TYPEDEF, name)) is not None or self.struct_id(name) is not None
