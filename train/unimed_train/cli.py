"""What the three programs (trainer, evaluator, exporter) share on the command line.

A mistake the user can fix (a bad option or YAML file, a missing file, a folder that is not ours)
is one `error: ...` line and exit status 2, so it is not lost in a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from unimed_data.outputs import OutputError


class UsageError(ValueError):
    """A bad value the user can fix (an option, a file, a folder); one `error:` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one `error:` line instead of the usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


@contextmanager
def expected_failures() -> Iterator[None]:
    """Turn UsageError and OutputError into `error: ...` on stderr and exit status 2."""
    try:
        yield
    except (UsageError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
