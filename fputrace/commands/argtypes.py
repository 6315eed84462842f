"""argparse ``type=`` converters the commands share: a bad value is one clear usage line."""
from __future__ import annotations

import argparse
from typing import Callable


def number(convert: Callable[[str], float], minimum: float, *, above: bool = False,
           maximum: float | None = None, unit: str = "", symbol: str = "") -> Callable[[str], float]:
    """A converter to int or float that refuses values below ``minimum`` (or not above it with
    ``above``) and above ``maximum``."""
    what = f"a number of {unit}" if unit else "a number"
    bound = (f"above {minimum:g}" if above else f"at least {minimum:g}") + (f" {symbol}" if symbol else "")
    if maximum is not None:
        bound += f" and at most {maximum:g}"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        in_range = (value > minimum if above else value >= minimum) and (maximum is None or value <= maximum)
        if not in_range:                    # written so that NaN is out of range too
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text!r}")
        return value
    return parse


def trailing_command(words: list[str]) -> list[str]:
    """The ``-- CMD ARGS`` at the end of a command line (argparse.REMAINDER), without the ``--``."""
    from ..errors import UsageError
    if not words:
        return []
    if words[0] != "--":
        raise UsageError(f"unexpected argument {words[0]!r} (put the command to run after '--')")
    if len(words) == 1:
        raise UsageError("nothing to run after '--'")
    return list(words[1:])
