"""Normalising-flow pieces: ActNorm, Squeeze, i-ResNet flow layers, affine coupling, flows, bits/dim.

**The flow contract.** Every invertible piece is a module with

* ``forward(x) -> (y, logdet)``: the map and log|det dy/dx|, one number per sample;
* ``inverse(y) -> x``: the inverse map, in closed form or by iteration;
* ``last_inverse_info``: what the latest inverse reports, an :class:`InverseInfo` (iterations,
  residual, converged) for an iterative inverse and ``None`` for a closed-form one.

ActNorm, Squeeze, the i-ResNet layer (:class:`ResidualFlowLayer`), the Glow-style affine couplings
(:class:`AffineCoupling` on vectors, the baseline of Fig. 2; :class:`ChannelCoupling` on images, with
:class:`InvertibleConv1x1`, the baseline of Table 3) and the classifier's steps follow it,
and ``tests/test_flow_contract.py`` checks every one of them the same way (round trip, log-det
against the exact Jacobian, diagnostics). Change of variables (paper Sec. 3):
log p(x) = log p_z(F(x)) + sum of the layers' log-determinants.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from .blocks import InverseInfo, InvertibleResidualBlock
from .lipschitz import get_activation

__all__ = [
    "ActNorm", "Squeeze", "ResidualFlowLayer", "AffineCoupling", "InvertibleConv1x1", "ChannelCoupling",
    "coupling_flow", "SequentialFlow",
    "StandardNormal", "DiagonalGaussian", "ConditionalGaussian", "bits_per_dim", "set_estimator", "using_estimator",
]


def _check_finite(x: torch.Tensor, name: str = "x") -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


class ActNorm(nn.Module):
    """Per-channel affine y = (x + b) * exp(s) with data-dependent init (Glow); exact log-det.

    The first batch seen in training sets b = -mean and s = -log(std) per channel, so the
    output starts with zero mean and unit variance. Channels with (near) zero std, such as
    injective zero padding, keep s = 0 instead of dividing by 0.

    Whether that has happened is a Python attribute (``is_initialized``), so that a forward pass
    never reads a tensor back to the host; the ``initialized`` buffer carries it in checkpoints.
    """

    last_inverse_info = None  # closed-form inverse

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.is_initialized = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "initialized"
        if key in state_dict:  # read once when loading, never in a forward pass
            self.is_initialized = bool(state_dict[key])

    def _shape(self, x):
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"ActNorm({self.num_channels}) expects (batch, {self.num_channels}, ...), "
                             f"got {tuple(x.shape)}")
        return (1, -1) + (1,) * (x.dim() - 2)

    @torch.no_grad()
    def _initialize(self, x):
        flat = x.transpose(0, 1).reshape(self.num_channels, -1)
        mean, std = flat.mean(1), flat.std(1, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(torch.where(std > self.eps, -torch.log(std.clamp_min(self.eps)),
                                         torch.zeros_like(std)))
        self.initialized.fill_(True)
        self.is_initialized = True

    def forward(self, x):
        shape = self._shape(x)
        if self.training and not self.is_initialized:
            self._initialize(x)
        y = (x + self.bias.view(shape)) * torch.exp(self.log_scale.view(shape))
        pixels = x[0, 0].numel()
        logdet = (self.log_scale.sum() * pixels).expand(x.shape[0])
        return y, logdet

    def inverse(self, y):
        shape = self._shape(y)
        return y * torch.exp(-self.log_scale.view(shape)) - self.bias.view(shape)


class Squeeze(nn.Module):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2); volume preserving (log-det 0)."""

    last_inverse_info = None  # closed-form inverse

    def forward(self, x):
        if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"Squeeze needs (batch, C, H, W) with even H and W, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y):
        if y.dim() != 4 or y.shape[1] % 4:
            raise ValueError(f"Squeeze.inverse needs (batch, 4C, H, W), got {tuple(y.shape)}")
        b, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class ResidualFlowLayer(nn.Module):
    """An :class:`InvertibleResidualBlock` as a flow layer: forward gives (y, log det(I + J_g))."""

    def __init__(self, branch: nn.Module, estimator: str = "series", inverse_max_iter: int = 100,
                 inverse_atol: float | None = None, inverse_method: str = "fixed_point", **estimator_kwargs):
        super().__init__()
        self.block = InvertibleResidualBlock(branch, estimator=estimator, **estimator_kwargs)
        self.inverse_kwargs = dict(max_iter=inverse_max_iter, atol=inverse_atol, method=inverse_method)

    def forward(self, x):
        return self.block.forward_with_logdet(x)

    def inverse(self, y):
        return self.block.inverse(y, **self.inverse_kwargs)

    @property
    def last_inverse_info(self) -> InverseInfo | None:
        """The fixed-point iteration's report of the latest inverse (Alg. 1)."""
        return self.block.last_inverse_info


