"""Shared test fixtures. Skips always name the missing capability (never a bare skip)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def fputrace_cmd() -> list[str]:
    """The installed console script if present (what users run), else ``python -m fputrace``."""
    script = VENV_BIN / "fputrace"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fputrace"]


def run_fputrace(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*fputrace_cmd(), *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def bpf_prog_ids(pid: int) -> set[int]:
    """Ids of the BPF programs whose file descriptors process ``pid`` holds (its fdinfo), read
    here rather than with fputrace's own reader so that the check stays independent of it."""
    ids = set()
    for entry in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = entry.read_text()
        except OSError:                  # the descriptor was closed meanwhile
            continue
        ids.update(int(line.split()[1]) for line in text.splitlines() if line.startswith("prog_id:"))
    return ids


@pytest.fixture(scope="session")
def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF and tracefs); run the suite as root: sudo .venv/bin/python -m pytest")


@pytest.fixture(scope="session")
def need_bcc(need_root):
    try:
        import bcc  # noqa: F401  (Debian python3-bpfcc, seen through the venv's system site packages)
    except ImportError as err:
        pytest.skip(f"bcc Python module not importable ({err}); run ./setup.sh (installs python3-bpfcc)")


@pytest.fixture(scope="session")
def need_perf():
    if not shutil.which("perf"):
        pytest.skip("perf not installed (Debian linux-perf); run ./setup.sh")
