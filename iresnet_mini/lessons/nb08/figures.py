"""Lesson 08's figures and widget panels (08_cifar10_density)."""
from __future__ import annotations

import torch

from ... import logdet
from ..figures import subplots
from ..nb03 import logdet_study
from ..nb03.figures import estimator_panel, plot_bias_variance  # Fig. 4, now for trained blocks
from ..nb07.figures import (  # lesson 07's, for CIFAR-10
    plot_bits_breakdown, plot_bits_per_dim_table, plot_density_history, plot_image_grid)

__all__ = ["draw_trained_block_logdet", "plot_bias_variance", "plot_bits_breakdown", "plot_bits_per_dim_table",
           "plot_density_history", "plot_image_grid", "subplots"]


def draw_trained_block_logdet(jac: torch.Tensor, norm: float, n_terms: int, n_probes: int,
                              n_draws: int = 400, max_terms: int = 20, seed: int = 0):
    """Widget panel (notebook 08): the series estimator on a trained block's Jacobian J (d x d) at one point.

    J is rescaled to the spectral norm ``norm``: J_c = (norm / ||J||_2) J, the Jacobian of the block
    with its branch scaled by that factor, so ``norm`` is the Lipschitz constant the series sees at
    this point and the bias falls like norm^n. Left: ``n_draws`` estimates with ``n_terms`` terms and
    ``n_probes`` Gaussian probes, against the exact ln det; right: the exact |bias| against the number
    of terms, the Thm. 3 bound and the estimate's std.
    """
    if not 0 < norm < 1:
        raise ValueError(f"norm must be in (0, 1): the series converges only for ||J||_2 < 1, got {norm!r}")
    jac = jac.double()
    trained_norm = float(torch.linalg.matrix_norm(jac, ord=2))
    jac_c = (norm / trained_norm) * jac
    d = jac_c.shape[-1]
    eye = torch.eye(d, dtype=jac_c.dtype, device=jac_c.device)
    exact = float(torch.linalg.slogdet(eye + jac_c).logabsdet)
    lip = float(torch.linalg.matrix_norm(jac_c, ord=2))
    n_max = max(max_terms, n_terms)
    bias = (logdet_study.series_partial_sums(jac_c[None], n_max)[0] - exact).cpu().numpy()
    matrix = logdet_study.series_matrix(jac_c, n_terms)
    std = float((logdet_study.hutchinson_variance(matrix) / n_probes).sqrt())
    generator = torch.Generator(device=jac_c.device).manual_seed(seed)
    v = torch.randn(n_draws, n_probes, d, generator=generator, dtype=jac_c.dtype, device=jac_c.device)
    draws = ((v @ matrix) * v).sum(-1).mean(1).cpu().numpy()
    bound = [logdet.truncation_error_bound(min(lip, 1 - 1e-12), d, n) for n in range(1, n_max + 1)]

    fig = estimator_panel(draws, exact, bias, bound, n_terms,
                          hist_title=f"{n_terms} terms, {n_probes} probe(s), ||J|| = {norm:.2f}",
                          bias_title=f"bias vs terms (||J|| = {lip:.2f}, d = {d})", std=std,
                          std_label=f"std, {n_probes} probe(s)",
                          ylim=(1e-12, 1e3))  # fixed: moving the norm moves the curve, not the axis
    numbers = {"||J_g(x)||_2 (set)": lip, "trained block's ||J_g(x)||_2": trained_norm, "exact ln det": exact,
               "bias": float(bias[n_terms - 1]), f"|bias| at {max_terms} terms": float(abs(bias[max_terms - 1])),
               "std": std, "std of the draws": float(draws.std(ddof=1))}
    return fig, numbers
