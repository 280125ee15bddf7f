"""The invertible residual block F(x) = x + g(x) and its fixed-point inverse (paper Thm. 1, Alg. 1)."""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import logdet as _logdet
from .lipschitz import LipschitzConv2d, LipschitzLinear, get_activation

__all__ = [
    "mlp_branch", "conv_branch", "InvertibleResidualBlock", "InverseInfo",
    "InverseNotConvergedWarning", "fixed_point_inverse", "anderson_inverse", "INVERSE_METHODS",
]


def mlp_branch(dim: int, hidden: int, n_hidden_layers: int = 2, coeff: float | None = 0.9,
               activation="elu", n_power_iterations: int = 1) -> nn.Sequential:
    """g for vectors: Linear(dim, hidden) -> phi -> ... -> Linear(hidden, dim), each ||W|| <= c."""
    for name, value in (("dim", dim), ("hidden", hidden), ("n_hidden_layers", n_hidden_layers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    widths = [dim] + [hidden] * n_hidden_layers + [dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if i > 0:
            layers.append(get_activation(activation))
        layers.append(LipschitzLinear(a, b, coeff=coeff, n_power_iterations=n_power_iterations))
    return nn.Sequential(*layers)


CONV_BRANCH_LAYERS = 3  # convolutions in conv_branch: Lip(g) <= c^3


def conv_branch(channels: int, hidden_channels: int, coeff: float | None = 0.9, activation="elu",
                n_power_iterations: int = 1, preactivation: bool = False) -> nn.Sequential:
    """g for images: 3x3 conv -> phi -> 1x1 conv -> phi -> 3x3 conv (paper Sec. 4 / official code)."""
    for name, value in (("channels", channels), ("hidden_channels", hidden_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    kw = dict(coeff=coeff, n_power_iterations=n_power_iterations)
    layers: list[nn.Module] = [get_activation(activation)] if preactivation else []
    layers += [
        LipschitzConv2d(channels, hidden_channels, 3, **kw), get_activation(activation),
        LipschitzConv2d(hidden_channels, hidden_channels, 1, **kw), get_activation(activation),
        LipschitzConv2d(hidden_channels, channels, 3, **kw),
    ]
    return nn.Sequential(*layers)


class InverseNotConvergedWarning(RuntimeWarning):
    """The fixed-point inverse stopped at max_iter with a residual above the tolerance."""


@dataclass
class InverseInfo:
    """How an inversion went: iterations used, final residual max |y - F(x)|, converged or not, time."""

    iterations: int
    residual: float
    converged: bool
    seconds: float
    method: str
    history: list[float]


def _residual(step: torch.Tensor) -> float:
    return float(step.abs().max()) if step.numel() else 0.0


STALL_STEPS = 5  # an iteration whose step has not shrunk for this many iterations has stalled


def done(history: list[float], atol: float, floor: float = 0.0) -> bool:
    """Has an iteration with these step sizes converged? Its last step is at most ``atol``, or it is at
    most ``floor`` (the float precision of the iterates) and the last ``STALL_STEPS`` steps found no
    smaller one: rounding, not the map, now sets the step."""
    if not history or not math.isfinite(history[-1]):
        return False
    stalled = (len(history) > STALL_STEPS and history[-1] <= floor
               and min(history[-STALL_STEPS:]) >= min(history[:-STALL_STEPS]))
    return history[-1] <= atol or stalled


def fixed_point_inverse(g, y: torch.Tensor, max_iter: int = 100, atol: float = 1e-6, floor: float = 0.0):
    """Alg. 1: x_{k+1} = y - g(x_k), x_0 = y, until max |x_{k+1} - x_k| <= atol (or it stalls below
    ``floor``, see :func:`done`). Returns (x, history)."""
    x = y.clone()
    history = []
    for _ in range(max_iter):
        x_next = y - g(x)
        history.append(_residual(x_next - x))  # = max |y - F(x_k)|
        x = x_next
        if done(history, atol, floor):
            break
    return x, history


def anderson_inverse(g, y: torch.Tensor, max_iter: int = 100, atol: float = 1e-6, m: int = 5,
                     lam: float = 1e-8, beta: float = 1.0, floor: float = 0.0):
    """Anderson-accelerated fixed point of x = y - g(x): mixes the last m iterates per sample.

    Each step solves a small least-squares problem for the combination of the last m
    iterates with the smallest residual (regularised by lam relative to the residuals' scale).
    """
    batch = y.shape[0]
    f = lambda z: (y - g(z.view_as(y))).reshape(batch, -1)  # noqa: E731
    d = y[0].numel()
    X = y.new_zeros(batch, m, d)
    Fx = y.new_zeros(batch, m, d)
    X[:, 0] = y.reshape(batch, -1)
    Fx[:, 0] = f(X[:, 0])
    X[:, 1] = Fx[:, 0]
    Fx[:, 1] = f(X[:, 1])
    history = [_residual(Fx[:, 0] - X[:, 0]), _residual(Fx[:, 1] - X[:, 1])]
    H = y.new_zeros(batch, m + 1, m + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    rhs = y.new_zeros(batch, m + 1, 1)
    rhs[:, 0] = 1
    k = 1
    x_best = Fx[:, 1]
    while not done(history, atol, floor) and len(history) < max_iter:
        k += 1
        n = min(k, m)
        G = Fx[:, :n] - X[:, :n]
        gram = G @ G.transpose(1, 2)
        scale = gram.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-300)[:, None, None]
        H[:, 1:n + 1, 1:n + 1] = gram + lam * scale * torch.eye(n, dtype=y.dtype, device=y.device)
        alpha = torch.linalg.solve(H[:, :n + 1, :n + 1], rhs[:, :n + 1])[:, 1:n + 1, 0]
        new = beta * (alpha[:, None] @ Fx[:, :n])[:, 0] + (1 - beta) * (alpha[:, None] @ X[:, :n])[:, 0]
        X[:, k % m] = new
        Fx[:, k % m] = f(new)
        history.append(_residual(Fx[:, k % m] - X[:, k % m]))
        x_best = Fx[:, k % m]
    return x_best.view_as(y), history


INVERSE_METHODS = {"fixed_point": fixed_point_inverse, "anderson": anderson_inverse}


class InvertibleResidualBlock(nn.Module):
    """F(x) = x + g(x) with Lip(g) < 1: invertible (Thm. 1), inverted by fixed-point iteration (Alg. 1).

    ``estimator`` and ``estimator_kwargs`` choose how :meth:`forward_with_logdet` computes
    log det(I + J_g) by default: ``"exact"``, ``"series"`` (paper, biased) or ``"unbiased"``
    (Residual Flows' Russian roulette); see :mod:`iresnet_mini.logdet`.
    """

    PRECISION_ULPS = 4  # steps that stop shrinking below this many float spacings of max |y|: converged

    def __init__(self, branch: nn.Module, estimator: str = "series", **estimator_kwargs):
        super().__init__()
        self.branch = branch
        _logdet.get_estimator(estimator)  # validate the name early
        self.estimator = estimator
        self.estimator_kwargs = estimator_kwargs
        self.last_inverse_info: InverseInfo | None = None

    @staticmethod
    def _check_input(x: torch.Tensor, name: str = "x", finite: bool = False) -> None:
        """Type and shape (free: no tensor is read); with ``finite``, also NaN/inf (reads one value back)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{name} must have a batch dimension: shape (batch, ...), got {tuple(x.shape)}")
        if finite and not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) = x + g(x)."""
        return x + self.branch(x)

    def forward_with_logdet(self, x: torch.Tensor, estimator: str | None = None, **kwargs):
        """(F(x), log det(I + J_g(x)) per sample) with the chosen estimator (Sec. 3).

        Values are not checked for NaN here (that would stall a GPU at every block): the flows
        check their input once (``log_prob``).
        """
        self._check_input(x)
        name = estimator or self.estimator
        options = {**self.estimator_kwargs, **kwargs} if estimator is None else kwargs
        gx, logdet = _logdet.get_estimator(name)(self.branch, x, return_gx=True, **options)
        return x + gx, logdet

    @torch.no_grad()
    def inverse(self, y: torch.Tensor, max_iter: int = 100, atol: float | None = None,
                method: str = "fixed_point", return_info: bool = False, warn: bool = True):
        """x with F(x) = y by fixed-point iteration (Alg. 1) or Anderson acceleration.

        Stops when max |y - F(x_k)| <= atol (default 1e-6 in float64, 1e-5 otherwise), or, where y is so
        large that rounding alone leaves a bigger step, when the steps stop shrinking below
        ``PRECISION_ULPS`` units in the last place of max |y| (a trained CIFAR-10 classifier's features
        reach 8,000, where float32 numbers are 1e-3 apart): that is convergence to float precision.
        Warns (InverseNotConvergedWarning) when max_iter is reached first: then Lip(g) is probably >= 1.
        ``return_info`` also returns an :class:`InverseInfo`; the latest one is kept in
        ``self.last_inverse_info``.
        """
        self._check_input(y, "y", finite=True)
        if method not in INVERSE_METHODS:
            raise ValueError(f"unknown inverse method {method!r}: use one of {sorted(INVERSE_METHODS)}")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        if atol is None:
            atol = 1e-6 if y.dtype == torch.float64 else 1e-5
        floor = self.PRECISION_ULPS * torch.finfo(y.dtype).eps * _residual(y)
        was_training = self.training
        self.eval()  # no power iteration while inverting: g must stay the same function
        try:
            start = time.perf_counter()
            x, history = INVERSE_METHODS[method](self.branch, y, max_iter=max_iter, atol=atol, floor=floor)
            seconds = time.perf_counter() - start
        finally:
            self.train(was_training)
        residual = history[-1] if history else 0.0
        converged = done(history, atol, floor)
        info = InverseInfo(len(history), residual, converged, seconds, method, history)
        self.last_inverse_info = info
        if not converged and warn:
            warnings.warn(
                f"inverse did not converge: residual max|y - F(x)| = {residual:.3g} > atol = {atol:g} "
                f"after {len(history)} {method} iterations. Lip(g) is probably >= 1 (is the block "
                "constrained with coeff < 1, and has its power iteration run? see lipschitz.certify), "
                "or max_iter is too small.",
                InverseNotConvergedWarning, stacklevel=2,
            )
        return (x, info) if return_info else x
