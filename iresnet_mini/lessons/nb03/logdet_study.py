"""The log-determinant estimators under the microscope: bias, variance and cost (paper Fig. 4).

Taught in notebook 03. Everything here runs on blocks small enough for the exact log-det, so
each estimate can be compared with the truth:

* :func:`study_branch` - a residual branch whose Lipschitz constant *attains* its bound c^m (orthogonal
  layers whose spectral normalisation binds), so the series converges as slowly as Thm. 3 allows;
* :func:`series_partial_sums`, :func:`series_matrix`, :func:`hutchinson_variance` - the exact
  quantities behind the estimator: the truncated series and the variance of Hutchinson's trace;
* :func:`bias_variance_study` - bias and standard deviation of :func:`power_series_logdet`
  against the number of terms (Fig. 4), :func:`roulette_study` - the same for the unbiased
  Russian-roulette estimator;
* :func:`gradient_cost` - time and saved-for-backward memory of the estimator's gradient,
  backpropagated through every term or by the Neumann series.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ...blocks import mlp_branch
from ...lipschitz import certify, lipschitz_layers
from ...logdet import (
    exact_logdet,
    jacobian,
    power_series_logdet,
    truncation_error_bound,
    unbiased_logdet,
)
from ..nb02.invertibility import jacobian_lipschitz, lipschitz_upper_bound

__all__ = [
    "study_branch", "lipschitz_estimates", "series_partial_sums", "series_matrix", "hutchinson_variance",
    "estimator_draws", "spread", "BiasVarianceStudy", "bias_variance_study", "expected_terms", "roulette_draws",
    "RouletteStudy", "roulette_study", "count_saved_bytes", "gradient_cost",
]


def study_branch(dim: int, c: float, n_layers: int = 2, activation: str = "elu", init: str = "orthogonal",
                 seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A dim -> dim -> ... -> dim branch with coefficient c whose layers' normalisation binds (Sec. 2).

    Each of the ``n_layers`` linear layers has spectral norm c, so the certified bound is
    Lip(g) <= prod ||W_i|| = c**n_layers. The weights are drawn 3x too large and the power iteration
    is run to tolerance, so every layer ends exactly at c. With ``init="orthogonal"`` all singular
    values are equal and ||J_g(x)|| = c**n_layers wherever a unit is active: the bound is attained.
    ``init="random"`` (PyTorch's default init) shows how far below its bound a random branch usually is.
    Returned in eval mode (a fixed function).
    """
    if not isinstance(n_layers, int) or n_layers < 2:
        raise ValueError(f"n_layers must be an integer >= 2 (an MLP branch), got {n_layers!r}")
    if init not in ("orthogonal", "random"):
        raise ValueError(f"unknown init {init!r}: use 'orthogonal' or 'random'")
    if not 0.0 < c < 1.0:
        raise ValueError(f"c must be in (0, 1) (Thm. 1), got {c!r}")
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init would consume the global generator
        branch = mlp_branch(dim, dim, n_layers - 1, coeff=c, activation=activation).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lipschitz_layers(branch):
            if init == "orthogonal":
                nn.init.orthogonal_(layer.weight, generator=generator)
            else:  # nn.Linear's default init, from our own generator
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            sigma = torch.linalg.matrix_norm(layer.weight, ord=2)
            layer.weight.mul_(3.0 * layer.coeff / sigma)  # 3x the coefficient: normalisation binds
        branch(torch.zeros(1, dim, dtype=dtype))  # learn the power-iteration vectors' shapes
    certify(branch, tol=1e-12)
    return branch.eval()