class AffineCoupling(nn.Module):
    """RealNVP/Glow affine coupling: x_b -> x_b * exp(s(x_a)) + t(x_a), x_a = the masked-in part.

    ``mask`` (0/1, shape (dim,)) marks the coordinates passed through unchanged. The log-scale
    is bounded, s = scale * tanh(raw s), and the last layer starts at zero (identity map). Its
    Jacobian is triangular: the log-det is the sum of s, and the inverse is in closed form.
    """

    last_inverse_info = None  # closed-form inverse

    def __init__(self, mask: torch.Tensor, hidden: int = 128, n_hidden_layers: int = 3,
                 activation: str = "relu"):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.dim() != 1 or not bool(((mask == 0) | (mask == 1)).all()) or mask.sum() in (0, mask.numel()):
            raise ValueError(f"mask must be a 1D 0/1 tensor with both values present, got {mask.tolist()}")
        dim = mask.numel()
        self.register_buffer("mask", mask)
        widths = [dim] + [hidden] * n_hidden_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), get_activation(activation)]
        last = nn.Linear(hidden, 2 * dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.scale = nn.Parameter(torch.ones(dim))

    def _scale_shift(self, x_a):
        raw_s, t = self.net(x_a).chunk(2, dim=1)
        free = 1 - self.mask
        return self.scale * torch.tanh(raw_s) * free, t * free

    def forward(self, x):
        s, t = self._scale_shift(x * self.mask)
        return x * torch.exp(s) + t, s.sum(1)

    def inverse(self, y):
        s, t = self._scale_shift(y * self.mask)
        return (y - t) * torch.exp(-s)


class InvertibleConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution: the same C x C matrix W mixes the channels at every pixel.

    log|det| = H * W * log|det W|; the inverse applies W^-1. W starts as a random rotation (from
    ``generator``, or torch's global one), whose log-det is 0.
    """

    last_inverse_info = None  # closed-form inverse

    def __init__(self, num_channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(num_channels, num_channels, generator=generator))
        self.weight = nn.Parameter(q)

    def _check(self, x, name):
        if x.dim() != 4 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"InvertibleConv1x1({self.weight.shape[0]}) {name} must be (batch, "
                             f"{self.weight.shape[0]}, H, W), got {tuple(x.shape)}")

    def forward(self, x):
        self._check(x, "input")
        y = torch.nn.functional.conv2d(x, self.weight[:, :, None, None])
        logdet = x.shape[2] * x.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        return y, logdet.expand(x.shape[0])

    def inverse(self, y):
        self._check(y, "inverse's input")
        return torch.nn.functional.conv2d(y, torch.linalg.inv(self.weight)[:, :, None, None])


class ChannelCoupling(nn.Module):
    """Glow's affine coupling on images: the first half of the channels passes unchanged and sets a
    per-pixel scale and shift of the second half, y_b = x_b * exp(s(x_a)) + t(x_a).

    The network (3x3 conv -> activation -> 1x1 conv -> activation -> 3x3 conv) has no constraint at
    all: invertibility comes from the dimension splitting, and the inverse is in closed form. The
    log-scale is bounded, s = scale * tanh(raw s), and the last conv starts at zero (identity map).
    """

    last_inverse_info = None  # closed-form inverse

    def __init__(self, channels: int, width: int, activation: str = "relu"):
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels to split, got {channels}")
        self.n_pass = channels // 2
        n_change = channels - self.n_pass
        last = nn.Conv2d(width, 2 * n_change, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Conv2d(self.n_pass, width, 3, padding=1), get_activation(activation),
                                 nn.Conv2d(width, width, 1), get_activation(activation), last)
        self.scale = nn.Parameter(torch.ones(1, n_change, 1, 1))

    def _scale_shift(self, x_a):
        raw_s, t = self.net(x_a).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x):
        x_a, x_b = x[:, : self.n_pass], x[:, self.n_pass:]
        s, t = self._scale_shift(x_a)
        return torch.cat([x_a, x_b * torch.exp(s) + t], 1), s.flatten(1).sum(1)

    def inverse(self, y):
        y_a, y_b = y[:, : self.n_pass], y[:, self.n_pass:]
        s, t = self._scale_shift(y_a)
        return torch.cat([y_a, (y_b - t) * torch.exp(-s)], 1)


def coupling_flow(dim: int = 2, n_layers: int = 16, hidden: int = 64, n_hidden_layers: int = 3,
                  activation: str = "relu", actnorm: bool = True) -> SequentialFlow:
    """The Glow-style baseline of Fig. 2: [ActNorm] then n_layers x (coupling, [ActNorm]), masks alternating."""
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    layers: list[nn.Module] = [ActNorm(dim)] if actnorm else []
    for i in range(n_layers):
        mask = (torch.arange(dim) % 2 == i % 2).float()
        layers.append(AffineCoupling(mask, hidden, n_hidden_layers, activation))
        if actnorm:
            layers.append(ActNorm(dim))
    return SequentialFlow(layers, event_shape=(dim,))


def set_estimator(module: nn.Module, estimator: str, **estimator_kwargs) -> None:
    """Use ``estimator`` (with these options) in every residual flow layer inside ``module``."""
    from .logdet import get_estimator

    get_estimator(estimator)
    for m in module.modules():
        if isinstance(m, InvertibleResidualBlock):
            m.estimator, m.estimator_kwargs = estimator, dict(estimator_kwargs)


@contextlib.contextmanager
def using_estimator(model: nn.Module, estimator: str, **estimator_kwargs):
    """``estimator`` in every residual layer of ``model`` inside the block; after it, the model's own.

    The model's own is the one its configuration names (``model.config.estimator`` and
    ``estimator_kwargs``), the estimator it trains with.
    """
    set_estimator(model, estimator, **estimator_kwargs)
    try:
        yield model
    finally:
        set_estimator(model, model.config.estimator, **model.config.estimator_kwargs)


class StandardNormal(nn.Module):
    """The base distribution N(0, I) over tensors of ``shape`` (without the batch)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape) if not isinstance(shape, int) else (shape,)

    def log_prob(self, z):
        d = z[0].numel()
        return -0.5 * (z.reshape(z.shape[0], -1) ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi)

    def sample(self, n, generator=None, device=None, dtype=None, temperature: float = 1.0):
        """n draws, the standard deviation scaled by ``temperature``."""
        return temperature * torch.randn((n, *self.shape), generator=generator, device=device, dtype=dtype)


