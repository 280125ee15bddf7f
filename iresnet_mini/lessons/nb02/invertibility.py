"""What makes a residual block invertible, measured (paper Thm. 1, Alg. 1, Sec. 2 and the bi-Lipschitz bounds).

* Spectral normalisation: :func:`power_iteration_trace` - the estimate sigma_hat per
  power-iteration step against the true operator norm; :func:`lipschitz_upper_bound` -
  the certified Lip(g) <= product of the layers' true norms.
* The inverse (Alg. 1): :func:`reconstruction_errors` - ||x_k - x|| per iteration, for the
  fixed-point or the Anderson inverse; :func:`banach_bound` and :func:`banach_iterations` -
  Banach's a-priori bound L^k / (1 - L) ||x_1 - x_0||.
* Bi-Lipschitz: :func:`bi_lipschitz_constants` (measured from the exact Jacobian) against
  :func:`bi_lipschitz_bounds` Lip(F) <= 1 + L, Lip(F^-1) <= 1 / (1 - L).
* :func:`tight_branch` - a branch for which the bound is attained, so that every error in
  sigma_hat shows up in the inverse.

Taught in ``notebooks/02_making_resnets_invertible.ipynb``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ...blocks import INVERSE_METHODS, mlp_branch
from ...lipschitz import LipschitzConv2d, LipschitzLinear, lipschitz_upper_bound, operator_norm
from ...logdet import jacobian

__all__ = [
    "lipschitz_upper_bound", "jacobian_lipschitz", "bi_lipschitz_constants", "bi_lipschitz_bounds",
    "banach_bound", "banach_iterations", "inverse_iterates", "reconstruction_errors", "power_iteration_trace", "tight_branch",
]


def _check_lipschitz(lipschitz: float) -> float:
    if not isinstance(lipschitz, (int, float)) or isinstance(lipschitz, bool) or not lipschitz >= 0:
        raise ValueError(f"a Lipschitz constant must be a number >= 0, got {lipschitz!r}")
    return float(lipschitz)


def _linear_layers(branch: nn.Module) -> list[nn.Module]:
    return [m for m in branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _jacobian_singular_values(branch: nn.Module, x: torch.Tensor, plus_identity: bool) -> torch.Tensor:
    was_training = branch.training
    branch.eval()
    try:
        jac = jacobian(branch, x).detach()
    finally:
        branch.train(was_training)
    if plus_identity:
        jac = jac + torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    return torch.linalg.svdvals(jac)  # (batch, d), descending


def jacobian_lipschitz(branch: nn.Module, x: torch.Tensor) -> float:
    """max over the sample of ||J_g(x)||_2: a measured lower bound on Lip(g)."""
    return float(_jacobian_singular_values(branch, x, plus_identity=False)[:, 0].max())


def bi_lipschitz_constants(branch: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(max sigma_max(I + J_g), max 1 / sigma_min(I + J_g)) over x: measured Lip(F) and Lip(F^-1)."""
    s = _jacobian_singular_values(branch, x, plus_identity=True)
    return float(s[:, 0].max()), float((1.0 / s[:, -1]).max())


def bi_lipschitz_bounds(lipschitz: float) -> tuple[float, float]:
    """Lip(F) <= 1 + L and Lip(F^-1) <= 1 / (1 - L) for F = id + g, Lip(g) = L (inf when L >= 1)."""
    L = _check_lipschitz(lipschitz)
    return 1.0 + L, (1.0 / (1.0 - L) if L < 1 else math.inf)


def banach_bound(lipschitz: float, first_step: float, k):
    """Banach: ||x - x_k|| <= L^k / (1 - L) * ||x_1 - x_0|| for the fixed-point iteration (Alg. 1).

    ``k`` is an iteration count or a tensor of them; for L >= 1 there is no bound (inf).
    """
    L = _check_lipschitz(lipschitz)
    if L >= 1:
        return torch.full_like(torch.as_tensor(k, dtype=torch.float64), math.inf) if torch.is_tensor(k) else math.inf
    return L ** k / (1.0 - L) * first_step


def banach_iterations(lipschitz: float, tol: float, first_step: float) -> int:
    """The fewest iterations k for which the Banach bound guarantees ||x - x_k|| <= tol."""
    L = _check_lipschitz(lipschitz)
    if not 0 < L < 1:
        raise ValueError(f"the Banach bound needs 0 < L < 1, got L = {L}")
    if not (tol > 0 and first_step >= 0):
        raise ValueError(f"need tol > 0 and first_step >= 0, got tol={tol!r}, first_step={first_step!r}")
    if first_step <= tol * (1 - L):
        return 0
    return math.ceil(math.log(tol * (1 - L) / first_step) / math.log(L))


