"""ResNets as dynamics: folding vs bijective (paper Sec. 1, Fig. 1).

A stack of residual blocks x_{t+1} = x_t + g_t(x_t) is the explicit Euler discretisation
of dx/dt = g(x, t) with the step size h absorbed into g_t. A plain ResNet may let
trajectories cross and collapse (many inputs to one output); an i-ResNet, whose branches
have Lip(g_t) < 1, cannot (Thm. 1). This module builds such stacks for 1D and 2D toy
tasks, trains them, and *measures* the difference:

* :func:`count_crossings` - 1D: pairs of trajectories whose order flips between layers;
* :func:`layer_dets` / :func:`fold_fraction` - det(I + J_{g_t}) <= 0 along a path (a fold).

The widget's models: :func:`stack_for` gives the shipped, precomputed model of a setting on
the grid (every task, depth 1-10, the plain ResNet and c in :data:`GRID_C`; made by
:func:`precompute`, ``python -m iresnet_mini.lessons.precompute nb01-dynamics``), and trains
any other setting now. Each model says which it is.

Taught in ``notebooks/01_resnet_dynamics.ipynb``.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...blocks import InvertibleResidualBlock, mlp_branch
from ...lipschitz import certify, check_coeff
from ...logdet import jacobian
from .. import shipped

__all__ = [
    "TASKS", "DTYPE", "task_target", "task_dim", "sample_inputs", "grid_inputs", "residual_stack", "trajectory",
    "fit", "trained_stack", "layer_dets", "network_det", "fold_fraction", "count_crossings", "measure",
    "RECIPE", "GRID_C", "GRID_DEPTHS", "SHIPPED", "setting_key", "grid_settings", "Model", "stack_for", "precompute",
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


# How every toy model of notebook 01 is trained (the shipped grid and anything trained now).
# ReLU branches: the best increasing fit of |x| is piecewise linear (flat, then the diagonal),
# and a ReLU branch has a kink at any scale; a spectrally normalised ELU branch starts almost
# linear and takes several times as many steps to bend.
# Gradients clipped to norm 1: without it, deep plain ResNets (9-10 blocks) at this step size blow up
# or die (every ReLU off) in some runs.
RECIPE = dict(steps=600, hidden=16, n_train=256, lr=3e-2, clip=1.0, activation="relu", seed=0)


def residual_stack(dim: int, depth: int, hidden: int = RECIPE["hidden"], coeff: float | None = None,
                   n_hidden_layers: int = 1, activation=RECIPE["activation"],
                   n_power_iterations: int = 1) -> nn.Sequential:
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
def fit(stack: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int,
        lr: float = RECIPE["lr"], clip: float | None = RECIPE["clip"]) -> list[float]:
    """Full-batch Adam on the mean squared error, the learning rate decaying as a cosine to 0 and the
    gradient clipped to norm ``clip`` (None: not clipped); then certify the Lipschitz layers and switch to eval."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    opt = torch.optim.Adam(stack.parameters(), lr=lr)
    stack.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = (stack(x) - y).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(stack.parameters(), clip)
        opt.step()
        losses.append(float(loss.detach()))
    certify(stack)  # power iteration to tolerance: the eval-mode weights really have norm <= c
    stack.eval()
    return losses


@functools.lru_cache(maxsize=64)
def trained_stack(task: str, depth: int, coeff: float | None, steps: int = RECIPE["steps"],
                  hidden: int = RECIPE["hidden"], n_train: int = RECIPE["n_train"],
                  seed: int = RECIPE["seed"]) -> tuple[nn.Sequential, float]:
    """A stack trained now on a toy task (cached per setting); returns (stack, training MSE)."""
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


# --- the widget's grid of shipped models ------------------------------------------------------
SHIPPED = "nb01-dynamics"  # data/pretrained/lessons/nb01-dynamics.pt
GRID_C = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
GRID_DEPTHS = tuple(range(1, 11))
MEASURE_GRID = 41  # grid points per axis of the figures recorded for each shipped model


def setting_key(task: str, depth: int, coeff: float | None) -> str:
    """The name of one setting in the shipped grid, e.g. ``abs/T6/c0.9`` or ``fold/T3/plain``."""
    _task(task)
    return f"{task}/T{int(depth)}/" + ("plain" if coeff is None else f"c{float(coeff):g}")


def grid_settings() -> list[tuple[str, int, float | None]]:
    """Every (task, depth, coeff) of the shipped grid: all tasks, depths 1-10, plain and each c of GRID_C."""
    return [(task, depth, coeff) for task in TASKS for depth in GRID_DEPTHS for coeff in (None, *GRID_C)]


