"""Lesson 06's Table 3 at laptop scale: a Glow-style coupling classifier against an i-ResNet of its size.

The paper's Table 3 compares two invertible classifiers built alike on CIFAR-10: one whose steps are
affine couplings (Glow: ActNorm, an invertible 1x1 convolution, then half the channels transformed
as a function of the other half), one whose steps are i-ResNet blocks. :func:`rows` sets our shipped
runs side by side (the coupling classifier, the i-ResNet and the unconstrained residual network of the
same size): test error, how closely each fit its training images, and its inverse.

Taught in ``notebooks/06_cifar10_classification.ipynb`` (section 6).
"""
from __future__ import annotations

import copy

import torch

from ...models import count_parameters
from ..nb05 import classification

__all__ = ["steps_of", "rows"]


def steps_of(model) -> str:
    """What the invertible steps of a classifier are, in words."""
    config = model.config
    if config.block == "coupling":
        return "affine coupling (ActNorm, 1x1 convolution, half the channels from the other half)"
    return "residual block x + g(x), " + ("unconstrained" if config.coeff is None else f"Lip(g) < 1 (c = {config.coeff:g})")


def rows(loaded: dict, dataset: str, x: torch.Tensor, y: torch.Tensor, n_show: int = 8) -> list[dict]:
    """One row per classifier: size, test error (whole test set and the first ``len(y)`` images), the
    error on the last epoch's training batches, training time, and its inverse on ``n_show`` test images (as
    the model computes, in float32, and in float64 on a copy: a closed-form inverse can still amplify rounding).

    ``loaded`` maps a label to (model, config, info) as :func:`~iresnet_mini.pretrained.load_or_train`
    returns them.
    """
    table = []
    for label, (model, _, info) in loaded.items():
        metrics, last = info["metrics"], info["history"][-1]
        accuracy = float((classification.predict(model, x) == y).float().mean())
        shown = x[:n_show]
        rec = classification.reconstruct(model, shown)
        rec64 = classification.reconstruct(copy.deepcopy(model).double(), shown.double())
        iterations = max(rec["iterations"])
        table.append({
            "model": label, "invertible steps": steps_of(model), "blocks": len(model.steps),
            "parameters": count_parameters(model),
            "test error % (full test set)": metrics["test_error_percent"],
            f"test error % (first {len(y)})": 100 * (1 - accuracy),
            "error % on training batches (last epoch)": 100 * (1 - last["train_accuracy"]),
            "minutes of training": metrics["train_seconds"] / 60,
            "inverse": "closed form" if iterations == 0 else f"fixed point, at most {iterations} iterations a block",
            "reconstruction error (max, pixels)": float(classification.pixel_errors(dataset, shown, rec["x_rec"]).max()),
            "the same in float64": float(classification.pixel_errors(dataset, shown.double(), rec64["x_rec"]).max()),
        })
    return table
