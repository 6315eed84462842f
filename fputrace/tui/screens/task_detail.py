"""One task: where its user FPU state was over time (its own timeline) and why it was saved and
restored (counts per cause, avoidable restores). Draws ``TaskDetail`` as the model gives it."""
from __future__ import annotations

import numpy as np
import pandas as pd
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...model.snapshot import Snapshot, TaskDetail
from ..widgets import fmt

RECENT_INTERVALS = 200


def state_style(state: str) -> tuple[str, str]:
    """(character, style) for a timeline state."""
    if state.startswith("regs"):
        return "█", "#87d75f"
    if state == "kernel-fpu":
        return "▓", fmt.KERNEL_STYLE
    if state == "memory":
        return "░", "#5f87af"
    return "?", fmt.UNKNOWN_STYLE


LEVELS = "▁▂▃▄▅▆▇█"


def coverage(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time covered by the (sorted, disjoint) intervals inside each [edges[i], edges[i+1])."""
    if not len(starts):
        return np.zeros(len(edges) - 1)
    cum = np.concatenate([[0], np.cumsum(ends - starts)])

    def covered_before(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(starts, t, side="right")        # intervals starting before t
        full = cum[np.maximum(i - 1, 0)] * (i > 0)
        last = np.maximum(i - 1, 0)
        partial = np.where(i > 0, np.clip(t - starts[last], 0, ends[last] - starts[last]), 0)
        return full + partial

    return np.diff(covered_before(edges.astype(np.float64)))


def render_timeline(timeline: pd.DataFrame, end_ns: int, window_ns: int, width: int) -> Text:
    """One cell per window/width: the bar's height is the share of the cell the task's state spent
    in registers (green) or in a kernel FPU section (red); ░ = saved in memory (between the task's
    first and last interval), blank = before it was seen. Intervals of microseconds stay visible."""
    t = Text(no_wrap=True, overflow="crop")
    if width <= 0:
        return t
    if timeline is None or not len(timeline):
        return t.append("no state changes in the trace so far", style="dim")
    tl = timeline.sort_values("start_ns")
    starts = tl["start_ns"].to_numpy(np.float64)
    ends = tl["end_ns"].to_numpy(np.float64)
    states = tl["state"].astype(str)
    edges = end_ns - window_ns + np.arange(width + 1) * (window_ns / width)
    cell_ns = window_ns / width
    regs = states.str.startswith("regs").to_numpy()
    kfpu = (states == "kernel-fpu").to_numpy()
    in_regs = coverage(starts[regs], ends[regs], edges) / cell_ns
    in_kfpu = coverage(starts[kfpu], ends[kfpu], edges) / cell_ns
    first, last = starts.min(), ends.max()
    for i in range(width):
        if in_kfpu[i] > 0 and in_kfpu[i] >= in_regs[i]:
            t.append(LEVELS[min(7, int(in_kfpu[i] * 8))], style=fmt.KERNEL_STYLE)
        elif in_regs[i] > 0:
            t.append(LEVELS[min(7, int(in_regs[i] * 8))], style="#87d75f")
        elif edges[i + 1] <= first or edges[i] >= last:
            t.append(" ")
        else:
            t.append("░", style="#5f87af")
    return t


def task_row(snap: Snapshot, tid: int):
    """The task's row of the picture (the newest task of a reused tid, as ``TaskDetail``)."""
    rows = snap.tasks[snap.tasks["tid"] == tid] if len(snap.tasks) else snap.tasks
    if not len(rows):
        return None
    return next(rows.sort_values("generation").tail(1).itertuples(index=False))


def render_xstate(row, cost_model: str) -> Text:
    """The state its saves and restores moved (issue 10): the components live at them, bytes per
    save, its share of all bytes and cycles moved, and what its avoidable restores moved."""
    t = Text(" state moved ", style="dim", no_wrap=True, overflow="ellipsis")
    if row is None or not (row.xsave or row.xrstor):
        return t.append("none: no saves or restores yet")
    t.append(str(row.components), style="bold")
    t.append(f"  {round(row.bytes_per_xsave):,} B per save" if row.xsave else "  no saves")
    t.append(f"  {100 * row.bytes_share:.1f}% of all bytes  {100 * row.cycles_share:.1f}% of "
             f"all cycles")
    t.append(f" ({cost_model})", style="dim")
    if row.avoidable_bytes:
        t.append(f"  avoidable restores moved {int(row.avoidable_bytes):,} B", style="bold red")
    return t


class TaskDetailScreen(Screen[None]):
    BINDINGS = [("escape", "back", "Back"), ("backspace", "back", "Back")]

    def __init__(self, tid: int) -> None:
        super().__init__()
        self.tid = tid
        self._args: tuple[TaskDetail, Snapshot] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f" task {self.tid}: waiting for the model…", id="detail-title")
        yield Static(id="detail-xstate")
        with Vertical(id="detail-timeline", classes="panel") as box:
            box.border_title = "Where its user FPU state was"
            yield Static(id="timeline-strip")
            yield Static(Text.assemble(("▁▄█", "#87d75f"), " share of time in a CPU's registers  ",
                                       ("░", "#5f87af"), " saved in memory  ",
                                       ("▁▄█", fmt.KERNEL_STYLE), " in a kernel FPU section",
                                       style="dim"), id="timeline-legend")
        with Horizontal(id="detail-tables"):
            causes = DataTable(id="detail-causes", classes="panel", cursor_type="row")
            causes.border_title = "Saves and restores by cause"
            # fixed widths (the longest kind, XRSTOR, and cause, user_return): a DataTable sizes
            # auto columns after rows land, so a picture taken in between would differ
            causes.add_column("KIND", width=6)
            causes.add_column("CAUSE", width=11)
            causes.add_columns("COUNT", "AVOIDABLE")
            yield causes
            recent = DataTable(id="detail-intervals", classes="panel", cursor_type="row")
            recent.border_title = "Recent intervals"
            recent.add_columns("AT", "LASTED", "STATE")
            yield recent
        yield Footer()

    def action_back(self) -> None:
        self.dismiss(None)

    def on_resize(self) -> None:
        if self._args is not None:
            self.show(*self._args)

    def show(self, detail: TaskDetail, snap: Snapshot) -> None:
        self._args = (detail, snap)
        self.query_one("#detail-title", Static).update(Text.assemble(
            (" task ", "bold reverse"), (f" {detail.comm}", fmt.task_style(detail.tid)),
            f"  tid {detail.tid}  tgid {detail.tgid}  ",
            (f"last {snap.window_ns / 1e9:g}s of trace time", "dim")))
        self.query_one("#detail-xstate", Static).update(render_xstate(task_row(snap, detail.tid),
                                                                      snap.cost_model))
        strip = self.query_one("#timeline-strip", Static)
        strip.update(render_timeline(detail.timeline, snap.now_ns, snap.window_ns,
                                     max(1, strip.content_size.width)))
        causes = self.query_one("#detail-causes", DataTable)
        causes.clear()
        for row in detail.causes.itertuples(index=False):
            avoid = int(row.avoidable)
            causes.add_row(str(row.kind), str(row.cause), Text(fmt.count(row.count), justify="right"),
                           Text(fmt.count(avoid), justify="right", style="bold red" if avoid else ""))
        recent = self.query_one("#detail-intervals", DataTable)
        recent.clear()
        tl = detail.timeline.sort_values("start_ns").tail(RECENT_INTERVALS).iloc[::-1] \
            if len(detail.timeline) else detail.timeline
        for row in tl.itertuples(index=False):
            ch, style = state_style(str(row.state))
            recent.add_row(f"-{fmt.duration_ns(snap.now_ns - row.start_ns)}",
                           fmt.duration_ns(row.end_ns - row.start_ns),
                           Text(f"{ch} {row.state}", style=style))