def lipschitz_estimates(branch: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Certified Lip(g) (product of the layers' true norms) and the largest ||J_g(x)||_2 on the batch x.

    Works for MLP branches and for conv branches (e.g. a trained block on small crops); the two
    figures are :func:`invertibility.lipschitz_upper_bound` and :func:`invertibility.jacobian_lipschitz`.
    """
    return {"certified": lipschitz_upper_bound(branch, tuple(x.shape[1:])),
            "attained": jacobian_lipschitz(branch, x), "dim": x[0].numel()}


def _matrix_powers(jac: torch.Tensor, n_max: int):
    """J, J^2, ..., J^n_max for a (batch, d, d) Jacobian."""
    power = jac
    for _ in range(n_max):
        yield power
        power = power @ jac


def series_partial_sums(jac: torch.Tensor, n_max: int) -> torch.Tensor:
    """S_n = sum_{k<=n} (-1)^(k+1) tr(J^k) / k for n = 1..n_max, exact: shape (batch, n_max) (Sec. 3)."""
    traces = [torch.diagonal(p, dim1=-2, dim2=-1).sum(-1) * (-1) ** (k + 1) / k
              for k, p in enumerate(_matrix_powers(jac, n_max), start=1)]
    return torch.cumsum(torch.stack(traces, dim=-1), dim=-1)


def series_matrix(jac: torch.Tensor, n_terms: int) -> torch.Tensor:
    """A_n = sum_{k<=n} (-1)^(k+1) J^k / k: the matrix whose trace the truncated estimator targets."""
    return sum((-1) ** (k + 1) / k * p for k, p in enumerate(_matrix_powers(jac, n_terms), start=1))


def hutchinson_variance(matrix: torch.Tensor, probe: str = "gaussian") -> torch.Tensor:
    """Var(v^T A v) for one probe: 2||A_s||_F^2 (Gaussian), 2(||A_s||_F^2 - sum_i A_ii^2) (Rademacher).

    A_s = (A + A^T) / 2; works on a (d, d) matrix or a (batch, d, d) stack.
    """
    sym = (matrix + matrix.transpose(-1, -2)) / 2
    frob = sym.pow(2).sum((-1, -2))
    if probe == "gaussian":
        return 2 * frob
    if probe == "rademacher":
        return 2 * (frob - torch.diagonal(matrix, dim1=-2, dim2=-1).pow(2).sum(-1))
    raise ValueError(f"unknown probe {probe!r}: use 'gaussian' or 'rademacher'")


def estimator_draws(branch: nn.Module, x: torch.Tensor, n_terms: int, n_repeats: int, n_samples: int = 1,
                    probe: str = "gaussian", seed: int = 0) -> torch.Tensor:
    """``n_repeats`` independent draws of :func:`power_series_logdet` at every point: (n_repeats, batch).

    The batch is replicated n_repeats times so one call gives all draws (each row its own probe);
    the same seed gives the same probes for every n_terms (common random numbers).
    """
    if not isinstance(n_repeats, int) or n_repeats < 2:
        raise ValueError(f"n_repeats must be an integer >= 2 (a standard deviation needs two draws), "
                         f"got {n_repeats!r}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    replicated = x.repeat(n_repeats, *([1] * (x.dim() - 1)))
    with torch.no_grad():
        draws = power_series_logdet(branch, replicated, n_terms=n_terms, n_samples=n_samples,
                                    probe=probe, generator=generator)
    return draws.reshape(n_repeats, x.shape[0])


def _mean_error(draws: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """Mean of draw - exact over draws and points, and its standard error (draws are the independent unit)."""
    per_draw = (draws - exact).mean(1)
    return float(per_draw.mean()), float(per_draw.std() / math.sqrt(draws.shape[0]))


def spread(draws: torch.Tensor) -> float:
    """Root-mean-square over points of the draws' standard deviation, for (n_repeats, batch) draws."""
    return float(draws.var(0).mean().sqrt())


@dataclass
class BiasVarianceStudy:
    """Bias and spread of the truncated estimator against the number of terms, for one block (Fig. 4).

    Per-point quantities are averaged over the points: ``bias`` is the mean of draw - exact (with
    standard error ``bias_se``) and ``truncation_bias`` its exact value, mean S_n - ln det;
    ``abs_bias`` is mean |mean draw - exact| and ``truncation_error`` its exact value, mean
    |S_n - ln det|; ``std`` is the root-mean-square over points of the draws' standard deviation
    and ``std_theory`` its Hutchinson prediction.
    """

    c: float
    lipschitz: float
    lipschitz_certified: float
    dim: int
    probe: str
    n_samples: int
    n_repeats: int
    n_terms: np.ndarray
    exact: np.ndarray
    bias: np.ndarray
    bias_se: np.ndarray
    truncation_bias: np.ndarray
    abs_bias: np.ndarray
    truncation_error: np.ndarray
    std: np.ndarray
    std_theory: np.ndarray
    bound: np.ndarray

    def row(self, n_terms: int) -> dict[str, float]:
        """The study's numbers at one number of terms, as a dict (for printing)."""
        i = int(np.flatnonzero(self.n_terms == n_terms)[0])
        return {"n_terms": n_terms, "abs_bias": float(self.abs_bias[i]),
                "truncation_error": float(self.truncation_error[i]), "std": float(self.std[i]),
                "std_theory": float(self.std_theory[i]), "bound": float(self.bound[i])}


def bias_variance_study(branch: nn.Module, x: torch.Tensor, c: float, max_terms: int, n_repeats: int,
                        n_samples: int = 1, probe: str = "gaussian", seed: int = 0) -> BiasVarianceStudy:
    """Bias and standard deviation of :func:`power_series_logdet` for 1..max_terms terms (paper Fig. 4).

    The bound is Thm. 3 with L = the largest ||J_g(x)||_2 on the batch (every point's own
    error is bounded with its own norm, which is no larger).
    """
    if not isinstance(max_terms, int) or max_terms < 1:
        raise ValueError(f"max_terms must be a positive integer, got {max_terms!r}")
    lips = lipschitz_estimates(branch, x)
    jac = jacobian(branch, x).detach()
    exact = exact_logdet(branch, x).detach()
    partial = series_partial_sums(jac, max_terms)
    n_terms = np.arange(1, max_terms + 1)
    bias, bias_se, abs_bias, std, std_theory = [], [], [], [], []
    for n in n_terms:
        draws = estimator_draws(branch, x, int(n), n_repeats, n_samples, probe, seed)
        mean, se = _mean_error(draws, exact)
        bias.append(mean)
        bias_se.append(se)
        abs_bias.append(float((draws.mean(0) - exact).abs().mean()))
        std.append(spread(draws))
        variance = hutchinson_variance(series_matrix(jac, int(n)), probe) / n_samples
        std_theory.append(float(variance.mean().sqrt()))
    bound = [truncation_error_bound(min(lips["attained"], 1 - 1e-12), lips["dim"], int(n)) for n in n_terms]
    return BiasVarianceStudy(
        c=c, lipschitz=lips["attained"], lipschitz_certified=lips["certified"], dim=lips["dim"], probe=probe,
        n_samples=n_samples, n_repeats=n_repeats, n_terms=n_terms, exact=exact.cpu().numpy(),
        bias=np.array(bias), bias_se=np.array(bias_se), abs_bias=np.array(abs_bias),
        truncation_bias=(partial - exact[:, None]).mean(0).cpu().numpy(),
        truncation_error=(partial - exact[:, None]).abs().mean(0).cpu().numpy(),
        std=np.array(std), std_theory=np.array(std_theory), bound=np.array(bound))


def expected_terms(n_exact_terms: int = 2, distribution: str = "geometric", p: float = 0.5) -> float:
    """E[number of series terms] of the Russian-roulette estimator: n_exact + E[N]."""
    if distribution == "geometric":
        return n_exact_terms + (1 - p) / p  # P(N >= m) = (1-p)^m
    if distribution == "poisson":
        return n_exact_terms + p
    raise ValueError(f"unknown distribution {distribution!r}: use 'geometric' or 'poisson'")


def roulette_draws(branch: nn.Module, x: torch.Tensor, n_repeats: int, n_exact_terms: int = 2,
                   distribution: str = "geometric", p: float = 0.5, n_samples: int = 1,
                   probe: str = "gaussian", seed: int = 0) -> torch.Tensor:
    """``n_repeats`` draws of :func:`unbiased_logdet` at every point: (n_repeats, batch).

    One call per draw: the roulette draws one N per call, shared by the batch.
    """
    if not isinstance(n_repeats, int) or n_repeats < 2:
        raise ValueError(f"n_repeats must be an integer >= 2, got {n_repeats!r}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        draws = [unbiased_logdet(branch, x, n_exact_terms=n_exact_terms, distribution=distribution, p=p,
                                 n_samples=n_samples, probe=probe, generator=generator)
                 for _ in range(n_repeats)]
    return torch.stack(draws)


@dataclass
class RouletteStudy:
    """The unbiased estimator at one block: bias (should be ~0 within ``bias_se``), spread, mean cost."""

    c: float
    distribution: str
    p: float
    bias: float
    bias_se: float
    std: float
    expected_terms: float
    draws: np.ndarray
    exact: np.ndarray


def roulette_study(branch: nn.Module, x: torch.Tensor, c: float, n_repeats: int, n_exact_terms: int = 2,
                   distribution: str = "geometric", p: float = 0.5, probe: str = "gaussian",
                   seed: int = 0) -> RouletteStudy:
    """Bias (with its standard error), standard deviation and expected cost of :func:`unbiased_logdet`."""
    exact = exact_logdet(branch, x).detach()
    draws = roulette_draws(branch, x, n_repeats, n_exact_terms, distribution, p, probe=probe, seed=seed)
    bias, bias_se = _mean_error(draws, exact)
    return RouletteStudy(c=c, distribution=distribution, p=p, bias=bias, bias_se=bias_se, std=spread(draws),
                         expected_terms=expected_terms(n_exact_terms, distribution, p),
                         draws=draws.cpu().numpy(), exact=exact.cpu().numpy())


@contextlib.contextmanager
def count_saved_bytes():
    """Count the bytes autograd keeps for the backward pass (each storage once): yields a dict.

    A portable memory measure on CPU and GPU: ``counter["bytes"]`` after the block.
    """
    counter = {"bytes": 0, "tensors": 0}
    seen: set[int] = set()

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            counter["bytes"] += storage.nbytes()
            counter["tensors"] += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield counter


@contextlib.contextmanager
def _cpu_threads(n: int | None):
    """Run with n CPU threads (None: unchanged), restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gradient_cost(branch: nn.Module, x: torch.Tensor, n_terms: int, neumann_gradient: bool,
                  n_repeats: int = 3, threads: int | None = 1, seed: int = 0) -> dict[str, float]:
    """Seconds (fastest of n_repeats, after a warm-up) and saved bytes of the estimator's forward + backward.

    ``neumann_gradient=False`` backpropagates through all n_terms vector-Jacobian products
    (memory grows with n); ``True`` uses the Neumann-series gradient (Residual Flows), constant memory.
    On CPU the timing runs with ``threads`` threads (1: stable on a shared machine; None: unchanged).
    """
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive integer, got {n_repeats!r}")
    params = [p for p in branch.parameters() if p.requires_grad]
    seconds, saved = [], 0
    with _cpu_threads(threads if x.device.type == "cpu" else None):
        for i in range(n_repeats + 1):  # the first run is a warm-up
            generator = torch.Generator(device=x.device).manual_seed(seed + i)
            _synchronize(x.device)
            start = time.perf_counter()
            with count_saved_bytes() as counter:
                logdet = power_series_logdet(branch, x, n_terms=n_terms, neumann_gradient=neumann_gradient,
                                             generator=generator)
            torch.autograd.grad(logdet.sum(), params, allow_unused=True)  # the last bias has no effect
            _synchronize(x.device)
            seconds.append(time.perf_counter() - start)
            saved = counter["bytes"]
    return {"n_terms": n_terms, "neumann_gradient": neumann_gradient,
            "seconds": min(seconds[1:]), "saved_bytes": saved}
