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


def plot_jacobian_spectrum(eigenvalues: dict):
    """Eigenvalues of J_g (left, inside |lambda| <= c) and of I + J_g (right, in Re > 0): det(I + J_g) > 0."""
    fig, axes = subplots(1, 2, width=4.4, height=4.6)
    colors = c_colors(list(eigenvalues))
    theta = np.linspace(0, 2 * np.pi, 400)
    for c, lam in eigenvalues.items():
        lam = np.asarray(lam).ravel()
        for ax, shift in zip(axes, (0.0, 1.0)):
            ax.scatter(lam.real + shift, lam.imag, s=9, alpha=0.6, color=colors[c], label=f"c = {c:g}")
            ax.plot(shift + c * np.cos(theta), c * np.sin(theta), color=colors[c], lw=1)
    axes[0].plot(np.cos(theta), np.sin(theta), color=COLORS["bound"], lw=1, ls="--", label="unit circle")
    re_zero = axes[1].axvline(0, color=COLORS["resnet"], lw=1.2, ls="--", label="Re = 0 (det could vanish)")
    axes[1].scatter([0], [0], marker="x", color=COLORS["resnet"], zorder=3)
    axes[0].set(title=r"eigenvalues $\lambda$ of $J_g(x)$; circles $|\lambda| = c$", xlabel=r"Re $\lambda$",
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
        ax.set(title=f"c = {s.c:g} (Lip(g) = {s.lipschitz:.2f}, d = {s.dim})", xlabel="number of terms n")
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
    ax.set(title=f"bias vs terms at c = {c:.2f} (Lip(g) = {lip:.2f})", xlabel="number of terms n",
           ylabel="|bias| (nats)")
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper right")
    numbers = {"Lip(g)": lip, "exact ln det": exact, "estimate mean": float(draws.mean()),
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
    ax.set(title=f"{dataset.upper()} test error: the paper's Table 2 and our short CPU runs",
           xlabel="model (Lipschitz coefficient c of every layer, or vanilla = no constraint)",
           ylabel="test error (%)")
    ax.margins(y=0.15)
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize="small", loc="upper left")
    return fig


def _show_image(ax, image: torch.Tensor) -> None:
    """A (C, H, W) image in [0, 1] (grey or RGB); a non-finite image as a grey square marked 'NaN'."""
    if not torch.isfinite(image).all():
        ax.imshow(np.full(image.shape[1:], 0.5), cmap="gray", vmin=0, vmax=1)
        ax.text(0.5, 0.5, "NaN", ha="center", va="center", transform=ax.transAxes, color=COLORS["resnet"],
                fontweight="bold")
    elif image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
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
        status = "inverse converged" if result["converged"] else "inverse FAILED"
        sub.suptitle(f"{result['label']}: {status}, max pixel error {result['max_pixel_error']:.1e} "
                     f"(above each reconstruction: its max error)", fontsize="medium", fontweight="bold",
                     color=model_color(result["coeff"]))
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
    ax.legend(fontsize="x-small", loc="best")


def _branch_bound_axes(ax, result: dict) -> None:
    bounds = result["branch_bounds"]
    blocks = np.arange(len(bounds))
    ax.bar(blocks, bounds, color=model_color(result["coeff"]), alpha=0.8, label="Lip(g) <= product of 3 norms")
    ax.axhline(1.0, color=COLORS["bound"], ls=":", lw=1.2, label="1: fixed point is guaranteed below")
    ax.set(xlabel="residual block", ylabel="bound on Lip(g)")
    _log_scale_if_wide(ax, bounds + [1.0])
    _integer_ticks(ax)
    ax.legend(fontsize="x-small", loc="best")


def plot_layer_norms(result: dict):
    """The certificate: every convolution's operator norm vs c (left), each branch's Lip(g) bound (right)."""
    fig, axes = subplots(1, 2, width=5.0, height=3.6)
    _layer_norm_axes(axes[0], result)
    axes[0].set_title(f"{result['label']}: layer norms ({result['norms'][0]['method']})")
    _branch_bound_axes(axes[1], result)
    axes[1].set_title(f"{result['label']}: branch bounds, largest {max(result['branch_bounds']):.3g}")
    return fig


def plot_training_curves(histories: dict):
    """Test accuracy and training loss per epoch, one line per model (label -> metrics.jsonl records)."""
    fig, axes = subplots(1, 2, width=4.8, height=3.6)
    colors = c_colors([i for i in range(len(histories))])
    for i, (name, history) in enumerate(histories.items()):
        minutes = [r["elapsed_s"] / 60 for r in history]
        color = COLORS["resnet"] if name == "vanilla" else colors[i]
        axes[0].plot(minutes, [100 * r["test_accuracy"] for r in history], "o-", color=color, label=name)
        axes[1].plot(minutes, [r["train_loss"] for r in history], "o-", color=color, label=name)
    axes[0].set(title="test accuracy after each epoch", xlabel="training time (minutes)", ylabel="accuracy (%)")
    axes[1].set(title="training loss (epoch mean)", xlabel="training time (minutes)", ylabel="cross-entropy")
    axes[0].legend(fontsize="small", loc="lower right")
    return fig


def draw_classifier(choice, results: dict, n: int = 6):
    """Widget panel (notebooks 05-06): one classifier's reconstructions and layer norms, picked by c.

    ``results`` maps a label ("c=0.9", "vanilla") to :func:`classification.examine`'s
    dict. Returns (figure, numbers for the readout).
    """
    if choice not in results:
        raise ValueError(f"no trained classifier for {choice!r}: available are {list(results)}")
    result = results[choice]
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
