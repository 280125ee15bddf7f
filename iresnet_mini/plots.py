"""One plotting theme for the whole collection, and the figures the notebooks share.

Call :func:`set_theme` once in a notebook's setup cell. Colours are fixed per concept, so
that "ResNet" (unconstrained) and "i-ResNet" look the same in every notebook.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from . import logdet, logdet_study

__all__ = ["COLORS", "set_theme", "subplots", "save"]

COLORS = {
    "resnet": "#d1495b",     # unconstrained / vanilla
    "iresnet": "#00798c",    # Lipschitz-constrained
    "data": "#30638e",
    "model": "#edae49",
    "bound": "#3d3d3d",
    "exact": "#3d3d3d",
    "series": "#00798c",
    "unbiased": "#8e5572",
    "coupling": "#66a182",
}


def set_theme(context: str = "notebook") -> None:
    """The collection's theme: seaborn whitegrid, a colour-blind-safe palette, readable sizes."""
    sns.set_theme(context=context, style="whitegrid", palette="colorblind")
    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 150, "figure.autolayout": False,
        "axes.titlesize": "medium", "axes.titleweight": "bold", "axes.labelsize": "medium",
        "legend.frameon": False, "image.cmap": "viridis",
        "axes.spines.top": False, "axes.spines.right": False,
    })


def subplots(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.6, **kwargs):
    """plt.subplots with a size per panel and constrained layout."""
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)


