"""Lesson 04's figures and widget panels (04_2d_densities)."""
from __future__ import annotations

import numpy as np

from ... import toy
from ..figures import COLORS, subplots

__all__ = ["TOY_MODEL_NAMES", "plot_toy_points", "plot_toy_density", "plot_toy_datasets", "plot_toy_comparison",
           "plot_nll_curves", "plot_estimator_comparison", "plot_toy_bench", "draw_toy_flow"]


TOY_MODEL_NAMES = {"iresnet": "i-ResNet flow", "coupling": "affine coupling"}


_TOY_COLORS = {"iresnet": COLORS["iresnet"], "coupling": COLORS["coupling"], "exact": COLORS["exact"],
               "series": COLORS["series"], "unbiased": COLORS["unbiased"]}


def _toy_axes(ax, title: str, lim: float, xlabel: bool = True, ylabel: bool = True) -> None:
    ax.set(title=title, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
           xlabel="$x_1$" if xlabel else "", ylabel="$x_2$" if ylabel else "")
    ax.grid(False)


def plot_toy_points(ax, points, title: str, lim: float = 4.5, **labels) -> None:
    """Points (data or model samples) as a 2D histogram on [-lim, lim]^2, the look of Fig. 2."""
    p = np.asarray(points)
    bins = int(np.clip(1.5 * np.sqrt(len(p)), 40, 120))  # finer bins for more points
    ax.hist2d(p[:, 0], p[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]], cmap="viridis", rasterized=True)
    _toy_axes(ax, title, lim, **labels)


def plot_toy_density(ax, log_p: np.ndarray, extent, title: str, **labels) -> None:
    """A model's density exp(log p(x)) on a grid (exact 2D log-det) as a heat map."""
    ax.imshow(np.exp(log_p), origin="lower", extent=extent, cmap="viridis", interpolation="bilinear")
    _toy_axes(ax, title, extent[1], **labels)


def _entropy_text(entropy) -> str:
    return "entropy n/a" if entropy is None else f"entropy {entropy:.3f} nats"


def plot_toy_datasets(data: dict, entropies: dict):
    """The toy data sets side by side, each titled with its true entropy (the floor for the test NLL)."""
    fig, axes = subplots(1, len(data), width=3.0, height=3.2, squeeze=False)
    for i, (ax, (name, points)) in enumerate(zip(axes[0], data.items())):
        plot_toy_points(ax, points, f"{name}\n{_entropy_text(entropies.get(name))}", ylabel=i == 0)
    fig.suptitle("training data (2D histograms of samples)", fontweight="bold")
    return fig


def plot_toy_comparison(data: dict, results: dict, models=("iresnet", "coupling")):
    """Fig. 2: per data set (rows) the data, then each model's density and samples by inverting the flow."""
    columns = [("data", None)] + [(kind, m) for m in models for kind in ("density", "samples")]
    fig, axes = subplots(len(data), len(columns), width=2.6, height=2.75, squeeze=False)
    for r, (name, points) in enumerate(data.items()):
        for c, (kind, model) in enumerate(columns):
            ax, labels = axes[r, c], dict(xlabel=r == len(data) - 1, ylabel=c == 0)
            if kind == "data":
                plot_toy_points(ax, points, f"{name}: data\n{_entropy_text(results[name, models[0]].entropy)}",
                                **labels)
                continue
            result = results[name, model]
            if kind == "density":
                title = f"{TOY_MODEL_NAMES[model]}\ntest NLL {result.test_nll:.3f}"
                plot_toy_density(ax, result.log_p_grid, result.extent, title, **labels)
            else:
                plot_toy_points(ax, result.samples, f"{TOY_MODEL_NAMES[model]}\nsamples (inverse)", **labels)
    fig.suptitle("density (exact 2D log-det) and samples of each model", fontweight="bold")
    return fig


