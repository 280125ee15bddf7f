"""Lesson 03's exercise checks (03_log_determinant): each rejects a planted wrong answer."""
from __future__ import annotations

import math

import torch

from ...logdet import truncation_error_bound
from ..checks import Verdict, _call, _matches, answers, close_to, verdict

__all__ = ["HUTCHINSON_J", "check_truncation_bound", "check_hutchinson_2x2", "check_terms_needed",
           "check_series_logdet", "check_roulette_weights"]


HUTCHINSON_J = ((0.3, 0.2), (-0.1, 0.4))  # the 2x2 Jacobian of exercise 03.2


@answers('answer')
def check_truncation_bound(answer, lipschitz: float = 0.5, dim: int = 2, n_terms: int = 3) -> Verdict:
    """Ex. 03.1: the Thm. 3 bound on the error of the series truncated after n_terms."""
    target = truncation_error_bound(lipschitz, dim, n_terms)
    return verdict(close_to(answer, target, rtol=1e-3),
                   f"the first {n_terms} terms are within {target:.4f} nats of ln det(I + J).",
                   f"use -d (ln(1 - L) + sum_{{k=1..n}} L^k / k) with L = {lipschitz}, d = {dim}, n = {n_terms}; "
                   "mind the minus sign and the natural logarithm.")


@answers('estimate_v1', 'estimate_v2')
def check_hutchinson_2x2(estimate_v1, estimate_v2) -> Verdict:
    """Ex. 03.2: v^T J v for the Rademacher probes v1 = (1, 1) and v2 = (1, -1), J = HUTCHINSON_J."""
    (a, b), (c, d) = HUTCHINSON_J
    targets = (a + b + c + d, a - b - c + d)
    ok = close_to(estimate_v1, targets[0], atol=1e-6) and close_to(estimate_v2, targets[1], atol=1e-6)
    return verdict(ok, f"their mean {(targets[0] + targets[1]) / 2:.2f} is tr(J) = {a + d:.2f}: the "
                       "off-diagonal entries cancel between the two probes.",
                   "expand v^T J v = sum_ij v_i J_ij v_j: with v = (1, -1) the off-diagonal entries "
                   "come with a minus sign.")


@answers('answer')
def check_terms_needed(answer, lipschitz: float = 0.5, dim: int = 10, tol: float = 0.01) -> Verdict:
    """Ex. 03.3: the smallest n for which the Thm. 3 bound is at most tol."""
    n = 1
    while truncation_error_bound(lipschitz, dim, n) > tol:
        n += 1
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == n
    return verdict(ok, f"{n} terms guarantee an error <= {tol} for L = {lipschitz}, d = {dim}.",
                   "evaluate the bound for n = 1, 2, 3, ... and stop at the first n where it is <= tol; "
                   "the answer is a whole number.")


@answers("series_logdet")
def check_series_logdet(series_logdet) -> Verdict:
    """Ex. 03.4: series_logdet(g, x, v, n_terms) by vector-Jacobian products, against power_series_logdet."""
    from ...lipschitz import LipschitzLinear
    from ...logdet import draw_probe, power_series_logdet

    torch.manual_seed(5)
    branch = torch.nn.Sequential(LipschitzLinear(5, 8, coeff=0.8), torch.nn.ELU(),
                                 LipschitzLinear(8, 5, coeff=0.8)).double()
    branch.train()
    branch(torch.zeros(1, 5, dtype=torch.float64))
    for layer in (branch[0], branch[2]):
        layer.power_iteration(50)
    branch.eval()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for n_terms in (1, 4):
        v = draw_probe(x, "gaussian", torch.Generator().manual_seed(9))
        with torch.no_grad():
            expected = power_series_logdet(branch, x, n_terms=n_terms, generator=torch.Generator().manual_seed(9))
        result, failed = _call(series_logdet, branch, x.clone(), v, n_terms)
        if result is None:
            return failed
        if not _matches(result, expected):
            return verdict(False, "", f"with {n_terms} term(s) the package's estimate differs: term k is "
                                      "(-1)^(k+1) / k * v^T J^k v, where w <- w^T J is one vector-Jacobian product "
                                      "(torch.autograd.grad(g(x), x, w)); one value per sample.")
    return verdict(True, "your estimator agrees with power_series_logdet on the same probe.", "")


@answers("roulette_weights")
def check_roulette_weights(roulette_weights) -> Verdict:
    """Ex. 03.5: roulette_weights(n_exact, n_extra, p) -> the weight of every computed term; unbiased in the mean."""
    for n_exact, n_extra, p in ((2, 0, 0.5), (2, 3, 0.5), (1, 5, 0.25)):
        expected = [1.0] * n_exact + [1.0 / (1.0 - p) ** m for m in range(1, n_extra + 1)]
        result, failed = _call(roulette_weights, n_exact, n_extra, p)
        if result is None:
            return failed
        try:
            weights = [float(w) for w in result]
        except (TypeError, ValueError):
            return verdict(False, "", "return a list of numbers, one weight per computed term.")
        if len(weights) != len(expected) or not all(close_to(w, e, rtol=1e-9) for w, e in zip(weights, expected)):
            return verdict(False, "", f"for n_exact = {n_exact}, N = {n_extra}, p = {p} the weights should be "
                                      f"{[round(e, 4) for e in expected]}: term n_exact + m is divided by P(N >= m) = "
                                      "(1 - p)^m, the chance that it is computed at all.")
    # unbiased: the expectation over N ~ Geometric(p) of the reweighted series is the whole series
    L, p = 0.6, 0.5
    mean = sum(p * (1 - p) ** n * sum(w * (-1) ** (k + 1) * L ** k / k
                                      for k, w in enumerate(roulette_weights(1, n, p), start=1)) for n in range(200))
    return verdict(close_to(mean, math.log1p(L), rtol=1e-8),
                   f"the expected value over N is {mean:.8f} = ln(1 + {L}): unbiased.",
                   f"averaged over N the reweighted series gives {mean:.6f}, not ln(1 + {L}) = {math.log1p(L):.6f}.")
