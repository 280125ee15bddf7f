"""Lesson 04's exercise checks (04_2d_densities): each rejects a planted wrong answer."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import Verdict, _call, _matches, answers, close_to, not_answered, verdict
from .toyflows import log_det_identity_plus

__all__ = ["check_logdet_2x2", "check_density_mass", "check_checkerboard_entropy", "check_flow_log_prob"]


@answers('logdet_2x2')
def check_logdet_2x2(logdet_2x2) -> Verdict:
    """Ex. 04.1: a function J (batch, 2, 2) -> log det(I + J) per sample, by the closed 2x2 formula."""
    g = torch.Generator().manual_seed(4)
    jac = torch.randn(64, 2, 2, generator=g, dtype=torch.float64)
    jac = jac * (0.9 / torch.linalg.matrix_norm(jac, ord=2))[:, None, None]  # ||J|| = 0.9 < 1, as in a block
    try:
        answer = logdet_2x2(jac)
    except NotImplementedError:
        return not_answered("write the body of logdet_2x2")
    except Exception as error:
        return verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if answer is None:
        return not_answered("write the body of logdet_2x2 (it still returns None)")
    answer = torch.as_tensor(answer, dtype=torch.float64)
    expected = log_det_identity_plus(jac)
    ok = answer.shape == expected.shape and bool(torch.allclose(answer, expected, atol=1e-10))
    return verdict(ok, "log((1 + J11)(1 + J22) - J12 J21), one value per sample, as in log_det_identity_plus.",
                   "return one number per sample (shape (batch,)); det [[a, b], [c, d]] = ad - bc, and "
                   "the matrix is I + J, not J.")


@answers('mass')
def check_density_mass(mass, log_p_grid, extent) -> Verdict:
    """Ex. 04.2: the probability mass of a learned density on its plotted grid (a Riemann sum)."""
    n = log_p_grid.shape[0]
    cell = ((extent[1] - extent[0]) / (n - 1)) * ((extent[3] - extent[2]) / (n - 1))
    expected = float(np.exp(log_p_grid).sum() * cell)
    ok = close_to(mass, expected, rtol=0.02)
    return verdict(ok, f"{expected:.3f}: a normalised density, and almost all of its mass lies on the square "
                       "the data lives on (change of variables keeps the total at 1).",
                   "sum exp(log p) over the grid and multiply by the area of one cell: the grid has n points "
                   "per side from -lim to lim, so a cell is (2 lim / (n - 1)) squared.")


@answers('answer')
def check_checkerboard_entropy(answer) -> Verdict:
    """Ex. 04.3: the entropy of the checkerboard data (uniform on 8 squares of side 2), in nats."""
    ok = close_to(answer, math.log(32.0), rtol=1e-4)
    return verdict(ok, f"log 32 = {math.log(32.0):.4f} nats: a uniform density 1/A has entropy log A.",
                   "the density is uniform, p = 1/A on its support; H = -E[log p] = log A. What is the area A "
                   "of 8 squares of side 2?")


@answers("log_prob")
def check_flow_log_prob(log_prob) -> Verdict:
    """Ex. 04.4: log_prob(flow, x) by change of variables, against toyflows.exact_log_prob on the same flow."""
    from .toyflows import exact_log_prob, iresnet_flow

    torch.manual_seed(4)
    flow = iresnet_flow(n_blocks=2, hidden=8).double()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    flow.train()
    with torch.no_grad():
        flow(x)  # ActNorm's data-dependent initialisation
    flow.eval()
    with torch.no_grad():
        expected = exact_log_prob(flow, x)
    result, failed = _call(log_prob, flow, x.clone())
    if result is None:
        return failed
    return verdict(_matches(result, expected), "log p(x) = log N(z; 0, I) + the sum of the layers' log-determinants, as the package computes it.",
                   "go through flow.layers: an ActNorm layer returns (y, logdet) when called; a residual layer "
                   "gives g(x) and J_g(x) by toyflows.mlp_jacobian(layer.block.branch, x), and its log-det is "
                   "toyflows.log_det_identity_plus(J); add flow.base.log_prob(z) of the final z.")
