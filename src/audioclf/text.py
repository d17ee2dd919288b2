"""Small helpers for the messages users read: "did you mean", plurals.

Every registry and the config validator use them, so a typo gets the same hint from the
CLI, the Python API and a recipe file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The ``n`` choices closest to ``name`` (case-insensitive), best first."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    return [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=cutoff)]


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """``" did you mean 'x'?"`` (with a leading space) for the closest choice, else ``""``.

    Meant to be appended to an error message: ``f"unknown model {name!r};{did_you_mean(...)}"``.
    """
    matches = close_matches(name, choices, n=2, cutoff=cutoff)
    if not matches:
        return ""
    return " did you mean " + " or ".join(repr(m) for m in matches) + "?"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``plural(1, "window") == "1 window"``, ``plural(3, "window") == "3 windows"``."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
