"""Lesson 06's figures: lesson 05's, shown for the CIFAR-10 classifiers, and Table 3 at laptop scale."""
from __future__ import annotations

import numpy as np

from ..figures import COLORS, subplots
from ..nb05.figures import (curve_colors, draw_classifier, plot_layer_norms, plot_reconstructions, plot_table2,
                            plot_training_curves)

__all__ = ["draw_classifier", "plot_layer_norms", "plot_reconstructions", "plot_table2", "plot_training_curves",
           "plot_table3"]


def plot_table3(rows: list):
    """Table 3 at laptop scale: per classifier (rows of :func:`table3.rows`), its test error and its error on
    the training batches, so that a worse test error can be read as fitting less, or generalising less."""
    fig, ax = subplots(1, 1, width=6.4, height=3.6)
    colors = curve_colors([r["model"] for r in rows])
    pos = np.arange(len(rows))
    for offset, key, alpha, hatch in ((-0.2, "test error % (full test set)", 1.0, None),
                                      (0.2, "error % on training batches (last epoch)", 0.45, "//")):
        bars = ax.bar(pos + offset, [r[key] for r in rows], width=0.38, color=[colors[r["model"]] for r in rows],
                      alpha=alpha, hatch=hatch, edgecolor="white")
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=2)
        bars.set_label(key.replace(" (last epoch)", ", last epoch").replace(" (full test set)", ", all 10,000 images"))
    ax.set_xticks(pos, [f"{r['model']}\n({r['parameters'] / 1e6:.2f}M)" for r in rows])
    ax.set(title="CIFAR-10: coupling steps against residual blocks\n(same images, epochs and size)",
           xlabel="classifier (parameters)", ylabel="error (%)")
    ax.set_ylim(0, 1.45 * max(max(r["test error % (full test set)"], r["error % on training batches (last epoch)"])
                             for r in rows))
    ax.grid(axis="x", visible=False)
    legend = ax.legend(fontsize="small", loc="upper left")
    for handle in legend.legend_handles:
        handle.set_color(COLORS["bound"])
    return fig