def save(fig, path: str | Path) -> Path:
    """Save a figure as PNG (creating folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


# --- notebook 03: the log-determinant (estimators' bias, variance and cost) -----------------
__all__ += ["c_colors", "plot_jacobian_spectrum", "plot_partial_sums", "plot_bias_variance",
            "plot_probe_comparison", "plot_roulette_vs_series", "plot_gradient_cost", "draw_logdet_estimator"]


def c_colors(cs) -> dict:
    """One colour per Lipschitz coefficient c, light (small c) to dark (c near 1)."""
    palette = sns.color_palette("crest", len(cs))
    return {c: palette[i] for i, c in enumerate(sorted(cs))}


def _integer_ticks(ax) -> None:
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))


def plot_jacobian_spectrum(eigenvalues: dict, layers: int = 2):
    """Eigenvalues of J_g (left, inside |lambda| <= c^layers) and of I + J_g (right, in Re > 0): det(I + J_g) > 0.

    ``eigenvalues`` maps a coefficient c to eigenvalues of branches whose ``layers`` layers have norm <= c.
    """
    fig, axes = subplots(1, 2, width=4.4, height=4.6)
    colors = c_colors(list(eigenvalues))
    theta = np.linspace(0, 2 * np.pi, 400)
    for c, lam in eigenvalues.items():
        lam = np.asarray(lam).ravel()
        for ax, shift in zip(axes, (0.0, 1.0)):
            ax.scatter(lam.real + shift, lam.imag, s=9, alpha=0.6, color=colors[c], label=f"c = {c:g}")
            radius = c ** layers
            ax.plot(shift + radius * np.cos(theta), radius * np.sin(theta), color=colors[c], lw=1)
    axes[0].plot(np.cos(theta), np.sin(theta), color=COLORS["bound"], lw=1, ls="--", label="unit circle")
    re_zero = axes[1].axvline(0, color=COLORS["resnet"], lw=1.2, ls="--", label="Re = 0 (det could vanish)")
    axes[1].scatter([0], [0], marker="x", color=COLORS["resnet"], zorder=3)
    axes[0].set(title=rf"eigenvalues $\lambda$ of $J_g(x)$; circles $|\lambda| = c^{layers}$", xlabel=r"Re $\lambda$",
                ylabel=r"Im $\lambda$", xlim=(-1.25, 1.25))
    axes[1].set(title=r"eigenvalues $1 + \lambda$ of $I + J_g(x)$", xlabel="real part", ylabel="imaginary part",
                xlim=(-0.3, 2.2))
    for ax in axes:
        ax.set(aspect="equal", ylim=(-1.25, 1.25))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles + [re_zero], labels + [re_zero.get_label()], loc="outside lower center", ncol=5,
               fontsize="small")
    return fig


def plot_partial_sums(partial_sums: dict, exact: dict):
    """S_n = sum_{k<=n} (-1)^(k+1) tr(J^k)/k against n for one point, per c, with the exact log-det."""
    fig, ax = subplots(width=7.4, height=3.8)
    colors = c_colors(list(partial_sums))
    for c, sums in partial_sums.items():
        sums = np.asarray(sums)
        ax.plot(np.arange(1, len(sums) + 1), sums, "o-", ms=3.5, color=colors[c], label=f"$S_n$, c = {c:g}")
        ax.axhline(float(exact[c]), color=colors[c], ls="--", lw=1)
    ax.plot([], [], ls="--", color=COLORS["exact"], lw=1, label="exact ln det\n(one line per c)")
    ax.set(title=r"The power series converges to $\ln\det(I + J_g)$, slower as $c \to 1$",
           xlabel="number of terms n", ylabel=r"partial sum $S_n$ (nats)")
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_bias_variance(studies: list):
    """Paper Fig. 4: bias and standard deviation of the truncated estimator vs terms, one panel per c."""
    fig, axes = subplots(1, len(studies), width=4.2, height=4.4, sharey=True, squeeze=False)
    for ax, s in zip(axes[0], studies):
        floor = s.std * np.sqrt(2 / np.pi / s.n_repeats)  # E|mean of n_repeats draws - its expectation|
        ax.semilogy(s.n_terms, s.bound, ls="--", color=COLORS["bound"], label="bound (Thm. 3)")
        ax.semilogy(s.n_terms, s.truncation_error, "-", color=COLORS["series"], label="|bias|, exact")
        ax.semilogy(s.n_terms, s.abs_bias, "o", ms=4, mfc="none", color=COLORS["series"],
                    label=f"|bias|, measured from {s.n_repeats} draws")
        ax.semilogy(s.n_terms, floor, ":", color=COLORS["series"], label="noise floor of the measurement")
        ax.semilogy(s.n_terms, s.std, "-", color=COLORS["unbiased"], lw=2, label="std of one estimate")
        ax.set(title=f"c = {s.c:g} (||J_g(x)|| ≤ {s.lipschitz:.2f}, d = {s.dim})", xlabel="number of terms n")
        _integer_ticks(ax)
    axes[0, 0].set_ylabel("log-det error (nats)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize="small")
    return fig


def plot_probe_comparison(studies: dict):
    """Std of the estimate vs terms for Gaussian and Rademacher probes: measured (dots) and theory (lines)."""
    fig, ax = subplots(width=7.4, height=3.9)
    cs = sorted({s.c for group in studies.values() for s in group})
    colors = c_colors(cs)
    styles = {"gaussian": ("-", "o"), "rademacher": ("--", "s")}
    for probe, group in studies.items():
        line, marker = styles[probe]
        for s in group:
            ax.plot(s.n_terms, s.std_theory, line, color=colors[s.c], lw=1.2)
            ax.plot(s.n_terms, s.std, marker, ms=3.5, mfc="none", color=colors[s.c])
    for c in cs:
        ax.plot([], [], color=colors[c], lw=4, label=f"c = {c:g}")
    for probe, (line, marker) in styles.items():
        ax.plot([], [], line, marker=marker, mfc="none", color=COLORS["exact"],
                label=f"{probe}: measured\n(line: theory)")
    ax.set(title="Rademacher probes have the smaller variance", xlabel="number of terms n",
           ylabel="std of one estimate (nats)")
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_roulette_vs_series(series, roulettes: list, series_errors, series_terms: int):
    """Russian roulette vs truncation at one c: bias against (expected) cost, and the error histograms.

    ``series`` is a BiasVarianceStudy, ``roulettes`` RouletteStudy results at the same c, and
    ``series_errors`` single-estimate errors (estimate - exact) of the series with ``series_terms``
    terms. The histograms are not clipped and use a log density axis, to show the tails.
    """
    colors = [COLORS["unbiased"], COLORS["model"], COLORS["data"], COLORS["coupling"]]
    fig, axes = subplots(1, 2, width=5.0, height=4.0)
    ax = axes[0]
    ax.axhline(0, color=COLORS["exact"], lw=1)
    ax.plot(series.n_terms, series.truncation_bias, "-", color=COLORS["series"], label="series: bias, exact")
    ax.errorbar(series.n_terms, series.bias, yerr=2 * series.bias_se, fmt="o", ms=3.5, mfc="none",
                color=COLORS["series"], capsize=2, label="series: measured (± 2 s.e.)")
    for r, color in zip(roulettes, colors):
        ax.errorbar([r.expected_terms], [r.bias], yerr=[2 * r.bias_se], fmt="D", ms=7, capsize=3, color=color,
                    label=f"roulette, {r.distribution} p = {r.p:g}")
    right = max(10.5, max(r.expected_terms for r in roulettes) + 1)
    ax.set(title=f"bias at c = {series.c:g}: truncation vs roulette", xlabel="(expected) number of terms",
           ylabel="mean estimate - exact (nats)", xlim=(0.5, right))
    _integer_ticks(ax)
    ax.legend(fontsize="small")
    ax = axes[1]
    errors = {f"series, {series_terms} terms": (np.ravel(series_errors), COLORS["series"])}
    errors.update({f"roulette, p = {r.p:g}": (np.ravel(r.draws - r.exact), color)
                   for r, color in zip(roulettes, colors)})
    pooled = np.concatenate([e for e, _ in errors.values()])
    bins = np.linspace(pooled.min(), pooled.max(), 80)
    for label, (e, color) in errors.items():
        ax.hist(e, bins=bins, histtype="step", lw=1.5, density=True, log=True, color=color,
                label=f"{label}: std {e.std():.2f}, max |error| {np.abs(e).max():.0f}")
    ax.axvline(0, color=COLORS["exact"], lw=1)
    ax.set(title="errors of single estimates (log density)", xlabel="estimate - exact ln det (nats)",
           ylabel="density")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.17))
    return fig


def plot_gradient_cost(rows: list):
    """Time and saved-for-backward memory of the estimator's gradient vs terms: backprop vs Neumann."""
    fig, axes = subplots(1, 2, width=4.4, height=3.7)
    for neumann, label, color in ((False, "backprop through all terms", COLORS["resnet"]),
                                  (True, "Neumann-series gradient", COLORS["iresnet"])):
        chosen = [r for r in rows if r["neumann_gradient"] == neumann]
        n = [r["n_terms"] for r in chosen]
        axes[0].plot(n, [1e3 * r["seconds"] for r in chosen], "o-", color=color, label=label)
        axes[1].plot(n, [r["saved_bytes"] / 2**20 for r in chosen], "o-", color=color, label=label)
    axes[0].set(title="time of forward + backward", xlabel="number of terms n", ylabel="milliseconds")
    axes[1].set(title="memory kept for backward", xlabel="number of terms n", ylabel="MiB saved by autograd")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.set_xticks(sorted({r["n_terms"] for r in rows}))
    axes[0].legend(fontsize="small")
    return fig


