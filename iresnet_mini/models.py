"""Image models built from invertible residual blocks (paper Sec. 4, official code's layouts).

* :class:`IResNetClassifier` - the i-ResNet classifier: (squeeze) -> injective zero padding ->
  stages of [squeeze] -> ActNorm -> x + g(x) blocks -> head BatchNorm -> ReLU -> global average
  pool -> linear. Everything before the head is invertible, so an image can be reconstructed
  from its features by the fixed-point inverse (paper Fig. 3). With ``block="coupling"`` the
  same layout is built from Glow steps instead (:class:`CouplingStep`: ActNorm, invertible 1x1
  convolution, affine coupling), the coupling classifier of the paper's Table 3.
* :class:`MultiScaleFlow` - the density model: scales of squeeze -> [ActNorm, residual flow
  layer] x n, half of the channels factored out after every scale but the last, each
  factored part with its own learned diagonal Gaussian prior (paper Sec. 3 and 4).

Architectures are plain dataclasses (:class:`ClassifierConfig`, :class:`FlowConfig`) with
named presets (:data:`CLASSIFIER_PRESETS`, :data:`FLOW_PRESETS`): ``"tiny"`` for tests,
``"cpu"`` for a laptop CPU, ``"paper"`` for the paper's GPU models.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import InverseInfo, InvertibleResidualBlock, conv_branch
from .flows import (ActNorm, ChannelCoupling, ConditionalGaussian, DiagonalGaussian, InvertibleConv1x1,
                    ResidualFlowLayer, Squeeze)
from .lipschitz import ACTIVATIONS, check_coeff
from .logdet import OPTION_TYPES, check_estimator_options, get_estimator

__all__ = [
    "ClassifierConfig", "FlowConfig", "CLASSIFIER_PRESETS", "FLOW_PRESETS", "classifier_config",
    "flow_config", "SPLIT_PRIORS", "BLOCKS", "InjectivePad", "ClassifierStep", "CouplingStep", "IResNetClassifier",
    "MultiScaleFlow", "count_parameters", "build_model", "config_to_dict", "config_from_dict", "parse_model_options",
    "check_choice",
]


# ----------------------------------------------------------------------------------------
# Configurations and presets
# ----------------------------------------------------------------------------------------

BLOCKS = ("residual", "coupling")  # the classifier's invertible steps: i-ResNet or Glow-style


def check_choice(name: str, value, allowed) -> None:
    """ValueError naming ``value`` and the ``allowed`` choices if ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: allowed are {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the i-ResNet classifier (paper Sec. 4; official ``conv_iResNet``)."""

    in_shape: tuple[int, int, int] = (3, 32, 32)   # (C, H, W) of the images
    n_classes: int = 10
    init_squeeze: bool = False          # space-to-depth before the padding
    channels: int = 16                  # channels after injective zero padding (paper: 3 + 13)
    blocks: tuple[int, ...] = (7, 7, 7)  # residual blocks per stage
    strides: tuple[int, ...] = (1, 2, 2)  # 2: the stage starts with a squeeze
    widths: tuple[int, ...] = (32, 64, 128)  # bottleneck width of each stage's branches
    coeff: float | None = 0.9           # Lipschitz coefficient c; None: the vanilla baseline
    n_power_iterations: int = 1
    activation: str = "elu"
    actnorm: bool = True
    block: str = "residual"             # "coupling": Glow-style steps instead (Table 3's baseline)

    def __post_init__(self):
        _check_stages(self.blocks, self.strides, self.widths)
        _check_activation(self.activation)
        check_coeff(self.coeff)
        check_choice("block", self.block, BLOCKS)
        if self.block == "coupling" and self.coeff is not None:
            raise ValueError(f"a coupling block is invertible by its dimension splitting and has no Lipschitz "
                             f"constraint, so coeff must be None (--vanilla), got {self.coeff}")
        c, h, w = self.in_shape
        if self.channels < self.squeezed_in_channels:
            raise ValueError(f"channels={self.channels} is fewer than the input's "
                             f"{self.squeezed_in_channels} channels: injective padding only adds channels")
        if self.init_squeeze and (h % 2 or w % 2):
            raise ValueError(f"init_squeeze needs an even image size, got {h}x{w}")
        _check_squeezes(h // (2 if self.init_squeeze else 1), self.strides)

    @property
    def squeezed_in_channels(self) -> int:
        return self.in_shape[0] * (4 if self.init_squeeze else 1)

    @property
    def pad_channels(self) -> int:
        """Zero channels appended to the input (paper: 13 for CIFAR-10)."""
        return self.channels - self.squeezed_in_channels


SPLIT_PRIORS = ("diagonal", "conditional")


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of the multi-scale i-ResNet flow (paper Sec. 4, density model)."""

    in_shape: tuple[int, int, int] = (3, 32, 32)
    blocks: tuple[int, ...] = (16, 16, 16)  # residual flow layers per scale
    widths: tuple[int, ...] = (512, 512, 512)
    coeff: float = 0.9
    n_power_iterations: int = 5
    activation: str = "elu"
    estimator: str = "series"           # log-det estimator in training: "series" or "unbiased"
    estimator_kwargs: dict = field(default_factory=lambda: {"n_terms": 5, "n_samples": 1})
    # the factored-out halves' priors: "diagonal" (a learned Gaussian per position, the paper's) or
    # "conditional" (Glow's split prior, Kingma & Dhariwal 2018: its mean and scale computed from the half that stays)
    split_prior: str = "diagonal"

    def __post_init__(self):
        _check_stages(self.blocks, (1,) * len(self.blocks), self.widths)
        _check_activation(self.activation)
        check_choice("split_prior", self.split_prior, SPLIT_PRIORS)
        if check_coeff(self.coeff) is None:
            raise ValueError("a density model needs coeff in (0, 1): without it the log-det series diverges")
        get_estimator(self.estimator)  # a clear error for an unknown name
        try:
            check_estimator_options(self.estimator, self.estimator_kwargs)
        except ValueError as error:
            raise ValueError(f"{error}. The estimator_kwargs {self.estimator_kwargs!r} are the preset's unless "
                             "the model option sets them: estimator_kwargs=KEY:VALUE,..., for example "
                             "estimator_kwargs=n_exact_terms:2,p:0.5,neumann_gradient:true") from None

    @property
    def strides(self) -> tuple[int, ...]:
        """Each scale starts with a squeeze while the side length is even (the first: at the input)."""
        side, strides = self.in_shape[1], []
        for _ in self.blocks:
            strides.append(2 if side % 2 == 0 else 1)
            side //= strides[-1]
        return tuple(strides)


def _check_stages(blocks, strides, widths) -> None:
    if not (len(blocks) == len(strides) == len(widths) >= 1):
        raise ValueError(f"blocks, strides and widths need one entry per stage, got {blocks}, {strides}, {widths}")
    if any(not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"every stage needs at least one block, got blocks={blocks}")
    if any(s not in (1, 2) for s in strides):
        raise ValueError(f"strides must be 1 or 2 (2 = squeeze), got {strides}")
    if any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths}")


