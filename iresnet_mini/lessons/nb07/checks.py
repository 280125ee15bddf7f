"""Lesson 07's exercise checks (07_mnist_density): each rejects a planted wrong answer."""
from __future__ import annotations

import math

from ..checks import Verdict, answers, close_to, verdict

__all__ = ["check_bits_per_dim", "check_logit_logdet"]


@answers('answer')
def check_bits_per_dim(answer, log_prob_nats: float, n_dims: int) -> Verdict:
    """Ex. 07.2: bits/dim of one 8-bit image from the model's log p(x) (nats) of its dequantised version."""
    target = -float(log_prob_nats) / (n_dims * math.log(2)) + 8
    return verdict(close_to(answer, target, rtol=1e-4),
                   f"{target:.4f} bits/dim: nats to bits (divide by ln 2), per dimension (divide by D), and "
                   "8 bits for squeezing 256 levels into [0, 1).",
                   f"bits/dim = -log p(x) / (D ln 2) + log2(256) with D = {n_dims}; log p is in nats, so use the "
                   "natural logarithm ln 2, and do not forget the + 8.")


@answers('logdet_nats', 'bits_shift')
def check_logit_logdet(logdet_nats, bits_shift, x: float = 0.5, alpha: float = 0.05, n_dims: int = 784) -> Verdict:
    """Ex. 07.1: log|det dy/dx| of the logit transform for an image whose every pixel is x, and its bits/dim shift."""
    s = alpha + (1 - 2 * alpha) * x
    target = n_dims * math.log((1 - 2 * alpha) / (s * (1 - s)))
    shift = -target / (n_dims * math.log(2))
    ok = close_to(logdet_nats, target, rtol=1e-4) and close_to(bits_shift, shift, rtol=1e-4)
    return verdict(ok, f"log|det| = {target:.2f} nats: the bits/dim of x are those computed from log p(y) alone, "
                       f"{shift:+.4f}. The transform stretches [0, 1), so a density in y is lower than in x.",
                   "the Jacobian is diagonal: dy/dx = (1 - 2 alpha) / (s (1 - s)) per pixel with s = alpha + "
                   "(1 - 2 alpha) x. Sum its log over the D pixels; the bits/dim shift is -log|det| / (D ln 2).")