def draw_logdet_estimator(c: float, n_terms: int, n_samples: int, dim: int = 16, n_draws: int = 1000,
                          max_terms: int = 20, probe: str = "gaussian", seed: int = 0):
    """Widget panel (notebook 03): histogram of power-series estimates at one point vs the exact log-det.

    The block is :func:`logdet_study.study_branch` with coefficient c: two layers of norm c, so
    ||J_g(x)||_2 = Lip(g) = c^2 at the point.

    Left: ``n_draws`` estimates with ``n_terms`` terms and ``n_samples`` probes each; right: the
    exact |bias| against the number of terms with the Thm. 3 bound. Returns (figure, numbers).
    """
    branch = logdet_study.study_branch(dim, c, seed=seed)
    x = torch.randn(1, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    jac = logdet.jacobian(branch, x).detach()
    lip = float(torch.linalg.matrix_norm(jac, ord=2).max())
    exact = float(logdet.exact_logdet(branch, x).detach())
    draws = logdet_study.estimator_draws(branch, x, n_terms, n_draws, n_samples, probe, seed).ravel().numpy()
    n_max = max(max_terms, n_terms)
    errors = (logdet_study.series_partial_sums(jac, n_max)[0] - exact).abs().numpy()
    bound = [logdet.truncation_error_bound(min(lip, 1 - 1e-12), dim, n) for n in range(1, n_max + 1)]

    fig, axes = subplots(1, 2, width=4.6, height=3.8)
    ax = axes[0]
    ax.hist(draws, bins=40, color=COLORS["series"], alpha=0.75, label=f"{n_draws} estimates")
    ax.axvline(exact, color=COLORS["exact"], lw=2, label=f"exact {exact:.3f}")
    ax.axvline(draws.mean(), color=COLORS["unbiased"], lw=2, ls="--", label=f"mean {draws.mean():.3f}")
    ax.set(title=f"{n_terms} terms, {n_samples} probe(s) per estimate", xlabel="ln det estimate (nats)",
           ylabel="count")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    n = np.arange(1, n_max + 1)
    ax.semilogy(n, bound, "--", color=COLORS["bound"], label="bound (Thm. 3)")
    ax.semilogy(n, np.maximum(errors, 1e-12), "-", color=COLORS["series"], label="|bias|, exact")
    ax.semilogy([n_terms], [max(errors[n_terms - 1], 1e-12)], "o", ms=9, color=COLORS["unbiased"],
                label=f"n = {n_terms}")
    ax.set(title=f"bias vs terms at c = {c:.2f} (||J_g(x)|| = {lip:.2f})", xlabel="number of terms n",
           ylabel="|bias| (nats)")
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper right")
    numbers = {"||J_g(x)||_2": lip, "exact ln det": exact, "estimate mean": float(draws.mean()),
               "bias": float(draws.mean() - exact), "std": float(draws.std(ddof=1)),
               "truncation error": float(errors[n_terms - 1])}
    return fig, numbers


# --- notebooks 05-06: image classifiers (Table 2, Fig. 3, the certificate) -----------------
__all__ += ["model_color", "plot_table2", "plot_reconstructions", "plot_layer_norms", "plot_training_curves",
            "draw_classifier"]


def model_color(coeff) -> str:
    """The vanilla baseline in the ResNet colour, i-ResNets in the i-ResNet colour."""
    return COLORS["resnet"] if coeff is None else COLORS["iresnet"]


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


def _show_image(ax, image: torch.Tensor) -> None:
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
        _show_image(axes[0, i], images[i])
        _show_image(axes[1, i], recs[i])
        _show_image(axes[2, i], ((recs[i] - images[i]).abs() * 10).mean(0, keepdim=True))
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
    """Test accuracy and training loss after each epoch, one line per model (label -> metrics.jsonl records)."""
    fig, axes = subplots(1, 2, width=4.8, height=3.6)
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        color = COLORS["resnet"] if name == "vanilla" else COLORS["iresnet"]
        axes[0].plot(epochs, [100 * r["test_accuracy"] for r in history], "o-", color=color, label=name)
        axes[1].plot(epochs, [r["train_loss"] for r in history], "o-", color=color, label=name)
    axes[0].set(title="test accuracy after each epoch", xlabel="epoch", ylabel="accuracy (%)")
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


# --- notebooks 01-02: ResNets as dynamics; making a ResNet invertible -----------------------
from . import dynamics, invertibility, lipschitz  # noqa: E402
from .config import size  # noqa: E402

__all__ += ["model_label", "plot_trajectories_1d", "plot_map_1d", "plot_deformed_grid", "plot_grid_through_depth",
            "plot_orientation_map", "plot_dynamics", "plot_layer_folds", "draw_dynamics", "plot_cobweb",
            "plot_power_iteration", "plot_conv_norms", "plot_inverse_convergence", "plot_bi_lipschitz",
            "draw_inverse_demo"]


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
    """Widget panel (notebook 01): train (cached) a ResNet or an i-ResNet with coefficient c; draw and measure it.

    c bounds each of a branch's two layers, so Lip(g_t) <= c^2.

    Returns (figure, numbers) with the crossings (1D), fold fraction, smallest layer det and fit.
    """
    coeff = None if unconstrained else round(float(c), 2)
    steps = size("nb01.train_steps") if steps is None else steps
    n_grid = size("nb01.grid") if n_grid is None else n_grid
    stack, _ = dynamics.trained_stack(task, depth, coeff, steps, n_train=size("nb01.n_train"))
    fig = plot_dynamics({coeff: stack}, task, n_grid)
    numbers = {"model": model_label(coeff), **dynamics.measure(stack, task, n_grid)}
    dim = dynamics.task_dim(task)
    numbers["max Lip(g_t)"] = max(invertibility.lipschitz_upper_bound(b.branch, (dim,)) for b in stack)
    return fig, numbers


def plot_cobweb(ax, branch, y: float, n_iter: int, title: str, limits=(-3.0, 3.0)):
    """Alg. 1 in 1D: the iterates x_{k+1} = T(x_k) = y - g(x_k) as a cobweb on the graph of T."""
    z = torch.linspace(*limits, 400, dtype=torch.float64)[:, None]
    with torch.no_grad():
        t = (y - branch(z))[:, 0].numpy()
    y_tensor = torch.full((1, 1), float(y), dtype=torch.float64)
    path = [float(y)] + [float(v) for v in invertibility.inverse_iterates(branch, y_tensor, n_iter)]
    zs = z[:, 0].numpy()
    ax.plot(zs, t, color=COLORS["iresnet"], lw=2, label="$T(x) = y - g(x)$")
    ax.plot(zs, zs, color=COLORS["bound"], lw=1, ls="--", label="$x$ (fixed points on it)")
    px, py = [path[0]], [path[0]]
    for a, b in zip(path[:-1], path[1:]):
        px += [a, b]
        py += [b, b]
    ax.plot(px, py, color=COLORS["model"], lw=1.2, label="iterates $x_0 = y, x_1, \\ldots$")
    ax.plot(path[0], path[0], "o", color=COLORS["model"], ms=5)
    ax.set(title=title, xlabel="$x$", ylabel="$T(x)$", xlim=limits, ylim=limits, aspect="equal")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return path


def plot_power_iteration(traces: dict):
    """sigma_hat per power-iteration step against the true norm (left) and its relative error (right)."""
    fig, axes = subplots(1, 2, width=4.6, height=3.6)
    palette = sns.color_palette("colorblind", len(traces))
    for color, (name, (estimates, true)) in zip(palette, traces.items()):
        k = np.arange(len(estimates))
        axes[0].plot(k, estimates, "-o", ms=2.5, color=color, label=f"{name}: $\\hat\\sigma_k$")
        axes[0].axhline(true, color=color, ls="--", lw=1, label=f"{name}: true $\\|W\\|_2$")
        rel = np.maximum(1 - np.asarray(estimates) / true, 1e-16)
        axes[1].semilogy(k, rel, "-o", ms=2.5, color=color, label=name)
    axes[0].set(title="power-iteration estimate", xlabel="power-iteration steps k", ylabel="$\\hat\\sigma_k$")
    axes[1].set(title="it approaches from below", xlabel="power-iteration steps k",
                ylabel="$1 - \\hat\\sigma_k / \\|W\\|_2$")
    axes[0].legend(fontsize="small")
    axes[1].legend(fontsize="small")
    return fig


def plot_conv_norms(rows: list):
    """A 3x3 conv: its operator norm per input size against the reshaped-kernel norm (rows of dicts)."""
    fig, ax = subplots(1, 1, width=5.2, height=3.6)
    sizes = [r["size"] for r in rows]
    ax.plot(sizes, [r["operator"] for r in rows], "-o", color=COLORS["iresnet"], label="operator norm (true)")
    ax.axhline(rows[0]["reshaped"], color=COLORS["resnet"], ls="--",
               label="reshaped-kernel norm (torch spectral_norm)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s}x{s}" for s in sizes])
    ax.set_ylim(0, 1.15 * max(r["operator"] for r in rows))
    ax.set(title="3x3 conv: the norm depends on the input size", xlabel="input height x width",
           ylabel="$\\|W\\|_2$")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_inverse_convergence(results: dict):
    """Reconstruction error per iteration (log scale), {L: {method: errors}}: colour = L, line style = method.

    A method named "Banach bound" is drawn dotted; the others solid, dashed, ... in their order.
    """
    fig, ax = subplots(1, 1, width=6.4, height=4.2)
    palette = dict(zip(results, sns.color_palette("crest", len(results))))
    styles = {}
    for L, curves in results.items():
        for method, errors in curves.items():
            style = ":" if method == "Banach bound" else styles.setdefault(method, ["-", "--", "-."][len(styles) % 3])
            k = np.arange(1, len(errors) + 1)
            ax.semilogy(k, np.maximum(errors, 1e-17), ls=style, color=palette[L], lw=1.8)
    colour_handles = [mpl.lines.Line2D([], [], color=palette[L], lw=2, label=f"Lip(g) = {L:g}") for L in results]
    style_handles = [mpl.lines.Line2D([], [], color="0.3", ls=st, label=m) for m, st in styles.items()]
    style_handles.append(mpl.lines.Line2D([], [], color="0.3", ls=":", label="Banach bound"))
    ax.legend(handles=colour_handles + style_handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set(title="inverting $y = x + g(x)$", xlabel="iteration k", ylabel="$\\max_i \\|x_k - x_i\\|$")
    ax.set_ylim(1e-16, None)
    return fig


def plot_bi_lipschitz(rows: list):
    """Measured Lip(F), Lip(F^-1) (markers, one style per row["kind"]) against 1 + L and 1 / (1 - L)."""
    fig, axes = subplots(1, 2, width=4.4, height=3.6)
    grid = np.linspace(0.0, max(r["L"] for r in rows), 200)
    axes[0].plot(grid, 1 + grid, color=COLORS["bound"], ls="--", label="bound $1 + L$")
    axes[1].semilogy(grid, 1 / (1 - grid), color=COLORS["bound"], ls="--", label="bound $1/(1 - L)$")
    kinds = list(dict.fromkeys(r["kind"] for r in rows))  # branch families, in order of appearance
    styles = list(zip("osD^v", [COLORS["iresnet"], COLORS["model"], COLORS["unbiased"], COLORS["data"],
                                 COLORS["coupling"]]))
    for ax, key, title in ((axes[0], "lip_F", "Lip(F)"), (axes[1], "lip_F_inv", "Lip($F^{-1}$)")):
        for kind, (marker, color) in zip(kinds, styles):
            sel = [r for r in rows if r["kind"] == kind]
            ax.plot([r["L"] for r in sel], [r[key] for r in sel], marker, ms=6, ls="none", color=color, label=kind)
        ax.set(title=f"measured {title}", xlabel="Lip(g) = L", ylabel=title)
        ax.legend(fontsize="small", loc="upper left")
    return fig


def draw_inverse_demo(c: float, power_iterations: int, fixed_point_iterations: int, dim: int = 8,
                      n_points: int = 256, seed: int = 0):
    """Widget panel (notebook 02): invert a block whose two layers are normalised to norm c by power iteration.

    c < 1: both layers of :func:`invertibility.tight_branch` are normalised to c after
    ``power_iterations`` steps, so Lip(g) = c^2 once the estimate is exact (too few steps: the
    true Lip(g) exceeds c^2). c >= 1: no normalisation, both layers have norm c, Lip(g) = c^2.
    Left: reconstruction error per fixed-point iteration with the Banach bound for L = c^2; right:
    the layers' true norms after normalisation. Returns (figure, numbers).
    """
    c = float(c)
    lip = c ** 2  # tight_branch attains the product bound of its two layers
    x = 0.5 * torch.randn(n_points, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    if c < 1:
        branch = invertibility.tight_branch(dim, lip, n_power_iterations=power_iterations, seed=seed)
        branch.train()
        with torch.no_grad():
            branch(x)  # the layers run their power iterations once, as in one training step
        branch.eval()
    else:
        branch = invertibility.tight_branch(dim, lip, spectral_norm=False, seed=seed)
    true_lip = invertibility.lipschitz_upper_bound(branch, (dim,))
    errors = invertibility.reconstruction_errors(branch, x, fixed_point_iterations)
    with torch.no_grad():
        first_step = float(branch(x + branch(x)).norm(dim=1).max())  # ||x_1 - x_0|| = ||g(y)||
    layer_norms = [lipschitz.operator_norm(m, (dim,)) for m in branch if isinstance(m, torch.nn.Linear)]

    fig, axes = subplots(1, 2, width=4.8, height=3.8)
    k = np.arange(1, fixed_point_iterations + 1)
    ax = axes[0]
    ax.semilogy(k, np.clip(errors, 1e-17, 1e30), color=COLORS["iresnet"] if true_lip < 1 else COLORS["resnet"],
                lw=2, label=f"fixed point, true Lip(g) = {true_lip:.2f}")
    if c < 1:
        ax.semilogy(k, invertibility.banach_bound(lip, first_step, k), ":", color=COLORS["bound"],
                    label=f"Banach bound if Lip(g) = c² = {lip:.2f}")
    ax.set(title="reconstruction error", xlabel="fixed-point iteration k", ylabel="$\\max_i \\|x_k - x_i\\|$")
    ax.legend(fontsize="small", loc="lower left" if errors[-1] < errors[0] else "upper left")
    ax = axes[1]
    names = ["layer 1 ($W$)", "layer 2 ($W^T$)"]
    ax.bar(names, layer_norms, color=COLORS["iresnet"] if true_lip < 1 else COLORS["resnet"], width=0.5)
    ax.axhline(c, color=COLORS["bound"], ls="--", label=f"target c = {c:.2f}")
    ax.set(title="true layer norms after normalisation", ylabel="$\\|W_i\\|_2$")
    ax.legend(fontsize="small", loc="lower right")
    rate = (errors[-1] / errors[0]) ** (1 / max(len(errors) - 1, 1)) if errors[0] > 0 else 0.0
    numbers = {"c (each layer)": c, "true Lip(g)": true_lip,
               "power iterations": power_iterations if c < 1 else "none (no normalisation)",
               f"error after {fixed_point_iterations} iterations": errors[-1],
               "observed rate per iteration": rate}
    return fig, numbers


# --- notebook 04: 2D densities, i-ResNet flow vs affine coupling (Fig. 2) -------------------
from . import toy  # noqa: E402

__all__ += ["TOY_MODEL_NAMES", "plot_toy_points", "plot_toy_density", "plot_toy_datasets", "plot_toy_comparison",
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
    """Widget panel: data, learned density and samples of the i-ResNet flow with Lip(g) <= c (cached/trained)."""
    result = cache.get(dataset, c)
    data = toy.sample(dataset, len(result.samples), seed=1)
    fig, axes = subplots(1, 3, width=2.75, height=3.0)
    plot_toy_points(axes[0], data, f"{dataset}: data", lim)
    plot_toy_density(axes[1], result.log_p_grid, result.extent, f"i-ResNet density, c = {result.coeff:.2f}",
                     ylabel=False)
    plot_toy_points(axes[2], result.samples, "samples (inverse flow)", lim, ylabel=False)
    numbers = {"data set": dataset, "c": result.coeff, "test NLL (nats)": result.test_nll,
               "data entropy (nats)": "n/a" if result.entropy is None else result.entropy,
               "training steps": result.records[-1]["step"], "training s": result.seconds}
    return fig, numbers


# --- notebooks 07-08: density models on images (Table 4, Figs. 4-5) --------------------------
__all__ += ["image_grid", "plot_image_grid", "plot_preprocessing", "plot_bits_per_dim_table", "plot_bits_breakdown",
            "plot_density_reconstructions", "plot_density_estimators", "plot_density_history",
            "draw_density_estimator", "draw_trained_block_logdet"]

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
        _show_image(axes[0, i], x[i].detach().cpu())
        _show_image(axes[1, i], result["x_rec"][i].detach().cpu())
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
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", color=COLORS["model"], label="training loss")
    ax.plot(epochs, [r["test_bits_per_dim"] for r in history], "o-", color=COLORS["iresnet"], label="test")
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


def draw_trained_block_logdet(jac: torch.Tensor, norm: float, n_terms: int, n_probes: int,
                              n_draws: int = 400, max_terms: int = 20, seed: int = 0):
    """Widget panel (notebook 08): the series estimator on a trained block's Jacobian J (d x d) at one point.

    J is rescaled to the spectral norm ``norm``: J_c = (norm / ||J||_2) J, the Jacobian of the block
    with its branch scaled by that factor, so ``norm`` is the Lipschitz constant the series sees at
    this point and the bias falls like norm^n. Left: ``n_draws`` estimates with ``n_terms`` terms and
    ``n_probes`` Gaussian probes, against the exact ln det; right: the exact |bias| against the number
    of terms, the Thm. 3 bound and the estimate's std.
    """
    if not 0 < norm < 1:
        raise ValueError(f"norm must be in (0, 1): the series converges only for ||J||_2 < 1, got {norm!r}")
    jac = jac.double()
    trained_norm = float(torch.linalg.matrix_norm(jac, ord=2))
    jac_c = (norm / trained_norm) * jac
    d = jac_c.shape[-1]
    eye = torch.eye(d, dtype=jac_c.dtype, device=jac_c.device)
    exact = float(torch.linalg.slogdet(eye + jac_c).logabsdet)
    lip = float(torch.linalg.matrix_norm(jac_c, ord=2))
    n_max = max(max_terms, n_terms)
    bias = (logdet_study.series_partial_sums(jac_c[None], n_max)[0] - exact).cpu().numpy()
    matrix = logdet_study.series_matrix(jac_c, n_terms)
    std = float((logdet_study.hutchinson_variance(matrix) / n_probes).sqrt())
    generator = torch.Generator(device=jac_c.device).manual_seed(seed)
    v = torch.randn(n_draws, n_probes, d, generator=generator, dtype=jac_c.dtype, device=jac_c.device)
    draws = ((v @ matrix) * v).sum(-1).mean(1).cpu().numpy()
    bound = [logdet.truncation_error_bound(min(lip, 1 - 1e-12), d, n) for n in range(1, n_max + 1)]

    fig, axes = subplots(1, 2, width=4.7, height=3.7)
    ax = axes[0]
    ax.hist(draws, bins=40, color=COLORS["series"], alpha=0.75, label=f"{n_draws} estimates")
    ax.axvline(exact, color=COLORS["exact"], lw=2, label=f"exact {exact:.3f}")
    ax.axvline(draws.mean(), color=COLORS["unbiased"], lw=2, ls="--", label=f"mean {draws.mean():.3f}")
    ax.set(title=f"{n_terms} terms, {n_probes} probe(s), ||J|| = {norm:.2f}", xlabel="ln det estimate (nats)",
           ylabel="count")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    n = np.arange(1, n_max + 1)
    ax.semilogy(n, bound, "--", color=COLORS["bound"], label="bound (Thm. 3)")
    ax.semilogy(n, np.maximum(np.abs(bias), 1e-16), "-", color=COLORS["series"], label="|bias|, exact")
    ax.axhline(std, color=COLORS["unbiased"], lw=2, label=f"std, {n_probes} probe(s)")
    ax.semilogy([n_terms], [max(abs(bias[n_terms - 1]), 1e-16)], "o", ms=9, color=COLORS["resnet"],
                label=f"n = {n_terms}")
    ax.set(title=f"bias vs terms (||J|| = {lip:.2f}, d = {d})", xlabel="number of terms n", ylabel="nats",
           ylim=(1e-12, 1e3))  # fixed: moving the norm moves the curve, not the axis
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper right")
    numbers = {"||J_g(x)||_2 (set)": lip, "trained block's ||J_g(x)||_2": trained_norm, "exact ln det": exact,
               "bias": float(bias[n_terms - 1]), f"|bias| at {max_terms} terms": float(abs(bias[max_terms - 1])),
               "std": std, "std of the draws": float(draws.std(ddof=1))}
    return fig, numbers
