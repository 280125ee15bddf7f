"""Lesson 02's figures and widget panels (02_making_resnets_invertible)."""
from __future__ import annotations

import matplotlib as mpl
import numpy as np
import seaborn as sns
import torch

from ... import lipschitz
from ..figures import COLORS, subplots
from . import invertibility

__all__ = ["plot_cobweb", "plot_power_iteration", "plot_conv_norms", "plot_inverse_convergence",
           "plot_bi_lipschitz", "draw_inverse_demo"]


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
