"""Self-checks for the notebooks' exercises: each tells the learner whether an answer is right.

A check returns True/False and prints a short verdict with a hint; it never prints the
solution (that sits in a collapsed cell of the notebook).
"""
from __future__ import annotations

import math

__all__ = ["verdict", "close_to"]


def verdict(ok: bool, success: str, hint: str) -> bool:
    """Print a friendly verdict; returns ok."""
    print(("Correct: " + success) if ok else ("Not yet: " + hint))
    return bool(ok)


def close_to(value, target: float, rtol: float = 1e-2, atol: float = 1e-8) -> bool:
    """True when value is a finite number within rtol/atol of target."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and math.isclose(value, target, rel_tol=rtol, abs_tol=atol)
