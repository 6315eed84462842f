"""Kernel FPU users: callers of kernel_fpu_begin by symbol and the section-length histogram
(preemption is off inside a section: the tail of this histogram is scheduling latency)."""
from __future__ import annotations

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll

from . import fmt
from .steady import SteadyStatic

MAX_CALLERS = 50


def render_callers(callers: pd.DataFrame, width: int) -> Table:
    """Callers by total section time. Narrow panels drop TOTAL and P99 before squeezing names."""
    wide = width >= 56
    table = Table(box=None, expand=True, padding=(0, 1), collapse_padding=True, pad_edge=False,
                  header_style="bold")
    table.add_column("CALLER", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("SECT", justify="right", no_wrap=True)
    if wide:
        table.add_column("TOTAL", justify="right", no_wrap=True)
    table.add_column("MAX", justify="right", no_wrap=True)
    if wide:
        table.add_column("P99", justify="right", no_wrap=True)
    if callers is None or not len(callers):
        return table
    df = callers.sort_values(["total_ns", "sections"], ascending=False, kind="stable")
    for row in df.head(MAX_CALLERS).itertuples(index=False):
        cells = [str(row.caller), fmt.count(row.sections)]
        if wide:
            cells.append(fmt.duration_ns(row.total_ns))
        cells.append(fmt.duration_ns(row.max_ns))
        if wide:
            cells.append(fmt.duration_ns(row.p99_ns))
        table.add_row(*cells)
    return table


def render_histogram(hist: pd.DataFrame, bar_width: int) -> Text:
    t = Text(no_wrap=True, overflow="crop")
    if hist is None or not len(hist) or int(hist["count"].sum()) == 0:
        return t.append("no kernel FPU sections yet", style="dim")
    hist = hist[hist["count"] > 0].sort_values("lo_ns")
    peak = int(hist["count"].max())
    bar_width = max(4, bar_width)
    lines = [Text("section length (preemption off)", style="dim")]
    for row in hist.itertuples(index=False):
        n = int(row.count)
        line = Text(no_wrap=True)
        line.append(f"≥{fmt.duration_ns(row.lo_ns):>6} ", style="dim")
        line.append("█" * max(1, round(bar_width * n / peak)), style="#d787ff")
        line.append(f" {fmt.count(n)}")
        lines.append(line)
    return Text("\n").join(lines)


def no_callers(sections: int) -> Text:
    if sections:
        return Text(f"{sections:,} sections, inferred: this capture mode sees neither their "
                    "callers nor their lengths (fentry or kprobe mode does)", style="yellow")
    return Text("no kernel FPU sections yet", style="dim")


class KfpuPanel(VerticalScroll):
    drawn_width = 0                 # the width its tables were made for (a resize redraws them)

    def compose(self):
        yield SteadyStatic(id="kfpu-callers")
        yield SteadyStatic(id="kfpu-hist")

    def show(self, callers: pd.DataFrame, hist: pd.DataFrame, sections: int = 0) -> None:
        """``sections``: all kernel FPU sections of the tasks (inferred ones have no caller)."""
        self._data = (callers, hist, sections)
        width = self.drawn_width = self.content_size.width or 40
        if len(callers):
            table = render_callers(callers, width)
            shape = ("table", table.row_count, len(table.columns))
        else:
            table = no_callers(sections)
            shape = ("text", len(table.plain))      # (it wraps)
        self.query_one("#kfpu-callers", SteadyStatic).show_content(table, shape)
        has_hist = hist is not None and len(hist) and int(hist["count"].sum())
        text = render_histogram(hist, width - 16) if has_hist else Text("")
        self.query_one("#kfpu-hist", SteadyStatic).show_content(text, text.plain.count("\n"))

    def on_resize(self) -> None:
        if getattr(self, "_data", None) is not None:
            self.show(*self._data)
