"""Trained i-ResNet classifiers examined: accuracy, reconstructions from the inverse, layer norms.

* :func:`examine` - everything notebooks 05 and 06 show for one classifier: test accuracy on
  a batch, reconstructions ``F^-1(F(x))`` of test images by the fixed-point inverse (paper
  Fig. 3, Alg. 1), and every convolution's true operator norm against c (the certificate).
* :func:`layer_norms` / :func:`branch_bounds` - the per-layer norms and the bound
  Lip(g) <= product of a branch's layer norms (paper Sec. 2).
* :func:`table2_rows` / :func:`markdown_table` - the paper's Table 2 beside our figures.

Taught in ``notebooks/05_mnist_classification.ipynb`` and ``06_cifar10_classification.ipynb``.
"""
from __future__ import annotations

import math

import torch

from ... import data as _data
from ...facts import paper_error
from ...models import parse_model_options
from ...lipschitz import LipschitzConv2d, certify, layer_input_shapes, operator_norm
from ...certificate import round_trip
from ...pretrained import RECIPES

__all__ = ["label", "checkpoints_for", "test_batch", "to_pixels", "pixel_errors", "predict", "reconstruct", "layer_norms", "branch_bounds",
           "examine", "table2_rows", "markdown_table"]


def label(coeff: float | None) -> str:
    """'vanilla' for the unconstrained baseline, else 'c=0.9'."""
    return "vanilla" if coeff is None else f"c={coeff:g}"


def checkpoints_for(dataset: str) -> dict[str, str]:
    """label -> name of the shipped i-ResNet classifiers of ``dataset`` (Table 2's: not the coupling
    baseline of Table 3): by increasing c, the vanilla one last."""
    recipes = {name: r for name, r in RECIPES.items() if r.dataset == dataset and r.task == "classify"
               and parse_model_options(r.task, r.model).get("block", "residual") == "residual"}
    order = sorted(recipes, key=lambda name: (recipes[name].coeff is None, recipes[name].coeff or 0.0))
    return {label(recipes[name].coeff): name for name in order}


