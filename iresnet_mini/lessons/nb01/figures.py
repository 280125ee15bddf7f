"""Lesson 01's figures and widget panels (01_resnet_dynamics)."""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from ... import lipschitz
from ...config import size
from ..figures import COLORS, subplots
from . import dynamics

__all__ = ["model_label", "plot_trajectories_1d", "plot_map_1d", "plot_deformed_grid", "plot_grid_through_depth",
           "plot_orientation_map", "plot_dynamics", "plot_layer_folds", "draw_dynamics"]


def model_label(coeff: float | None, layers: int = dynamics.BRANCH_LAYERS) -> str:
    """'ResNet' for an unconstrained stack, 'i-ResNet (c = ..., Lip(g) <= ...)' for layers with norm <= c."""
    if coeff is None:
        return "ResNet"
    return f"i-ResNet (c = {coeff:.2f}, Lip(g) ≤ {coeff ** layers:.2f})"


def _model_color(coeff: float | None) -> str:
    return COLORS["resnet"] if coeff is None else COLORS["iresnet"]


def _input_colors(values: np.ndarray):
    """Colours by input value (blue = left/low, red = right/high), the same in every dynamics panel."""
    norm = mpl.colors.Normalize(values.min(), values.max())
    return plt.get_cmap("coolwarm")(norm(values))


def plot_trajectories_1d(ax, states: torch.Tensor, title: str, n_lines: int = 25):
    """1D states (T + 1, n, 1) against the layer, one line per input coloured by its start (Fig. 1)."""
    s = states[..., 0].numpy()
    keep = np.unique(np.linspace(0, s.shape[1] - 1, min(n_lines, s.shape[1])).round().astype(int))
    colors = _input_colors(s[0])
    for i in keep:
        ax.plot(np.arange(s.shape[0]), s[:, i], color=colors[i], lw=1.3, alpha=0.9)
    ax.set(title=title, xlabel="layer t", ylabel="state $x_t$")
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))


def _shade_spans(ax, x: np.ndarray, mask: np.ndarray, label: str):
    """Shade the x-ranges (x sorted) where ``mask`` holds."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    half = (x[1] - x[0]) / 2
    for k, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
        ax.axvspan(x[a] - half, x[b - 1] + half, color=COLORS["resnet"], alpha=0.12, lw=0,
                   label=label if k == 0 else None)


def plot_map_1d(ax, stack, task: str, n_grid: int, coeff: float | None):
    """The learned map x -> F(x) against the target; shaded where F'(x) <= 0 (the map folds back)."""
    x = dynamics.grid_inputs(1, n_grid)
    y = dynamics.trajectory(stack, x)[-1]
    xs = x[:, 0].numpy()
    _shade_spans(ax, xs, (dynamics.network_det(stack, x) <= 0).numpy(), "$F'(x) \\leq 0$")
    ax.plot(xs, dynamics.task_target(task, x)[:, 0].numpy(), "--", color=COLORS["bound"], lw=1.5, label="target")
    ax.plot(xs, y[:, 0].numpy(), color=_model_color(coeff), lw=2, label=model_label(coeff))
    ax.set(title="the whole map $x_0 \\to x_T$", xlabel="input $x_0$", ylabel="output $x_T$")
    ax.legend(fontsize="small", loc="best")