def _check_activation(activation) -> None:
    if isinstance(activation, str) and activation.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: allowed are {', '.join(map(repr, ACTIVATIONS))}")


def _check_squeezes(side: int, strides) -> None:
    for stride in strides:
        if stride == 2 and side % 2:
            raise ValueError(f"a stride-2 stage needs an even side length, got {side}; adjust strides")
        side //= stride


# Shape-independent presets; the image shape and the number of classes come from the data.
CLASSIFIER_PRESETS: dict[str, dict] = {
    # seconds per epoch on a few thousand images (tests, smoke runs)
    "tiny": dict(init_squeeze=True, channels=16, blocks=(1, 1), strides=(1, 2), widths=(16, 32)),
    # the laptop-CPU model: 6 blocks, 0.33M parameters (MNIST in 10 minutes on 2 cores, see train.py)
    "cpu": dict(init_squeeze=True, channels=16, blocks=(2, 4), strides=(1, 2), widths=(32, 64)),
    # one GPU, MNIST to 99.5 % in minutes (bench gpu): the cpu layout, wider and deeper
    "gpu": dict(init_squeeze=True, channels=16, blocks=(3, 5), strides=(1, 2), widths=(64, 128)),
    # the paper's CIFAR-10 classifier: 7-7-7 blocks, widths 32-64-128, 3 + 13 channels
    "paper": dict(init_squeeze=False, channels=16, blocks=(7, 7, 7), strides=(1, 2, 2),
                  widths=(32, 64, 128), coeff=0.9, n_power_iterations=1),
}
FLOW_PRESETS: dict[str, dict] = {
    "tiny": dict(blocks=(1, 1), widths=(16, 16), n_power_iterations=1,
                 estimator_kwargs={"n_terms": 2, "n_samples": 1}),
    # the laptop-CPU flow: narrow branches (more steps per minute beat width on a CPU budget)
    "cpu": dict(blocks=(8, 8), widths=(32, 64), n_power_iterations=1,
                estimator_kwargs={"n_terms": 3, "n_samples": 1, "neumann_gradient": True}),
    # the paper's density model: 3 scales of 16 blocks, width 512, 5 terms, 5 power iterations
    "paper": dict(blocks=(16, 16, 16), widths=(512, 512, 512), n_power_iterations=5,
                  estimator_kwargs={"n_terms": 5, "n_samples": 1}),
}


