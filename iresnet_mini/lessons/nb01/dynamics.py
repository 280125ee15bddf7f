"""ResNets as dynamics: folding vs bijective (paper Sec. 1, Fig. 1).

A stack of residual blocks x_{t+1} = x_t + g_t(x_t) is the explicit Euler discretisation
of dx/dt = g(x, t) with the step size h absorbed into g_t. A plain ResNet may let
trajectories cross and collapse (many inputs to one output); an i-ResNet, whose branches
have Lip(g_t) < 1, cannot (Thm. 1). This module builds such stacks for 1D and 2D toy
tasks, trains them, and *measures* the difference:

* :func:`count_crossings` - 1D: pairs of trajectories whose order flips between layers;
* :func:`layer_dets` / :func:`fold_fraction` - det(I + J_{g_t}) <= 0 along a path (a fold).

Taught in ``notebooks/01_resnet_dynamics.ipynb``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn

from ...blocks import InvertibleResidualBlock, mlp_branch
from ...lipschitz import certify, check_coeff
from ...logdet import jacobian

__all__ = [
    "TASKS", "DTYPE", "task_target", "task_dim", "sample_inputs", "grid_inputs", "residual_stack", "trajectory",
    "fit", "trained_stack", "layer_dets", "network_det", "fold_fraction", "count_crossings", "measure",
]

# Each task maps inputs in [-2, 2]^d to a target that an orientation-preserving bijection
# cannot reach: "reverse" and "reflect" turn space over, "abs" and "fold" glue mirror images together.
TASKS = {
    "reverse": (1, lambda x: -x),
    "abs": (1, lambda x: x.abs()),
    "reflect": (2, lambda x: x * torch.tensor([-1.0, 1.0], dtype=x.dtype)),
    "fold": (2, lambda x: torch.stack([x[:, 0].abs(), x[:, 1]], 1)),
}
LIMIT = 2.0  # inputs live in [-LIMIT, LIMIT]^d
# Toy stacks work in float64: an i-ResNet that contracts distances by 1e-6 would, in float32,
# show rounding noise as fake crossings.
DTYPE = torch.float64


def _one_thread(fn):
    """Run fn on a single CPU thread: these models are tiny, and PyTorch's threaded matmul with a
    size-1 dimension (every 1D layer) can stall for milliseconds per call on a busy machine."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)
    return wrapper


def _task(task: str):
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: use one of {sorted(TASKS)}")
    return TASKS[task]


def task_dim(task: str) -> int:
    """The input dimension of a toy task (1 or 2)."""
    return _task(task)[0]


def task_target(task: str, x: torch.Tensor) -> torch.Tensor:
    """The regression target y(x) of a toy task, for inputs x of shape (n, d)."""
    dim, target = _task(task)
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"task {task!r} expects inputs of shape (n, {dim}), got {tuple(x.shape)}")
    return target(x)


def sample_inputs(task: str, n: int, seed: int = 0) -> torch.Tensor:
    """n training inputs, uniform in [-2, 2]^d, shape (n, d)."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, task_dim(task), generator=g, dtype=DTYPE) * 2 - 1) * LIMIT


def grid_inputs(dim: int, n: int, limit: float = LIMIT) -> torch.Tensor:
    """A regular grid on [-limit, limit]^dim: (n, 1) in 1D, (n * n, 2) in 2D (row-major, x1 fastest)."""
    if dim not in (1, 2):
        raise ValueError(f"grid_inputs supports dim 1 or 2, got {dim!r}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    ticks = torch.linspace(-limit, limit, n, dtype=DTYPE)
    if dim == 1:
        return ticks[:, None]
    x2, x1 = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([x1.reshape(-1), x2.reshape(-1)], 1)


BRANCH_LAYERS = 2  # linear layers per branch of residual_stack's default (one hidden layer)


def residual_stack(dim: int, depth: int, hidden: int = 16, coeff: float | None = None,
                   n_hidden_layers: int = 1, activation="elu", n_power_iterations: int = 1) -> nn.Sequential:
    """depth residual blocks x + g_t(x): a plain ResNet (coeff=None) or an i-ResNet with coefficient c = coeff.

    c bounds the spectral norm of each of a branch's m = n_hidden_layers + 1 linear layers, so the
    product bound gives Lip(g_t) <= c**m < 1 (Thm. 1); see :data:`BRANCH_LAYERS` for the default m.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    coeff = check_coeff(coeff)
    stack = nn.Sequential(*[
        InvertibleResidualBlock(
            mlp_branch(dim, hidden, n_hidden_layers, coeff=coeff, activation=activation,
                       n_power_iterations=n_power_iterations),
            estimator="exact")
        for _ in range(depth)
    ])
    return stack.to(DTYPE)


