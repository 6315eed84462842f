"""CPU rows: who owns each CPU's FPU registers now, a strip of the last seconds coloured by owner,
and XSAVE/s and XRSTOR/s sparklines. Renders ``Snapshot.cpus`` as given."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Sparkline

from ...model.snapshot import KERNEL, NONE, TASK, UNKNOWN, CpuView, OwnerInterval
from . import fmt
from .steady import SteadyStatic

SAMPLES_PER_CELL = 8
ONE_LINE = 1                 # the shape of the height-1 rows (the stylesheet fixes their height)
_OWNER_CODE = {TASK: 0, KERNEL: 1, NONE: 2, UNKNOWN: 3}


def owner_label(cpu: CpuView) -> Text:
    t = Text(f"cpu{cpu.cpu:<3}", style="bold", no_wrap=True, overflow="ellipsis")
    if cpu.owner == TASK:
        t.append(f"{cpu.comm or '?'}", style=fmt.task_style(cpu.tid))
        t.append(f":{cpu.tid}", style="dim")
    elif cpu.owner == KERNEL:
        t.append("KERNEL", style=fmt.KERNEL_STYLE)
    elif cpu.owner == NONE:
        t.append("NONE", style="dim")
    else:
        t.append("UNKNOWN", style=fmt.UNKNOWN_STYLE)
    return t


BEFORE = "BEFORE"          # cells before the trace started: drawn blank, not as unknown


@dataclass(frozen=True)
class StripArrays:
    """A CPU's owner intervals as columns (converted once per picture, sampled per width)."""
    starts: np.ndarray
    ends: np.ndarray
    codes: np.ndarray
    tids: np.ndarray

    @classmethod
    def of(cls, strip: tuple[OwnerInterval, ...]) -> StripArrays:
        n = len(strip)
        return cls(np.fromiter(map(_START, strip), np.int64, n),
                   np.fromiter(map(_END, strip), np.int64, n),
                   np.fromiter(map(_OWNER_CODE.get, map(_OWNER, strip), repeat(3)), np.int64, n),
                   np.fromiter(map(_TID, strip), np.int64, n))

    def task_ns(self, lo_ns: int, hi_ns: int) -> dict[int, int]:
        """Time each task owned the registers within [lo, hi] (for the legend)."""
        task = self.codes == _OWNER_CODE[TASK]
        shown = np.minimum(self.ends[task], hi_ns) - np.maximum(self.starts[task], lo_ns)
        keep = shown > 0
        tids, inv = np.unique(self.tids[task][keep], return_inverse=True)
        return dict(zip(tids.tolist(), np.bincount(inv, weights=shown[keep]).tolist()))


_START, _END, _OWNER, _TID = (attrgetter(a) for a in ("start_ns", "end_ns", "owner", "tid"))


def strip_cells(strip: tuple[OwnerInterval, ...] | StripArrays, end_ns: int, window_ns: int,
                width: int, trace_start_ns: int = 0) -> list[tuple[str, int]]:
    """The owner (kind, tid) covering most of each of ``width`` equal cells of the window.

    Sampled (SAMPLES_PER_CELL points per cell), so a strip of 100k intervals costs the same as one
    of ten. Time not covered by any interval reads as UNKNOWN: we never invent an owner."""
    if width <= 0:
        return []
    start_ns = end_ns - window_ns
    arr = strip if isinstance(strip, StripArrays) else StripArrays.of(strip)
    n = width * SAMPLES_PER_CELL
    t = start_ns + (np.arange(n, dtype=np.float64) + 0.5) * (window_ns / n)
    if len(arr.starts):
        idx = np.searchsorted(arr.starts, t, side="right") - 1
        at = np.clip(idx, 0, None)
        ok = (idx >= 0) & (t < arr.ends[at])
        keys = np.where(ok, arr.codes[at] * (1 << 32) + arr.tids[at], 3 << 32)
    else:
        keys = np.full(n, 3 << 32, dtype=np.int64)
    keys = np.where(t < trace_start_ns, 4 << 32, keys).reshape(width, SAMPLES_PER_CELL)
    inv = {v: k for k, v in _OWNER_CODE.items()}
    inv[4] = BEFORE
    out = []
    for row in keys:
        vals, counts = np.unique(row, return_counts=True)
        key = int(vals[np.argmax(counts)])
        out.append((inv[key >> 32], key & 0xFFFFFFFF))
    return out


def render_strip(cells: list[tuple[str, int]]) -> Text:
    t = Text(no_wrap=True, overflow="crop")
    for owner, tid in cells:
        if owner == TASK:
            t.append("█", style=fmt.task_style(tid))
        elif owner == KERNEL:
            t.append("▓", style=fmt.KERNEL_STYLE)
        elif owner == NONE:
            t.append("·", style=fmt.NONE_STYLE)
        elif owner == BEFORE:
            t.append(" ")
        else:
            t.append("?", style=fmt.UNKNOWN_STYLE)
    return t


