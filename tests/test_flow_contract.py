"""The flow contract (iresnet_mini.flows), checked the same way for every invertible piece.

forward(x) -> (y, logdet) with logdet = log|det dy/dx| per sample, inverse(y) -> x, and
last_inverse_info: an InverseInfo after an iterative inverse, None for a closed-form one. The
log-det is compared with the exact one from the full Jacobian (torch.func), the round trip with
the input, in float64 on small inputs. A layer with a planted fault is rejected by the same check.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from iresnet_mini import blocks, flows, models
from iresnet_mini.blocks import InverseInfo
from iresnet_mini.lessons.nb04 import toyflows

pytestmark = pytest.mark.usefixtures("one_thread")


def _trained_like(module: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random, non-trivial parameters (ActNorm initialised on x, coupling nets not at zero, 1x1 convolutions
    not rotations), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    module = module.double()
    module.train()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (flows.AffineCoupling, flows.ChannelCoupling)):
                for p in m.net.parameters():
                    p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        module(x)  # ActNorm's data-dependent init; power iterations learn their vectors
        for m in module.modules():
            if isinstance(m, flows.ResidualFlowLayer):  # iterate to float64 precision
                m.inverse_kwargs.update(atol=1e-12, max_iter=500)
            if isinstance(m, flows.InvertibleConv1x1):  # away from the rotation start, whose log-det is 0
                m.weight.add_(0.4 * torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype))
            if isinstance(m, flows.ActNorm):  # move away from the exact standardisation
                m.bias.add_(0.1 * torch.randn(m.bias.shape, generator=generator, dtype=m.bias.dtype))
                m.log_scale.add_(0.2 * torch.randn(m.log_scale.shape, generator=generator, dtype=m.log_scale.dtype))
    return module.eval()


def _exact_logdet(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    def one(sample):
        return layer(sample[None])[0][0]
    values = []
    for sample in x:
        jac = torch.autograd.functional.jacobian(one, sample)
        jac = jac.reshape(sample.numel(), sample.numel())
        values.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(values)


def contract_problems(layer: nn.Module, x: torch.Tensor, atol: float = 1e-6) -> list[str]:
    """What is wrong with ``layer`` as a flow layer on inputs ``x`` (empty: it keeps the contract)."""
    problems = []
    with torch.no_grad():
        out = layer(x)
    if not (isinstance(out, tuple) and len(out) == 2):
        return [f"forward returned {type(out).__name__}, not (y, logdet)"]
    y, logdet = out
    if logdet.shape != (x.shape[0],):
        problems.append(f"logdet has shape {tuple(logdet.shape)}, not one value per sample ({x.shape[0]},)")
    exact = _exact_logdet(layer, x)
    if logdet.shape == exact.shape and not torch.allclose(logdet, exact, atol=atol, rtol=1e-6):
        problems.append(f"logdet {logdet.tolist()} differs from the exact {exact.tolist()}")
    with torch.no_grad():
        x_back = layer.inverse(y)
    if x_back.shape != x.shape or not torch.allclose(x_back, x, atol=atol, rtol=0):
        problems.append(f"inverse(forward(x)) misses x by {float((x_back - x).abs().max()):.2e}")
    if not hasattr(layer, "last_inverse_info"):
        problems.append("no last_inverse_info")
    elif layer.last_inverse_info is not None:
        info = layer.last_inverse_info
        if not isinstance(info, InverseInfo) or not info.converged:
            problems.append(f"last_inverse_info does not report a converged iteration: {info!r}")
    return problems


def _residual(dim: int, coeff: float = 0.9):
    branch = blocks.mlp_branch(dim, 16, 2, coeff=coeff)
    return flows.ResidualFlowLayer(branch, estimator="exact", inverse_atol=1e-12, inverse_max_iter=500)


def _conv_residual():
    branch = blocks.conv_branch(2, 4, coeff=0.9)
    return flows.ResidualFlowLayer(branch, estimator="exact", inverse_atol=1e-12, inverse_max_iter=500)


def _classifier_step():
    step = models.ClassifierStep(2, 4, squeeze=True, coeff=0.9, n_power_iterations=1, activation="elu",
                                 actnorm=True, preactivation=True)
    step.block.estimator = "exact"
    return step


class _ClassifierStepAtTolerance(nn.Module):
    """ClassifierStep with its inverse run to 1e-12 (its default tolerance suits float32 images)."""

    def __init__(self):
        super().__init__()
        self.step = _classifier_step()

    def forward(self, x):
        return self.step(x)

    def inverse(self, y):
        return self.step.inverse(y, max_iter=500, atol=1e-12)

    @property
    def last_inverse_info(self):
        return self.step.last_inverse_info


LAYERS = {
    "ActNorm": (lambda: flows.ActNorm(3), (4, 3)),
    "ActNorm on images": (lambda: flows.ActNorm(2), (3, 2, 2, 2)),
    "ScaledActNorm (2D flows)": (lambda: toyflows.ScaledActNorm(2, std=4.0), (4, 2)),
    "Squeeze": (lambda: flows.Squeeze(), (3, 1, 4, 4)),
    "ResidualFlowLayer, dense": (lambda: _residual(3), (4, 3)),
    "ResidualFlowLayer, convolutional": (_conv_residual, (2, 2, 3, 3)),
    "AffineCoupling": (lambda: flows.AffineCoupling(torch.tensor([1.0, 0.0, 1.0]), hidden=8, n_hidden_layers=2), (4, 3)),
    "ClassifierStep (squeeze, ActNorm, block)": (_ClassifierStepAtTolerance, (2, 2, 4, 4)),
    "InvertibleConv1x1": (lambda: flows.InvertibleConv1x1(3), (2, 3, 2, 2)),
    "ChannelCoupling": (lambda: flows.ChannelCoupling(3, 4), (2, 3, 2, 2)),
    "CouplingStep (squeeze, ActNorm, 1x1 conv, coupling)": (
        lambda: models.CouplingStep(2, 4, squeeze=True, activation="elu", actnorm=True), (2, 2, 4, 4)),
    "SequentialFlow: i-ResNet flow": (lambda: toyflows.iresnet_flow(2, n_blocks=2, hidden=8, n_hidden_layers=1,
                                                                     estimator="exact"), (4, 2)),
    "SequentialFlow: coupling flow": (lambda: flows.coupling_flow(2, n_layers=2, hidden=8, n_hidden_layers=1), (4, 2)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_invertible_piece_keeps_the_flow_contract(name):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    layer = _trained_like(make(), x)
    assert contract_problems(layer, x) == []


def test_an_iterative_inverse_leaves_its_report():
    x = torch.randn(4, 3, dtype=torch.float64)
    layer = _trained_like(_residual(3), x)
    with torch.no_grad():
        layer.inverse(layer(x)[0])
    info = layer.last_inverse_info
    assert isinstance(info, InverseInfo) and info.converged and info.iterations > 1


class _WrongSign(flows.ActNorm):
    def forward(self, x):
        y, logdet = super().forward(x)
        return y, -logdet


class _LooseInverse(flows.ActNorm):
    def inverse(self, y):
        return super().inverse(y) + 1e-3


class _NoLogdet(flows.Squeeze):
    def forward(self, x):
        return super().forward(x)[0]


class _MixLogdetOncePerImage(flows.InvertibleConv1x1):
    """log|det W| once, not once per pixel: the 1x1 convolution's classic slip."""

    def forward(self, x):
        y, logdet = super().forward(x)
        return y, logdet / (x.shape[2] * x.shape[3])


