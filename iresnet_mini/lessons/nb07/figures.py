"""Lesson 07's figures and widget panels (07_mnist_density)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..figures import COLORS, _integer_ticks, subplots
from ..nb05.figures import show_image

__all__ = ["image_grid", "plot_image_grid", "plot_preprocessing", "plot_bits_per_dim_table", "plot_bits_breakdown",
           "plot_density_reconstructions", "plot_density_estimators", "plot_density_history",
           "draw_density_estimator"]


_LAYER_COLORS = {"ActNorm": COLORS["model"], "residual": COLORS["iresnet"]}


def image_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] tiled into one (rows*H, nrow*W, C) array with white gaps."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, c))
    for i, image in enumerate(images.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()):
        top, left = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        grid[top:top + h, left:left + w] = image
    return grid


def plot_image_grid(images: torch.Tensor, nrow: int, title: str, ax=None, width: float = 5.0):
    """A grid of images in [0, 1] (grey or RGB) on one axes; returns the figure."""
    if ax is None:
        rows = -(-len(images) // nrow)
        _, ax = subplots(width=width, height=width * rows / nrow + 0.4)
    grid = image_grid(images, nrow)
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set(title=title, xticks=[], yticks=[])
    ax.grid(False)
    return ax.figure


def plot_preprocessing(x: torch.Tensor, alpha: float = 0.05):
    """Dequantised pixels x, the logit transform y = logit(alpha + (1 - 2 alpha) x), and its log-derivative."""
    s = alpha + (1 - 2 * alpha) * x.detach().cpu().double().ravel()
    y = torch.log(s) - torch.log1p(-s)
    fig, axes = subplots(1, 3, width=3.6, height=3.3)
    axes[0].hist(x.detach().cpu().ravel().numpy(), bins=64, color=COLORS["data"])
    axes[0].set(title="dequantised pixels x = (k + u) / 256", xlabel="x", ylabel="count (log scale)", yscale="log")
    axes[1].hist(y.numpy(), bins=64, color=COLORS["model"])
    axes[1].set(title=f"logit transform, alpha = {alpha:g}", xlabel="y", ylabel="count (log scale)", yscale="log")
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    sg = alpha + (1 - 2 * alpha) * grid
    axes[2].plot(grid.numpy(), (np.log(1 - 2 * alpha) - torch.log(sg) - torch.log1p(-sg)).numpy(),
                 color=COLORS["model"], label="logit transform")
    axes[2].axhline(0, color=COLORS["iresnet"], ls="--", label="x - 0.5 (volume preserving)")
    axes[2].set(title="log |dy/dx| per pixel", xlabel="x", ylabel="nats")
    axes[2].legend(fontsize="small")
    return fig


def plot_bits_per_dim_table(dataset: str, paper: dict, ours: dict):
    """Table 4 as bars: the paper's bits/dim per model beside ours (label -> bits/dim); lower is better."""
    labels = [f"{name} (paper)" for name in paper] + list(ours)
    values = list(paper.values()) + list(ours.values())
    colors = [COLORS["iresnet"] if name == "i-ResNet" else "#9aa5b1" for name in paper] + [COLORS["model"]] * len(ours)
    fig, ax = subplots(width=6.4, height=0.42 * len(labels) + 1.2)
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=colors, height=0.62)
    for yi, value in zip(y, values):
        ax.text(value, yi, f" {value:.2f}", va="center", fontsize="small")
    ax.set_yticks(y, labels)
    ax.set_xlim(0, max(values) * 1.18)
    ax.grid(axis="y", visible=False)
    ax.set(title=f"{dataset}: test bits/dim (Table 4; lower is better)", xlabel="bits per dimension")
    return fig


def plot_bits_breakdown(breakdown):
    """Where the bits/dim come from: each log-likelihood term (left) and every layer's log-det (right)."""
    fig, axes = subplots(1, 2, width=5.0, height=3.8, gridspec_kw={"width_ratios": [1, 1.3]})
    contributions = breakdown.contributions()
    names = list(contributions) + ["bits/dim"]
    values = [v + 0.0 for v in contributions.values()] + [breakdown.bits_per_dim]  # + 0.0: no "-0.000"
    colors = [COLORS["bound"], COLORS["data"], COLORS["model"], COLORS["iresnet"], COLORS["unbiased"],
              COLORS["resnet"]]
    y = np.arange(len(names))[::-1]
    axes[0].barh(y, values, color=colors, height=0.6)
    for yi, value in zip(y, values):
        axes[0].text(value, yi, f" {value:+.3f}" if yi else f" {value:.3f}", va="center", fontsize="small",
                     ha="left" if value >= 0 else "right")
    axes[0].axvline(0, color=COLORS["bound"], lw=0.8)
    axes[0].set_yticks(y, names)
    axes[0].set_xlim(min(0, min(values)) - 2.5, max(values) + 3)
    axes[0].grid(axis="y", visible=False)
    axes[0].set(title="the terms add up to the bits/dim", xlabel="contribution (bits/dim)")
    bits = np.array([breakdown.to_bits(v) for v in breakdown.per_layer_nats])
    kinds = ["ActNorm" if "ActNorm" in name else "residual" for name in breakdown.layer_names]
    for kind, color in _LAYER_COLORS.items():
        index = [i for i, k in enumerate(kinds) if k == kind]
        axes[1].bar(index, bits[index], color=color, width=0.8, label=f"{kind} layers")
    scale_starts = [i for i, name in enumerate(breakdown.layer_names) if name.endswith(" ActNorm 1")][1:]
    for i in scale_starts:
        axes[1].axvline(i - 0.5, color=COLORS["bound"], ls=":", lw=1)
    axes[1].axhline(0, color=COLORS["bound"], lw=0.8)
    axes[1].set(title="each layer's log-det (dotted: next scale)", xlabel="layer (forward order)",
                ylabel="contribution (bits/dim)")
    axes[1].legend(fontsize="small")
    return fig


