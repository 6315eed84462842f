"""The real thing: `fputrace` started live on this host in a real terminal (tmux), driven by keys,
read back from the screen; afterwards none of its BPF programs may remain loaded."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import bpf_prog_ids, fputrace_cmd

pytestmark = [pytest.mark.tui, pytest.mark.live, pytest.mark.slow, pytest.mark.timeout(400)]

COLS, ROWS = 120, 40


class Tmux:
    """A terminal of COLS x ROWS on a private tmux server (other tmux users cannot resize it)."""

    def __init__(self, name: str, command: str, status_file: Path, cols: int = COLS,
                 rows: int = ROWS) -> None:
        self.name = name
        self.tmux = ["tmux", "-L", name, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                        f"{command}; echo $? > {status_file}; sleep 600"], check=True)
        subprocess.run([*self.tmux, "resize-window", "-t", name, "-x", str(cols), "-y", str(rows)],
                       capture_output=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def pane_pid(self) -> int:
        return int(subprocess.run([*self.tmux, "display", "-p", "-t", self.name, "#{pane_pid}"],
                                  capture_output=True, text=True, check=True).stdout)

    def wait_for(self, cond, what: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.screen()
            if cond(text):
                return text
            time.sleep(0.25)
        raise AssertionError(f"screen never showed {what}; last screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def prog_exists(prog_id: int) -> bool:
    res = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True, text=True)
    return res.returncode == 0


def events_on_screen(text: str) -> int:
    m = re.search(r"([\d.]+)([kMG]?) events", text)
    if not m:
        return 0
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])


def top_task_counts(text: str) -> tuple[str, str] | None:
    """XSAVE and XRSTOR of the first row under the tasks heading."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"PID\s+COMM\s+XSAVE", line) and i + 1 < len(lines):
            m = re.match(r"\W*\s*(\d+)\s+(\S.*?)\s+([\d.]+[kMG]?)\s+([\d.]+[kMG]?)\s", lines[i + 1])
            if m:
                return m.group(3), m.group(4)
    return None


@pytest.fixture
def tools():
    for tool in ("tmux", "bpftool"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (run ./setup.sh)")


def test_live_dashboard_in_a_real_terminal(need_bcc, tools, tmp_path):
    status = tmp_path / "exit-status"
    cmd = " ".join(fputrace_cmd())
    term = Tmux(f"fputrace-e2e-{os.getpid()}", f"cd {tmp_path} && env -u COLUMNS -u LINES {cmd}", status)
    try:
        # 1. the dashboard comes up and counts real events
        text = term.wait_for(lambda t: "LIVE" in t and events_on_screen(t) > 0
                             and top_task_counts(t) not in (None, ("0", "0")),
                             "a live header with non-zero event and task counts", timeout_s=180)
        assert "Traceback" not in text
        assert "modes tracepoint" in text or "modes fentry" in text or "modes kprobe" in text
        # fputrace runs as the pane's child (the shell waits for it)
        pid = int(subprocess.run(["pgrep", "-P", str(term.pane_pid())], capture_output=True,
                                 text=True).stdout.split()[0])
        progs = bpf_prog_ids(pid)
        assert progs, "the live dashboard holds no BPF programs?"
        assert all(prog_exists(p) for p in progs)

        # 2. pause freezes the picture, resume lets it move again
        term.keys("p")
        frozen = term.wait_for(lambda t: "PAUSED" in t, "PAUSED after p")
        time.sleep(1.5)
        assert events_on_screen(term.screen()) == events_on_screen(frozen)
        term.keys("p")
        term.wait_for(lambda t: "PAUSED" not in t and events_on_screen(t) > events_on_screen(frozen),
                      "counts moving again after a second p")

        # 3. sort: s moves the sort to the XSAVE column
        term.keys("s")
        text = term.wait_for(lambda t: "XSAVE▼" in t and "sort xsave" in t, "the table sorted by XSAVE")
        first = top_task_counts(text)
        assert first is not None and first[0] != "0"

        # 4. quit: the process exits 0 and leaves none of its programs loaded
        term.keys("q")
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status.exists(), f"fputrace did not exit after q; screen:\n{term.screen()}"
        assert status.read_text().strip() == "0"
        assert "Traceback" not in term.screen()
        left = [p for p in progs if prog_exists(p)]
        assert not left, f"BPF programs still loaded after quit: {left}"
    finally:
        term.kill()


def test_without_root_it_says_why_in_one_line(tmp_path):
    """No root: one line naming the remedy and the alternatives, exit 1, no traceback, and it does
    not even start the full-screen app (run in tmux so the command has a terminal)."""
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed (run ./setup.sh)")
    nobody = subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True)
    if nobody.returncode != 0 or os.geteuid() != 0:
        pytest.skip("needs root and a 'nobody' user to drop privileges to")
    out, status = tmp_path / "out", tmp_path / "status"
    os.chmod(tmp_path, 0o777)
    cmd = " ".join(fputrace_cmd())
    term = Tmux(f"fputrace-noroot-{os.getpid()}",
                f"setpriv --reuid=nobody --regid=nogroup --clear-groups {cmd} 2> {out}", status)
    try:
        deadline = time.monotonic() + 60
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status.exists(), term.screen()
    finally:
        term.kill()
    assert status.read_text().strip() == "1"
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "root" in lines[0] and "fputrace tui FILE" in lines[0] and "fputrace demo" in lines[0]