@dataclass
class Model:
    """A toy stack for one setting, and where it comes from: "shipped" (precomputed) or "trained now"."""

    stack: nn.Sequential
    source: str
    steps: int

    @property
    def label(self) -> str:
        return (f"precomputed (shipped, {self.steps} steps)" if self.source == "shipped"
                else f"trained now ({self.steps} steps)")


def _flatten(stack: nn.Sequential) -> tuple[torch.Tensor, list]:
    state = stack.state_dict()
    layout = [(name, list(t.shape)) for name, t in state.items()]
    return torch.cat([t.reshape(-1).to(DTYPE) for t in state.values()]), layout


def _unflatten(task: str, depth: int, coeff: float | None, flat: torch.Tensor, layout: list) -> nn.Sequential:
    stack = residual_stack(task_dim(task), depth, RECIPE["hidden"], coeff)
    state, offset = {}, 0
    for name, shape in layout:
        n = math.prod(shape)
        state[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    stack.load_state_dict(state)
    return stack.eval()


def _train_setting(setting: tuple) -> tuple[str, torch.Tensor, list, dict]:
    task, depth, coeff = setting
    flat, layout = _flatten(trained_stack(task, depth, coeff)[0])
    # the figures of the model as it will be loaded (the shipped numbers are re-checked by the tests)
    return setting_key(*setting), flat, layout, measure(_unflatten(task, depth, coeff, flat, layout), task,
                                                        MEASURE_GRID)


def precompute(workers: int = 1, settings=None) -> tuple[dict, dict]:
    """Train every setting of the grid with :data:`RECIPE` (``workers`` processes): (content, summary).

    ``content`` is what :func:`iresnet_mini.lessons.shipped.save` writes: per setting the
    parameters and buffers as one float64 vector with its layout, and the figures of
    :func:`measure`; ``summary`` the worst figures per task for the manifest.
    """
    settings = grid_settings() if settings is None else list(settings)
    rows = shipped.parallel_map(_train_setting, settings, workers, chunksize=4)
    models = {key: {"flat": flat, "layout": layout, "figures": figures} for key, flat, layout, figures in rows}
    summary = {}
    for task in TASKS:
        ours = [(k, m["figures"]) for k, m in models.items() if k.startswith(task + "/")]
        constrained = [f for k, f in ours if not k.endswith("/plain")]
        plain = [f for k, f in ours if k.endswith("/plain")]
        summary[task] = {
            "i-ResNet max fold fraction": max((f["fold fraction"] for f in constrained), default=None),
            "i-ResNet max crossings": max((f.get("crossings", 0) for f in constrained), default=None),
            "i-ResNet min det": min((f["min det"] for f in constrained), default=None),
            **({f"mse {k.split('/', 1)[1]}": f["mse"] for k, f in ours if k.split("/")[1] == "T6"
                and k.split("/")[2] in ("plain", "c0.9", "c0.5")}),
            "ResNet max mse": max((f["mse"] for f in plain), default=None),
        }
    content = {"recipe": dict(RECIPE), "grid_c": list(GRID_C), "grid_depths": list(GRID_DEPTHS),
               "measure_grid": MEASURE_GRID, "models": models}
    return content, summary


@functools.lru_cache(maxsize=128)
def stack_for(task: str, depth: int, coeff: float | None, steps: int | None = None) -> Model:
    """The model of one setting: the shipped one if the grid has it (and ``steps`` is None or the
    recipe's), else one trained now with ``steps`` (default: the recipe's) and kept for the session."""
    coeff = None if coeff is None else round(float(coeff), 4)
    key = setting_key(task, depth, coeff)
    if steps in (None, RECIPE["steps"]) and shipped.available(SHIPPED):
        content, _ = shipped.load(SHIPPED)
        if content["recipe"] != RECIPE:
            warnings.warn(f"the shipped notebook-01 models were trained with the recipe {content['recipe']}, not "
                          f"this code's {RECIPE}: training {key} now instead. Remake them with "
                          f"{shipped.remake_command(SHIPPED)}", stacklevel=2)
        elif key in content["models"]:
            found = content["models"][key]
            return Model(_unflatten(task, depth, coeff, found["flat"], found["layout"]), "shipped", RECIPE["steps"])
    steps = RECIPE["steps"] if steps is None else steps
    return Model(trained_stack(task, depth, coeff, steps)[0], "trained now", steps)
