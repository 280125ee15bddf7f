"""Lesson 05's exercise checks (05_mnist_classification): each rejects a planted wrong answer."""
from __future__ import annotations

import math

from ..checks import Verdict, answers, close_to, verdict

__all__ = ["check_branch_bound", "check_block_inverse"]


@answers('lip_g', 'lip_inverse')
def check_branch_bound(lip_g, lip_inverse, coeff: float = 0.9, n_layers: int = 3) -> Verdict:
    """Ex. 05.1: a branch of n_layers layers of norm <= c has Lip(g) <= c^n; one block's Lip(F^-1) <= 1/(1 - that)."""
    target_g = coeff ** n_layers
    target_inverse = 1 / (1 - target_g)
    ok = close_to(lip_g, target_g, rtol=1e-3) and close_to(lip_inverse, target_inverse, rtol=1e-3)
    return verdict(ok, f"Lip(g) <= {coeff:g}^{n_layers} = {target_g:.3f}, well below c = {coeff:g}, so one block's "
                       f"inverse is at most {target_inverse:.2f}-Lipschitz.",
                   "the Lipschitz constant of a composition is at most the product of its parts' (ELU is "
                   "1-Lipschitz); then use Lip(F^-1) <= 1 / (1 - Lip(g)).")


@answers('x')
def check_block_inverse(block, y, x, atol: float = 1e-4) -> Verdict:
    """Ex. 05.2: x inverts the residual block, i.e. block(x) = x + g(x) equals y to atol."""
    import torch

    if not isinstance(x, torch.Tensor) or x.shape != y.shape:
        return verdict(False, "", f"x must be a tensor of the same shape as y, {tuple(y.shape)}.")
    with torch.no_grad():
        residual = float((block(x) - y).abs().max())
    ok = math.isfinite(residual) and residual <= atol
    return verdict(ok, f"F(x) matches y to {residual:.1e}: Alg. 1 inverted a block of a trained network.",
                   f"max |F(x) - y| = {residual:.2e}; iterate x <- y - g(x) starting from x = y, with g = "
                   "block.branch, until the update stops changing x (a few dozen steps).")
