"""The command line as a user meets it: help, versions, wrong use (one line, exit 2)."""
from __future__ import annotations

import importlib

import pytest

from fputrace import cli

from .conftest import run_fputrace


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_every_command_module_exists_and_is_complete(name):
    mod = importlib.import_module(f"fputrace.commands.{name.replace('import', 'import_')}")
    for attr in ("HELP", "EXAMPLES", "add_arguments", "run"):
        assert hasattr(mod, attr), f"fputrace.commands.{name} lacks {attr}"
    assert "fputrace" in mod.EXAMPLES, f"{name}: the examples epilog shows no example command"


def test_help_lists_every_command():
    res = run_fputrace("--help")
    assert res.returncode == 0, res.stderr
    for name in cli.COMMANDS:
        assert name in res.stdout
    assert "examples:" in res.stdout


@pytest.mark.parametrize("argv", [["frobnicate"], ["report"], ["report", "--format", "xml", "x.fpt"],
                                  ["record", "--bogus-option"]])
def test_wrong_use_is_one_line_and_exit_2(argv):
    res = run_fputrace(*argv)
    assert res.returncode == 2, (argv, res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line for {argv}, got: {res.stderr!r}"
    assert "Traceback" not in res.stderr


def test_version_matches_package():
    import fputrace
    res = run_fputrace("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"fputrace {fputrace.__version__}"


def test_analysis_runs_for_an_unprivileged_user_without_a_home():
    """`fputrace report` needs no root, nor a writable home or install: the model engine is built
    by the install (else once into a per-user cache, falling back to a temporary directory)."""
    import os
    import pwd
    import shutil
    import subprocess
    import sys

    from fputrace.resources import bpf_dir
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as the user 'nobody'")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    demo = bpf_dir().parent / "fputrace" / "data" / "demo.fpt"
    if not demo.exists():
        demo = bpf_dir().parent / "data" / "demo.fpt"
    import tempfile
    from pathlib import Path
    shared = Path(tempfile.mkdtemp(prefix="fputrace-nobody-"))   # pytest's tmp_path is root-only
    os.chmod(shared, 0o755)
    copy = shared / "demo.fpt"
    shutil.copy(demo, copy)
    os.chmod(copy, 0o644)
    probe = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", f"test -r {sys.executable} && test -r {copy}"])
    if probe.returncode != 0:
        pytest.skip("the checkout or the venv is not readable by 'nobody' (a private home directory)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["HOME"] = "/nonexistent"
    res = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c",
                          f"{sys.executable} -m fputrace report {copy} --format json --top 1"],
                         capture_output=True, text=True, timeout=900, env=env)
    shutil.rmtree(shared, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    assert '"xsave"' in res.stdout and "Traceback" not in res.stderr
