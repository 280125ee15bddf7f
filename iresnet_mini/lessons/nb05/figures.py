"""Lesson 05's figures and widget panels (05_mnist_classification)."""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..figures import COLORS, _integer_ticks, subplots

__all__ = ["show_image", "model_color", "curve_colors", "plot_table2", "plot_reconstructions", "plot_layer_norms",
           "plot_training_curves", "draw_classifier"]


def model_color(coeff) -> str:
    """The vanilla baseline in the ResNet colour, i-ResNets in the i-ResNet colour."""
    return COLORS["resnet"] if coeff is None else COLORS["iresnet"]


def curve_colors(labels) -> dict:
    """label -> colour for several classifiers in one figure: "vanilla" in the ResNet colour, "coupling" in
    the coupling colour, the i-ResNets ("c=0.9", ...) in shades of the i-ResNet colour, the largest c darkest."""
    fixed = {"vanilla": COLORS["resnet"], "coupling": COLORS["coupling"]}
    iresnets = sorted((label for label in labels if label not in fixed), key=_coeff_of, reverse=True)
    dark, white = np.array(mpl.colors.to_rgb(COLORS["iresnet"])), np.ones(3)
    shades = {label: mpl.colors.to_hex(dark + (white - dark) * 0.55 * k / max(1, len(iresnets) - 1))
              for k, label in enumerate(iresnets)}
    return {label: fixed.get(label, shades.get(label)) for label in labels}


def _coeff_of(label: str) -> float:
    try:
        return float(label.removeprefix("c="))
    except ValueError:
        return 0.0


