"""Lesson 01's exercise checks (01_resnet_dynamics): each rejects a planted wrong answer."""
from __future__ import annotations

import torch

from ..checks import Verdict, _is_placeholder, answers, close_to, not_answered, verdict
from .dynamics import count_crossings

__all__ = ["check_min_slope", "check_crossing_counter"]


@answers('answer')
def check_min_slope(answer, lipschitz: float = 0.5, depth: int = 8) -> Verdict:
    """Ex. 01.1: the smallest slope F'(x) a depth-T stack of 1D blocks with Lip(g_t) <= L can have."""
    target = (1 - lipschitz) ** depth
    return verdict(close_to(answer, target, rtol=1e-3),
                   f"each block has F'(x) = 1 + g'(x) >= 1 - {lipschitz}, and the chain rule multiplies "
                   f"{depth} such factors: the map can flatten to {target:.3g} but never turn around.",
                   "in 1D, F'(x) = 1 + g'(x) and |g'(x)| <= Lip(g); the slope of a stack is the product "
                   "of the blocks' slopes (chain rule).")


@answers('count_flips')
def check_crossing_counter(count_flips) -> Verdict:
    """Ex. 01.2: a function (before, after) -> number of pairs whose order flips, on hidden test cases."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])),
             (torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 5.0, 9.0])),
             (torch.tensor([-1.0, 0.0, 1.0, 2.0]), torch.tensor([1.0, 0.0, 1.5, 2.0]))]
    cases += [(torch.randn(12, generator=g), torch.randn(12, generator=g)) for _ in range(5)]
    try:
        counts = [count_flips(a, b) for a, b in cases]
    except NotImplementedError:
        return not_answered("write the body of count_flips")
    except Exception as error:  # the learner's code: report, do not crash the notebook
        return verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if all(_is_placeholder(count) for count in counts):
        return not_answered("write the body of count_flips (it still returns None)")
    try:
        ok = all(int(count) == count_crossings(torch.stack([a, b])) for count, (a, b) in zip(counts, cases))
    except (TypeError, ValueError) as error:
        return verdict(False, "", f"count_flips must return a whole number, got {counts[0]!r} ({error})")
    return verdict(ok, "your count agrees with dynamics.count_crossings on all test cases.",
                   "a pair (i, j) flips when (a_i - a_j) and (b_i - b_j) have opposite signs; count each "
                   "unordered pair once.")
