"""Self-checks for the notebooks' exercises: each tells the learner whether an answer is right.

A check returns True/False and prints a short verdict with a hint; it never prints the
solution (that sits in a collapsed cell of the notebook).
"""
from __future__ import annotations

import math

from .logdet import truncation_error_bound

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


# --- notebook 03: the log-determinant --------------------------------------------------------
__all__ += ["HUTCHINSON_J", "check_truncation_bound", "check_hutchinson_2x2", "check_terms_needed"]

HUTCHINSON_J = ((0.3, 0.2), (-0.1, 0.4))  # the 2x2 Jacobian of exercise 03.2


def check_truncation_bound(answer, lipschitz: float = 0.5, dim: int = 2, n_terms: int = 3) -> bool:
    """Ex. 03.1: the Thm. 3 bound on the error of the series truncated after n_terms."""
    target = truncation_error_bound(lipschitz, dim, n_terms)
    return verdict(close_to(answer, target, rtol=1e-3),
                   f"the first {n_terms} terms are within {target:.4f} nats of ln det(I + J).",
                   f"use -d (ln(1 - L) + sum_{{k=1..n}} L^k / k) with L = {lipschitz}, d = {dim}, n = {n_terms}; "
                   "mind the minus sign and the natural logarithm.")


def check_hutchinson_2x2(estimate_v1, estimate_v2) -> bool:
    """Ex. 03.2: v^T J v for the Rademacher probes v1 = (1, 1) and v2 = (1, -1), J = HUTCHINSON_J."""
    (a, b), (c, d) = HUTCHINSON_J
    targets = (a + b + c + d, a - b - c + d)
    ok = close_to(estimate_v1, targets[0], atol=1e-6) and close_to(estimate_v2, targets[1], atol=1e-6)
    return verdict(ok, f"their mean {(targets[0] + targets[1]) / 2:.2f} is tr(J) = {a + d:.2f}: the "
                       "off-diagonal entries cancel between the two probes.",
                   "expand v^T J v = sum_ij v_i J_ij v_j: with v = (1, -1) the off-diagonal entries "
                   "come with a minus sign.")


def check_terms_needed(answer, lipschitz: float = 0.5, dim: int = 10, tol: float = 0.01) -> bool:
    """Ex. 03.3: the smallest n for which the Thm. 3 bound is at most tol."""
    n = 1
    while truncation_error_bound(lipschitz, dim, n) > tol:
        n += 1
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == n
    return verdict(ok, f"{n} terms guarantee an error <= {tol} for L = {lipschitz}, d = {dim}.",
                   "evaluate the bound for n = 1, 2, 3, ... and stop at the first n where it is <= tol; "
                   "the answer is a whole number.")
