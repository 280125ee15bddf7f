"""Lesson 08's exercise checks (08_cifar10_density): each rejects a planted wrong answer."""
from __future__ import annotations

import math

from ..checks import Verdict, answers, close_to, verdict

__all__ = ["check_log_density_from_bits", "check_probes_needed"]


@answers('answer')
def check_log_density_from_bits(answer, bits: float = 3.45, n_dims: int = 3072) -> Verdict:
    """Ex. 08.1: the log-density log p(x) in nats per image that a model with ``bits`` bits/dim assigns."""
    target = (8 - bits) * n_dims * math.log(2)
    return verdict(close_to(answer, target, rtol=1e-4),
                   f"log p(x) = {target:.0f} nats: positive! On [0, 1)^D a density above 1 is normal - the "
                   "8-bit data occupy a tiny part of the cube, and the model piles its mass there.",
                   "solve bits/dim = -log p(x) / (D ln 2) + 8 for log p(x); mind the sign.")


@answers('answer')
def check_probes_needed(answer, std_one_probe: float, target: float) -> Verdict:
    """Ex. 08.2: the fewest probes m for which the std of the averaged estimate, std_1 / sqrt(m), is <= target."""
    m = max(1, math.ceil((std_one_probe / target) ** 2 - 1e-9))
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == m
    return verdict(ok, f"{m} probes: averaging m independent probes divides the standard deviation by sqrt(m), "
                       "so halving it costs four times the work.",
                   "the std of the mean of m probes is std_1 / sqrt(m); solve std_1 / sqrt(m) <= target for the "
                   "smallest whole number m.")
