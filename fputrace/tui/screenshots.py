"""SVG screenshots of the dashboard for the README, taken with Textual's own ``save_screenshot``.

    sudo .venv/bin/python -m fputrace.tui.screenshots docs/      # live (needs root) and replay
    .venv/bin/python -m fputrace.tui.screenshots docs/ --no-live  # replay of the demo only

Writes dashboard-replay.svg (the bundled demo, paused in its last phase, 160x48), dashboard-replay-80x24.svg,
task-view.svg, and dashboard-live.svg (this host, after --live-seconds of capture) when it can.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from ..commands.demo import BUSY_AT_NS, demo_path
from .app import FputraceApp
from .screens.task_detail import TaskDetailScreen
from .replay import open_replay
from .sources import Source
from .widgets.tasks import TasksTable

REPLAY_AT_NS = BUSY_AT_NS


async def _shoot(source: Source, out: Path, size: tuple[int, int], wait_s: float = 0.0,
                 task_view: bool = False) -> Path:
    app = FputraceApp(source)
    async with app.run_test(size=size) as pilot:
        for _ in range(2400):                  # the model may be compiling on first use
            if app.pictures:
                break
            await pilot.pause(0.05)
        if wait_s:
            await pilot.pause(wait_s)
        if task_view:
            app.screen.query_one(TasksTable).focus()
            await pilot.press("enter")
            for _ in range(200):
                if isinstance(app.screen, TaskDetailScreen) and app.screen._args is not None:
                    break
                await pilot.pause(0.05)
        await pilot.pause()
        app.save_screenshot(out.name, str(out.parent))
        await pilot.press("q")
    return out


def replay_source():
    return open_replay(str(demo_path()), start_ns=REPLAY_AT_NS, playing=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--no-live", action="store_true", help="skip the live screenshot")
    ap.add_argument("--live-seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    shots = [(replay_source, "dashboard-replay.svg", (160, 48), False),
             (replay_source, "dashboard-replay-80x24.svg", (80, 24), False),
             (replay_source, "task-view.svg", (120, 32), True)]
    for make, name, size, task in shots:
        print(asyncio.run(_shoot(make(), args.outdir / name, size, task_view=task)))
    if args.no_live:
        return 0
    if os.geteuid() != 0:
        print("live screenshot skipped: needs root", file=sys.stderr)
        return 0
    from ..errors import CaptureError
    from .live import LiveSource, open_live_producer
    try:
        source = LiveSource(open_live_producer())
    except CaptureError as err:
        print(f"live screenshot skipped: {err}", file=sys.stderr)
        return 0
    print(asyncio.run(_shoot(source, args.outdir / "dashboard-live.svg", (160, 48),
                             wait_s=args.live_seconds)))
    source.done.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