def plot_table2(rows: list, dataset: str, ours_key: str = "our error % (full test set)", ours_name: str = "ours"):
    """Paper Table 2 beside ours (``ours_key`` of each row): test error (%) per model, grouped bars."""
    fig, ax = subplots(1, 1, width=7.0, height=3.6)
    labels = [r["model"] for r in rows]
    pos = np.arange(len(rows))
    for offset, key, color, name in ((-0.2, "paper error %", COLORS["bound"], "paper (Table 2)"),
                                     (0.2, ours_key, COLORS["model"], ours_name)):
        values = [r.get(key) for r in rows]
        shown = [(p, v) for p, v in zip(pos, values) if v is not None]
        if not shown:
            continue
        bars = ax.bar([p + offset for p, _ in shown], [v for _, v in shown], width=0.38, color=color, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    ax.set_xticks(pos, labels)
    ax.set(title=f"{dataset.upper()} test error: the paper's Table 2 and our runs",
           xlabel="model (Lipschitz coefficient c of every layer, or vanilla = no constraint)",
           ylabel="test error (%)")
    _log_scale_if_wide(ax, [r[k] for r in rows for k in ("paper error %", ours_key) if r.get(k) is not None])
    ax.margins(y=0.15)
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def show_image(ax, image: torch.Tensor) -> None:
    """A (C, H, W) image in [0, 1] (grey or RGB), clipped; a non-finite one as a grey square marked 'NaN'.

    An image far outside [0, 1] (a failed reconstruction) is shown min-max rescaled, marked 'rescaled'.
    """
    if not torch.isfinite(image).all():
        ax.imshow(np.full(image.shape[1:], 0.5), cmap="gray", vmin=0, vmax=1)
        ax.text(0.5, 0.5, "NaN", ha="center", va="center", transform=ax.transAxes, color=COLORS["resnet"],
                fontweight="bold")
        image = None
    elif image.min() < -1 or image.max() > 2:
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-30)
        ax.text(0.5, 0.04, "rescaled", ha="center", va="bottom", transform=ax.transAxes, fontsize="xx-small",
                color=COLORS["resnet"], backgroundcolor="white")
    if image is None:
        pass
    elif image.shape[0] == 1:
        ax.imshow(image[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _reconstruction_rows(axes, result: dict, n: int) -> None:
    """Three rows of axes: test images, their reconstructions F^-1(F(x)), and |difference| x 10."""
    images, recs = result["images"][:n], result["reconstructions"][:n]
    for i in range(n):
        show_image(axes[0, i], images[i])
        show_image(axes[1, i], recs[i])
        show_image(axes[2, i], ((recs[i] - images[i]).abs() * 10).mean(0, keepdim=True))
        error = float(result["pixel_errors"][i])
        axes[1, i].set_title("diverged" if not np.isfinite(error) else f"{error:.0e}", fontsize="x-small",
                             fontweight="normal", color=COLORS["resnet"] if error > 1e-2 else COLORS["bound"])
    for row, name in enumerate(("test image x", "F^-1(F(x))", "|diff| x 10")):
        axes[row, 0].set_ylabel(name, fontsize="small")


def plot_reconstructions(results: list, n: int = 8):
    """Paper Fig. 3: test images, their reconstructions from the features, and the difference, per model."""
    fig = plt.figure(figsize=(1.1 * n, 3.5 * len(results)), constrained_layout=True)
    subfigs = np.atleast_1d(fig.subfigures(len(results), 1))
    for sub, result in zip(subfigs, results):
        axes = sub.subplots(3, n, squeeze=False)
        _reconstruction_rows(axes, result, n)
        error = result["max_pixel_error"]
        status = ("inverse converged" if result["converged"] else "inverse FAILED") + (
            f", max pixel error {error:.1e}" if np.isfinite(error) else ", the iteration diverged")
        sub.suptitle(f"{result['label']}: {status} (above each reconstruction: its max error)",
                     fontsize="medium", fontweight="bold", color=model_color(result["coeff"]))
    return fig


def _log_scale_if_wide(ax, values) -> None:
    """A log y-axis when the values span more than a factor 20 (and all are positive)."""
    values = [v for v in values if np.isfinite(v)]
    if min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")


def _layer_norm_axes(ax, result: dict) -> None:
    norms = result["norms"]
    index = np.arange(len(norms))
    for kernel, marker in ((3, "o"), (1, "s")):
        pick = [i for i, row in enumerate(norms) if row["kernel"] == kernel]
        ax.plot(index[pick], [norms[i]["norm"] for i in pick], marker, ls="none", ms=5,
                color=model_color(result["coeff"]), label=f"{kernel}x{kernel} convolution")
    if result["coeff"] is not None:
        ax.axhline(result["coeff"], color=COLORS["iresnet"], ls="--", lw=1.2, label=f"c = {result['coeff']:g}")
    ax.axhline(1.0, color=COLORS["bound"], ls=":", lw=1.2, label="1 (Thm. 1 needs Lip(g) < 1)")
    ax.set(xlabel="convolution (block by block, input to output)", ylabel="operator norm ||W||")
    _log_scale_if_wide(ax, [row["norm"] for row in norms] + [1.0])
    ax.set_ylim(0, None) if ax.get_yscale() == "linear" else None
    ax.legend(fontsize="x-small", loc="best")


def _branch_bound_axes(ax, result: dict) -> None:
    bounds = result["branch_bounds"]
    blocks = np.arange(len(bounds))
    ax.bar(blocks, bounds, color=model_color(result["coeff"]), alpha=0.8)
    ax.axhline(1.0, color=COLORS["bound"], ls=":", lw=1.2)
    ax.annotate("Lip(g) = 1", (1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                textcoords="offset points", ha="right", va="bottom", fontsize="x-small", color=COLORS["bound"])
    ax.set(xlabel="residual block", ylabel="Lip(g) <= product of the 3 layer norms")
    _log_scale_if_wide(ax, bounds + [1.0])
    ax.set_ylim(0, None) if ax.get_yscale() == "linear" else None
    _integer_ticks(ax)


def plot_layer_norms(result: dict):
    """The certificate: every convolution's operator norm vs c (left), each branch's Lip(g) bound (right)."""
    fig, axes = subplots(1, 2, width=5.0, height=3.6)
    _layer_norm_axes(axes[0], result)
    axes[0].set_title(f"{result['label']}: layer norms ({result['norms'][0]['method']})")
    _branch_bound_axes(axes[1], result)
    axes[1].set_title(f"{result['label']}: branch bounds, largest {max(result['branch_bounds']):.3g}")
    return fig


def plot_training_curves(histories: dict):
    """Test accuracy (and, dashed, the accuracy on the epoch's augmented training batches) and training loss
    after each epoch, one line per model (label -> metrics.jsonl records)."""
    fig, axes = subplots(1, 2, width=4.8, height=3.6)
    colors = curve_colors(list(histories))
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        color = colors[name]
        style = "o-" if len(epochs) <= 20 else "-"  # markers only where they can be told apart
        axes[0].plot(epochs, [100 * r["test_accuracy"] for r in history], style, color=color, label=f"{name}, test")
        if all("train_accuracy" in r for r in history):
            axes[0].plot(epochs, [100 * r["train_accuracy"] for r in history], "--", color=color, alpha=0.7,
                         label=f"{name}, training batches")
        axes[1].plot(epochs, [r["train_loss"] for r in history], style, color=color, label=name)
    axes[0].set(title="accuracy after each epoch", xlabel="epoch", ylabel="accuracy (%)")
    axes[1].set(title="training loss (mean over the epoch)", xlabel="epoch", ylabel="cross-entropy")
    for ax in axes:
        _integer_ticks(ax)
    axes[0].legend(fontsize="small", loc="lower right")
    return fig


def draw_classifier(c: str, results: dict, n: int = 6):
    """Widget panel (notebooks 05-06): one classifier's reconstructions and layer norms, picked by c.

    ``results`` maps a label ``c`` ("c=0.9", "vanilla") to :func:`classification.examine`'s
    dict. Returns (figure, numbers for the readout).
    """
    if c not in results:
        raise ValueError(f"no trained classifier {c!r}: available are {', '.join(results)}")
    result = results[c]
    fig = plt.figure(figsize=(10, 4.4), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=[1.25, 1])
    _reconstruction_rows(left.subplots(3, n, squeeze=False), result, n)
    left.suptitle(f"{result['label']}: reconstructions F^-1(F(x))", fontsize="medium", fontweight="bold",
                  color=model_color(result["coeff"]))
    ax = right.subplots(1, 1)
    _layer_norm_axes(ax, result)
    ax.set_title(f"{result['label']}: layer norms")
    numbers = {"model": result["label"], f"accuracy (first {result['n_test']} test images)": result["accuracy"],
               "max reconstruction error": result["max_pixel_error"], "inverse converged": result["converged"],
               "largest layer norm": max(row["norm"] for row in result["norms"]),
               "largest Lip(g) bound": max(result["branch_bounds"])}
    return fig, numbers
