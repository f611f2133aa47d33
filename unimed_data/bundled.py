"""Where the data files the project ships live: `manifests/`, `prompts/` and `recipes/`.

In a checkout they sit at the top level, where users look for and edit them; the wheel carries
them inside the package (hatch `force-include`), so an installed `unimed-data` finds them with no
checkout. One lookup for both, so no module guesses which it is running from.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

NAMES = ("manifests", "prompts", "recipes")


def bundled(name: str) -> Path:
    """The folder `name` (one of NAMES): the checkout's top level when this package runs from a
    checkout (a `pyproject.toml` beside it), else the copy inside the installed package. Checked in
    that order, so a stray folder of that name left inside a checkout's package is never read."""
    if name not in NAMES:
        raise ValueError(f"{name}: not a bundled folder ({', '.join(NAMES)})")
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return Path(str(files("unimed_data"))) / name
