"""The dashboard's top lines: where we are, how we capture, and whether anything was lost."""
from __future__ import annotations

from rich.text import Text

from ...model.snapshot import Snapshot
from ..messages import SourceStatus
from . import fmt
from .steady import SteadyStatic

SLOW_REFRESH_S = 0.5        # live: a slower refresh than this is shown in the header
SHOWN_BACKLOG = 100_000     # ... and so is a queue of events this long waiting for the model


def _mode_name(mode) -> str:
    """A logical event's capture as the dashboard groups it: exact, inferred or missing."""
    if isinstance(mode, dict):
        attach = str(mode.get("attach", "")).lower()
        if attach in ("", "none", "unavailable", "n/a"):
            return "missing"
        if "exact" in mode:
            return "exact" if mode["exact"] else "inferred"
        return str(mode.get("mode") or attach)
    return str(mode)


def _modes_text(meta: dict) -> Text:
    """meta["modes"]: logical event -> {attach, exact, ...} (or a plain mode string), grouped so
    that it fits a line: ``exact: a,b  inferred: c  missing: d``; the attach mode leads."""
    modes = meta.get("modes") or {}
    out = Text("modes ", style="dim")
    if meta.get("capture_mode"):
        out.append(f"{meta['capture_mode']}  ", style="bold")
    if not modes:
        return out.append("unknown", style="yellow")
    items = modes.items() if isinstance(modes, dict) else ((str(m), "?") for m in modes)
    groups: dict[str, list[str]] = {}
    for event, mode in items:
        groups.setdefault(_mode_name(mode), []).append(str(event))
    order = {"exact": 0, "inferred": 1, "missing": 2}
    for i, (mode, events) in enumerate(sorted(groups.items(), key=lambda kv: order.get(kv[0], 1))):
        style = {"exact": "bold green", "missing": "bold red"}.get(mode, "bold yellow")
        if i:
            out.append("  ")
        out.append(f"{mode}: ", style=style)
        out.append(",".join(events))
    return out


def _xstate_text(meta: dict) -> str:
    """meta["xstate"]: {features: [{name, size_bytes, ...}] or names, total_bytes, ...}."""
    xs = meta.get("xstate") or {}
    if not isinstance(xs, dict) or not xs:
        return "xstate ?"
    feats = xs.get("features") or []
    names = [str(f.get("name", f.get("bit", "?"))) if isinstance(f, dict) else str(f) for f in feats]
    size = xs.get("total_bytes") or xs.get("size_bytes")
    parts = ["xstate"]
    if names:
        parts.append("|".join(names))
    if size:
        parts.append(f"{size} B")
    if xs.get("compacted"):
        parts.append("(compacted)")
    return " ".join(parts)


class DashboardHeader(SteadyStatic):
    """Three cropped lines: identity, state (rate, lost, recording), capture modes."""

    def show(self, meta: dict, snap: Snapshot | None, status: SourceStatus | None) -> None:
        text = render_header(meta, snap, status)
        self.show_content(text, text.plain.count("\n"))     # lines are cropped, never wrapped


def render_header(meta: dict, snap: Snapshot | None, status: SourceStatus | None) -> Text:
    """Line 1: what is being watched; line 2: its state (ev/s, lost, recording); line 3: modes.
    Lines are cropped, never wrapped, so the layout below stays put at any width."""
    host = meta.get("host") or meta.get("hostname") or "?"
    kernel = meta.get("kernel") or meta.get("kernel_release") or "?"
    top = Text(no_wrap=True, overflow="ellipsis")
    top.append(" fputrace ", style="bold reverse")
    top.append(f" {host} ", style="bold")
    top.append(f"kernel {kernel}  ")
    top.append(_xstate_text(meta), style="cyan")
    state = Text(no_wrap=True, overflow="ellipsis")
    if status is not None:
        if status.live:
            state.append(" LIVE ", style="bold black on green")
            if status.paused:
                state.append(" PAUSED ", style="bold black on yellow")
        else:
            state.append(f" REPLAY {'❚❚' if status.paused else '▶'} ",
                         style="bold black on #5fafff")
            state.append(f" {fmt.clock_s(status.position_ns)}/{fmt.clock_s(status.duration_ns)}"
                         f" ×{status.speed:g}")
            if status.target_ns != status.position_ns and not status.finished:
                state.append(f" → {fmt.clock_s(status.target_ns)}", style="bold")
        state.append(f"  {fmt.count(status.events_per_s)} ev/s", style="bold")
    if snap is not None:
        state.append(f"  {fmt.count(snap.events)} events  ")
        if snap.lost_events:
            state.append(f" LOST {snap.lost_events:,} ", style="bold white on red")
            if snap.gap_flagged:
                state.append(" numbers cross a gap ", style="bold red")
        else:
            state.append("lost 0", style="green")
    skipped = sum((meta.get("recursion_misses") or {}).values())   # runs the kernel skipped
    if skipped:
        state.append(f" SKIPPED {skipped:,} probe runs ", style="bold white on red")
    if snap is None:
        state.append("  analysing… (the model is compiled on first use: up to a minute)",
                     style="italic")
    if status is not None and status.live and (status.refresh_s >= SLOW_REFRESH_S
                                               or status.backlog_events >= SHOWN_BACKLOG):
        # under load the screen refreshes less often rather than lose events: say so
        state.append(f"  refresh {status.refresh_s:.1f}s", style="yellow")
        if status.backlog_events >= SHOWN_BACKLOG:
            state.append(f", {fmt.count(status.backlog_events)} events queued", style="yellow")
    if status is not None and status.live:
        state.append("  ")
        if status.recording_path:
            state.append(" ● REC ", style="bold white on red")
            state.append(f" {status.recording_path} {fmt.count(status.recorded_events)} ev")
        else:
            state.append("not recording", style="dim")
    modes = _modes_text(meta)
    modes.no_wrap, modes.overflow = True, "ellipsis"
    out = Text("\n").join([top, state, modes])
    out.no_wrap, out.overflow = True, "ellipsis"
    return out
