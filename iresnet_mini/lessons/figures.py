"""The lessons' shared figure style: the theme, the colours and a few helpers every lesson uses."""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["COLORS", "set_theme", "subplots", "save", "c_colors"]


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


def c_colors(cs) -> dict:
    """One colour per Lipschitz coefficient c, light (small c) to dark (c near 1)."""
    palette = sns.color_palette("crest", len(cs))
    return {c: palette[i] for i, c in enumerate(sorted(cs))}


def _integer_ticks(ax) -> None:
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
