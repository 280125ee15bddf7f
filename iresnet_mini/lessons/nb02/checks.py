"""Lesson 02's exercise checks (02_making_resnets_invertible): each rejects a planted wrong answer."""
from __future__ import annotations

import copy
import math

import torch

from ...lipschitz import operator_norm, reshaped_kernel_norm
from ..checks import Verdict, _call, _first, _matches, answers, close_to, verdict
from .invertibility import banach_iterations

__all__ = ["check_banach_iterations", "check_bi_lipschitz_bounds", "check_conv_normalised",
           "check_power_iteration", "check_spectral_normalisation", "check_fixed_point_inverse"]


@answers('answer')
def check_banach_iterations(answer, lipschitz: float = 0.9, tol: float = 1e-6, first_step: float = 1.0) -> Verdict:
    """Ex. 02.1: the fewest fixed-point iterations for which Banach's bound guarantees ||x - x_k|| <= tol."""
    target = banach_iterations(lipschitz, tol, first_step)
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == target
    return verdict(ok, f"{target} iterations: L^k / (1 - L) * {first_step:g} <= {tol:g} first holds at k = {target}.",
                   "solve L^k / (1 - L) * ||x_1 - x_0|| <= tol for k (take logarithms; log L < 0 flips the "
                   "inequality) and round up to a whole number.")


@answers('lip_F', 'lip_F_inv')
def check_bi_lipschitz_bounds(lip_F, lip_F_inv, lipschitz: float = 0.75) -> Verdict:
    """Ex. 02.2: the bounds on Lip(F) and Lip(F^-1) for F = id + g with Lip(g) = L."""
    ok = close_to(lip_F, 1 + lipschitz, rtol=1e-6) and close_to(lip_F_inv, 1 / (1 - lipschitz), rtol=1e-6)
    return verdict(ok, f"Lip(F) <= {1 + lipschitz:g} and Lip(F^-1) <= {1 / (1 - lipschitz):g}.",
                   "for Lip(F) use the triangle inequality on x + g(x) - y - g(y); for the inverse, "
                   "||F(x) - F(y)|| >= ||x - y|| - ||g(x) - g(y)||.")


@answers("factor")
def check_conv_normalised(layer, factor, input_shape=(4, 16, 16), target: float = 0.9) -> Verdict:
    """Ex. 02.3: ``factor`` rescales the conv's weight to operator norm ``target`` on inputs of ``input_shape``.

    The layer itself is left as it is: the check measures a rescaled copy.
    """
    try:
        scaled = copy.deepcopy(layer)
        with torch.no_grad():
            scaled.weight.mul_(float(factor))
        norm = operator_norm(scaled, input_shape)
    except Exception as error:
        return verdict(False, "", f"could not rescale the layer by {factor!r}: {type(error).__name__}: {error}")
    ok = close_to(norm, target, rtol=1e-2)
    return verdict(ok, f"the rescaled operator norm is {norm:.4f}; its reshaped-kernel norm is "
                       f"{reshaped_kernel_norm(scaled):.4f}, so dividing by that would have missed.",
                   f"with this factor the operator norm on {tuple(input_shape)} inputs is {norm:.4f}, not {target}: "
                   "measure the operator norm on those inputs (not the reshaped kernel's) and use target / norm.")