class OwnerStrip(Widget):
    """Drawn at its laid-out width (render time), so a resize redraws it right."""

    DEFAULT_CSS = "OwnerStrip { height: 1; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._data: tuple | None = None

        self._rendered: tuple[int, Text] | None = None

    def set_strip(self, strip: StripArrays, end_ns: int, window_ns: int,
                  trace_start_ns: int = 0) -> None:
        self._data = (strip, end_ns, window_ns, trace_start_ns)
        self._rendered = None
        self.refresh()

    def render(self) -> Text:
        if self._data is None:
            return Text("")
        width = max(1, self.size.width)
        if self._rendered is None or self._rendered[0] != width:    # layout calls render often
            strip, end_ns, window_ns, start_ns = self._data
            self._rendered = (width, render_strip(strip_cells(strip, end_ns, window_ns, width,
                                                              start_ns)))
        return self._rendered[1]


class CpuRow(Horizontal):
    def __init__(self, cpu: int) -> None:
        super().__init__(id=f"cpu-{cpu}", classes="cpu-row")
        self.cpu = cpu

    def compose(self) -> ComposeResult:
        yield SteadyStatic(classes="cpu-owner")
        yield OwnerStrip(classes="cpu-strip")
        yield Sparkline([], classes="spark-xsave")
        yield Sparkline([], classes="spark-xrstor")
        yield SteadyStatic(classes="cpu-rates")

    def show(self, view: CpuView, arrays: StripArrays, end_ns: int, window_ns: int,
             trace_start_ns: int = 0) -> None:
        self.query_one(".cpu-owner", SteadyStatic).show_content(owner_label(view), ONE_LINE)
        self.query_one(OwnerStrip).set_strip(arrays, end_ns, window_ns, trace_start_ns)
        self.query_one(".spark-xsave", Sparkline).data = list(view.xsave_per_s) or [0.0]
        self.query_one(".spark-xrstor", Sparkline).data = list(view.xrstor_per_s) or [0.0]
        xs = view.xsave_per_s[-1] if view.xsave_per_s else 0
        xr = view.xrstor_per_s[-1] if view.xrstor_per_s else 0
        self.query_one(".cpu-rates", SteadyStatic).show_content(
            Text.assemble((fmt.count(xs), "#ffaf5f"), "/", (fmt.count(xr), "#5fafff")), ONE_LINE)


class CpuPanel(VerticalScroll):
    """One CpuRow per CPU, a column legend, and the owners seen in the strips."""

    def compose(self) -> ComposeResult:
        yield SteadyStatic(id="cpu-columns", classes="cpu-columns")
        yield SteadyStatic(id="cpu-legend", classes="cpu-legend")

    async def show(self, snap, task_names: dict[int, str], trace_start_ns: int = 0) -> None:
        have = {row.cpu: row for row in self.query(CpuRow)}
        new = [CpuRow(v.cpu) for v in snap.cpus if v.cpu not in have]
        if new:
            await self.mount_all(new, before="#cpu-legend")
            have.update((row.cpu, row) for row in new)
        window_s = snap.window_ns / 1e9
        self.query_one("#cpu-columns", SteadyStatic).show_content(Text.assemble(
            ("cpu owner now".ljust(20), "dim"), (f"owners, last {window_s:g}s →", "dim")), ONE_LINE)
        seen: dict[int, float] = {}          # tid -> ns shown in the strips (for the legend)
        lo_ns = snap.now_ns - snap.window_ns
        for view in snap.cpus:
            arrays = StripArrays.of(view.strip)
            have[view.cpu].show(view, arrays, snap.now_ns, snap.window_ns, trace_start_ns)
            for tid, ns in arrays.task_ns(lo_ns, snap.now_ns).items():
                seen[tid] = seen.get(tid, 0) + ns
        self.query_one("#cpu-legend", SteadyStatic).show_content(render_legend(seen, task_names),
                                                                  ONE_LINE)


def render_legend(seen: dict[int, int], task_names: dict[int, str]) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("▓", style=fmt.KERNEL_STYLE).append(" kernel ", style="dim")
    t.append("·", style=fmt.NONE_STYLE).append(" none ", style="dim")
    t.append("?", style=fmt.UNKNOWN_STYLE).append(" unknown ", style="dim")
    t.append(" XSAVE", style="#ffaf5f").append("/", style="dim").append("XRSTOR", style="#5fafff")
    t.append(" per s  ", style="dim")
    for tid, _ in sorted(seen.items(), key=lambda kv: -kv[1])[:8]:
        t.append("█", style=fmt.task_style(tid))
        t.append(f" {task_names.get(tid, '?')}:{tid} ")
    return t
