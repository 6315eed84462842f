"""Pictures of the main screens (pytest-textual-snapshot): the bundled real recording replayed
through the real model, paused at a fixed time, so every run draws the same screen.

After an intended change of the look: `pytest tests/test_tui_snapshots.py --snapshot-update`, and
review the SVGs in tests/__snapshots__/ (and snapshot_report.html when a comparison fails)."""
from __future__ import annotations

import pytest

from fputrace.tui.app import FputraceApp
from fputrace.tui.screens.task_detail import TaskDetailScreen
from fputrace.tui.replay import open_replay
from fputrace.tui.widgets.kfpu import KfpuPanel
from fputrace.tui.widgets.tasks import TasksTable

from .test_tui_app import AT_NS, DEMO

pytestmark = [pytest.mark.tui, pytest.mark.timeout(600)]


def app() -> FputraceApp:
    return FputraceApp(open_replay(str(DEMO), start_ns=AT_NS, playing=False))


def settled(app) -> bool:
    """The first picture is laid out and rendered, and the panels drawn for a width (the kernel
    FPU users) were drawn for the width they have now."""
    return app.drawn_pictures > 0 and all(p.drawn_width == p.content_size.width
                                          for p in app.screen.query(KfpuPanel) if p.display)


async def drawn(pilot) -> None:
    """Wait for the first picture, drawn and laid out (conditions, not time: a loaded machine
    takes longer)."""
    for _ in range(2400):
        if settled(pilot.app):
            break
        await pilot.pause(0.05)
    assert settled(pilot.app), "no picture from the model, or not laid out"
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def task_view(pilot) -> None:
    await drawn(pilot)
    pilot.app.screen.query_one(TasksTable).focus()
    await pilot.press("enter")
    for _ in range(200):
        screen = pilot.app.screen
        if isinstance(screen, TaskDetailScreen) and screen._args is not None:
            break
        await pilot.pause(0.05)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def help_screen(pilot) -> None:
    from fputrace.tui.screens.help import HelpScreen
    await drawn(pilot)
    await pilot.press("question_mark")
    for _ in range(200):                 # a loaded machine may take a while to push the screen
        if isinstance(pilot.app.screen, HelpScreen):
            break
        await pilot.pause(0.05)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard(snap_compare, size):
    assert snap_compare(app(), terminal_size=size, run_before=drawn)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_task_view(snap_compare, size):
    assert snap_compare(app(), terminal_size=size, run_before=task_view)


def test_help(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=help_screen)