@torch.no_grad()
def inverse_iterates(branch: nn.Module, y: torch.Tensor, n_iter: int, method: str = "fixed_point") -> list:
    """The estimates x_1, ..., x_n of the package's inverse of y = x + g(x), run for n_iter steps.

    Every evaluation y - g(z) inside the inverse is an iterate (Alg. 1: x_{k+1} = y - g(x_k);
    Anderson: the image of its mixed candidate), so recording them gives the whole path in one run.
    """
    if method not in INVERSE_METHODS:
        raise ValueError(f"unknown inverse method {method!r}: use one of {sorted(INVERSE_METHODS)}")
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    iterates = []

    def recording_branch(z):
        gz = branch(z)
        iterates.append(y - gz)
        return gz

    was_training = branch.training
    branch.eval()  # no power iteration while inverting: g must stay one function
    try:
        INVERSE_METHODS[method](recording_branch, y, max_iter=n_iter, atol=0.0)
    finally:
        branch.train(was_training)
    return iterates[:n_iter]


@torch.no_grad()
def reconstruction_errors(branch: nn.Module, x: torch.Tensor, n_iter: int,
                          method: str = "fixed_point") -> list[float]:
    """max_i ||x_k - x_i||, k = 1..n_iter, when the package's inverse reconstructs x from y = x + g(x)."""
    was_training = branch.training
    branch.eval()
    try:
        y = x + branch(x)
    finally:
        branch.train(was_training)
    return [float((xk - x).flatten(1).norm(dim=1).max()) for xk in inverse_iterates(branch, y, n_iter, method)]


@torch.no_grad()
def power_iteration_trace(layer: nn.Module, input_shape, n_iter: int) -> tuple[list[float], float]:
    """sigma_hat after 0..n_iter power-iteration steps from a fresh start, and the true norm (Sec. 2).

    ``layer`` is a constrained LipschitzLinear / LipschitzConv2d; its u, v are re-initialised.
    The estimates rise towards the true operator norm of the layer's *raw* weight.
    """
    if not isinstance(layer, (LipschitzLinear, LipschitzConv2d)) or layer.coeff is None:
        raise TypeError("power_iteration_trace needs a LipschitzLinear or LipschitzConv2d with a coeff")
    if not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be an integer >= 0, got {n_iter!r}")
    probe = torch.zeros((1, *input_shape), dtype=layer.weight.dtype, device=layer.weight.device)
    layer.u, layer.v = torch.empty(0), torch.empty(0)  # forget previous vectors: start afresh
    layer.eval()
    layer.normalized_weight(probe)  # initialises u and v for this input shape
    estimates = [float(layer.power_iteration(0))] + [float(layer.power_iteration(1)) for _ in range(n_iter)]
    if isinstance(layer, LipschitzConv2d):
        raw = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                        bias=False)
    else:
        raw = nn.Linear(layer.in_features, layer.out_features, bias=False)
    raw = raw.to(layer.weight)
    raw.weight.copy_(layer.weight)
    return estimates, operator_norm(raw, input_shape)


@torch.no_grad()
def tight_branch(dim: int, lipschitz: float, spectral_norm: bool = True, n_power_iterations: int = 1,
                 decay: float = 0.8, sign: int = -1, seed: int = 0) -> nn.Sequential:
    """g(x) = sign * W^T elu(W x), a branch whose Lip(g) = ||W||^2 attains the product bound.

    Its Jacobian sign * W^T D W (D = diag elu' in (0, 1]) is symmetric, so near x = 0 the
    fixed-point inverse contracts at exactly the rate Lip(g); sign = -1 attains the bound
    Lip(F^-1) <= 1 / (1 - L), sign = +1 the bound Lip(F) <= 1 + L. The singular values of the raw
    W decay geometrically (``decay``), which makes a power iteration converge slowly.

    ``spectral_norm=True``: W is drawn with norm 2 and both layers are normalised to
    sqrt(lipschitz) < 1, so Lip(g) = lipschitz once sigma_hat is exact and more when it lags
    (run the layers in training mode to iterate). ``spectral_norm=False``: no normalisation,
    ||W|| = sqrt(lipschitz) for any lipschitz > 0 (use it to see Lip(g) >= 1).
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign!r}")
    L = _check_lipschitz(lipschitz)
    if L == 0 or (spectral_norm and L >= 1):
        raise ValueError(f"lipschitz must be in (0, 1) with spectral_norm=True (Thm. 1) and > 0 without, got {L}")
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    top = 2.0 if spectral_norm else math.sqrt(L)
    weight = u @ torch.diag(top * decay ** torch.arange(dim, dtype=torch.float64)) @ v.T
    branch = mlp_branch(dim, dim, 1, coeff=math.sqrt(L) if spectral_norm else None, activation="elu",
                        n_power_iterations=n_power_iterations).to(torch.float64)
    branch[0].weight.copy_(weight)
    branch[-1].weight.copy_(sign * weight.T)
    branch[0].bias.zero_()
    branch[-1].bias.zero_()
    return branch
