"""Trained i-ResNet density models examined: bits/dim, estimators, samples, reconstructions, a trained block.

* :func:`bits_per_dim_breakdown` - where a model's bits/dim come from: the prior, every ActNorm and
  residual layer's log-det, the preprocessing, and the 8 bits of the dequantisation (Sec. 3, 5).
* :func:`estimator_draws` / :func:`compare_estimators` - one trained model evaluated with the
  paper's truncated series (biased), Residual Flows' Russian roulette (unbiased) and the exact
  log-det, in bits/dim.
* :func:`sample_images` / :func:`reconstruct` - samples z ~ prior -> F^-1(z) and reconstructions
  F^-1(F(x)), both by the fixed-point inverse of every block (Alg. 1; paper Fig. 5).
* :func:`trained_block` - one *trained* residual block on small crops of its real input, small
  enough (d <= ~1000) for the exact Jacobian, for the bias/variance study of Fig. 4
  (:func:`iresnet_mini.lessons.nb03.logdet_study.bias_variance_study`).

Taught in ``notebooks/07_mnist_density.ipynb`` and ``08_cifar10_density.ipynb``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ... import data as _data
from ... import flows
from ...certificate import inverse_report, quiet_inverse, round_trip
from ...data import postprocess, preprocess
from ...flows import ActNorm, ResidualFlowLayer, bits_per_dim
from ...lipschitz import lipschitz_layers
from ...models import MultiScaleFlow
from ..nb03.logdet_study import expected_terms

__all__ = [
    "test_images", "flow_layers",
    "using_estimator", "log_likelihood", "flow_summary", "log_prob_terms", "BitsBreakdown", "bits_per_dim_breakdown",
    "estimator_draws",
    "EstimatorComparison", "compare_estimators", "sample_images", "reconstruct", "frozen_branch",
    "block_input", "center_crop", "TrainedBlock", "trained_block", "epoch_lines",
]

def test_images(dataset: str, n: int, seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """The first ``n`` test images, dequantised to [0, 1) as (k + u) / 256 with seeded noise u (Sec. 5)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    images, _ = _data.load_dataset(dataset, "test")
    generator = torch.Generator(device=device).manual_seed(seed)
    return _data.dequantize(images[:n].to(device), generator)


def _check_flow(model) -> None:
    if not isinstance(model, MultiScaleFlow):
        raise TypeError(f"expected a MultiScaleFlow density model, got {type(model).__name__}")


def flow_layers(model: MultiScaleFlow) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every layer with a log-det (ActNorm, residual), in the forward order.

    Names count within a scale: "scale 2 residual 1" is the first residual layer of the second scale.
    """
    _check_flow(model)
    found = []
    for s, scale in enumerate(model.scales, start=1):
        counts = {"ActNorm": 0, "residual": 0}
        for layer in scale:
            if isinstance(layer, (ActNorm, ResidualFlowLayer)):
                kind = "ActNorm" if isinstance(layer, ActNorm) else "residual"
                counts[kind] += 1
                found.append((f"scale {s} {kind} {counts[kind]}", layer))
    return found


def using_estimator(model: MultiScaleFlow, estimator: str, **kwargs):
    """Every residual layer uses ``estimator`` inside the block, the model's training estimator after it."""
    _check_flow(model)
    return flows.using_estimator(model, estimator, **kwargs)


def log_prob_terms(model: MultiScaleFlow, y: torch.Tensor) -> dict:
    """log p(y) split by change of variables (Sec. 3): the priors' term and every layer's log-det, per sample.

    Returns ``log_prob`` (B,), ``prior`` (B,), ``per_layer`` (B, n_layers) and the layers' ``names``;
    log_prob = prior + per_layer.sum(1). The log-dets come from the model's current estimator.
    """
    layers = flow_layers(model)
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _inputs, out: captured.append(out[1])) for _, layer in layers]
    try:
        log_prob = model.log_prob(y)
    finally:
        for hook in hooks:
            hook.remove()
    per_layer = torch.stack(captured, dim=1)
    return {"log_prob": log_prob, "prior": log_prob - per_layer.sum(1), "per_layer": per_layer,
            "names": [name for name, _ in layers]}


