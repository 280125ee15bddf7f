"""Estimators of log det(I + J_g(x)), side by side (paper Sec. 3; Residual Flows Sec. 3).

All are plain functions of a residual branch ``g`` and a batch ``x`` and return one value per
sample:

* :func:`exact_logdet` - the full Jacobian by ``torch.func`` (small dimensions; the reference);
* :func:`power_series_logdet` - the paper's truncated series
  ln det(I + J) = sum_{k>=1} (-1)^(k+1) tr(J^k) / k with Hutchinson's trace estimator (biased);
* :func:`unbiased_logdet` - Residual Flows' Russian-roulette estimator (unbiased).

The two stochastic estimators take ``neumann_gradient=True`` to get their gradient from the
Neumann series of (I + J)^{-1} instead of backpropagating through every term, so that
memory stays constant in the number of terms.
"""
from __future__ import annotations

import inspect
import math
import random
import weakref

import torch
import torch.nn as nn
from torch.func import jacrev, vmap

from .lipschitz import frozen_power_iteration

__all__ = [
    "jacobian", "exact_logdet", "power_series_logdet", "unbiased_logdet",
    "truncation_error_bound", "lipschitz_bound", "roulette_p", "ESTIMATORS", "get_estimator", "PROBES",
    "draw_probe", "OPTION_TYPES", "estimator_options", "check_estimator_options",
]

PROBES = ("gaussian", "rademacher")
DISTRIBUTIONS = ("geometric", "poisson")  # of the roulette's number of extra terms
MAX_EXACT_DIM = 4096


def draw_probe(x: torch.Tensor, probe: str = "gaussian", generator: torch.Generator | None = None):
    """A Hutchinson probe v with E[v v^T] = I, shaped like x (Gaussian or Rademacher)."""
    # Without a generator, the *_like forms: torch.compile traces them for inputs of any shape.
    if probe == "gaussian":
        if generator is None:
            return torch.randn_like(x)
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if probe == "rademacher":
        bits = (torch.randint_like(x, 0, 2) if generator is None
                else torch.randint(0, 2, x.shape, generator=generator, device=x.device))
        return (2 * bits - 1).to(x.dtype)
    raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")


def _sum_per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def jacobian(branch, x: torch.Tensor) -> torch.Tensor:
    """J_g(x) per sample as a (batch, d, d) matrix, d = x[0].numel(), by torch.func (vmap + jacrev)."""
    d = x[0].numel()
    if d > MAX_EXACT_DIM:
        raise ValueError(f"the exact Jacobian needs d <= {MAX_EXACT_DIM}, got d = {d}; use an estimator")

    def g_single(xi):
        return branch(xi.unsqueeze(0)).squeeze(0)

    with frozen_power_iteration():
        jac = vmap(jacrev(g_single))(x)
    return jac.reshape(x.shape[0], d, d)


def exact_logdet(branch, x: torch.Tensor, return_gx: bool = False):
    """log |det(I + J_g(x))| per sample from the full Jacobian: the reference for small d."""
    gx = branch(x)  # the real forward (runs the power iteration in training mode)
    jac = jacobian(branch, x)
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    # one matrix at a time: MKL's batched LU fails (and hangs) for d > 128 after torch.set_num_threads(>= 2)
    logdet = torch.stack([torch.linalg.slogdet(eye + j).logabsdet for j in jac])
    return (gx, logdet) if return_gx else logdet