def test_batch(dataset: str, n: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images, normalised as the classifiers see them, and their labels."""
    images, labels = _data.load_dataset(dataset, "test")
    x = _data.Normalize.for_dataset(dataset)(images[:n].to(device))
    return x, labels[:n].to(device)


def to_pixels(dataset: str, x: torch.Tensor) -> torch.Tensor:
    """Normalised images back to pixel values in [0, 1] (not clamped: a failed inverse shows as such)."""
    mean, std = (torch.tensor(s, device=x.device).view(1, -1, 1, 1) for s in _data.STATS[dataset])
    return x * std + mean


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes (N,) of normalised images x (N, C, H, W), in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def reconstruct(model, x: torch.Tensor, max_iter: int = 100, atol: float = 1e-5) -> dict:
    """x -> features z = F(x) -> F^-1(z) by fixed-point iteration per block (Alg. 1): the certificate's
    :func:`~iresnet_mini.certificate.round_trip`, errors per image in normalised units."""
    return round_trip(model, x, max_iter=max_iter, atol=atol)


def pixel_errors(dataset: str, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """max |x - x_rec| per image in pixel values (N,); inf where the inverse left the finite numbers."""
    errors = (to_pixels(dataset, x_rec) - to_pixels(dataset, x)).flatten(1).abs().amax(1)
    return torch.where(torch.isfinite(errors), errors, torch.full_like(errors, math.inf))


def _conv_inputs(model, x: torch.Tensor) -> list[tuple[int, int, LipschitzConv2d, tuple]]:
    """(block, position in the branch, layer, input shape) of every convolution in the invertible part."""
    convs = [(b, j, m) for b, step in enumerate(model.steps)
             for j, m in enumerate(m for m in step.block.branch if isinstance(m, LipschitzConv2d))]
    model.eval()
    shapes = layer_input_shapes(model, lambda: model.features(x[:1]), [m for _, _, m in convs])
    return [(b, j, m, shapes[m]) for b, j, m in convs]


def layer_norms(model, x: torch.Tensor, n_iter: int = 100) -> list[dict]:
    """The operator norm of every convolution of the invertible part, on its actual input shape.

    A constrained layer is certified (paper Sec. 6): its power iteration runs to tolerance from
    its stored vectors (this updates them), and its norm is sigma_hat / max(1, sigma_hat / c).
    An unconstrained (vanilla) layer gets ``n_iter`` float64 power-iteration steps from a random
    start: a lower bound of its norm.
    """
    rows = []
    for b, j, conv, shape in _conv_inputs(model, x):
        if conv.coeff is not None:
            (cert,) = certify(conv)
            norm, sigma_hat, method = cert["effective_norm"], cert["sigma_hat"], "certified"
        else:
            norm = sigma_hat = operator_norm(conv, shape, method="power", n_iter=n_iter)
            method = f"{n_iter} power iterations"
        rows.append({"block": b, "layer": j, "kernel": conv.kernel_size[0], "coeff": conv.coeff, "norm": norm,
                     "sigma_hat": sigma_hat, "method": method})
    return rows


def branch_bounds(norms: list[dict]) -> list[float]:
    """Lip(g) <= product of the layer norms of each branch (1-Lipschitz activations), block by block."""
    bounds: dict[int, float] = {}
    for row in norms:
        bounds[row["block"]] = bounds.get(row["block"], 1.0) * row["norm"]
    return [bounds[b] for b in sorted(bounds)]


def examine(model, dataset: str, x: torch.Tensor, y: torch.Tensor, n_show: int = 8, max_iter: int = 100,
            norm_iterations: int = 100) -> dict:
    """Accuracy on (x, y), reconstructions of the first ``n_show`` images, layer norms, for one classifier."""
    coeff = model.config.coeff
    norms = layer_norms(model, x, norm_iterations)  # certifies first: the figures below are of the certified model
    accuracy = int((predict(model, x) == y).sum()) / len(y)
    rec = reconstruct(model, x[:n_show], max_iter=max_iter)
    errors = pixel_errors(dataset, x[:n_show], rec["x_rec"])
    return {
        "label": label(coeff), "coeff": coeff, "dataset": dataset, "accuracy": accuracy, "n_test": len(y),
        "images": to_pixels(dataset, x[:n_show]).cpu(), "reconstructions": to_pixels(dataset, rec["x_rec"]).cpu(),
        "pixel_errors": errors.cpu(), "max_pixel_error": float(errors.max()),
        "converged": rec["converged"], "iterations": rec["iterations"],
        "norms": norms, "branch_bounds": branch_bounds(norms),
    }


def table2_rows(results: list[dict], metrics: dict | None = None) -> list[dict]:
    """One row per classifier: the paper's error (Table 2), ours, and the inverse's reconstruction error.

    ``metrics`` maps a result's label to the figures of its whole test set (``test_error_percent``),
    from the manifest or the training run's summary.
    """
    rows = []
    for r in results:
        full = (metrics or {}).get(r["label"], {}).get("test_error_percent")
        rows.append({"model": r["label"], "paper error %": paper_error(r["dataset"], r["coeff"]),
                     "our error % (full test set)": full,
                     f"our error % (first {r['n_test']})": 100 * (1 - r["accuracy"]),
                     "reconstruction error (max, pixels)": r["max_pixel_error"],
                     "largest layer norm": max(n["norm"] for n in r["norms"]),
                     "inverse converged": r["converged"]})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """A list of dicts (same keys) as a Markdown table; floats to 3 significant digits, integers with thousands
    separators, None as '-'."""
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return "inf" if math.isinf(value) else f"{value:.3g}"
        return f"{value:,}" if isinstance(value, int) else str(value)
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
