"""Walk the messages of an Arrow IPC stream without decoding their bodies.

Used to read a recording's meta (header + per-batch updates) in one cheap pass, and to tell a file
cut short (the last message runs past the end: a killed recorder) from one that is corrupt.
Only the small part of the Arrow ``Message`` flatbuffer we need is parsed here (Message.fbs:
fields 0 version, 1 header_type, 2 header, 3 bodyLength, 4 custom_metadata [KeyValue]).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONTINUATION = 0xFFFFFFFF
HEADER_SCHEMA, HEADER_RECORD_BATCH = 1, 3


class FramingError(Exception):
    """Bytes that are not an Arrow IPC message where one should start."""


@dataclass
class MessageInfo:
    offset: int              # where its prefix starts in the file
    end: int                 # offset of the next message
    header_type: int
    num_rows: int = 0        # for record batches
    custom_metadata: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Walk:
    messages: list[MessageInfo]
    clean_eos: bool          # the end-of-stream marker was found
    truncated_at: int | None  # offset of a message cut short by the end of the file
    size: int


def _u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def _table_fields(buf: bytes, table: int) -> list[int]:
    """Absolute positions of the fields of the table at ``table`` (0 = absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    n = (vt_size - 4) // 2
    return [(table + o) if (o := struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0]) else 0
            for i in range(n)]


def _string(buf: bytes, pos: int) -> bytes:
    start = pos + _u32(buf, pos)
    length = _u32(buf, start)
    return bytes(buf[start + 4:start + 4 + length])


def parse_message(meta: bytes) -> tuple[int, int, int, dict[bytes, bytes]]:
    """Message flatbuffer -> (header_type, body_length, num_rows, custom_metadata)."""
    try:
        table = _u32(meta, 0)
        fields = _table_fields(meta, table) + [0] * 5
        header_type = meta[fields[1]] if fields[1] else 0
        body_length = struct.unpack_from("<q", meta, fields[3])[0] if fields[3] else 0
        num_rows = 0
        if header_type == HEADER_RECORD_BATCH and fields[2]:
            header = fields[2] + _u32(meta, fields[2])       # RecordBatch table: field 0 length
            rb_fields = _table_fields(meta, header) + [0]
            num_rows = struct.unpack_from("<q", meta, rb_fields[0])[0] if rb_fields[0] else 0
        custom = {}
        if fields[4]:
            vec = fields[4] + _u32(meta, fields[4])
            for i in range(_u32(meta, vec)):
                slot = vec + 4 + 4 * i
                kv = slot + _u32(meta, slot)
                kv_fields = _table_fields(meta, kv) + [0, 0]
                key = _string(meta, kv_fields[0]) if kv_fields[0] else b""
                custom[key] = _string(meta, kv_fields[1]) if kv_fields[1] else b""
    except (struct.error, IndexError) as err:
        raise FramingError(f"unreadable message header ({err})") from None
    if body_length < 0 or num_rows < 0 or header_type > 5:
        raise FramingError("unreadable message header")
    return header_type, body_length, num_rows, custom


def walk(f, size: int) -> Walk:
    """Read message frames from the binary file ``f`` (positioned at 0) of ``size`` bytes."""
    messages: list[MessageInfo] = []
    pos = 0
    while True:
        if pos == size:
            return Walk(messages, False, None, size)
        f.seek(pos)
        prefix = f.read(8)
        if len(prefix) < 8:
            return Walk(messages, False, pos, size)
        cont, meta_len = struct.unpack("<Ii", prefix)
        if cont != CONTINUATION:
            raise FramingError(f"no Arrow IPC message at byte {pos}")
        if meta_len == 0:
            return Walk(messages, True, None, size)
        if meta_len < 0 or meta_len % 8:
            raise FramingError(f"bad message length at byte {pos}")
        if pos + 8 + meta_len > size:
            return Walk(messages, False, pos, size)
        header_type, body_len, num_rows, custom = parse_message(f.read(meta_len))
        end = pos + 8 + meta_len + body_len
        if end > size:
            return Walk(messages, False, pos, size)
        messages.append(MessageInfo(pos, end, header_type, num_rows, custom))
        pos = end