def plot_deformed_grid(ax, stack, coeff: float | None, layer: int | None = None, n_lines: int = 11):
    """2D: the image of a grid after ``layer`` blocks (default: all); vertical lines coloured by their x1."""
    layer = len(stack) if layer is None else layer
    ticks = torch.linspace(-dynamics.LIMIT, dynamics.LIMIT, n_lines, dtype=dynamics.DTYPE)
    fine = torch.linspace(-dynamics.LIMIT, dynamics.LIMIT, 120, dtype=dynamics.DTYPE)
    line_colors = _input_colors(ticks.numpy())
    for i, t in enumerate(ticks):
        vertical = torch.stack([torch.full_like(fine, t), fine], 1)  # x1 = t
        horizontal = torch.stack([fine, torch.full_like(fine, t)], 1)
        for pts, color, lw, z in ((horizontal, "0.7", 0.8, 1), (vertical, line_colors[i], 1.4, 2)):
            out = dynamics.trajectory(stack, pts)[layer].numpy()
            ax.plot(out[:, 0], out[:, 1], color=color, lw=lw, zorder=z)
    box = dynamics.LIMIT * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]])
    ax.plot(box[:, 0], box[:, 1], color=COLORS["bound"], lw=0.8, ls=":", zorder=0)  # the input square
    ax.set(title=f"{model_label(coeff)}: grid after layer {layer}", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.grid(False)


def plot_grid_through_depth(stacks: dict, layers=None):
    """2D: the grid after each of ``layers`` (default 0..T) blocks, one row per model ({coeff: stack})."""
    depth = max(len(stack) for stack in stacks.values())
    layers = list(range(depth + 1)) if layers is None else list(layers)
    fig, axes = subplots(len(stacks), len(layers), width=2.1, height=2.4, squeeze=False)
    for row, (coeff, stack) in zip(axes, stacks.items()):
        for ax, layer in zip(row, layers):
            plot_deformed_grid(ax, stack, coeff, layer)
            ax.set_title(f"layer {layer}", fontsize="small")
            ax.set(xlabel="", ylabel="")
            ax.tick_params(labelsize="x-small")
        row[0].set_ylabel(model_label(coeff), fontsize="small")
    fig.suptitle("the grid through depth (vertical lines coloured by their input $x_1$)",
                 fontsize="medium", fontweight="bold")
    return fig


def _grid_image(ax, values: np.ndarray, n_grid: int, norm, cmap: str = "RdBu"):
    """Show values on the input grid [-2, 2]^2 with a zero contour (where the sign changes)."""
    extent = (-dynamics.LIMIT, dynamics.LIMIT, -dynamics.LIMIT, dynamics.LIMIT)
    image = ax.imshow(values, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest")
    if (values <= 0).any() and (values > 0).any():
        ticks = np.linspace(-dynamics.LIMIT, dynamics.LIMIT, n_grid)
        ax.contour(ticks, ticks, values, levels=[0.0], colors="k", linewidths=1)
    ax.grid(False)
    return image


def plot_orientation_map(ax, stack, n_grid: int):
    """2D: det J_F(x) of the whole stack on the input grid (red: <= 0, F reverses orientation or folds)."""
    x = dynamics.grid_inputs(2, n_grid)
    det = dynamics.network_det(stack, x).reshape(n_grid, n_grid).numpy()
    lim = max(float(np.abs(det).max()), 1.0)
    image = _grid_image(ax, det, n_grid, mpl.colors.SymLogNorm(linthresh=1e-2, vmin=-lim, vmax=lim))
    ax.figure.colorbar(image, ax=ax, shrink=0.85, label="det $J_F(x)$ (symlog)")
    ax.set(title=f"det $J_F \\leq 0$ on {100 * float((det <= 0).mean()):.0f}% of inputs",
           xlabel="input $x_1$", ylabel="input $x_2$")


def plot_dynamics(stacks: dict, task: str, n_grid: int):
    """One row per model ({coeff: stack}): 1D trajectories and map, or 2D grid and orientation map (Fig. 1)."""
    dim = dynamics.task_dim(task)
    fig, axes = subplots(len(stacks), 2, width=4.6, height=3.9, squeeze=False)
    for row, (coeff, stack) in zip(axes, stacks.items()):
        if dim == 1:
            states = dynamics.trajectory(stack, dynamics.grid_inputs(1, n_grid))
            title = f"{model_label(coeff)}: {dynamics.count_crossings(states)} crossings"
            plot_trajectories_1d(row[0], states, title)
            plot_map_1d(row[1], stack, task, n_grid, coeff)
        else:
            plot_deformed_grid(row[0], stack, coeff)
            plot_orientation_map(row[1], stack, n_grid)
    return fig


def plot_layer_folds(stacks: dict, n_grid: int):
    """2D: where each layer folds, det(I + J_{g_t}(x_t)) <= 0 (red), over the inputs; one row per model."""
    depth = max(len(stack) for stack in stacks.values())
    fig, axes = subplots(len(stacks), depth, width=2.1, height=2.3, squeeze=False, sharex=True, sharey=True)
    x = dynamics.grid_inputs(2, n_grid)
    cmap = mpl.colors.ListedColormap([COLORS["resnet"], "#dbe9f1"])
    norm = mpl.colors.BoundaryNorm([-np.inf, 0.0, np.inf], 2)
    for row, (coeff, stack) in zip(axes, stacks.items()):
        dets = dynamics.layer_dets(stack, x).reshape(len(stack), n_grid, n_grid).numpy()
        for t, ax in enumerate(row):
            if t >= len(stack):
                ax.set_visible(False)
                continue
            _grid_image(ax, dets[t], n_grid, norm, cmap)
            ax.set_title(f"layer {t + 1}: {100 * float((dets[t] <= 0).mean()):.0f}% fold", fontsize="small")
        row[0].set_ylabel(f"{model_label(coeff)}\ninput $x_2$", fontsize="small")
    for ax in axes[-1]:
        ax.set_xlabel("input $x_1$", fontsize="small")
    fig.suptitle("where each layer folds: det$(I + J_{g_t}) \\leq 0$ (red) at the point's state $x_{t-1}$",
                 fontsize="medium", fontweight="bold")
    return fig


def draw_dynamics(c: float, unconstrained: bool, depth: int = 6, task: str = "abs",
                  steps: int | None = None, n_grid: int | None = None):
    """Widget panel (notebook 01): a ResNet or an i-ResNet with coefficient c; draw and measure it.

    c bounds each of a branch's two layers, so Lip(g_t) <= c^2. The model is the shipped,
    precomputed one where the grid has the setting (``dynamics.stack_for``), else trained now
    (``steps``: default the recipe's); the readout says which.

    Returns (figure, numbers) with the crossings (1D), fold fraction, smallest layer det and fit.
    """
    coeff = None if unconstrained else round(float(c), 2)
    n_grid = size("nb01.grid") if n_grid is None else n_grid
    model = dynamics.stack_for(task, depth, coeff, steps)
    fig = plot_dynamics({coeff: model.stack}, task, n_grid)
    numbers = {"model": model_label(coeff), **dynamics.measure(model.stack, task, n_grid)}
    dim = dynamics.task_dim(task)
    numbers["max Lip(g_t)"] = max(lipschitz.lipschitz_upper_bound(b.branch, (dim,)) for b in model.stack)
    numbers["weights"] = model.label
    return fig, numbers
