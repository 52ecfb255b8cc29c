"""Validation helpers: one way to say "an integer" or "a number" in every config check.

Python's ``bool`` is a subclass of ``int``, so ``isinstance(True, int)`` holds; a config value
``steps=True`` must still be refused. :func:`is_int` and :func:`is_number` are the one place where
that guard is written.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_int", "is_number"]


def is_int(value: Any, minimum: int | None = None) -> bool:
    """True for an integer (Python or numpy, not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return minimum is None or value >= minimum


def is_number(value: Any, *, finite: bool = False) -> bool:
    """True for a real number (int, float, numpy scalar; not a bool), finite when asked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not finite or math.isfinite(value)
