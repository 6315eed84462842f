"""The main screen: header, CPUs, tasks, kernel FPU users, policy estimate, footer.

Two layouts from one stylesheet: the screen carries the class ``narrow`` below NARROW_BELOW_COLUMNS or
``short`` below 36 rows (set by the app on resize) and dashboards/fputrace.tcss arranges the panels
for each."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from ...model.snapshot import Snapshot
from ..messages import SourceStatus
from ..widgets.cpus import CpuPanel
from ..widgets.header import DashboardHeader
from ..widgets.kfpu import KfpuPanel
from ..widgets.policy import PolicyPanel
from ..widgets.tasks import TasksTable


# side by side, the tasks table's ten columns (98) and the kernel FPU users (#side, 60) need this
NARROW_BELOW_COLUMNS = 158


def _panel(widget, title: str):
    widget.add_class("panel")
    widget.border_title = title
    return widget


class DashboardScreen(Screen):
    AUTO_FOCUS = "#tasks"          # arrows and Enter work at once; Tab reaches the others
    ready = False                  # its panels are mounted: pictures can be drawn

    def compose(self) -> ComposeResult:
        yield DashboardHeader(id="header")
        with Vertical(id="body"):
            with Horizontal(id="top-row"):
                yield _panel(CpuPanel(id="cpus"), "CPUs: FPU register owner")
                yield _panel(PolicyPanel(id="policy-wide", classes="policy"), "Policy estimate")
            with Horizontal(id="bottom-row"):
                yield _panel(TasksTable(id="tasks"), "Tasks")
                with Vertical(id="side"):
                    yield _panel(KfpuPanel(id="kfpu"), "Kernel FPU users")
                    # the same panel placed for narrow terminals (the stylesheet shows one of them)
                    yield _panel(PolicyPanel(id="policy-narrow", classes="policy"),
                                 "Policy estimate")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(DashboardHeader).show(self.app.source.meta, None, None)
        self.ready = True
        await self.app.draw_picture()      # the first picture may have come before the panels

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < NARROW_BELOW_COLUMNS, "narrow")
        self.set_class(event.size.height < 36, "short")

    async def show(self, meta: dict, snap: Snapshot | None, status: SourceStatus | None) -> None:
        self.query_one(DashboardHeader).show(meta, snap, status)
        if snap is None:
            return
        names = dict(zip(snap.tasks["tid"].tolist(), snap.tasks["comm"].astype(str).tolist())) \
            if len(snap.tasks) else {}
        await self.query_one(CpuPanel).show(snap, names,
                                            status.trace_start_ns if status is not None else 0)
        tasks = self.query_one(TasksTable)
        tasks.show(snap.tasks)
        tasks.border_subtitle = tasks.subtitle
        self.query_one(KfpuPanel).show(snap.kfpu_callers, snap.kfpu_hist,
                                       int(snap.tasks["kfpu_sections"].sum()) if len(snap.tasks) else 0)
        for policy in self.query(PolicyPanel):
            policy.show(snap)