class _DivergedReport(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = _residual(3)

    def forward(self, x):
        return self.layer(x)

    def inverse(self, y):
        with pytest.warns(blocks.InverseNotConvergedWarning):
            x = self.layer.block.inverse(y, max_iter=1, atol=1e-12)  # one iteration: not converged
        return x.detach() * 0 + self._x  # a correct answer, so that only the report is wrong

    @property
    def last_inverse_info(self):
        return self.layer.last_inverse_info


@pytest.mark.parametrize("broken, shape, complaint", [
    (_WrongSign(3), (4, 3), "differs from the exact"),
    (_LooseInverse(3), (4, 3), "inverse(forward(x)) misses x"),
    (_NoLogdet(), (3, 1, 4, 4), "not (y, logdet)"),
    (_MixLogdetOncePerImage(3, torch.Generator().manual_seed(1)), (2, 3, 2, 2), "differs from the exact"),
    (_DivergedReport(), (4, 3), "does not report a converged iteration"),
])
def test_the_contract_check_rejects_a_planted_fault(broken, shape, complaint):
    x = torch.randn(shape, dtype=torch.float64)
    layer = _trained_like(broken, x) if not isinstance(broken, _NoLogdet) else broken
    if isinstance(layer, _DivergedReport):
        layer._x = x
    problems = contract_problems(layer, x)
    assert any(complaint in p for p in problems), problems