def _preset(table: dict, name: str) -> dict:
    check_choice("preset", name, table)
    return dict(table[name])


def classifier_config(preset: str, in_shape, n_classes: int = 10, **overrides) -> ClassifierConfig:
    """The classifier preset ``preset`` for images of ``in_shape`` = (C, H, W), with overrides."""
    return ClassifierConfig(in_shape=tuple(in_shape), n_classes=n_classes,
                            **{**_preset(CLASSIFIER_PRESETS, preset), **overrides})


def flow_config(preset: str, in_shape, **overrides) -> FlowConfig:
    """The density-model preset ``preset`` for images of ``in_shape`` = (C, H, W), with overrides."""
    return FlowConfig(in_shape=tuple(in_shape), **{**_preset(FLOW_PRESETS, preset), **overrides})


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------
# The classifier
# ----------------------------------------------------------------------------------------

class InjectivePad(nn.Module):
    """Append ``n`` zero channels: injective, inverted by dropping them (official ``inj_pad``)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return F.pad(x, (0, 0, 0, 0, 0, self.n)) if self.n else x

    def inverse(self, y):
        return y[:, : y.shape[1] - self.n]


class ClassifierStep(nn.Module):
    """[Squeeze] -> ActNorm -> F(x) = x + g(x): one invertible step of the classifier (official block)."""

    def __init__(self, channels: int, width: int, squeeze: bool, coeff, n_power_iterations: int,
                 activation: str, actnorm: bool, preactivation: bool):
        super().__init__()
        self.squeeze = Squeeze() if squeeze else None
        channels = channels * 4 if squeeze else channels
        self.actnorm = ActNorm(channels) if actnorm else None
        self.block = InvertibleResidualBlock(conv_branch(
            channels, width, coeff=coeff, activation=activation,
            n_power_iterations=n_power_iterations, preactivation=preactivation))

    def features(self, x):
        """The step's map alone, without its log-determinant (all that classification needs)."""
        if self.squeeze is not None:
            x, _ = self.squeeze(x)
        if self.actnorm is not None:
            x, _ = self.actnorm(x)
        return self.block(x)

    def forward(self, x):
        """(y, log|det dy/dx|) per sample, the flow contract; the block's log-det by its estimator."""
        logdet = x.new_zeros(x.shape[0])
        if self.squeeze is not None:
            x, _ = self.squeeze(x)
        if self.actnorm is not None:
            x, ld = self.actnorm(x)
            logdet = logdet + ld
        y, ld = self.block.forward_with_logdet(x)
        return y, logdet + ld

    def inverse(self, y, max_iter: int = 100, atol: float | None = None):
        """x: the block by fixed-point iteration (Alg. 1, its report in ``last_inverse_info``), ActNorm and
        squeeze in closed form."""
        x = self.block.inverse(y, max_iter=max_iter, atol=atol, warn=False)
        if self.actnorm is not None:
            x = self.actnorm.inverse(x)
        if self.squeeze is not None:
            x = self.squeeze.inverse(x)
        return x

    @property
    def last_inverse_info(self):
        return self.block.last_inverse_info


