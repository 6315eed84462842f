"""Policy estimate: what eager (<= 5.1) and deferred (>= 5.2) restore would cost on this trace."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ...model.snapshot import Snapshot
from . import fmt
from .steady import SteadyStatic


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
    d = snap.difference                  # eager minus deferred, computed by the model
    if d is not None:
        table.add_row(Text("saved", style="green"), fmt.count(d.xsave),
                      Text(fmt.count(d.xrstor), style="bold green"), "",
                      fmt.count(d.bytes) + "B", fmt.count(d.cycles))
    return table


def render_footnote(snap: Snapshot) -> Text:
    t = Text(no_wrap=False)
    if snap.xrstor_fewer_pct is not None:
        t.append(f"deferred: {snap.xrstor_fewer_pct:.0f}% fewer XRSTOR  ", style="green")
    t.append("*recorded  self-check ", style="dim")
    if snap.self_check is None:
        t.append("unknown", style="yellow")   # the recorded policy is not known
    else:
        t.append(f"{100 * snap.self_check:.1f}%",
                 style="bold green" if snap.self_check >= 0.99 else "bold red")
    t.append(f"  costs: {snap.cost_model}", style="dim")
    if snap.inferred_kinds:
        t.append(f"  inferred: {', '.join(snap.inferred_kinds)}", style="yellow")
    return t


class PolicyPanel(SteadyStatic, can_focus=True):
    def show(self, snap: Snapshot) -> None:
        from rich.console import Group
        table, note = render_policies(snap), render_footnote(snap)
        # (the footnote wraps: its height follows its length)
        self.show_content(Group(table, note), (table.row_count, len(note.plain)))