@_one_thread
@torch.no_grad()
def trajectory(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The states x_0 = x, x_1, ..., x_T through the blocks: shape (T + 1, n, d)."""
    states = [x]
    for block in stack:
        states.append(block(states[-1]))
    return torch.stack(states)


@_one_thread
def fit(stack: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 3e-2) -> list[float]:
    """Full-batch Adam on the mean squared error; then certify the Lipschitz layers and switch to eval."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    opt = torch.optim.Adam(stack.parameters(), lr=lr)
    stack.train()
    losses = []
    for _ in range(steps):
        loss = (stack(x) - y).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    certify(stack)  # power iteration to tolerance: the eval-mode weights really have norm <= c
    stack.eval()
    return losses


@functools.lru_cache(maxsize=64)
def trained_stack(task: str, depth: int, coeff: float | None, steps: int, hidden: int = 16,
                  n_train: int = 256, seed: int = 0) -> tuple[nn.Sequential, float]:
    """A stack trained on a toy task (cached per setting, for widgets); returns (stack, final MSE)."""
    torch.manual_seed(seed)
    stack = residual_stack(task_dim(task), depth, hidden, coeff)
    x = sample_inputs(task, n_train, seed)
    fit(stack, x, task_target(task, x), steps)
    with torch.no_grad():
        mse = float((stack(x) - task_target(task, x)).pow(2).sum(1).mean())
    return stack, mse


@_one_thread
def layer_dets(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """det(I + J_{g_t}(x_t)) of every layer map along each input's path: shape (T, n)."""
    states = trajectory(stack, x)
    dets = []
    for block, state in zip(stack, states[:-1]):
        jac = jacobian(block.branch, state).detach()
        eye = torch.eye(jac.shape[-1], dtype=jac.dtype)
        dets.append(torch.linalg.det(eye + jac))
    return torch.stack(dets)


def network_det(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """det J_F(x) of the whole stack by the chain rule: the product of the layer dets, shape (n,)."""
    return layer_dets(stack, x).prod(0)


def fold_fraction(stack: nn.Sequential, x: torch.Tensor) -> float:
    """Fraction of inputs whose path meets a fold: some layer with det(I + J_g) <= 0 (never for c < 1)."""
    return float((layer_dets(stack, x) <= 0).any(0).double().mean())


def count_crossings(states: torch.Tensor) -> int:
    """1D trajectories (T + 1, n) or (T + 1, n, 1): pairs (i, j) whose order flips between two layers.

    Summed over layers. An i-ResNet's 1D layer maps are strictly increasing (F' >= 1 - Lip(g) > 0),
    so it has none (Thm. 1).
    """
    if states.dim() == 3:
        if states.shape[-1] != 1:
            raise ValueError(f"count_crossings counts order flips of 1D states; got d = {states.shape[-1]} "
                             "(in 2D use fold_fraction: det(I + J_g) <= 0 marks a fold)")
        states = states[..., 0]
    if states.dim() != 2 or states.shape[0] < 2:
        raise ValueError(f"expected states of shape (T + 1, n) with T >= 1, got {tuple(states.shape)}")
    diff = states[:, :, None] - states[:, None, :]  # (T + 1, n, n)
    flips = (diff[:-1] * diff[1:]) < 0
    return int(flips.sum()) // 2  # each unordered pair appears twice


def measure(stack: nn.Sequential, task: str, n_grid: int) -> dict:
    """The numbers notebook 01 reports for a stack: fit, folds, smallest layer det, 1D crossings."""
    dim = task_dim(task)
    x = grid_inputs(dim, n_grid)
    states = trajectory(stack, x)
    dets = layer_dets(stack, x)
    numbers = {"mse": float((states[-1] - task_target(task, x)).pow(2).sum(1).mean()),
               "fold fraction": float((dets <= 0).any(0).double().mean()),
               "min det": float(dets.min())}
    if dim == 1:
        numbers["crossings"] = count_crossings(states)
    return numbers
