"""Policy estimate: what eager (<= 5.1) and deferred (>= 5.2) restore would cost on this trace."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ...model.snapshot import Snapshot
from . import fmt


def render_policies(snap: Snapshot) -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), collapse_padding=True, pad_edge=False,
                  header_style="bold")
    table.add_column("POLICY", no_wrap=True, overflow="ellipsis", max_width=10)
    for name in ("XSAVE", "XRSTOR", "AVOID", "BYTES", "CYCLES"):
        table.add_column(name, justify="right", no_wrap=True)
    for p in snap.policies:
        mark = "*" if p.name == snap.recorded_policy else " "
        table.add_row(Text(f"{mark}{p.name}", style="bold" if mark == "*" else ""),
                      fmt.count(p.xsave), fmt.count(p.xrstor),
                      Text(fmt.count(p.avoidable_xrstor),
                           style="bold red" if p.avoidable_xrstor else ""),
                      fmt.count(p.bytes) + "B", fmt.count(p.cycles))
    by_name = {p.name: p for p in snap.policies}
    eager, deferred = by_name.get("eager"), by_name.get("deferred")
    if eager is not None and deferred is not None:
        table.add_row(Text("saved", style="green"), fmt.count(eager.xsave - deferred.xsave),
                      Text(fmt.count(eager.xrstor - deferred.xrstor), style="bold green"), "",
                      fmt.count(eager.bytes - deferred.bytes) + "B",
                      fmt.count(eager.cycles - deferred.cycles))
    return table


def render_footnote(snap: Snapshot) -> Text:
    ok = snap.self_check >= 0.99
    t = Text(no_wrap=False)
    by_name = {p.name: p for p in snap.policies}
    eager, deferred = by_name.get("eager"), by_name.get("deferred")
    if eager is not None and deferred is not None and eager.xrstor:
        pct = 100.0 * (eager.xrstor - deferred.xrstor) / eager.xrstor
        t.append(f"deferred: {pct:.0f}% fewer XRSTOR  ", style="green")
    t.append("*recorded  self-check ", style="dim")
    t.append(f"{100 * snap.self_check:.1f}%", style="bold green" if ok else "bold red")
    t.append(f"  costs: {snap.cost_model}", style="dim")
    if snap.inferred_kinds:
        t.append(f"  inferred: {', '.join(snap.inferred_kinds)}", style="yellow")
    return t


class PolicyPanel(Static, can_focus=True):
    def show(self, snap: Snapshot) -> None:
        from rich.console import Group
        self.update(Group(render_policies(snap), render_footnote(snap)))