def plot_density_reconstructions(x: torch.Tensor, result: dict, n: int = 8):
    """Test images, F^-1(F(x)) by the fixed-point inverse, |difference| (own scale), and iterations per block."""
    n = min(n, len(x))
    fig = plt.figure(figsize=(1.15 * n + 3.6, 3.9), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=[1.15 * n, 3.6])
    axes = left.subplots(3, n, squeeze=False)
    diff = (result["x_rec"][:n] - x[:n]).abs().mean(1).detach().cpu()
    vmax = max(float(diff.max()), 1e-12)
    for i in range(n):
        show_image(axes[0, i], x[i].detach().cpu())
        show_image(axes[1, i], result["x_rec"][i].detach().cpu())
        im = axes[2, i].imshow(diff[i].numpy(), cmap="magma", vmin=0, vmax=vmax)
        axes[2, i].set(xticks=[], yticks=[])
        axes[1, i].set_title(f"{float(result['errors'][i]):.0e}", fontsize="x-small", fontweight="normal")
    for row, name in enumerate(("test image x", "F^-1(F(x))", "|difference|")):
        axes[row, 0].set_ylabel(name, fontsize="small")
    left.colorbar(im, ax=axes[2, :], shrink=0.8, label="pixels", format="%.0e")
    left.suptitle(f"reconstructions (above each: its max error; all below {float(result['errors'].max()):.0e})",
                  fontsize="medium", fontweight="bold")
    ax = right.subplots(1, 1)
    iterations = result["iterations"]
    ax.bar(np.arange(1, len(iterations) + 1), iterations, color=COLORS["iresnet"], width=0.8)
    ax.set(title="fixed-point iterations per block", xlabel="residual block (forward order)",
           ylabel="iterations to 1e-5")
    _integer_ticks(ax)
    return fig


def plot_density_estimators(comparison):
    """bits/dim error of each log-det estimator against the exact value: bias (+-2 SE) and spread."""
    rows = comparison.rows()
    fig, axes = subplots(1, 2, width=4.9, height=3.9)
    labels = [r["estimator"].replace("series, ", "series\n").replace(" (roulette)", "\nroulette") for r in rows]
    colors = [COLORS["unbiased"] if "unbiased" in r["estimator"] else COLORS["series"] for r in rows]
    x = np.arange(len(rows))
    for xi, r, color in zip(x, rows, colors):
        axes[0].errorbar(xi, r["bias"], yerr=2 * r["bias_se"], fmt="o", color=color, capsize=4, ms=6)
    axes[0].axhline(0, color=COLORS["exact"], lw=1.2, label="exact log-det (error 0)")
    axes[0].set(title="bias: mean error +- 2 standard errors", ylabel="estimate - exact (bits/dim)")
    axes[1].bar(x, [r["std"] for r in rows], color=colors, width=0.6)
    axes[1].set(title="spread of one estimate", ylabel="standard deviation (bits/dim)")
    for ax in axes:
        ax.set_xticks(x, labels, fontsize="x-small")
        ax.grid(axis="x", visible=False)
    axes[0].legend(fontsize="small", loc="best")
    return fig


def plot_density_history(history: list, paper_bits: float | None = None):
    """Test bits/dim and training loss (bits/dim) after each epoch of a density model's run."""
    fig, ax = subplots(width=6.0, height=3.6)
    epochs = [r["epoch"] for r in history]
    style = "o-" if len(epochs) <= 20 else "-"  # markers only where they can be told apart
    ax.plot(epochs, [r["train_loss"] for r in history], style, color=COLORS["model"], label="training loss")
    ax.plot(epochs, [r["test_bits_per_dim"] for r in history], style, color=COLORS["iresnet"], label="test")
    if paper_bits is not None:
        ax.axhline(paper_bits, color=COLORS["bound"], ls="--", lw=1.2, label=f"paper's i-ResNet: {paper_bits:.2f}")
    ax.set(title="bits/dim after each epoch", xlabel="epoch", ylabel="bits per dimension")
    _integer_ticks(ax)
    ax.legend(fontsize="small")
    return fig


def draw_density_estimator(comparison, estimator: str):
    """Widget panel (notebook 07): the bits/dim errors of one log-det estimator's draws, against exact."""
    if estimator not in comparison.draws:
        raise ValueError(f"no estimator {estimator!r}: available are {', '.join(comparison.draws)}")
    row = next(r for r in comparison.rows() if r["estimator"] == estimator)
    errors = (comparison.draws[estimator] - comparison.exact).ravel()
    fig, ax = subplots(width=6.2, height=3.7)
    color = COLORS["unbiased"] if "unbiased" in estimator else COLORS["series"]
    ax.hist(errors, bins=min(40, max(8, len(errors) // 3)), color=color, alpha=0.8,
            label=f"{len(errors)} estimates")
    ax.axvline(0, color=COLORS["exact"], lw=2, label="exact log-det")
    ax.axvline(row["bias"], color=COLORS["resnet"], lw=2, ls="--", label=f"mean error {row['bias']:+.2e}")
    ax.set(title=f"{estimator}: error of bits/dim", xlabel="estimate - exact (bits/dim)", ylabel="count")
    ax.legend(fontsize="small", loc="upper left")
    numbers = {"estimator": estimator, "series terms per block": row["terms"], "bias (bits/dim)": row["bias"],
               "2 standard errors": 2 * row["bias_se"], "std of one estimate": row["std"]}
    return fig, numbers