@answers("power_iteration")
def check_power_iteration(power_iteration) -> Verdict:
    """Ex. 02.4: power_iteration(W, u, n_steps) -> sigma_hat, against the package's on the same W and start u."""
    from ...lipschitz import LipschitzLinear

    g = torch.Generator().manual_seed(7)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64)
    u0 = torch.randn(6, generator=g, dtype=torch.float64)
    u0 = u0 / u0.norm()
    layer = LipschitzLinear(4, 6, coeff=0.9, bias=False).double()
    true_norm = float(torch.linalg.matrix_norm(W, ord=2))
    for n_steps in (1, 3, 30):
        with torch.no_grad():
            layer.weight.copy_(W)
        layer.u, layer.v = u0.clone(), torch.zeros(4, dtype=torch.float64)
        expected = float(layer.power_iteration(n_steps))
        result, failed = _call(power_iteration, W.clone(), u0.clone(), n_steps)
        if result is None:
            return failed
        try:
            sigma = float(_first(result))
        except (TypeError, ValueError):
            return verdict(False, "", f"return sigma_hat as a number (or first in a tuple), got {result!r}")
        if not close_to(sigma, expected, rtol=1e-8):
            return verdict(False, "", f"after {n_steps} step(s) the package has sigma_hat = {expected:.6f}, you "
                                      f"{sigma:.6f}: per step v <- W^T u / ||W^T u||, then u <- W v / ||W v||, "
                                      "and sigma_hat = u^T W v.")
    return verdict(True, f"your estimate matches the package's step by step and approaches ||W||_2 = {true_norm:.4f} "
                         "from below.", "")


@answers("normalise")
def check_spectral_normalisation(normalise) -> Verdict:
    """Ex. 02.5: normalise(W, sigma_hat, c) -> W / max(1, sigma_hat / c), against the package's layer."""
    from ...lipschitz import LipschitzLinear

    for scale in (3.0, 0.3):  # a weight above c, and one already below it
        g = torch.Generator().manual_seed(11)
        layer = LipschitzLinear(5, 5, coeff=0.9).double()
        with torch.no_grad():
            layer.weight.copy_(torch.randn(5, 5, generator=g, dtype=torch.float64))
            layer.weight.mul_(scale / torch.linalg.matrix_norm(layer.weight, ord=2))
        layer.train()
        layer(torch.zeros(1, 5, dtype=torch.float64))
        layer.power_iteration(100)
        layer.eval()
        with torch.no_grad():
            expected = layer.normalized_weight()
        sigma_hat = float((layer.u * (layer.weight.detach() @ layer.v)).sum())
        result, failed = _call(normalise, layer.weight.detach().clone(), sigma_hat, 0.9)
        if result is None:
            return failed
        if not isinstance(result, torch.Tensor) or result.shape != expected.shape:
            return verdict(False, "", "return the rescaled weight: a tensor shaped like W.")
        if not _matches(result, expected, atol=1e-12):
            what = "above" if scale > 0.9 else "below"
            return verdict(False, "", f"for a weight whose norm is {what} c the package gives another matrix: "
                                      "divide by max(1, sigma_hat / c), so that a weight already below c is left "
                                      "as it is.")
    return verdict(True, "a weight above c is scaled down to norm c; one below c is left alone, as in the package.", "")


@answers("inverse")
def check_fixed_point_inverse(inverse) -> Verdict:
    """Ex. 02.6: inverse(g, y, atol, max_iter) -> (x, iterations) with the package's stopping rule (Alg. 1)."""
    from ...blocks import fixed_point_inverse
    from .invertibility import tight_branch

    torch.manual_seed(3)
    branch = tight_branch(4, 0.8, spectral_norm=False)
    y = torch.randn(16, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        x_ref, history = fixed_point_inverse(branch, y, max_iter=500, atol=1e-10)
        result, failed = _call(inverse, branch, y.clone(), 1e-10, 500)
    if result is None:
        return failed
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        return verdict(False, "", "return two things: the inverse x and the number of iterations it took.")
    x, iterations = result
    with torch.no_grad():
        residual = float((x + branch(x) - y).abs().max()) if isinstance(x, torch.Tensor) else math.inf
    if not residual <= 1e-9:
        return verdict(False, "", f"F(x) misses y by {residual:.1e}: iterate x <- y - g(x) from x_0 = y.")
    if abs(int(iterations) - len(history)) > 1:
        return verdict(False, "", f"the package stops after {len(history)} iterations, you after {iterations}: stop as "
                                  "soon as max |x_(k+1) - x_k| <= atol (start from x_0 = y).")
    return verdict(True, f"x inverts the block to {residual:.0e} in {iterations} iterations, like the package "
                         f"({len(history)}).", "")
