"""What a capture is asked to do."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .plan import MODES

PROGRAM_KINDS = ("auto", "tp_btf", "raw_tracepoint", "perf_tracepoint")
DEFAULT_BUFFER_PAGES = 16384       # 64 MiB split between the CPUs' rings, at most 16 MiB each (ringbuf.py)
MAX_BUFFER_PAGES = 262144          # 1 GiB (the ring's size in bytes is a u32 in the map definition)


@dataclass
class CaptureOptions:
    mode: str = "auto"                 # auto | fentry | kprobe | tracepoint
    pid: int | None = None             # only this process (tgid)
    comm: str | None = None            # only tasks with this name
    buffer_pages: int | None = None    # ring buffer size in 4 KiB pages (a power of two)
    synthetic: int = 0                 # benchmarks: K extra records per sys_enter (tracepoint mode)
    transport: str = "auto"            # auto | ringbuf_percpu | ringbuf | perfbuf (ringbuf.py)
    calibrate_s: float = 0.3           # at most this long for the TIF_NEED_FPU_LOAD calibration
    programs: str = "auto"             # hot tracepoints: auto | tp_btf | raw_tracepoint | perf_tracepoint

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.pid is not None and self.comm is not None:
            raise UsageError("--pid and --comm cannot be combined")
        if self.pid is not None and self.pid <= 0:
            raise UsageError(f"--pid must be a positive process id, not {self.pid}")
        if self.comm is not None and (not 0 < len(self.comm.encode()) <= 15
                                      or any(c in self.comm for c in '"\\\n')):
            raise UsageError("--comm takes a task name of 1 to 15 bytes (no quotes or backslashes)")
        if self.programs not in PROGRAM_KINDS:
            raise UsageError(f"--programs must be one of {', '.join(PROGRAM_KINDS)}, not {self.programs!r}")
        if self.transport not in ("auto", "ringbuf_percpu", "ringbuf", "perfbuf"):
            raise UsageError(f"transport must be auto, ringbuf_percpu, ringbuf or perfbuf, not {self.transport!r}")
        pages = self.pages
        if pages < 1 or pages & (pages - 1):
            raise UsageError(f"--buffer-pages must be a power of two, not {pages}")
        if pages > MAX_BUFFER_PAGES:
            raise UsageError(f"--buffer-pages {pages} is more than {MAX_BUFFER_PAGES} (1 GiB of ring)")

    @property
    def pages(self) -> int:
        return self.buffer_pages if self.buffer_pages is not None else DEFAULT_BUFFER_PAGES

    def filter_cflags(self) -> list[str]:
        flags = []
        if self.pid is not None:
            flags.append(f"-DFPT_FILTER_TGID={int(self.pid)}")
        if self.comm is not None:
            flags.append(f'-DFPT_FILTER_COMM="{self.comm}"')
        if self.synthetic:
            flags.append(f"-DFPT_SYNTHETIC={int(self.synthetic)}")
        return flags
