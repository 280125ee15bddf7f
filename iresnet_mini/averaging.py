"""An exponential moving average of a model's weights (Residual Flows evaluates and samples with one).

The average of the last few thousand steps' weights is a smoother, usually better model than the
last step's: the noise of the final steps averages out. For a Lipschitz-constrained model it needs
one more step: the averaged weights have their own spectral norms, so :meth:`ParameterAverage.copy_to`
re-estimates every layer's sigma for them (a few power iterations, continued from the live u, v,
which track weights close to the average), and the certificate then checks the averaged model.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .lipschitz import lipschitz_layers

__all__ = ["ParameterAverage", "check_decay"]


def check_decay(decay) -> float:
    """``decay`` as a float in (0, 1), or a clear error."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise ValueError(f"the weight average's decay must be a number in (0, 1) such as 0.999, got {decay!r}")
    return float(decay)


class ParameterAverage:
    """An exponential moving average of a model's parameters, with a bias-free start.

    ``update`` after every optimiser step: avg <- avg + (1 - d_t) (p - avg) with
    d_t = min(decay, (1 + t) / (10 + t)), so early steps are not held back by the
    initial weights. Buffers (BatchNorm statistics, power-iteration vectors, ActNorm's flag) are not
    averaged: :meth:`model` takes them from the live model, then re-estimates the spectral norms.
    """

    POWER_ITERATIONS = 10

    def __init__(self, model: nn.Module, decay: float):
        self.decay = check_decay(decay)
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged parameters into ``model`` and re-estimate its layers' spectral norms for them."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name])
        for layer in lipschitz_layers(model):
            if layer.v.numel():
                layer.sigma.copy_(layer.power_iteration(self.POWER_ITERATIONS))

    def model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged parameters (``model`` itself is left as it is)."""
        averaged = copy.deepcopy(model)
        self.copy_to(averaged)
        return averaged

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"the saved weight average does not fit this model (parameters {sorted(missing)})")
        self.decay = check_decay(state["decay"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
