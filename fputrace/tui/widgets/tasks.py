"""The tasks table: one row per task from ``Snapshot.tasks``, sortable (s) and filterable (/).
fputrace's own tasks (``fputrace_own``: the capture, the dashboard) are marked with OWN_MARK and
can be hidden (h): on a quiet host they are most of what there is to see."""
from __future__ import annotations

import pandas as pd
from rich.text import Text
from textual.widgets import DataTable

from ...model.tables import OWN_MARK
from . import fmt

# (column in Snapshot.tasks, heading, width) -- sort keys cycle in this order with `s`
COLUMNS = (               # the first eight fit an 80-column terminal
    ("tid", "PID", 7),
    ("comm", "COMM", 15),
    ("xsave", "XSAVE", 6),
    ("xrstor", "XRSTOR", 7),
    ("avoidable_xrstor", "AVOID", 6),
    ("components", "LIVE", 7),            # the largest state live at its saves (issue 10)
    ("state", "STATE", 8),
    ("kfpu_sections", "KFPU", 5),
    ("kfpu_ns", "KFPU t", 7),
    ("bytes_per_xsave", "B/SAVE", 6),
)
SORT_KEYS = ("xrstor", "xsave", "avoidable_xrstor", "components", "kfpu_sections", "kfpu_ns",
             "tid", "comm")
# the order of each key: (columns, descending?); ties by tid, then the model's order. components is
# `fputrace report --sort components`: AMX, AVX-512, AVX, SSE, then most bytes moved first
SORT_ORDER = {"components": (("xstate_rank", "bytes", "tid"), (False, False, True)),
              "tid": (("tid",), (True,)), "comm": (("comm", "tid"), (True, True))}
LARGE_STATE = ("AVX-512", "AMX")         # drawn in bold: their saves move kilobytes more
MAX_ROWS = 200           # a 10 Hz redraw of thousands of rows is wasted: filter (/) to find others


def own_tasks(tasks: pd.DataFrame) -> pd.Series:
    """Which rows are fputrace's own tasks (False for all when the source cannot tell)."""
    if "fputrace_own" not in tasks:
        return pd.Series(False, index=tasks.index)
    return tasks["fputrace_own"].astype(bool)


def filter_and_sort(tasks: pd.DataFrame, sort_key: str, filter_text: str,
                    hide_own: bool = False) -> pd.DataFrame:
    df = tasks
    if hide_own:
        df = df[~own_tasks(df)]
    if filter_text:
        needle = filter_text.lower()
        mask = df["comm"].astype(str).str.lower().str.contains(needle, regex=False) \
            | df["tid"].astype(str).str.contains(needle, regex=False) \
            | df["tgid"].astype(str).str.contains(needle, regex=False)
        df = df[mask]
    by, ascending = SORT_ORDER.get(sort_key, ((sort_key, "tid"), (False, True)))
    df = df.sort_values(list(by), ascending=list(ascending), kind="stable")
    return df.head(MAX_ROWS)


