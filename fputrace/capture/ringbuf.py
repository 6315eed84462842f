"""Buffer adapters: BPF ring buffers read in bulk with numpy, perf buffer as the fallback.

Which one (``choose``), by kernel, best first:

* ``ringbuf_percpu`` (5.10+: ring buffers as inner maps): one BPF ring buffer per CPU in an
  array of maps; a program reserves in its own CPU's ring. Nothing is shared between CPUs on
  the way out: no ring lock, no producer/consumer cache line bouncing between producers, which
  on a shared ring caps the total rate near 2M records/s with 20+ producers (issue 12's figures)
  and costs even on 2 CPUs (benchmarks/CAPTURE.md: 119 vs 143 ns per reserve+submit here). The
  memory budget (--buffer-pages) is split between the CPUs.
* ``ringbuf`` (5.8+): one shared ring (all CPUs reserve under one lock).
* ``perfbuf``: bcc's perf buffer (per-CPU too, but a perf record header and bcc's per-record
  callback: the slowest, for kernels without ring buffers).

Every reader exposes ``wait(timeout_ms)`` (until something is there or the timeout), ``read() ->
np.ndarray[EVENT_DTYPE]`` (what arrived, in buffer order, at most READ_RECORDS), ``poll(timeout_ms)``
(both), ``holdback_ns()`` and ``close()``. The session takes its clock between ``wait`` and
``read``: everything committed by then is in what ``read`` returns or, where a ring held more
than one read takes, stamped no earlier than ``holdback_ns()`` (the newest record taken from such
a ring; a ring is filled in time order by its CPU), however long the consumer was descheduled. None calls Python per event: bcc's per-record callback
tops out near 0.65M records/s (SPEC 3), so each ring is mapped and consumed directly:

* consumer page (rw) at offset 0 holds ``consumer_pos``; producer page (ro) at offset PAGE_SIZE
  holds ``producer_pos``, followed by the data area (mapped once: a read across its end is put
  together from two slices);
* every record is an 8-byte header (len with BUSY bit 31 / DISCARD bit 30) + one 40-byte event,
  so [consumer_pos, producer_pos) is an array of 48-byte records; we stop at the first BUSY one
  (reserved, not yet committed), skip DISCARDed ones and publish the new consumer_pos.

Losses are counted by the BPF side per CPU whatever the transport (a failed reserve or perf
output bumps FPT_CTR_LOST on that CPU): exact either way.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import select
from dataclasses import dataclass

import numpy as np

from ..errors import CaptureError
from ..events import EVENT_DTYPE, empty_batch
from .abi import RECORD_BYTES, RECORD_DTYPE, RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT

TRANSPORTS = ("auto", "ringbuf_percpu", "ringbuf", "perfbuf")
# records taken out of the rings per read, all rings together (5 MiB of events): a backlog stays
# in the ring, whose pages are resident anyway, instead of being copied out in one piece (and
# then again by the reorder and the writer: a full 32 MiB ring cost ~100 MB of copies at once;
# the session holds the release back to what no ring still holds, see holdback_ns)
READ_RECORDS = 1 << 17
BPF_MAP_TYPE_RINGBUF = 27


@dataclass(frozen=True)
class Transport:
    kind: str              # ringbuf_percpu | ringbuf | perfbuf
    pages: int             # pages of one ring (per CPU for ringbuf_percpu)
    rings: int             # how many rings (CPUs for ringbuf_percpu)
    reason: str = ""       # why not a better kind

    def cflags(self) -> list[str]:
        if self.kind == "perfbuf":
            return []
        flags = ["-DFPT_RINGBUF", f"-DFPT_RINGBUF_PAGES={self.pages}",
                 f"-DFPT_WAKEUP_EVERY={wakeup_every(self.pages, 1 if self.kind == 'ringbuf_percpu' else self.rings)}"]
        if self.kind == "ringbuf_percpu":
            flags += ["-DFPT_RINGBUF_PERCPU", f"-DFPT_NR_CPUS={self.rings}"]
        return flags

    def as_meta(self) -> dict:
        out = {"kind": self.kind, "buffer_pages": self.pages, "rings": self.rings}
        if self.reason:
            out["reason"] = self.reason
        return out


def wakeup_every(ring_pages: int, producers: int) -> int:
    """Records per CPU between consumer wakeups: about 1/16 of the ring, a power of two."""
    records = ring_pages * 4096 // RECORD_BYTES
    per_cpu = max(1, records // (16 * max(1, producers)))
    return 1 << (per_cpu.bit_length() - 1)


# Without --buffer-pages, one CPU's ring holds at most this: 16 MiB = 350k records, 0.3 s of a
# CPU in a context-switch storm. The recorder maps every ring whole, so each page is resident
# memory of the recorder: this is most of its RSS (benchmarks/CAPTURE.md (e)). Measured in the
# storm at load 6-9: 0 lost with 16 MiB, as with 32.
DEFAULT_MAX_PAGES_PER_CPU = 4096


def choose(feat, requested: str, total_pages: int, explicit: bool = True) -> Transport:
    """The transport for this kernel (or the one requested), sized from ``total_pages``
    (``explicit``: given by the user, else the default budget, capped per CPU)."""
    cpus = feat.possible_cpus
    percpu_pages = max(1, 1 << ((total_pages // cpus).bit_length() - 1)) if total_pages >= cpus else 1
    if not explicit:
        percpu_pages = min(percpu_pages, DEFAULT_MAX_PAGES_PER_CPU)
    if requested in ("auto", "ringbuf_percpu") and feat.ringbuf_percpu.ok:
        return Transport("ringbuf_percpu", percpu_pages, cpus)
    if requested == "ringbuf_percpu":
        raise CaptureError(feat.ringbuf_percpu.reason)
    if requested in ("auto", "ringbuf") and feat.ringbuf.ok:
        why = "" if requested == "ringbuf" else feat.ringbuf_percpu.reason
        return Transport("ringbuf", total_pages, cpus, why)
    if requested == "ringbuf":
        raise CaptureError(feat.ringbuf.reason)
    return Transport("perfbuf", 64, cpus, "" if requested == "perfbuf" else feat.ringbuf.reason)


def open_reader(t: Transport, bpf):
    if t.kind == "ringbuf_percpu":
        return PerCpuRings(bpf, t.rings, t.pages * mmap.PAGESIZE)
    if t.kind == "ringbuf":
        return RingBufferReader(bpf[b"events"].map_fd, t.pages * mmap.PAGESIZE)
    return PerfBufferReader(bpf)


class RingBufferReader:
    def __init__(self, map_fd: int, data_bytes: int, epoll: bool = True):
        if data_bytes & (data_bytes - 1) or data_bytes % mmap.PAGESIZE:
            raise ValueError("ring buffer size must be a power-of-two number of pages")
        page = mmap.PAGESIZE
        self.data_bytes = data_bytes
        self._mask = data_bytes - 1
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        # the data area once: the kernel offers it twice in a row (so that a wrapped record is
        # contiguous), but every mapped page counts in our RSS; the rare read across the end is
        # stitched from two slices instead
        self._prod_map = mmap.mmap(map_fd, page + data_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._cons = np.frombuffer(self._cons_map, dtype="<u8", count=1)
        self._prod = np.frombuffer(self._prod_map, dtype="<u8", count=1)
        self._data = np.frombuffer(self._prod_map, dtype=np.uint8, offset=page)
        self._epoll = None
        if epoll:                          # (a PerCpuRings waits for all its rings at once)
            self._epoll = select.epoll()
            self._epoll.register(map_fd, select.EPOLLIN)
        self.records_read = 0
        self.left_behind_ts: int | None = None    # last ts taken when the read left records behind

    def holdback_ns(self) -> int | None:
        return self.left_behind_ts

    def pending_bytes(self) -> int:
        return int(self._prod[0]) - int(self._cons[0])

    def fill(self) -> float:
        """0..1: how full the ring is."""
        return self.pending_bytes() / self.data_bytes

    def wait(self, timeout_ms: int) -> None:
        if self.pending_bytes() == 0 and timeout_ms > 0 and self._epoll is not None:
            self._epoll.poll(timeout_ms / 1000.0)

    def poll(self, timeout_ms: int) -> np.ndarray:
        self.wait(timeout_ms)
        return self.read()

    def read(self, max_records: int = READ_RECORDS) -> np.ndarray:
        cons = int(self._cons[0])
        prod = int(self._prod[0])        # x86-TSO: the data before producer_pos is visible
        avail = (prod - cons) // RECORD_BYTES
        n = min(avail, max_records)
        self.left_behind_ts = None
        if n <= 0:
            return empty_batch()
        start = cons & self._mask
        end = start + n * RECORD_BYTES
        if end <= self.data_bytes:
            chunk = self._data[start:end]
        else:                            # wraps: the end of the area, then its start
            chunk = np.concatenate((self._data[start:], self._data[:end - self.data_bytes]))
        raw = chunk.view(RECORD_DTYPE)
        lens = raw["len"]
        busy = (lens & RINGBUF_BUSY_BIT) != 0
        if busy.any():
            n = int(np.argmax(busy))
            raw, lens = raw[:n], lens[:n]
        sizes = lens & ~np.uint32(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)
        if n and (sizes != EVENT_DTYPE.itemsize).any():
            raise RuntimeError("ring buffer holds a record of unexpected size: BPF/Python ABI mismatch")
        keep = (lens & RINGBUF_DISCARD_BIT) == 0
        # rows of 6 u64: the header word, then the 40-byte event; numpy copies these as plain
        # words (fast) rather than field by field
        words = chunk[:n * RECORD_BYTES].view(np.uint64).reshape(-1, RECORD_BYTES // 8)
        words = words[:, 1:] if keep.all() else words[keep][:, 1:]
        out = np.ascontiguousarray(words).view(EVENT_DTYPE).reshape(-1)
        self._cons[0] = cons + n * RECORD_BYTES   # hand the space back to the producers
        self.records_read += n
        if n < avail and len(out):
            self.left_behind_ts = int(out["ts_ns"][-1])
        return out

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        del self._cons, self._prod, self._data
        self._cons_map.close()
        self._prod_map.close()


class PerCpuRings:
    """One ring per CPU, created here and put in the program's array of ring buffer maps
    (``events``). One epoll over all of them; a read drains every ring."""

    def __init__(self, bpf, cpus: int, data_bytes: int):
        from bcc import libbcc
        outer = bpf[b"events"]
        self._fds: list[int] = []
        self._rings: list[RingBufferReader] = []
        self._epoll = select.epoll()
        try:
            for cpu in range(cpus):
                fd = libbcc.lib.bcc_create_map(BPF_MAP_TYPE_RINGBUF, f"fpt_cpu{cpu}".encode(), 0, 0, data_bytes, 0)
                if fd < 0:
                    raise CaptureError(f"cannot create the ring buffer of CPU {cpu} ({data_bytes} bytes): "
                                       f"errno {-fd}; try a smaller --buffer-pages")
                self._fds.append(fd)
                outer[ctypes.c_int(cpu)] = ctypes.c_int(fd)
                self._rings.append(RingBufferReader(fd, data_bytes, epoll=False))
                self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        self.data_bytes = data_bytes

    @property
    def records_read(self) -> int:
        return sum(r.records_read for r in self._rings)

    def pending_bytes(self) -> int:
        return sum(r.pending_bytes() for r in self._rings)

    def holdback_ns(self) -> int | None:
        marks = [r.left_behind_ts for r in self._rings if r.left_behind_ts is not None]
        return min(marks) if marks else None

    def fill(self) -> float:
        """0..1: how full the fullest ring is."""
        return max((r.fill() for r in self._rings), default=0.0)

    def wait(self, timeout_ms: int) -> None:
        if self.pending_bytes() == 0 and timeout_ms > 0:
            self._epoll.poll(timeout_ms / 1000.0)

    def poll(self, timeout_ms: int) -> np.ndarray:
        self.wait(timeout_ms)
        return self.read()

    def read(self) -> np.ndarray:
        share = max(1024, READ_RECORDS // len(self._rings))
        parts = [b for b in (r.read(share) for r in self._rings) if len(b)]
        if not parts:
            return empty_batch()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        for r in self._rings:
            r.close()
        self._rings = []
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class PerfBufferReader:
    """Kernels < 5.8: bcc's perf buffer. The callback only appends bytes; decoding is bulk."""

    def __init__(self, bpf, table: str = "events", pages: int = 64):
        self._bpf = bpf
        self._chunks: list[bytes] = []
        self.kernel_lost = 0
        import ctypes

        itemsize = EVENT_DTYPE.itemsize

        def on_event(_cpu, data, size, _chunks=self._chunks):
            # perf pads raw samples to 8 bytes after a u32 size: keep the event itself
            _chunks.append(ctypes.string_at(data, itemsize))

        def on_lost(count):
            self.kernel_lost += count      # the BPF side counts these too (perf_submit fails)

        bpf[table.encode()].open_perf_buffer(on_event, page_cnt=pages, lost_cb=on_lost)

    def holdback_ns(self) -> None:
        return None                        # perf_buffer_poll drains every buffer

    def wait(self, timeout_ms: int) -> None:
        self._bpf.perf_buffer_poll(timeout=timeout_ms)      # what arrives is kept in _chunks

    def poll(self, timeout_ms: int) -> np.ndarray:
        self.wait(timeout_ms)
        return self._take()

    def read(self) -> np.ndarray:
        self._bpf.perf_buffer_poll(timeout=0)
        return self._take()

    def _take(self) -> np.ndarray:
        if not self._chunks:
            return empty_batch()
        raw = b"".join(self._chunks)
        self._chunks.clear()
        return np.frombuffer(raw, dtype=EVENT_DTYPE).copy()

    def close(self) -> None:
        self._chunks.clear()
