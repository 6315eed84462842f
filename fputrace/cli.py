"""The ``fputrace`` command: one argparse parser, one module per subcommand in ``fputrace.commands``.

A subcommand module defines ``HELP`` (one line), ``EXAMPLES`` (the epilog), ``add_arguments(parser)``
and ``run(args) -> int``. Heavy imports (bcc, pandas, textual) happen inside ``run`` so that
``fputrace --help`` and argument errors stay instant.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from . import __version__
from .errors import FputraceError

# Order is the order of ``fputrace --help``.
COMMANDS = ["record", "report", "estimate", "import", "export", "stat", "exporter", "calibrate", "doctor", "tui", "demo"]

EXAMPLES = """examples:
    sudo fputrace                          # live dashboard of this host
    sudo fputrace record -o run.fpt -- make -j2
    fputrace report run.fpt --top 20       # who saved and restored FPU state, and why
    fputrace estimate run.fpt              # eager vs deferred restore on this workload
    fputrace tui run.fpt                   # replay a recording in the dashboard
    sudo fputrace stat -I 1000             # plain-text counts every second (scripts, no TTY)
    sudo fputrace exporter                 # Prometheus metrics on http://127.0.0.1:9477/metrics
    fputrace export run.fpt -o run.parquet # one row per event, for DuckDB / Spark
    sudo fputrace doctor                   # can this host be traced, and how?
"""


class _Parser(argparse.ArgumentParser):
    """Wrong use is one line and exit status 2, not argparse's usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _command_module(name: str):
    return importlib.import_module(f".commands.{name.replace('import', 'import_')}", __package__)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fputrace",
        description="Trace and analyse x86 FPU/SIMD register save/restore (XSAVE/XRSTOR) traffic.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fputrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = _command_module(name)
        except ModuleNotFoundError as err:   # a command still being built; tests/test_cli.py
            if not (err.name or "").startswith(f"{__package__}.commands."):  # insists all exist
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, epilog=mod.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["tui", *argv]            # bare ``fputrace -v``, ``fputrace --window 30``: the dashboard's options
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:                      # bare ``fputrace``: the live dashboard
        args = parser.parse_args(["tui", *argv])
        run = args._run
    try:
        return int(run(args) or 0)
    except FputraceError as err:
        print(f"fputrace: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:              # `fputrace report x | head`
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return 0


if __name__ == "__main__":
    sys.exit(main())