def _series(branch, x, weights, n_samples, probe, neumann_gradient, generator):
    """Shared core: sum_k weights[k-1] (-1)^(k+1)/k v^T J^k v, averaged over n_samples probes."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    want_grad = torch.is_grad_enabled()
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        gx = branch(xg)
        total = 0.0
        for _ in range(n_samples):
            v = draw_probe(x, probe, generator)
            w = v
            value = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            # a^T = sum_k weight_k (-1)^(k+1) v^T J^(k-1): the Neumann-series row vector.
            a = weights[0] * v if neumann_gradient else None
            for k, weight in enumerate(weights, start=1):
                create = want_grad and not neumann_gradient
                (w,) = torch.autograd.grad(gx, xg, w, create_graph=create, retain_graph=True)
                value = value + weight * (-1) ** (k + 1) / k * _sum_per_sample(w * v)
                if neumann_gradient and k < len(weights):
                    a = a + weights[k] * (-1) ** (k + 2) * w
            if neumann_gradient and want_grad:
                (aj,) = torch.autograd.grad(gx, xg, a.detach(), create_graph=True, retain_graph=True)
                surrogate = _sum_per_sample(aj * v)
                value = value.detach() + surrogate - surrogate.detach()
            total = total + value
    logdet = total / n_samples
    if not want_grad:
        return gx.detach(), logdet.detach()
    return gx, logdet


def power_series_logdet(branch, x: torch.Tensor, n_terms: int = 5, n_samples: int = 1,
                        probe: str = "gaussian", neumann_gradient: bool = False,
                        generator: torch.Generator | None = None, return_gx: bool = False):
    """The paper's estimator (Sec. 3, Eq. 5): the series truncated after n_terms, traces by Hutchinson.

    Biased by at most :func:`truncation_error_bound`; differentiable (set ``neumann_gradient``
    for the memory-saving Neumann-series gradient).
    """
    if not isinstance(n_terms, int) or n_terms < 1:
        raise ValueError(f"n_terms must be a positive integer, got {n_terms!r}")
    gx, logdet = _series(branch, x, [1.0] * n_terms, n_samples, probe, neumann_gradient, generator)
    return (gx, logdet) if return_gx else logdet


# Host-side random streams for the roulette's term counts, one per torch generator (seeded from it):
# drawing a count then never reads a device tensor back, so the estimator never stalls a GPU.
_COUNT_STREAMS: "weakref.WeakKeyDictionary[torch.Generator, random.Random]" = weakref.WeakKeyDictionary()


def _count_stream(generator: torch.Generator | None) -> random.Random:
    if generator is None:
        return random  # the module-level stream (random.random), seeded by config.seed_everything
    if generator not in _COUNT_STREAMS:
        _COUNT_STREAMS[generator] = random.Random(generator.initial_seed())
    return _COUNT_STREAMS[generator]


def lipschitz_bound(branch) -> float | None:
    """Lip(g) <= the product of the layers' coefficients c when every linear layer of the branch is
    constrained (activations 1-Lipschitz, Sec. 2); None when some layer is not."""
    layers = [m for m in branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers or any(getattr(m, "coeff", None) is None for m in layers):
        return None
    return math.prod(m.coeff for m in layers)


def roulette_p(lipschitz: float | None) -> float:
    """A geometric roulette's p whose estimate has finite variance for branches with Lip(g) <= lipschitz.

    Term k of the series is at most ~L^k in size and is reweighted by 1 / P(N >= k) = (1 - p)^-k,
    so the second moment is a series in L^2 / (1 - p): finite only when p < 1 - L^2 (Residual Flows'
    p = 0.5 fails for the conv branches' L = 0.9^3 = 0.73). We take p = (1 - L^2) / 2, halfway to that
    limit (ratio 2 L^2 / (1 + L^2) < 1), at an expected (1 + L^2) / (1 - L^2) extra terms. A Poisson
    count is no cure: its survival function falls faster than any geometric, so 1 / P(N >= k)
    outgrows every L^k and its variance is infinite for any L > 0. Without a bound: p = 0.5.
    """
    if lipschitz is None:
        return 0.5
    if not 0 <= lipschitz < 1:
        raise ValueError(f"a roulette with finite variance needs Lip(g) < 1, got {lipschitz!r}")
    return (1.0 - lipschitz ** 2) / 2


def _roulette_weights(n_exact_terms, distribution, p, generator):
    """Russian roulette: draw N on the host, return weights 1 / P(N >= k - n_exact) for the terms computed."""
    stream = _count_stream(generator)
    if distribution == "geometric":
        if not 0.0 < p < 1.0:
            raise ValueError(f"geometric p must be in (0, 1), got {p!r}")
        u = 1.0 - stream.random()  # in (0, 1]: never log(0), whose ~1e300 weights overflowed to inf * 0 = NaN
        n_extra = int(math.floor(math.log(u) / math.log1p(-p)))  # P(N >= m) = (1-p)^m

        def survival(m):
            return (1.0 - p) ** m
    elif distribution == "poisson":
        if not p > 0:
            raise ValueError(f"poisson rate must be > 0, got {p!r}")
        n_extra, threshold, cumulative, pmf = 0, stream.random(), math.exp(-p), math.exp(-p)
        while threshold > cumulative and n_extra < 1000:  # inversion of the Poisson distribution function
            n_extra += 1
            pmf *= p / n_extra
            cumulative += pmf

        def survival(m):  # P(N >= m) for N ~ Poisson(p)
            return 1.0 - sum(math.exp(-p) * p ** j / math.factorial(j) for j in range(m))
    else:
        raise ValueError(f"unknown distribution {distribution!r}: use 'geometric' or 'poisson'")
    return [1.0] * n_exact_terms + [1.0 / survival(m) for m in range(1, n_extra + 1)]


def unbiased_logdet(branch, x: torch.Tensor, n_exact_terms: int = 2, distribution: str = "geometric",
                    p: float | None = None, n_samples: int = 1, probe: str = "gaussian",
                    neumann_gradient: bool = False, generator: torch.Generator | None = None,
                    return_gx: bool = False):
    """Residual Flows' unbiased Russian-roulette estimator of the full series.

    Always computes ``n_exact_terms``; then draws N ~ Geometric(p) (P(N >= m) = (1-p)^m) or
    Poisson(p) and adds terms n_exact+1 .. n_exact+N, term k reweighted by 1 / P(N >= k - n_exact).
    The expectation over N and the probe is exactly log det(I + J_g). ``p=None`` takes the geometric
    p that keeps the variance finite for this branch's Lipschitz bound (:func:`roulette_p`). The
    count is drawn on the host (from a Python stream seeded by ``generator``), never from a device.
    """
    if not isinstance(n_exact_terms, int) or n_exact_terms < 1:
        raise ValueError(f"n_exact_terms must be a positive integer, got {n_exact_terms!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}: use 'geometric' or 'poisson'")
    if p is None:
        if distribution != "geometric":
            raise ValueError(f"give the rate p of the {distribution} count")
        p = roulette_p(lipschitz_bound(branch))
    weights = _roulette_weights(n_exact_terms, distribution, p, generator)
    gx, logdet = _series(branch, x, weights, n_samples, probe, neumann_gradient, generator)
    return (gx, logdet) if return_gx else logdet


def truncation_error_bound(lipschitz: float, dim: int, n_terms: int) -> float:
    """Paper Thm. 3: |ln det(I+J) - first n terms| <= -d (ln(1 - L) + sum_{k<=n} L^k / k)."""
    if not 0 <= lipschitz < 1:
        raise ValueError(f"the bound needs 0 <= Lip(g) < 1, got {lipschitz!r}")
    if not isinstance(dim, int) or dim < 1 or not isinstance(n_terms, int) or n_terms < 0:
        raise ValueError(f"dim must be >= 1 and n_terms >= 0 integers, got dim={dim!r}, n_terms={n_terms!r}")
    partial = sum(lipschitz ** k / k for k in range(1, n_terms + 1))
    return max(0.0, -dim * (math.log1p(-lipschitz) + partial))


ESTIMATORS = {"exact": exact_logdet, "series": power_series_logdet, "unbiased": unbiased_logdet}


def get_estimator(name: str):
    """An estimator function by name: 'exact', 'series' (paper) or 'unbiased' (Residual Flows)."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown log-det estimator {name!r}: use one of {sorted(ESTIMATORS)}") from None


# The settings an estimator takes from a configuration (its other arguments come from the call),
# with the type each is written in on a command line.
OPTION_TYPES = {"n_terms": int, "n_exact_terms": int, "n_samples": int, "p": float, "distribution": str,
                "probe": str, "neumann_gradient": bool}


def estimator_options(name: str) -> tuple[str, ...]:
    """The settings estimator ``name`` takes from a configuration, e.g. ('n_terms', 'n_samples', ...)."""
    parameters = inspect.signature(get_estimator(name)).parameters
    return tuple(key for key in parameters if key in OPTION_TYPES)


def check_estimator_options(name: str, options: dict) -> None:
    """A clear error when ``options`` has a setting that estimator ``name`` does not take."""
    allowed = estimator_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no settings"
        raise ValueError(f"estimator {name!r} does not take {', '.join(unknown)}: it takes {takes}")

