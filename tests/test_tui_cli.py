"""`fputrace tui` / `fputrace demo` as a user meets them before any screen: one clear line."""
from __future__ import annotations

import pytest

from .conftest import run_fputrace

pytestmark = pytest.mark.tui


def one_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.mark.parametrize("content,needle", [(None, "no such file"), (b"", "empty file"),
                                            (b"PAR1 not a recording", "Parquet")])
def test_a_bad_file_is_one_line_and_exit_1(tmp_path, content, needle):
    path = tmp_path / "x.fpt"
    if content is not None:
        path.write_bytes(content)
    res = run_fputrace("tui", str(path))
    assert res.returncode == 1
    assert needle in one_line(res) and str(path) in res.stderr


def test_without_a_terminal_it_says_so(tmp_path):
    from pathlib import Path
    demo = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"
    res = run_fputrace("tui", str(demo))            # stdout is a pipe here
    assert res.returncode == 2
    assert "needs a terminal" in one_line(res)


def test_demo_recording_is_bundled_small_and_real():
    from fputrace.commands.demo import demo_path
    from fputrace.trace import load
    path = demo_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    tr = load(path)
    assert tr.meta["format"] == "fputrace-recording" and not tr.truncated
    assert tr.meta["kernel_release"] and tr.meta["capture_mode"] in ("fentry", "kprobe", "tracepoint")
    assert str(tr.meta.get("command", "")).find("fputrace record") >= 0     # our own recorder
    assert len(tr.events) > 10_000


@pytest.mark.parametrize("argv", [["tui", "--window", "0", "x.fpt"], ["tui", "--speed", "-1", "x.fpt"]])
def test_bad_options(argv):
    res = run_fputrace(*argv)
    assert res.returncode == 2 and "positive" in one_line(res)