def log_likelihood(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None) -> torch.Tensor:
    """log p(x) in nats of dequantised images x in [0, 1): the flow's log p(y) plus the preprocessing's log-det."""
    y, logdet_pre = preprocess(x, logit_alpha)
    return model.log_prob(y) + logdet_pre


def flow_summary(model: MultiScaleFlow) -> list[dict]:
    """One row per scale: input shape, squeeze, blocks, branch widths, what is factored out (Sec. 4)."""
    _check_flow(model)
    rows, shape = [], tuple(model.config.in_shape)
    for i, (n_blocks, stride, width) in enumerate(zip(model.config.blocks, model.config.strides, model.config.widths)):
        c, h, w = shape
        inner = (4 * c, h // 2, w // 2) if stride == 2 else shape
        prior = tuple(model.priors[i].shape)
        last = i == len(model.config.blocks) - 1
        rows.append({"scale": i + 1, "input": str(shape), "squeeze": stride == 2, "blocks": n_blocks,
                     "branch": f"{inner[0]} -> {width} -> {width} -> {inner[0]}",
                     "to the prior": f"{prior} (all)" if last else
                     f"{prior} (factored out{', given the rest' if model.conditional else ''})"})
        shape = (inner[0] - prior[0], *inner[1:])
    return rows


@dataclass
class BitsBreakdown:
    """A model's bits/dim on a batch, term by term (nats are means per image; bits are per dimension).

    bits/dim = 8 - (prior + actnorm + residual + preprocess) / (D ln 2): every log-likelihood term
    lowers the bits/dim; the 8 bits are log2(256) from scaling 8-bit values into [0, 1).
    """

    n_dims: int
    prior_nats: float
    actnorm_nats: float
    residual_nats: float
    preprocess_nats: float
    per_layer_nats: np.ndarray
    layer_names: list[str]
    per_image: np.ndarray          # bits/dim of every image

    @property
    def bits_per_dim(self) -> float:
        return float(self.per_image.mean())

    def to_bits(self, nats: float) -> float:
        """A log-likelihood term in nats per image as its (negative) contribution in bits/dim."""
        return -nats / (self.n_dims * math.log(2))

    def contributions(self) -> dict[str, float]:
        """Each term's contribution in bits/dim; they add up to :attr:`bits_per_dim`."""
        return {"dequantisation (log2 256)": 8.0, "prior log p(z)": self.to_bits(self.prior_nats),
                "ActNorm log-dets": self.to_bits(self.actnorm_nats),
                "residual log-dets": self.to_bits(self.residual_nats),
                "preprocessing log-det": self.to_bits(self.preprocess_nats)}


@torch.no_grad()
def bits_per_dim_breakdown(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None,
                           batch_size: int = 100) -> BitsBreakdown:
    """bits/dim of dequantised images x in [0, 1), split into the prior, layer and preprocessing terms."""
    model.eval()
    parts = []
    for start in range(0, len(x), batch_size):
        y, logdet_pre = preprocess(x[start:start + batch_size], logit_alpha)
        terms = log_prob_terms(model, y)
        parts.append((terms["prior"], terms["per_layer"], logdet_pre))
    prior, per_layer, logdet_pre = (torch.cat(t) for t in zip(*parts))
    names = flow_layers(model)
    is_actnorm = torch.tensor([isinstance(layer, ActNorm) for _, layer in names], device=per_layer.device)
    n_dims = model.n_dims
    per_image = bits_per_dim(prior + per_layer.sum(1), n_dims, 256, logdet_preprocess=logdet_pre)
    return BitsBreakdown(
        n_dims=n_dims, prior_nats=float(prior.mean()), actnorm_nats=float(per_layer[:, is_actnorm].sum(1).mean()),
        residual_nats=float(per_layer[:, ~is_actnorm].sum(1).mean()), preprocess_nats=float(logdet_pre.mean()),
        per_layer_nats=per_layer.mean(0).cpu().numpy(), layer_names=[name for name, _ in names],
        per_image=per_image.cpu().numpy())


@torch.no_grad()
def estimator_draws(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None, estimator: str,
                    n_repeats: int, seed: int = 0, **kwargs) -> torch.Tensor:
    """bits/dim of every image in x, ``n_repeats`` independent times with one log-det estimator: (n_repeats, B).

    ``estimator`` is "series" (paper, with ``n_terms``), "unbiased" (Russian roulette) or "exact"
    (deterministic: one repeat is enough). Every repeat draws fresh probes (and a fresh N).
    """
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive integer, got {n_repeats!r}")
    model.eval()
    if estimator != "exact":
        kwargs["generator"] = torch.Generator(device=x.device).manual_seed(seed)
    with using_estimator(model, estimator, **kwargs):
        draws = [bits_per_dim(log_likelihood(model, x, logit_alpha), model.n_dims) for _ in range(n_repeats)]
    return torch.stack(draws)


@dataclass
class EstimatorComparison:
    """bits/dim of the same images by several log-det estimators, against the exact value (per image)."""

    exact: np.ndarray              # (B,) exact bits/dim
    draws: dict[str, np.ndarray]   # label -> (n_repeats, B) bits/dim
    terms: dict[str, float]        # label -> (expected) number of series terms per block

    def rows(self) -> list[dict]:
        """Per estimator: mean error (bias) in bits/dim with its standard error, and the std of one estimate."""
        rows = []
        for label, draws in self.draws.items():
            error = draws - self.exact            # (n_repeats, B)
            per_repeat = error.mean(1)            # repeats are independent, images share nothing either
            rows.append({"estimator": label, "terms": self.terms[label], "bias": float(error.mean()),
                         "bias_se": float(per_repeat.std(ddof=1) / math.sqrt(len(per_repeat)))
                         if len(per_repeat) > 1 else float("nan"),
                         "std": float(np.sqrt(draws.var(0, ddof=1).mean())) if len(draws) > 1 else 0.0})
        return rows


def compare_estimators(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None,
                       series_terms=(1, 2, 5, 10), n_repeats: int = 8, roulette: dict | None = None,
                       seed: int = 0) -> EstimatorComparison:
    """The truncated series for each n in ``series_terms``, Russian roulette, and the exact log-det, in bits/dim.

    ``roulette`` holds :func:`iresnet_mini.logdet.unbiased_logdet` options (default: 2 exact
    terms, geometric p = 0.5, Residual Flows' setting).
    """
    roulette = {"n_exact_terms": 2, "distribution": "geometric", "p": 0.5, **(roulette or {})}
    exact = estimator_draws(model, x, logit_alpha, "exact", 1)[0]
    draws, terms = {}, {}
    for n in series_terms:
        label = f"series, {n} term{'s' if n > 1 else ''}"
        draws[label] = estimator_draws(model, x, logit_alpha, "series", n_repeats, seed, n_terms=n).cpu().numpy()
        terms[label] = float(n)
    draws["unbiased (roulette)"] = estimator_draws(model, x, logit_alpha, "unbiased", n_repeats, seed,
                                                   **roulette).cpu().numpy()
    terms["unbiased (roulette)"] = expected_terms(roulette["n_exact_terms"], roulette["distribution"], roulette["p"])
    return EstimatorComparison(exact=exact.cpu().numpy(), draws=draws, terms=terms)


@torch.no_grad()
def sample_images(model: MultiScaleFlow, n: int, logit_alpha: float | None, temperature: float = 1.0,
                  seed: int = 0) -> tuple[torch.Tensor, dict]:
    """n samples: z_i from the priors (std x ``temperature``), then F^-1 block by block (Alg. 1; Fig. 5).

    Returns images in [0, 1] (clamped for display) and a report: iterations per block, whether every
    inverse converged, and the fraction of pixels the model put outside [0, 1] before clamping.
    """
    _check_flow(model)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with quiet_inverse():
        x = postprocess(model.sample(n, generator, temperature), logit_alpha)
    report = inverse_report([layer.block.last_inverse_info for _, layer in flow_layers(model)
                             if isinstance(layer, ResidualFlowLayer)])
    report["outside_unit_interval"] = float(((x < 0) | (x > 1)).float().mean())
    return x.clamp(0, 1), report


def reconstruct(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None) -> dict:
    """x -> z = F(x) -> F^-1(z) by the fixed-point inverse of every block (Alg. 1): the certificate's
    :func:`~iresnet_mini.certificate.round_trip`, errors in pixel units, per block (forward order) the
    ``iterations`` and final ``residuals`` of its inverse, and whether all ``converged``."""
    _check_flow(model)
    return round_trip(model, x, logit_alpha)


# ----------------------------------------------------------------------------------------
# One trained block, small enough for the exact log-det (paper Fig. 4 on a trained model)
# ----------------------------------------------------------------------------------------

def frozen_branch(branch: nn.Module) -> nn.Module:
    """A copy of a trained branch whose spectrally normalised weights W / max(1, sigma_hat / c) are fixed.

    The copy is the same function as the trained branch, on inputs of any spatial size: a
    constrained convolution would otherwise re-estimate sigma for a new input size and so
    change its weights. The copy has no constraint left (coeff None) and no power iteration.
    """
    frozen = copy.deepcopy(branch).eval()
    with torch.no_grad():
        for layer in lipschitz_layers(frozen):
            layer.weight.copy_(layer.normalized_weight())
            layer.coeff = None
    return frozen


class _Captured(Exception):
    """Stops a forward pass once the wanted block input is captured."""


@torch.no_grad()
def block_input(model: MultiScaleFlow, y: torch.Tensor, index: int) -> torch.Tensor:
    """What residual layer ``index`` (0-based, forward order) receives for model inputs y (after its ActNorm)."""
    blocks = [layer for _, layer in flow_layers(model) if isinstance(layer, ResidualFlowLayer)]
    if not isinstance(index, int) or not 0 <= index < len(blocks):
        raise ValueError(f"index must be an integer in [0, {len(blocks) - 1}], got {index!r}")
    captured = {}

    def hook(_module, inputs):
        captured["x"] = inputs[0].detach().clone()
        raise _Captured

    handle = blocks[index].register_forward_pre_hook(hook)
    model.eval()
    try:
        with using_estimator(model, "series", n_terms=1):
            model(y)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured["x"]


def center_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The central side x side window of a batch (B, C, H, W)."""
    h, w = x.shape[-2:]
    if not isinstance(side, int) or not 1 <= side <= min(h, w):
        raise ValueError(f"side must be an integer in [1, {min(h, w)}] for {h}x{w} inputs, got {side!r}")
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top:top + side, left:left + side]


@dataclass
class TrainedBlock:
    """A trained residual branch (weights frozen, float64) and crops of the real inputs it sees."""

    index: int                 # residual layer, 0-based in forward order
    name: str
    coeff: float               # the model's Lipschitz coefficient c
    branch: nn.Module
    x: torch.Tensor            # (n_points, C, side, side) float64

    @property
    def dim(self) -> int:
        """d = C * side^2: the size of the block's Jacobian J_g(x) (d x d)."""
        return self.x[0].numel()


def trained_block(model: MultiScaleFlow, x: torch.Tensor, logit_alpha: float | None, index: int,
                  max_dim: int) -> TrainedBlock:
    """Residual layer ``index`` of a trained model on central crops of the inputs it sees for images x.

    The inputs are the real activations the block receives for the dequantised images x; the
    crop is the largest square window with d = C * side^2 <= ``max_dim``, small enough for the
    exact Jacobian, so that :func:`iresnet_mini.lessons.nb03.logdet_study.bias_variance_study` can measure the
    estimator's bias and standard deviation on a trained block (paper Fig. 4).
    """
    y, _ = preprocess(x, logit_alpha)
    inputs = block_input(model, y, index)
    side = min(math.isqrt(max_dim // inputs.shape[1]), *inputs.shape[-2:])
    if side < 1:
        raise ValueError(f"max_dim={max_dim} is smaller than the block's {inputs.shape[1]} channels: no crop fits")
    name, layer = [(n, m) for n, m in flow_layers(model) if isinstance(m, ResidualFlowLayer)][index]
    return TrainedBlock(index=index, name=name, coeff=model.config.coeff,
                        branch=frozen_branch(layer.block.branch).double(), x=center_crop(inputs, side).double())


def epoch_lines(history: list, last: int = 3) -> list[str]:
    """One line for each of the ``last`` epoch records of a density run (``metrics.jsonl``)."""
    if not isinstance(last, int) or last < 1:
        raise ValueError(f"last must be a positive number of epochs, got {last!r}")
    return [f"epoch {r['epoch']}: {r['step']:,} steps, training loss {r['train_loss']:.3f} bits/dim, "
            f"test {r['test_bits_per_dim']:.3f} bits/dim on {r['test_images']:,} images" for r in history[-last:]]
