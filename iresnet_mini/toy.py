"""2D toy data sets with the names and scaling of the FFJORD / Residual Flows toy code.

``sample(name, n, seed)`` returns an (n, 2) float32 tensor. Where the density is known in
closed form (``8gaussians``, ``checkerboard``) or as the Gaussian blur of evenly spread arcs
that the sampler converges to (``moons``, ``circles``), :func:`log_density` evaluates it and
:func:`entropy` gives the data's true entropy in nats, the floor for any model's test NLL.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["DATASETS", "sample", "log_density", "entropy", "HAS_DENSITY"]

# 8 gaussians: centres on a circle of radius 4/sqrt(2) = 2.83, std 0.5/1.414 = 0.354
_GAUSS_SCALE = 4.0 / 1.414
_GAUSS_STD = 0.5 / 1.414
_GAUSS_CENTRES = np.array([(1, 0), (-1, 0), (0, 1), (0, -1),
                           (1 / np.sqrt(2), 1 / np.sqrt(2)), (1 / np.sqrt(2), -1 / np.sqrt(2)),
                           (-1 / np.sqrt(2), 1 / np.sqrt(2)), (-1 / np.sqrt(2), -1 / np.sqrt(2))]) * _GAUSS_SCALE


def _eight_gaussians(rng, n):
    idx = rng.integers(0, 8, n)
    return _GAUSS_CENTRES[idx] + rng.standard_normal((n, 2)) * _GAUSS_STD


def _checkerboard(rng, n):
    x1 = rng.random(n) * 4 - 2
    x2_ = rng.random(n) - rng.integers(0, 2, n) * 2
    x2 = x2_ + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1) * 2


def _moons(rng, n, noise=0.1):
    n_out, n_in = n // 2, n - n // 2
    outer = np.stack([np.cos(np.linspace(0, np.pi, n_out)), np.sin(np.linspace(0, np.pi, n_out))], 1)
    inner = np.stack([1 - np.cos(np.linspace(0, np.pi, n_in)), 1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5], 1)
    x = np.concatenate([outer, inner])[rng.permutation(n)]
    x = x + rng.standard_normal(x.shape) * noise
    return x * 2 + np.array([-1.0, -0.2])


def _circles(rng, n, factor=0.5, noise=0.08):
    n_out, n_in = n // 2, n - n // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        factor * np.stack([np.cos(t_in), np.sin(t_in)], 1)])[rng.permutation(n)]
    x = x + rng.standard_normal(x.shape) * noise
    return x * 3


def _pinwheel(rng, n, radial_std=0.3, tangential_std=0.1, num_classes=5, rate=0.25):
    per_class = int(math.ceil(n / num_classes))
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.standard_normal((num_classes * per_class, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), per_class)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    x = 2 * np.einsum("ti,tij->tj", features, rotations)
    return x[rng.permutation(len(x))][:n]


def _two_spirals(rng, n):
    m = n // 2
    t = np.sqrt(rng.random((m, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.random((m, 1)) * 0.5
    d1y = np.sin(t) * t + rng.random((m, 1)) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    x = x + rng.standard_normal(x.shape) * 0.1
    if len(x) < n:  # odd n
        x = np.vstack([x, x[:1]])
    return x[rng.permutation(n)]


def _swissroll(rng, n, noise=1.0):
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    return x / 5.0


DATASETS = {
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "circles": _circles,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "swissroll": _swissroll,
}


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown toy data set {name!r}: use one of {sorted(DATASETS)}")


def sample(name: str, n: int, seed: int | np.random.Generator | None = 0) -> torch.Tensor:
    """n points of a toy data set as an (n, 2) float32 tensor; seeded (an int or a numpy Generator)."""
    _check_name(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return torch.as_tensor(DATASETS[name](rng, int(n)), dtype=torch.float32)


def _log_density_8gaussians(x):
    d2 = ((x[:, None, :] - torch.as_tensor(_GAUSS_CENTRES, dtype=x.dtype)) ** 2).sum(-1)
    log_comp = -d2 / (2 * _GAUSS_STD**2) - math.log(2 * math.pi * _GAUSS_STD**2)
    return torch.logsumexp(log_comp, 1) - math.log(8)


def _log_density_checkerboard(x):
    # uniform on the 8 squares of side 2 in [-4, 4]^2 where floor(x1/2) + floor(x2/2) is even
    inside = (x.abs() < 4).all(1)
    even = (torch.floor(x[:, 0] / 2) + torch.floor(x[:, 1] / 2)) % 2 == 0
    return torch.where(inside & even, torch.full_like(x[:, 0], -math.log(32.0)),
                       torch.full_like(x[:, 0], -math.inf))


def _log_density_on_curves(x, curves, std, chunk=4096):
    """Equal-weight curves, each a fine even grid of centres, blurred by N(0, std^2 I): moons, circles."""
    log_norm = -math.log(2 * math.pi * std**2)
    out = []
    for xb in x.split(chunk):
        per_curve = [torch.logsumexp(-((xb[:, None] - c) ** 2).sum(-1) / (2 * std**2), 1) - math.log(len(c))
                     for c in curves]
        out.append(torch.logsumexp(torch.stack(per_curve), 0) - math.log(len(curves)) + log_norm)
    return torch.cat(out)


def _arc(t, centre=(0.0, 0.0), radius=1.0, sign=1.0):
    return torch.stack([centre[0] + sign * radius * torch.cos(t), centre[1] + sign * radius * torch.sin(t)], 1)


def _log_density_moons(x, n=500):
    # the generating process of _moons with n -> infinity: two half circles, noise 0.1, then *2 + shift
    t = torch.linspace(0, math.pi, n, dtype=torch.float64)
    shift = torch.tensor([-1.0, -0.2], dtype=torch.float64)
    curves = [_arc(t) * 2 + shift, _arc(t, (1.0, 0.5), sign=-1.0) * 2 + shift]
    return _log_density_on_curves(x, curves, 0.1 * 2)


def _log_density_circles(x, n=500):
    # the generating process of _circles with n -> infinity: radii 1 and 0.5, noise 0.08, then *3
    t = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1]
    return _log_density_on_curves(x, [_arc(t) * 3, _arc(t, radius=0.5) * 3], 0.08 * 3)


_LOG_DENSITIES = {"8gaussians": _log_density_8gaussians, "checkerboard": _log_density_checkerboard,
                  "moons": _log_density_moons, "circles": _log_density_circles}
HAS_DENSITY = tuple(_LOG_DENSITIES)


def log_density(name: str, x: torch.Tensor) -> torch.Tensor:
    """The true log-density of a toy data set at points x (n, 2), where it is known in closed form."""
    _check_name(name)
    if name not in _LOG_DENSITIES:
        raise ValueError(f"no closed-form density for {name!r}; known for {list(HAS_DENSITY)}")
    return _LOG_DENSITIES[name](torch.as_tensor(x, dtype=torch.float64))


def entropy(name: str, n: int = 200_000, seed: int = 12345) -> float:
    """The data's true entropy H = -E[log p(x)] in nats (exact or by Monte Carlo on n points)."""
    if name == "checkerboard":
        return math.log(32.0)
    return float(-log_density(name, sample(name, n, seed)).mean())
