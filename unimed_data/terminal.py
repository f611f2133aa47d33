"""Consoles for command output: text the user needs (paths, reasons, licences) is never wrapped, cut
or read as Rich markup.

Messages are printed soft-wrapped (the terminal wraps them, Rich inserts no newline) with markup
off, since data strings such as `[...]` in an error reason would otherwise vanish as tags. Output
that is not a terminal (a pipe, a file, a test runner) has no width to fit, so tables there are laid
out at a generous fixed width instead of the 80 columns Rich assumes, and never fold.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 1000  # wide enough for any table row; a table only takes the width it needs


def console(*, stderr: bool = False) -> Console:
    """A console for the current stdout or stderr, made at print time so a redirected stream is used."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True, markup=False, highlight=False)


def say(*parts: str | tuple[str, str]) -> None:
    """One message on stderr; plain strings are literal text, `(text, style)` pairs are styled."""
    console(stderr=True).print(Text.assemble(*parts))


def error(message: str) -> None:
    """`error: message` on stderr, the prefix in red."""
    say(("error:", "red"), " ", message)


def print_table(console: Console, table: Table) -> None:
    """A table at its natural width, wider than a narrow terminal if need be: the terminal wraps
    the long lines, while Rich fitting it to the width would cut names, numbers and licences."""
    natural = Measurement.get(console, console.options.update_width(PIPE_WIDTH), table).maximum
    width = console.width
    console.width = max(width, natural)  # `print(width=...)` can only narrow, so widen the console
    try:
        console.print(table)
    finally:
        console.width = width