class TasksTable(DataTable):
    """Keeps the cursor on the same task across refreshes.

    Rows are keyed by position, not by task: a refresh rewrites only the cells whose text
    changed and adds or removes rows only at the end. Clearing and refilling the table made
    DataTable measure every cell again and repaint twice: under a storm that was ~3/4 of a
    picture's cost (benchmarks/TUI.md)."""

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.sort_key = "xrstor"
        self.filter_text = ""
        self.hide_own = False
        self._last: pd.DataFrame | None = None
        self._tids: list[int] = []            # the task of each row, top to bottom
        self._cells: list[tuple] = []         # what each row shows (render_row)

    def on_mount(self) -> None:
        for key, heading, width in COLUMNS:
            self.add_column(heading, key=key, width=width)
        self._label_columns()

    def _label_columns(self) -> None:
        for key, heading, _ in COLUMNS:
            col = self.columns.get(key)  # type: ignore[call-overload]
            if col is not None:
                mark = ("▲" if SORT_ORDER.get(key, ((), (False,)))[1][0] else "▼") \
                    if key == self.sort_key else ""
                col.label = Text(heading + mark, style="bold" if mark else "")
        self.refresh()

    def cycle_sort(self) -> str:
        i = SORT_KEYS.index(self.sort_key) if self.sort_key in SORT_KEYS else -1
        self.sort_key = SORT_KEYS[(i + 1) % len(SORT_KEYS)]
        self._label_columns()
        self._redraw()
        return self.sort_key

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._redraw()

    def toggle_own(self) -> bool:
        self.hide_own = not self.hide_own
        self._redraw()
        return self.hide_own

    @property
    def subtitle(self) -> str:
        """sort key, filter, how many tasks, and how many of fputrace's own are hidden."""
        parts = [f"sort {self.sort_key}"]
        if self.filter_text:
            parts.append(f"filter '{self.filter_text}'")
        if self._last is not None:
            parts.append(f"{len(self._last)} tasks")
            own = int(own_tasks(self._last).sum())
            if own:
                parts.append(f"{OWN_MARK} {own} of fputrace " + ("hidden (h)" if self.hide_own
                                                                   else "(h: hide)"))
        return "  ".join(parts)

    def show(self, tasks: pd.DataFrame) -> None:
        self._last = tasks
        self._redraw()

    def tid_at(self, row: int) -> int:
        return self._tids[row]

    @property
    def selected_tid(self) -> int | None:
        row = self.cursor_row
        return self._tids[row] if 0 <= row < len(self._tids) else None

    def _redraw(self) -> None:
        if self._last is None:
            return
        keep = self.selected_tid
        df = filter_and_sort(self._last, self.sort_key, self.filter_text, self.hide_own)
        tids = df["tid"].tolist()
        cells = [render_row(row) for row in df.itertuples(index=False)]
        for i in range(len(self._cells), len(cells)):        # new rows at the end
            self.add_row(*cells[i], key=str(i))
        for i in range(len(cells), len(self._cells)):        # rows no longer shown, at the end
            self.remove_row(str(i))
        for i, (old, new) in enumerate(zip(self._cells, cells)):
            if old != new:
                for (key, _, _), was, now in zip(COLUMNS, old, new):
                    if was != now:
                        self.update_cell(str(i), key, now)
        self._tids, self._cells = tids, cells
        # a reused pid appears once per task that had it: the cursor follows the first (newest)
        if keep is not None and keep in tids and tids.index(keep) != self.cursor_row:
            self.move_cursor(row=tids.index(keep), animate=False)


def render_comm(row) -> Text:
    if row.kthread:
        return Text(f"[{row.comm}]", style="dim")
    if getattr(row, "fputrace_own", False):
        return Text.assemble((OWN_MARK, "bold"), (str(row.comm), "italic " + fmt.task_style(row.tid)))
    return Text(str(row.comm), style=fmt.task_style(row.tid))


def largest_state(components: str) -> str:
    """The largest class of a ``components`` label ("SSE+AVX+AMX" -> "AMX"; "-": none seen)."""
    return str(components).rsplit("+", 1)[-1]


def render_row(row) -> tuple:
    avoid = int(row.avoidable_xrstor)
    live = largest_state(row.components)
    return (
        Text(str(row.tid), justify="right"),
        render_comm(row),
        Text(fmt.count(row.xsave), justify="right"),
        Text(fmt.count(row.xrstor), justify="right"),
        Text(fmt.count(avoid), justify="right", style="bold red" if avoid else ""),
        Text(live, style="bold magenta" if live in LARGE_STATE else "dim" if live == "-" else ""),
        Text(str(row.state), style="dim" if row.state in ("exited", "sleeping") else ""),
        Text(fmt.count(row.kfpu_sections), justify="right"),
        Text(fmt.duration_ns(row.kfpu_ns) if row.kfpu_ns else "-", justify="right"),
        Text(fmt.count(row.bytes_per_xsave) if row.xsave else "-", justify="right"),
    )
