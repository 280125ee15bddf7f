"""Lesson 03's figures and widget panels (03_log_determinant)."""
from __future__ import annotations

import numpy as np
import torch

from ... import logdet
from ..figures import COLORS, _integer_ticks, c_colors, subplots
from . import logdet_study

__all__ = ["plot_jacobian_spectrum", "plot_partial_sums", "plot_bias_variance", "plot_probe_comparison",
           "plot_roulette_vs_series", "plot_gradient_cost", "estimator_panel", "draw_logdet_estimator"]


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


def estimator_panel(draws, exact: float, bias, bound, n_terms: int, hist_title: str, bias_title: str,
                    std: float | None = None, std_label: str = "", ylim=None):
    """The estimator at one point: left, a histogram of ``draws`` against the exact ln det; right, the
    exact |bias| of 1, 2, ... terms (``bias``) with Thm. 3's ``bound``, the chosen ``n_terms`` marked,
    and the estimate's ``std`` as a line when given. The widget panels of notebooks 03 and 08."""
    draws, bias = np.asarray(draws), np.abs(np.asarray(bias))
    fig, axes = subplots(1, 2, width=4.6, height=3.8)
    ax = axes[0]
    ax.hist(draws, bins=40, color=COLORS["series"], alpha=0.75, label=f"{len(draws)} estimates")
    ax.axvline(exact, color=COLORS["exact"], lw=2, label=f"exact {exact:.3f}")
    ax.axvline(draws.mean(), color=COLORS["unbiased"], lw=2, ls="--", label=f"mean {draws.mean():.3f}")
    ax.set(title=hist_title, xlabel="ln det estimate (nats)", ylabel="count")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    n = np.arange(1, len(bias) + 1)
    floor = 1e-16
    ax.semilogy(n, bound, "--", color=COLORS["bound"], label="bound (Thm. 3)")
    ax.semilogy(n, np.maximum(bias, floor), "-", color=COLORS["series"], label="|bias|, exact")
    if std is not None:
        ax.axhline(std, color=COLORS["unbiased"], lw=2, label=std_label)
    ax.semilogy([n_terms], [max(bias[n_terms - 1], floor)], "o", ms=9, color=COLORS["resnet"], label=f"n = {n_terms}")
    ax.set(title=bias_title, xlabel="number of terms n", ylabel="|bias| (nats)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    _integer_ticks(ax)
    ax.legend(fontsize="small", loc="upper right")
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

    fig = estimator_panel(draws, exact, errors, bound, n_terms,
                          hist_title=f"{n_terms} terms, {n_samples} probe(s) per estimate",
                          bias_title=f"bias vs terms at c = {c:.2f} (||J_g(x)|| = {lip:.2f})")
    numbers = {"||J_g(x)||_2": lip, "exact ln det": exact, "estimate mean": float(draws.mean()),
               "bias": float(draws.mean() - exact), "std": float(draws.std(ddof=1)),
               "truncation error": float(errors[n_terms - 1])}
    return fig, numbers