class CouplingStep(nn.Module):
    """[Squeeze] -> ActNorm -> invertible 1x1 conv -> affine coupling: one Glow step (Table 3's baseline).

    The same interface as :class:`ClassifierStep`, so that the classifier, its inverse and the
    lessons take either; its inverse is in closed form (reported as zero iterations).
    """

    def __init__(self, channels: int, width: int, squeeze: bool, activation: str, actnorm: bool):
        super().__init__()
        self.squeeze = Squeeze() if squeeze else None
        channels = channels * 4 if squeeze else channels
        self.actnorm = ActNorm(channels) if actnorm else None
        self.mix = InvertibleConv1x1(channels)
        self.coupling = ChannelCoupling(channels, width, activation)
        self.last_inverse_info: InverseInfo | None = None

    def _layers(self):
        return [m for m in (self.squeeze, self.actnorm, self.mix, self.coupling) if m is not None]

    def features(self, x):
        return self(x)[0]

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for layer in self._layers():
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y, max_iter: int = 100, atol: float | None = None):
        """x in closed form (``max_iter`` and ``atol`` are there for the residual step's signature)."""
        start = time.perf_counter()
        for layer in reversed(self._layers()):
            y = layer.inverse(y)
        self.last_inverse_info = InverseInfo(iterations=0, residual=0.0, converged=bool(torch.isfinite(y).all()),
                                             seconds=time.perf_counter() - start, method="closed form",
                                             history=[])
        return y