def plot_nll_curves(ax, curves: dict, x: str = "step", entropy: float | None = None,
                    target: float | None = None, title: str = "test NLL during training",
                    colors: dict | None = None) -> None:
    """Test NLL (exact log-det) against training steps or seconds, one line per run; the entropy floor.

    A run's colour is ``colors[label]``, else the collection's colour for its label's first word.
    """
    if x not in ("step", "seconds"):
        raise ValueError(f"x must be 'step' or 'seconds', got {x!r}")
    for label, records in curves.items():
        xs = [r[x] for r in records]
        color = (colors or {}).get(label, _TOY_COLORS.get(label.split()[0]))
        ax.plot(xs, [r["test_nll"] for r in records], "o-", ms=3, lw=1.8, label=label, color=color)
    if entropy is not None:
        ax.axhline(entropy, color=COLORS["bound"], ls="--", lw=1, label=f"data entropy {entropy:.3f}")
    if target is not None:
        ax.axhline(target, color=COLORS["resnet"], ls=":", lw=1.2, label=f"target {target:.2f}")
    ax.set(title=title, xlabel="training step" if x == "step" else "training time (s)",
           ylabel="test NLL (nats)")
    ax.legend(fontsize="small")


def plot_estimator_comparison(results: dict, entropy: float | None = None):
    """Training with the exact log-det, the paper's series and the unbiased estimator: NLL and cost."""
    fig, axes = subplots(1, 2, width=4.8, height=3.6)
    curves = {f"{name} log-det": r.records for name, r in results.items()}
    plot_nll_curves(axes[0], curves, "step", entropy, title=f"{next(iter(results.values())).dataset}: "
                    "test NLL (exact) when trained with ...")
    names = list(results)
    ms = [1000 * results[n].seconds / max(results[n].records[-1]["step"], 1) for n in names]
    axes[1].bar(names, ms, color=[_TOY_COLORS[n] for n in names], width=0.55)
    axes[1].set(title="training cost", xlabel="log-det used for training", ylabel="ms per step")
    return fig


def plot_toy_bench(result: dict, target: float | None = None):
    """The toy benchmark (``toyflows.bench_main``): test NLL against training time, with the floors."""
    fig, ax = subplots(width=6.0, height=3.8)
    label = TOY_MODEL_NAMES["iresnet"]
    plot_nll_curves(ax, {label: result["records"]}, "seconds", result["entropy"], target,
                    title=f"{result['dataset']}: i-ResNet flow against the clock", colors={label: COLORS["iresnet"]})
    floor, entropy = result.get("true_nll"), result["entropy"]
    if floor is not None and (entropy is None or abs(floor - entropy) > 1e-3):  # differs from a Monte Carlo entropy
        ax.axhline(floor, color=COLORS["bound"], ls="-.", lw=1, label=f"true density on the test points {floor:.3f}")
        ax.legend(fontsize="small")
    return fig


def draw_toy_flow(cache, dataset: str, c: float, lim: float = 4.5):
    """Widget panel: data, learned density and samples of the i-ResNet flow with layer norms <= c.

    The flow comes from ``cache`` (a :class:`~iresnet_mini.lessons.nb04.toyflows.ToyFlowCache`): shipped
    (precomputed) or trained now; the readout says which.
    """
    result = cache.get(dataset, c)
    data = toy.sample(dataset, len(result.samples), seed=1)
    fig, axes = subplots(1, 3, width=2.75, height=3.0)
    plot_toy_points(axes[0], data, f"{dataset}: data", lim)
    plot_toy_density(axes[1], result.log_p_grid, result.extent, f"i-ResNet density, c = {result.coeff:.2f}",
                     ylabel=False)
    plot_toy_points(axes[2], result.samples, "samples (inverse flow)", lim, ylabel=False)
    numbers = {"data set": dataset, "c": result.coeff, "test NLL (nats)": result.test_nll,
               "data entropy (nats)": "n/a" if result.entropy is None else result.entropy,
               "weights": result.label}
    return fig, numbers
