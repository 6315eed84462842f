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
