"""What the three programs (trainer, evaluator, exporter) share on the command line.

A mistake the user can fix (a bad option or YAML file, a missing file, a folder that is not ours)
is one `error: ...` line and exit status 2, so it is not lost in a traceback; Ctrl-C is one line
saying what was kept, exit status 130; anything else is a bug: its traceback, then a line saying so,
exit status 1.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from unimed_data.outputs import OutputError

BUG = "unexpected failure (a bug in unimed_train; please report it with the traceback above)"


class UsageError(ValueError):
    """A bad value the user can fix (an option, a file, a folder); one `error:` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one `error:` line instead of the usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


@contextmanager
def expected_failures(interrupted: str) -> Iterator[None]:
    """UsageError and OutputError: `error: ...` and exit status 2; Ctrl-C: `interrupted: ` plus
    `interrupted` (what was kept) and 130; any other exception: its traceback, the BUG line, 1."""
    try:
        yield
    except (UsageError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception:
        traceback.print_exc()
        print(f"error: {BUG}", file=sys.stderr)
        raise SystemExit(1) from None