class IResNetClassifier(nn.Module):
    """The i-ResNet classifier (paper Sec. 4): invertible features, then a small non-invertible head."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.init_squeeze = Squeeze() if config.init_squeeze else None
        self.pad = InjectivePad(config.pad_channels)
        steps, channels, side = [], config.channels, config.in_shape[1] // (2 if config.init_squeeze else 1)
        for stage, (n_blocks, stride, width) in enumerate(zip(config.blocks, config.strides, config.widths)):
            for j in range(n_blocks):
                squeeze = stride == 2 and j == 0
                if config.block == "coupling":
                    steps.append(CouplingStep(channels, width, squeeze, config.activation, config.actnorm))
                else:
                    steps.append(ClassifierStep(channels, width, squeeze, config.coeff, config.n_power_iterations,
                                                config.activation, config.actnorm,
                                                preactivation=not (stage == 0 and j == 0)))
                if squeeze:
                    channels, side = channels * 4, side // 2
        self.steps = nn.ModuleList(steps)
        self.feature_shape = (channels, side, side * config.in_shape[2] // config.in_shape[1])
        self.norm = nn.BatchNorm2d(channels)
        self.linear = nn.Linear(channels, config.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The invertible part: image (B, C, H, W) -> features (B, *feature_shape)."""
        if self.init_squeeze is not None:
            x, _ = self.init_squeeze(x)
        x = self.pad(x)
        for step in self.steps:
            x = step.features(x)
        return x

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """BatchNorm -> ReLU -> global average pool -> linear: features to logits."""
        return self.linear(F.relu(self.norm(z)).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes)."""
        return self.head(self.features(x))

    @torch.no_grad()
    def inverse(self, z: torch.Tensor, max_iter: int = 100, atol: float | None = None,
                return_info: bool = False):
        """Images from features: every block by fixed-point iteration (Alg. 1), padding dropped.

        Returns NaNs of the image's shape when an iterate leaves the finite numbers (an
        unconstrained block, Lip(g) > 1). ``return_info`` also returns one InverseInfo per block.
        """
        infos, x = [], z
        for step in reversed(self.steps):
            x = step.inverse(x, max_iter=max_iter, atol=atol)
            infos.append(step.last_inverse_info)
            if not torch.isfinite(x).all():
                x = z.new_full((z.shape[0], *self.config.in_shape), float("nan"))
                return (x, infos) if return_info else x
        x = self.pad.inverse(x)
        if self.init_squeeze is not None:
            x = self.init_squeeze.inverse(x)
        return (x, infos) if return_info else x


# ----------------------------------------------------------------------------------------
# The density model
# ----------------------------------------------------------------------------------------

class MultiScaleFlow(nn.Module):
    """Multi-scale i-ResNet flow: log p(x) = sum_i log p_i(z_i) + sum of log-dets (paper Sec. 3).

    Scale i: [squeeze] -> (ActNorm -> residual flow layer) x blocks[i]; after every scale
    but the last, the first half of the channels is factored out as z_i with a learned
    diagonal Gaussian prior (``split_prior="conditional"``: a Gaussian whose mean and scale
    depend on the half h_i that stays, p(z_i | h_i)); the last scale's output is the final z.
    """

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        c, h, w = config.in_shape
        scales, priors = [], []
        n_scales = len(config.blocks)
        for i, (n_blocks, stride, width) in enumerate(zip(config.blocks, config.strides, config.widths)):
            layers: list[nn.Module] = []
            if stride == 2:
                layers.append(Squeeze())
                c, h, w = 4 * c, h // 2, w // 2
            for j in range(n_blocks):
                branch = conv_branch(c, width, coeff=config.coeff, activation=config.activation,
                                     n_power_iterations=config.n_power_iterations,
                                     preactivation=not (i == 0 and j == 0))
                layers += [ActNorm(c), ResidualFlowLayer(branch, config.estimator, **config.estimator_kwargs)]
            scales.append(nn.ModuleList(layers))
            if i < n_scales - 1:
                if c < 2:
                    raise ValueError(f"scale {i} has {c} channel(s), too few to factor out half; "
                                     "use fewer scales")
                if config.split_prior == "conditional":
                    priors.append(ConditionalGaussian((c // 2, h, w), context_channels=c - c // 2))
                else:
                    priors.append(DiagonalGaussian((c // 2, h, w)))
                c -= c // 2
        priors.append(DiagonalGaussian((c, h, w)))
        self.scales = nn.ModuleList(scales)
        self.priors = nn.ModuleList(priors)

    @property
    def n_dims(self) -> int:
        return math.prod(self.config.in_shape)

    @property
    def conditional(self) -> bool:
        """Whether the factored-out halves' priors depend on the halves that stay."""
        return self.config.split_prior == "conditional"

    def _encode(self, x: torch.Tensor):
        """(z_i, the kept halves h_i each z_i is conditioned on, total log-det)."""
        zs, kept, logdet = [], [], x.new_zeros(x.shape[0])
        for i, scale in enumerate(self.scales):
            for layer in scale:
                x, ld = layer(x)
                logdet = logdet + ld
            if i < len(self.scales) - 1:
                z, x = x.split([self.priors[i].shape[0], x.shape[1] - self.priors[i].shape[0]], dim=1)
                zs.append(z)
                kept.append(x)
        zs.append(x)
        return zs, kept, logdet

    def forward(self, x: torch.Tensor):
        """(list of z_i, total log|det dz/dx| per sample)."""
        zs, _, logdet = self._encode(x)
        return zs, logdet

    def prior_log_prob(self, zs, kept) -> torch.Tensor:
        """sum_i log p_i(z_i) per sample (given the kept halves h_i where the priors are conditional)."""
        return sum(prior.log_prob(z, h) if self.conditional and h is not None else prior.log_prob(z)
                   for prior, z, h in zip(self.priors, zs, [*kept, None]))

    def log_prob(self, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """log p(x) in nats per sample by change of variables (Sec. 3), log-dets by the estimator.

        ``validate`` checks x for NaN/inf first, which reads a value back to the host; the training
        step, whose inputs are dequantised 8-bit images, skips it.
        """
        if validate and not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        zs, kept, logdet = self._encode(x)
        return self.prior_log_prob(zs, kept) + logdet

    def _decode(self, last: torch.Tensor, factored) -> torch.Tensor:
        """x from the last scale's z, scale by scale: ``factored(i, h_i)`` gives z_i for the kept half h_i."""
        x = last
        for i in reversed(range(len(self.scales))):
            if i < len(self.scales) - 1:
                x = torch.cat([factored(i, x), x], dim=1)
            for layer in reversed(self.scales[i]):
                x = layer.inverse(x)
        return x

    @torch.no_grad()
    def inverse(self, zs) -> torch.Tensor:
        """x from the list of z_i: every residual layer by its fixed-point inverse (Alg. 1)."""
        return self._decode(zs[-1], lambda i, _h: zs[i])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n samples: z_i from the priors (std scaled by ``temperature``), then the inverse flow.

        With conditional priors the draws interleave with the inverse: the last z first, then
        scale by scale back to the input, each z_i drawn given the h_i just reconstructed.
        """
        if not self.conditional:
            return self.inverse([prior.sample(n, generator, temperature=temperature) for prior in self.priors])
        return self._decode(self.priors[-1].sample(n, generator, temperature=temperature),
                            lambda i, h: self.priors[i].sample(n, generator, temperature=temperature, context=h))


def build_model(config: ClassifierConfig | FlowConfig) -> nn.Module:
    """The model a configuration describes."""
    if isinstance(config, ClassifierConfig):
        return IResNetClassifier(config)
    if isinstance(config, FlowConfig):
        return MultiScaleFlow(config)
    raise TypeError(f"expected a ClassifierConfig or FlowConfig, got {type(config).__name__}")


def config_to_dict(config) -> dict:
    """A configuration as plain JSON types (tuples become lists)."""
    return asdict(config)


def config_from_dict(kind: str, values: dict):
    """Inverse of :func:`config_to_dict` for ``kind`` = "classify" or "density"."""
    cls = {"classify": ClassifierConfig, "density": FlowConfig}[kind]
    tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
    return cls(**{**values, **tuples})


# Options a command line can set: KEY=VALUE strings, typed by the architecture's fields.
_OPTION_FIELDS = {"classify": ClassifierConfig, "density": FlowConfig}
_NOT_OPTIONS = {"in_shape", "n_classes", "coeff"}  # from the data and --coeff/--vanilla


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", tuple: "comma-separated integers such as 2,4"}


def _typed(kind: type, text: str):
    """``text`` as a value of ``kind`` (bool, int, float, tuple of ints or str); ValueError if it is not one."""
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if kind is tuple:
        return tuple(int(part) for part in text.split(","))
    return kind(text)


def _estimator_kwargs_value(text: str) -> dict:
    """``estimator_kwargs=n_exact_terms:2,p:0.5,neumann_gradient:true`` -> a dict typed by the settings
    (``none``: no settings, as the exact estimator takes)."""
    if text.lower() == "none":
        return {}
    options = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if not sep or not value:
            raise ValueError(f"model option estimator_kwargs: {item!r} is not KEY:VALUE (for example "
                             "estimator_kwargs=n_exact_terms:2,p:0.5,neumann_gradient:true)")
        if key not in OPTION_TYPES:
            raise ValueError(f"model option estimator_kwargs: unknown setting {key!r}; the estimators take "
                             f"{', '.join(OPTION_TYPES)}")
        try:
            options[key] = _typed(OPTION_TYPES[key], value)
        except ValueError:
            raise ValueError(f"model option estimator_kwargs: {key}:{value!r}, {key} takes "
                             f"{_KIND_NAMES.get(OPTION_TYPES[key], 'text')}") from None
    return options


def _option_value(cls, key: str, text: str):
    if key == "estimator_kwargs":
        return _estimator_kwargs_value(text)
    default = getattr(cls, key)
    kind = next((k for k in (bool, tuple, int) if isinstance(default, k)), str)  # bool before int: True is an int
    try:
        return _typed(kind, text)
    except ValueError:
        raise ValueError(f"model option {key}={text!r}: {key} takes {_KIND_NAMES[kind]}") from None


def parse_model_options(task: str, items) -> dict:
    """Architecture overrides from ``KEY=VALUE`` strings, e.g. ``["widths=64,128", "activation=lipswish"]``.

    Keys are the fields of :class:`ClassifierConfig` (task "classify") or :class:`FlowConfig`
    ("density"), except those set elsewhere (the image shape, c); values are typed by the field.
    """
    cls = _OPTION_FIELDS[task]
    allowed = [f for f in cls.__dataclass_fields__ if f not in _NOT_OPTIONS]
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not text:
            raise ValueError(f"model option {item!r} is not KEY=VALUE (for example widths=64,128)")
        if key not in allowed:
            raise ValueError(f"unknown model option {key!r} for task {task!r}: allowed are {', '.join(allowed)}")
        options[key] = _option_value(cls, key, text)
    return options