class DiagonalGaussian(StandardNormal):
    """A learned diagonal Gaussian prior N(mu, diag(exp(2 log_sigma))) (the density models' prior)."""

    def __init__(self, shape):
        super().__init__(shape)
        self.mean = nn.Parameter(torch.zeros(self.shape))
        self.log_std = nn.Parameter(torch.zeros(self.shape))

    def log_prob(self, z):
        eps = (z - self.mean) * torch.exp(-self.log_std)
        return super().log_prob(eps) - self.log_std.sum()

    def sample(self, n, generator=None, device=None, dtype=None, temperature: float = 1.0):
        """n draws around the mean, the standard deviation scaled by ``temperature``."""
        eps = super().sample(n, generator, self.mean.device, self.mean.dtype, temperature)
        return self.mean + torch.exp(self.log_std) * eps


class ConditionalGaussian(StandardNormal):
    """The prior of a factored-out half z given the half h that stays: Glow's split prior
    (Kingma & Dhariwal 2018), p(z | h) = N(z; mu + m(h), diag exp(2 (log_sigma + s(h)))).

    mu and log_sigma are learned per position, as in :class:`DiagonalGaussian`; (m, s) come from a
    small convolutional net on h (3x3 conv, ReLU, 3x3 conv) whose last layer starts at zero, so the
    prior starts as that unconditional one. s is bounded to (-3, 3) by a scaled tanh. h must have
    ``context_channels`` channels and z's spatial size. Not a flow layer: nothing in it is inverted;
    sampling draws z for a given h.
    """

    LOG_SCALE_BOUND = 3.0

    def __init__(self, shape, context_channels: int, hidden: int = 64):
        super().__init__(shape)
        if len(self.shape) != 3:
            raise ValueError(f"a conditional prior needs an image shape (C, H, W), got {self.shape}")
        for name, value in (("context_channels", context_channels), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.context_channels = context_channels
        self.mean = nn.Parameter(torch.zeros(self.shape))
        self.log_std = nn.Parameter(torch.zeros(self.shape))
        self.net = nn.Sequential(nn.Conv2d(context_channels, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * self.shape[0], 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def parameters_given(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of z given the context h, each of shape (B, *shape)."""
        if context.dim() != 4 or context.shape[1] != self.context_channels or context.shape[2:] != self.shape[1:]:
            raise ValueError(f"the context must have shape (B, {self.context_channels}, {self.shape[1]}, "
                             f"{self.shape[2]}), got {tuple(context.shape)}")
        shift, log_scale = self.net(context).chunk(2, dim=1)
        bound = self.LOG_SCALE_BOUND
        return self.mean + shift, self.log_std + bound * torch.tanh(log_scale / bound)

    def log_prob(self, z, context=None):
        if context is None:
            raise ValueError("a conditional prior needs the context h the factored-out half is conditioned on")
        mean, log_std = self.parameters_given(context)
        return super().log_prob((z - mean) * torch.exp(-log_std)) - log_std.flatten(1).sum(1)

    def sample(self, n, generator=None, device=None, dtype=None, temperature: float = 1.0, context=None):
        """n draws given the context h (n rows), the standard deviation scaled by ``temperature``."""
        if context is None or context.shape[0] != n:
            raise ValueError(f"sampling a conditional prior needs a context of {n} rows")
        mean, log_std = self.parameters_given(context)
        return mean + torch.exp(log_std) * super().sample(n, generator, mean.device, mean.dtype, temperature)


class SequentialFlow(nn.Module):
    """x -> z through the layers in order; log p(x) = log p_z(z) + sum of log-dets (Sec. 3)."""

    last_inverse_info = None  # each layer reports its own inverse (``layer.last_inverse_info``)

    def __init__(self, layers, base: nn.Module | None = None, event_shape=None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if base is None:
            if event_shape is None:
                raise ValueError("give a base distribution or the event_shape of the latent z")
            base = StandardNormal(event_shape)
        self.base = base

    def forward(self, x):
        """(z, total log-det) per sample."""
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        """x = F^{-1}(z), each residual layer inverted by fixed-point iteration (Alg. 1)."""
        _check_finite(z, "z")
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x):
        """log p(x) in nats per sample by change of variables."""
        _check_finite(x)
        z, logdet = self(x)
        return self.base.log_prob(z) + logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None):
        """n samples: z from the base, then the inverse flow."""
        p = next(self.parameters(), None)
        z = self.base.sample(n, generator=generator,
                             device=p.device if p is not None else None,
                             dtype=p.dtype if p is not None else None)
        return self.inverse(z)


def bits_per_dim(log_prob_nats: torch.Tensor, n_dims: int, n_bins: int = 256,
                 logdet_preprocess: torch.Tensor | float = 0.0) -> torch.Tensor:
    """bits/dim of discrete data from a continuous density (PAPER.md Sec. 4).

    For 8-bit data dequantised as x = (k + u) / 256 in [0, 1)^D and a density p(x):
    bpd = -log p(x) / (D ln 2) + log2(256). ``logdet_preprocess`` is log|det dy/dx| of any
    preprocessing y = T(x) (e.g. a logit transform) whose output the model's log p(y) is for.
    """
    if n_dims < 1:
        raise ValueError(f"n_dims must be >= 1, got {n_dims}")
    log_px = log_prob_nats + logdet_preprocess
    return -log_px / (n_dims * math.log(2)) + math.log2(n_bins)
