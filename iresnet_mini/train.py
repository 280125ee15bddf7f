"""Training the image models: presets, a plain PyTorch loop, checkpoints, a certificate, the CLI.

    python -m iresnet_mini.train --task classify --dataset mnist --preset cpu --time-budget 10 --out runs/mnist

A run directory holds ``config.json`` (every setting), ``metrics.jsonl`` (one JSON object per
epoch), ``checkpoint.pt`` (the latest epoch, written atomically, loadable with
``torch.load(weights_only=True)``) and, at the end, ``summary.json`` (final test figures and
the certificate: spectral norms to tolerance, true operator norms of a few layers, and the
reconstruction error of the inverse on test images; paper Sec. 6 pitfalls).

The learning-rate schedule is a function of the training *progress* in [0, 1]: the fraction
of the planned steps, or of the time budget, that has been used (whichever is larger). So a
``--time-budget`` run anneals its learning rate exactly as its time runs out.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data as _data
from . import distributed, lipschitz, models
from .blocks import InverseNotConvergedWarning
from .config import get_device, seed_everything
from .files import atomic_open, write_atomically
from .flows import bits_per_dim, set_estimator

__all__ = [
    "TrainConfig", "TRAIN_PRESETS", "make_config", "train", "train_step", "evaluate", "certificate", "lr_factor",
    "density_bits_per_dim", "bench_throughput", "estimate_run", "synthetic_setup", "step_function",
    "load_checkpoint", "load_run", "NonFiniteLossError",
    "main",
]

TASKS = ("classify", "density")
DATASETS = ("mnist", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw", "adamax")
SCHEDULES = ("cosine", "step", "constant")
AUGMENTATIONS = ("shift", "crop_flip", "flip")
CHECKPOINT = "checkpoint.pt"
IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # (C, H, W), for benchmarks without data


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Every setting of a run (model architecture in ``model``); saved as config.json."""

    task: str = "classify"
    dataset: str = "mnist"
    preset: str = "tiny"
    model: dict = field(default_factory=dict)   # overrides of the model preset (e.g. coeff)
    epochs: int | None = 2                 # None: train until the time budget is spent
    time_budget_min: float | None = None    # minutes of training (evaluation not counted)
    train_subset: int | None = None         # first N training images
    test_subset: int | None = None          # per-epoch evaluation on the first N test images
    final_test_subset: int | None = None    # final evaluation on the first N test images (None: all)
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    test_batch_size: int = 500
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.3, 0.6, 0.8)  # step schedule, as fractions of training
    gamma: float = 0.2
    warmup: float = 0.0                     # fraction of training with a linear warm-up
    label_smoothing: float = 0.0
    augment: str | None = None              # "shift" (MNIST), "crop_flip" (CIFAR), "flip", None
    shift: int = 2                          # pixels of random shift for "shift"
    logit_alpha: float | None = None        # density: logit(alpha + (1-2 alpha) x); None: x - 0.5
    eval_n_terms: int = 10                  # density: exact series terms of the unbiased test estimator
    init_batch: int = 512                   # images for ActNorm's data-dependent initialisation
    amp: bool = False                       # bfloat16 autocast of the classifier's forward pass (CUDA only)
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None

    def __post_init__(self):
        _check_choice("task", self.task, TASKS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.augment is not None:
            _check_choice("augment", self.augment, AUGMENTATIONS)
        if self.epochs is None and self.time_budget_min is None:
            raise ValueError("give a number of epochs, a time budget, or both")
        for name in ("epochs", "train_subset", "test_subset", "final_test_subset", "batch_size", "test_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise ValueError(f"time_budget_min must be > 0 minutes, got {self.time_budget_min!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        self.milestones = tuple(self.milestones)


def _check_choice(name, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: allowed are {', '.join(map(repr, allowed))}")


# The paper's recipes and the CPU recipes, by (task, preset); the dataset adds DATASET_DEFAULTS.
TRAIN_PRESETS: dict[tuple[str, str], dict] = {
    ("classify", "tiny"): dict(epochs=2, batch_size=64, optimizer="adam", lr=2e-3, test_subset=1000,
                               init_batch=256),
    # Spectral normalisation makes each constrained weight scale-invariant, so its effective step
    # shrinks as the weight grows: a high Adam learning rate trains much faster here.
    ("classify", "cpu"): dict(epochs=None, time_budget_min=10.0, batch_size=128, optimizer="adam",
                              lr=2e-2, warmup=0.03, label_smoothing=0.1, channels_last=True,
                              threads=2),
    # The cpu recipe at a GPU's batch size and bfloat16 autocast; planned for a few minutes (bench gpu).
    ("classify", "gpu"): dict(epochs=None, time_budget_min=3.0, batch_size=256, optimizer="adam", lr=2e-2,
                              warmup=0.03, label_smoothing=0.1, channels_last=True, amp=True),
    # Paper Sec. 4: SGD lr 0.1, Nesterov 0.9, wd 5e-4, 200 epochs, lr x0.2 at 60/120/160, warm-up.
    ("classify", "paper"): dict(epochs=200, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                                nesterov=True, weight_decay=5e-4, schedule="step",
                                milestones=(0.3, 0.6, 0.8), gamma=0.2, warmup=0.05, init_batch=1024,
                                amp=True, channels_last=True),
    ("density", "tiny"): dict(epochs=2, batch_size=64, optimizer="adam", lr=1e-3, test_subset=500,
                              eval_n_terms=4, init_batch=256),
    ("density", "cpu"): dict(epochs=None, time_budget_min=20.0, batch_size=32, optimizer="adam", lr=3e-3,
                             warmup=0.02, test_subset=2000, threads=2),
    # Paper Sec. 4: Adamax lr 0.003, dequantisation, x - 0.5 at the input (official code).
    ("density", "paper"): dict(epochs=200, batch_size=64, optimizer="adamax", lr=3e-3, schedule="constant",
                               logit_alpha=None, init_batch=1024),
}
DATASET_DEFAULTS: dict[tuple[str, str], dict] = {
    ("classify", "mnist"): dict(augment="shift"),
    ("classify", "cifar10"): dict(augment="crop_flip"),
    # the logit transform (Real NVP) spreads MNIST's saturated pixels: far faster learning than x - 0.5
    ("density", "mnist"): dict(augment=None, logit_alpha=1e-6),
    ("density", "cifar10"): dict(augment="flip", logit_alpha=0.05),
}


def make_config(task: str = "classify", dataset: str = "mnist", preset: str = "tiny", **overrides) -> TrainConfig:
    """The recipe of ``preset`` for ``task`` on ``dataset``, with ``overrides`` on top."""
    _check_choice("task", task, TASKS)
    _check_choice("dataset", dataset, DATASETS)
    if (task, preset) not in TRAIN_PRESETS:
        allowed = sorted(p for t, p in TRAIN_PRESETS if t == task)
        raise ValueError(f"unknown preset {preset!r} for {task}: allowed are {', '.join(map(repr, allowed))}")
    values = {**DATASET_DEFAULTS[(task, dataset)], **TRAIN_PRESETS[(task, preset)], **overrides}
    return TrainConfig(task=task, dataset=dataset, preset=preset, **values)


def model_config(config: TrainConfig, in_shape, n_classes: int = 10):
    """The architecture of a run: the model preset for the data's shape, with the run's overrides."""
    if config.task == "classify":
        return models.classifier_config(config.preset, in_shape, n_classes, **config.model)
    return models.flow_config(config.preset, in_shape, **config.model)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------

def _augmentation(config: TrainConfig):
    if config.augment == "shift":
        return lambda x, g: _data.random_crop(x, g, padding=config.shift)
    if config.augment == "crop_flip":
        return _data.cifar_augment
    if config.augment == "flip":
        return _data.random_flip
    return None


def make_loaders(config: TrainConfig, device: torch.device, context: distributed.Context = distributed.SINGLE):
    """(train loader, per-epoch test loader, final test loader, image shape, number of classes).

    With several processes each loader yields this rank's shard (disjoint, of one shared permutation).
    """
    shard = (context.rank, context.world_size)
    x_train, y_train = _data.load_dataset(config.dataset, "train", allow_partial=True)
    x_test, y_test = _data.load_dataset(config.dataset, "test")
    if config.train_subset is not None:
        x_train, y_train = x_train[: config.train_subset], y_train[: config.train_subset]
    transform = (_data.Normalize.for_dataset(config.dataset) if config.task == "classify"
                 else _data.dequantize)
    train_loader = _data.TensorLoader(x_train, y_train, config.batch_size, shuffle=True, drop_last=True,
                                      seed=config.seed, augment=_augmentation(config), transform=transform,
                                      device=device, shard=shard)
    if len(train_loader) == 0:
        raise ValueError(f"{len(x_train)} training images give no full batch of {config.batch_size} per process "
                         f"({context.world_size} processes): use a smaller --batch-size or a larger --train-subset")

    def test_loader(n):
        return _data.TensorLoader(x_test[:n], y_test[:n], config.test_batch_size, shuffle=False,
                                  seed=config.seed + 1, transform=transform, device=device, shard=shard)

    return (train_loader, test_loader(config.test_subset), test_loader(config.final_test_subset),
            tuple(x_train.shape[1:]), len(_data.CLASSES[config.dataset]))


# ----------------------------------------------------------------------------------------
# Losses and evaluation
# ----------------------------------------------------------------------------------------

def preprocess(x: torch.Tensor, logit_alpha: float | None):
    """Dequantised images in [0, 1) to the flow's input y, with log|det dy/dx| per sample."""
    if logit_alpha is None:
        return x - 0.5, x.new_zeros(x.shape[0])
    return _data.logit_transform(x, logit_alpha)


def postprocess(y: torch.Tensor, logit_alpha: float | None) -> torch.Tensor:
    """The flow's space back to image space [0, 1) (inverse of :func:`preprocess`; clamp samples to show them)."""
    return y + 0.5 if logit_alpha is None else _data.logit_inverse(y, logit_alpha)


def density_bits_per_dim(model, x: torch.Tensor, logit_alpha: float | None) -> torch.Tensor:
    """bits/dim per image of dequantised x in [0, 1): log p of the flow plus the preprocessing's log-det.

    ``model`` is a flow, or any function y -> log p(y) per sample (the training step's, see :func:`step_function`).
    """
    y, logdet = preprocess(x, logit_alpha)
    log_prob = model.log_prob if isinstance(model, models.MultiScaleFlow) else model
    return bits_per_dim(log_prob(y), x[0].numel(), 256, logdet_preprocess=logdet)


def _autocast(config: TrainConfig, device: torch.device):
    """bfloat16 autocast for the classifier's forward pass (never for log-dets or inverses).

    On a CUDA GPU only: on CPUs without bfloat16 hardware it makes a step about 10x slower.
    """
    enabled = config.amp and config.task == "classify" and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _to_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


class FlowLogProb(nn.Module):
    """A flow's ``log_prob`` as a module's forward, so that DistributedDataParallel and ``torch.compile``,
    which act on ``forward``, act on the density loss (a compiled module's other methods run eager code)."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob(y, validate=False)  # training inputs are dequantised 8-bit images


def step_function(model: nn.Module, config: TrainConfig, context: distributed.Context = distributed.SINGLE,
                  device: torch.device | None = None):
    """What a training step calls: the classifier (images -> logits) or the flow's log-likelihood
    (flow inputs -> log p), in DistributedDataParallel across processes, compiled when ``config.compile``."""
    fn = model if config.task == "classify" else FlowLogProb(model)
    fn = distributed.wrap(context, fn, device if device is not None else next(model.parameters()).device)
    return torch.compile(fn) if config.compile else fn


def compute_loss(step_fn, x, y, config: TrainConfig, device: torch.device):
    """(loss to minimise, number of correct predictions or None): cross-entropy, or bits/dim of the
    dequantised images x through ``step_fn`` = the flow's log_prob (see :func:`step_function`)."""
    x = _to_input(x, config)
    if config.task == "classify":
        with _autocast(config, device):
            logits = step_fn(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        return loss, (logits.argmax(1) == y).sum()
    return density_bits_per_dim(step_fn, x, config.logit_alpha).mean(), None


@contextlib.contextmanager
def _eval_estimator(model, config: TrainConfig):
    """Test log-dets by the unbiased estimator (``eval_n_terms`` exact terms, then Russian roulette).

    Unbiased, so the test bits/dim carry no truncation bias, whatever the training estimator.
    """
    if config.task != "density":
        yield
        return
    set_estimator(model, "unbiased", n_exact_terms=config.eval_n_terms, n_samples=1)
    try:
        yield
    finally:
        set_estimator(model, model.config.estimator, **model.config.estimator_kwargs)


@torch.no_grad()
def evaluate(model, loader, config: TrainConfig, device: torch.device,
             context: distributed.Context = distributed.SINGLE) -> dict:
    """Test figures: accuracy and loss (classify) or bits/dim (density), over the whole loader.

    Always in full float32 (TF32 off on a GPU), so that a reported figure does not depend on the GPU.
    With several processes each evaluates its shard and the sums are added up over the ranks.
    """
    model.eval()
    loader.set_epoch(0)  # the same dequantisation noise at every evaluation
    total, correct, loss_sum = 0, 0, 0.0
    with _eval_estimator(model, config), _no_tf32():
        for x, y in loader:
            x = _to_input(x, config)
            if config.task == "classify":
                with _autocast(config, device):
                    logits = model(x).float()
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
            else:
                loss_sum += float(density_bits_per_dim(model, x, config.logit_alpha).sum())
            total += len(y)
    if context.enabled:
        sums = distributed.all_sum(context, torch.tensor([loss_sum, correct, total], dtype=torch.float64,
                                                         device=device))
        loss_sum, correct, total = float(sums[0]), int(sums[1]), int(sums[2])
    if config.task == "classify":
        return {"test_accuracy": correct / total, "test_loss": loss_sum / total, "test_images": total}
    return {"test_bits_per_dim": loss_sum / total, "test_images": total}


# ----------------------------------------------------------------------------------------
# Optimiser and schedule
# ----------------------------------------------------------------------------------------

def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), Adam, AdamW or Adamax over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[config.optimizer]
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(progress: float, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]: linear warm-up, then cosine, step or constant."""
    progress = min(max(progress, 0.0), 1.0)
    warm = min(1.0, progress / config.warmup) if config.warmup > 0 else 1.0
    if config.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return warm * config.gamma ** sum(progress >= m for m in config.milestones)
    return warm


def _progress(step: int, elapsed_s: float, total_steps: int | None, config: TrainConfig) -> float:
    parts = []
    if total_steps:
        parts.append(step / total_steps)
    if config.time_budget_min is not None:
        parts.append(elapsed_s / (60 * config.time_budget_min))
    return max(parts)


# ----------------------------------------------------------------------------------------
# Checkpoints (atomic; tensors and plain containers only, for weights_only=True)
# ----------------------------------------------------------------------------------------

def _write_json(path: Path, value) -> None:
    write_atomically(path, json.dumps(value, indent=2) + "\n")


def _write_metrics(path: Path, history: list[dict]) -> None:
    write_atomically(path, "".join(json.dumps(m) + "\n" for m in history))


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, model, optimizer, state: dict, config: TrainConfig, device) -> None:
    """Model, optimiser, RNG and loop state, written to a temporary file and renamed into place."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(device),
               "state": state, "config": dataclasses.asdict(config)}
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint of :func:`train` (loaded with ``weights_only=True``: tensors and plain types only)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _config_from_dict(values: dict) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"config has unknown settings {sorted(unknown)}")
    return TrainConfig(**values)


def load_run(run_dir: str | os.PathLike, device: str | None = None):
    """(model in eval mode, TrainConfig, checkpoint state) of a run directory's latest checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    config = _config_from_dict(checkpoint["config"])
    arch = models.config_from_dict(config.task, checkpoint["state"]["model_config"])
    model = models.build_model(arch)
    model.load_state_dict(checkpoint["model"])
    return model.to(get_device(device or config.device)).eval(), config, checkpoint["state"]


# ----------------------------------------------------------------------------------------
# The certificate (paper Sec. 6: certify after training)
# ----------------------------------------------------------------------------------------

@torch.no_grad()
def certificate(model, x: torch.Tensor, config: TrainConfig, n_true_norms: int = 3, max_iter: int = 200) -> dict:
    """Spectral norms to tolerance (<= c?), true operator norms of a few layers, inverse error on x.

    ``x`` is a batch of test inputs as the model sees them (normalised or dequantised images).
    The fixed-point inverse runs to 1e-5 or ``max_iter`` iterations per block. On a GPU, TF32
    is switched off meanwhile, so that the estimates are float32-accurate.
    """
    with _no_tf32():
        return _certificate(model, x, config, n_true_norms, max_iter)


@contextlib.contextmanager
def _no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _certificate(model, x, config, n_true_norms, max_iter) -> dict:
    model.eval()
    layers = lipschitz.certify(model)
    shapes = _conv_input_shapes(model, x[:1], config)
    names = list(shapes)
    picks = sorted({0, len(names) // 2, len(names) - 1})[:n_true_norms] if names else []
    modules = dict(model.named_modules())
    true_norms = [{"layer": names[i], "input_shape": list(shapes[names[i]]),
                   "operator_norm": lipschitz.operator_norm(modules[names[i]], shapes[names[i]], method="power",
                                                            n_iter=300)}
                  for i in picks]
    coeff = model.config.coeff
    result = {
        "coeff": coeff,
        "n_constrained_layers": len(layers),
        "max_sigma_hat": max((r["sigma_hat"] for r in layers), default=None),
        "max_effective_norm": max((r["effective_norm"] for r in layers), default=None),
        "all_below_coeff": (all(r["effective_norm"] <= coeff * (1 + 1e-5) for r in layers)
                            if coeff is not None else False),
        "true_norms": true_norms,
    }
    result.update(reconstruction(model, x, config, max_iter))
    return result


@torch.no_grad()
def _conv_input_shapes(model, x, config: TrainConfig) -> dict:
    """{name: (C, H, W)} of the input of every convolution, from one forward pass."""
    shapes, hooks = {}, []

    def record(name):
        def hook(module, args, output):
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(record(name)))
    try:
        model(x if config.task == "classify" else preprocess(x, config.logit_alpha)[0])
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


@torch.no_grad()
def reconstruction(model, x: torch.Tensor, config: TrainConfig, max_iter: int = 200) -> dict:
    """Forward, then the fixed-point inverse (Alg. 1): max and mean |x - F^-1(F(x))|.

    Runs on a float64 copy of the model, so that the error and the convergence test (max
    |y - F(x_k)| <= 1e-6) measure the inverse itself, not float32 rounding of large features.
    """
    model, x = copy.deepcopy(model).double().eval(), x.double()
    with _eval_estimator(model, config):
        if config.task == "classify":
            x_rec, infos = model.inverse(model.features(x), max_iter=max_iter, return_info=True)
            iterations = max(info.iterations for info in infos)
            converged = all(info.converged for info in infos) and len(infos) == len(model.steps)
        else:
            y, _ = preprocess(x, config.logit_alpha)
            zs, _ = model(y)
            blocks = [m for m in model.modules() if hasattr(m, "last_inverse_info")]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InverseNotConvergedWarning)  # reported below instead
                x_rec = postprocess(model.inverse(zs), config.logit_alpha)
            iterations = max(m.last_inverse_info.iterations for m in blocks)
            converged = all(m.last_inverse_info.converged for m in blocks)
    error = (x_rec - x).abs()
    finite = bool(torch.isfinite(error).all())
    return {"reconstruction_images": len(x),
            "reconstruction_max_abs_error": float(error.max()) if finite else None,
            "reconstruction_mean_abs_error": float(error.mean()) if finite else None,
            "inverse_converged": converged and finite, "inverse_max_iterations": iterations}


# ----------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------

def _prepare_run_dir(out: Path, resume: bool) -> None:
    """Refuse to write into a non-empty directory, unless resuming one of our runs."""
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise FileExistsError(
                f"run directory {out} exists and is not empty: pass --resume to continue that run, "
                "or choose another --out")
        if not (out / "config.json").is_file():
            raise FileExistsError(f"{out} holds no run to resume (no config.json, no {CHECKPOINT}): "
                                  "choose another --out")
    out.mkdir(parents=True, exist_ok=True)


@torch.no_grad()
def _initialize(model, loader, config: TrainConfig) -> None:
    """Data-dependent ActNorm initialisation on the first ``init_batch`` training images."""
    model.train()
    generator = torch.Generator(loader.device).manual_seed(config.seed)
    x = loader.transform(loader.images[: config.init_batch], generator)
    x = _to_input(x, config)
    if config.task == "classify":
        model(x)
    else:
        model(preprocess(x, config.logit_alpha)[0])


def _setup(config: TrainConfig, context: distributed.Context):
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = distributed.device_for(context, get_device(config.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(config.seed)  # the same model on every rank (DDP also broadcasts rank 0's)
    train_loader, test_loader, full_test_loader, in_shape, n_classes = make_loaders(config, device, context)
    arch = model_config(config, in_shape, n_classes)
    model = models.build_model(arch).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return device, train_loader, test_loader, full_test_loader, arch, model


def train(config: TrainConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True) -> dict:
    """Train, evaluate every epoch, checkpoint every epoch, certify at the end; returns the summary.

    ``resume=True`` continues from ``out/checkpoint.pt`` with the stored config and RNG states,
    so the result equals an uninterrupted run (for runs planned in epochs).
    """
    out = Path(out)
    context = distributed.from_environment(get_device(config.device))
    try:
        return _train(config, out, resume, progress, context)
    finally:
        distributed.shutdown(context)


def _train(config: TrainConfig, out: Path, resume: bool, progress: bool, context: distributed.Context) -> dict:
    main = context.is_main  # only rank 0 writes files and prints
    checkpoint = None
    if resume and (out / CHECKPOINT).is_file():
        checkpoint = load_checkpoint(out / CHECKPOINT)
        config = dataclasses.replace(_config_from_dict(checkpoint["config"]), device=config.device)
    _prepare_run_dir(out, resume)
    distributed.barrier(context)  # every rank has looked at the run directory before rank 0 writes to it
    device, train_loader, test_loader, full_test_loader, arch, model = _setup(config, context)
    optimizer = make_optimizer(model, config)
    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0, "finished": False, "history": [],
             "model_config": models.config_to_dict(arch), "params": models.count_parameters(model)}
    if checkpoint is None:
        _initialize(model, train_loader, config)  # the same images on every rank: the same ActNorms
        if main:
            _write_json(out / "config.json", {**dataclasses.asdict(config), "model_config": state["model_config"],
                                              "params": state["params"], "world_size": context.world_size,
                                              "global_batch_size": config.batch_size * context.world_size})
    else:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state.update(checkpoint["state"])
        if not context.enabled:
            _set_rng_state(checkpoint["rng"], device)
        if main:
            _write_metrics(out / "metrics.jsonl", state["history"])
        if state["finished"] and (out / "summary.json").is_file():
            return json.loads((out / "summary.json").read_text())
    if context.enabled:  # probes and other draws of the global generator: different on every rank
        seed_everything(config.seed + 1000 * (context.rank + 1) + state["epoch"])
    step_fn = step_function(model, config, context, device)
    total_steps = config.epochs * len(train_loader) if config.epochs is not None else None
    say = tqdm.write if main else (lambda _text: None)
    say(f"{config.task} {config.dataset} preset={config.preset} params={state['params']:,} "
        f"device={device} threads={torch.get_num_threads()} amp={config.amp and device.type == 'cuda'} "
        f"channels_last={config.channels_last} compile={config.compile} processes={context.world_size}")

    while not state["finished"]:
        epoch = state["epoch"] + 1
        train_loader.set_epoch(epoch)
        record = _train_epoch(step_fn, model, optimizer, train_loader, config, device, state, total_steps,
                              epoch, progress and main, out, context)
        state["finished"] = record.get("partial", False) or (config.epochs is not None and epoch >= config.epochs)
        distributed.broadcast_buffers(context, model)
        if record["train_images"]:  # else the budget ran out exactly at the end of the previous epoch
            record.update(evaluate(model, test_loader, config, device, context))
            state["epoch"] = epoch
            state["history"].append(record)
            say(_epoch_line(record))
        if main:
            _write_metrics(out / "metrics.jsonl", state["history"])
            save_checkpoint(out / CHECKPOINT, model, optimizer, state, config, device)
    summary = _finish(model, config, device, full_test_loader, state, context)
    if main:
        save_checkpoint(out / CHECKPOINT, model, optimizer, state, config, device)  # the certified weights
        _write_json(out / "summary.json", summary)
    say(json.dumps({k: v for k, v in summary.items() if k != "certificate"}))
    distributed.barrier(context)  # no rank leaves before rank 0 has written the summary
    return summary


def _epoch_line(record: dict) -> str:
    test = (f"test acc {100 * record['test_accuracy']:.2f}%" if "test_accuracy" in record
            else f"test {record['test_bits_per_dim']:.4f} bits/dim")
    return (f"epoch {record['epoch']:3d}{' (partial)' if record.get('partial') else ''}: "
            f"train loss {record['train_loss']:.4f}, {test}, lr {record['lr']:.2e}, "
            f"{record['epoch_s']:.1f} s, {record['elapsed_s'] / 60:.2f} min trained")


def _train_epoch(step_fn, model, optimizer, loader, config, device, state, total_steps, epoch, progress,
                 out, context: distributed.Context = distributed.SINGLE) -> dict:
    """One pass over the training data (or until the time budget is spent); updates ``state``.

    With several processes the ranks agree, at every loss check, on the clock (the slowest rank's),
    which sets the learning rate and ends a time-budgeted run, and on the loss (summed over ranks).
    """
    model.train()
    budget_s = 60 * config.time_budget_min if config.time_budget_min is not None else math.inf
    check_every = 1 if device.type == "cpu" else 25  # reading the loss waits for the GPU
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
    seen, partial, clock = 0, False, state["elapsed_s"]
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress)
    for i, (x, y) in enumerate(bar):
        checking = i == 0 or (state["step"] + 1) % check_every == 0
        elapsed = state["elapsed_s"] + time.perf_counter() - start
        if not context.enabled:
            clock = elapsed
        elif checking:
            clock = distributed.max_over_ranks(context, elapsed, device)
        if clock >= budget_s:
            partial = True
            break
        lr = config.lr * lr_factor(_progress(state["step"], clock, total_steps, config), config)
        check = None
        if checking:  # before the update: a NaN never reaches the weights on CPU
            def check(loss, n=len(y)):
                _check_finite(distributed.all_sum(context, loss_sum + loss * n), epoch, state, out)
        loss, n_correct = train_step(step_fn, optimizer, x, y, config, device, lr, check)
        loss_sum += loss * len(y)
        if check is not None:
            bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
        state["step"] += 1
        correct += n_correct if n_correct is not None else 0
        seen += len(y)
    totals = distributed.all_sum(context, torch.stack([loss_sum.double(), correct.double(),
                                                       torch.tensor(float(seen), dtype=torch.float64, device=device)]))
    loss_sum, correct, seen = totals[0], int(totals[1]), int(totals[2])
    _check_finite(loss_sum, epoch, state, out)
    epoch_s = distributed.max_over_ranks(context, time.perf_counter() - start, device)
    state["elapsed_s"] += epoch_s
    record = {"epoch": epoch, "step": state["step"], "train_loss": float(loss_sum) / max(seen, 1),
              "lr": optimizer.param_groups[0]["lr"], "epoch_s": epoch_s, "elapsed_s": state["elapsed_s"],
              "train_images": seen}
    if config.task == "classify":
        record["train_accuracy"] = correct / max(seen, 1)
    if partial:
        record["partial"] = True
    return record


def train_step(step_fn, optimizer, x, y, config: TrainConfig, device, lr: float, check=None):
    """One optimisation step at learning rate ``lr``: the loss, ``check(loss)`` if given (before the update),
    backward, update. Returns (the loss, detached; correct predictions or None); it reads nothing back
    to the host itself, so on a GPU it never waits unless ``check`` does."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss, n_correct = compute_loss(step_fn, x, y, config, device)
    if check is not None:
        check(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), n_correct


def _check_finite(loss_sum: torch.Tensor, epoch: int, state: dict, out: Path) -> None:
    if not torch.isfinite(loss_sum):
        raise NonFiniteLossError(
            f"the training loss became {float(loss_sum)} in epoch {epoch} (by step {state['step'] + 1}); "
            f"stopped. The last good checkpoint (epoch {state['epoch']}) is kept in {out / CHECKPOINT}. "
            "Try a smaller learning rate (--lr) or a smaller Lipschitz coefficient (--coeff).")


def _finish(model, config: TrainConfig, device, full_test_loader, state,
            context: distributed.Context = distributed.SINGLE) -> dict:
    """Certify, then the final test figures on the whole test set, then the reconstruction check.

    Every rank certifies its (identical) model, so that all evaluate the same weights afterwards.
    """
    cert_x = next(iter(full_test_loader))[0][:64]
    cert = certificate(model, cert_x, config)
    final = evaluate(model, full_test_loader, config, device, context)
    return {"task": config.task, "dataset": config.dataset, "preset": config.preset,
            "params": state["params"], "epochs": state["epoch"], "steps": state["step"],
            "train_minutes": state["elapsed_s"] / 60, **final,
            "last_epoch_test": {k: v for k, v in state["history"][-1].items() if k.startswith("test_")},
            "certificate": cert}


# ----------------------------------------------------------------------------------------
# Throughput
# ----------------------------------------------------------------------------------------

def synthetic_setup(task: str, dataset: str, preset: str, batch_size: int, device: str | None = None,
                    **overrides):
    """(config, device, model, step model, optimiser, x, y): a preset's model and recipe on one batch of
    random images of the data's shape, for benchmarks that need no data set."""
    config = make_config(task, dataset, preset, batch_size=batch_size, device=str(get_device(device)),
                         **overrides)
    return (config, *_synthetic(config))


def _synthetic(config: TrainConfig):
    """(device, model, step function, optimiser, x, y) of a run's config on one random batch."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dev = get_device(config.device)
    seed_everything(config.seed)
    in_shape = IMAGE_SHAPES[config.dataset]
    images = torch.randint(0, 256, (config.batch_size, *in_shape), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, 10, (config.batch_size,), device=dev)
    transform = _data.Normalize.for_dataset(config.dataset) if config.task == "classify" else _data.dequantize
    x = transform(images)
    model = models.build_model(model_config(config, in_shape)).to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_fn = step_function(model, config)
    model.train()
    return dev, model, step_fn, make_optimizer(model, config), x, labels


def _median_step_seconds(step_fn, optimizer, x, y, config: TrainConfig, dev, steps: int, warmup_steps: int) -> float:
    """Median wall time of ``steps`` training steps on one batch, after ``warmup_steps`` (GPU work waited for)."""
    times = []
    for i in range(warmup_steps + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        train_step(step_fn, optimizer, x, y, config, dev, config.lr)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup_steps:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def estimate_run(config: TrainConfig, steps: int = 3) -> dict:
    """The expected training time of a run on its device: a few timed steps (after one warm-up) on random
    images, times the steps the run will take (or its time budget, if that ends it first)."""
    dev, model, step_fn, optimizer, x, y = _synthetic(config)
    per_step = _median_step_seconds(step_fn, optimizer, x, y, config, dev, steps, warmup_steps=1)
    n_train = len(_data.load_dataset(config.dataset, "train", allow_partial=True)[1])
    if config.train_subset is not None:
        n_train = min(n_train, config.train_subset)
    total = config.epochs * (n_train // config.batch_size) if config.epochs is not None else math.inf
    seconds = per_step * total
    if config.time_budget_min is not None:
        seconds = min(seconds, 60 * config.time_budget_min)
        total = min(total, int(seconds / per_step))
    return {"seconds_per_step": per_step, "steps": total, "seconds": seconds, "device": str(dev)}


def bench_throughput(task: str, dataset: str, preset: str, batch_size: int, steps: int = 5,
                     warmup_steps: int = 2, device: str | None = None, **overrides) -> dict:
    """Training images per second of the preset's model and recipe, on random images of the data's shape."""
    config, dev, model, step_fn, optimizer, x, labels = synthetic_setup(task, dataset, preset, batch_size,
                                                                           device, **overrides)
    seconds = _median_step_seconds(step_fn, optimizer, x, labels, config, dev, steps, warmup_steps)
    return {"task": task, "dataset": dataset, "preset": preset, "batch_size": batch_size, "steps": steps,
            "seconds_per_step": seconds, "images_per_s": batch_size / seconds,
            "params": models.count_parameters(model), "device": str(dev), "threads": torch.get_num_threads(),
            "amp": config.amp and dev.type == "cuda", "channels_last": config.channels_last, "compile": config.compile}


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iresnet_mini.train",
                                description="Train an i-ResNet classifier or density model (paper Sec. 4).")
    p.add_argument("--task", choices=TASKS, default="classify")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--preset", default="tiny", help="tiny, cpu or paper")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--coeff", type=float, help="Lipschitz coefficient c in (0, 1)")
    c.add_argument("--vanilla", action="store_true", help="no Lipschitz constraint (non-invertible baseline)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="minutes of training")
    p.add_argument("--train-subset", type=int, metavar="N")
    p.add_argument("--test-subset", type=int, metavar="N", help="per-epoch evaluation on N test images")
    p.add_argument("--final-test-subset", type=int, metavar="N",
                   help="final evaluation on N test images (default: the whole test set)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast of the classifier's forward pass")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from parsed command-line arguments (preset, then the options given)."""
    overrides = {name: value for name, value in (
        ("train_subset", args.train_subset), ("test_subset", args.test_subset),
        ("final_test_subset", args.final_test_subset),
        ("batch_size", args.batch_size), ("lr", args.lr), ("threads", args.threads), ("amp", args.amp),
        ("channels_last", args.channels_last), ("compile", args.compile)) if value is not None}
    if args.epochs is not None or args.time_budget is not None:
        overrides.update(epochs=args.epochs, time_budget_min=args.time_budget)
    if args.vanilla:
        overrides["model"] = {"coeff": None}
    elif args.coeff is not None:
        overrides["model"] = {"coeff": args.coeff}
    device = args.device or str(get_device())
    return make_config(args.task, args.dataset, args.preset, seed=args.seed, device=device, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m iresnet_mini.train``."""
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
        train(config, args.out, resume=args.resume, progress=not args.no_progress)
    except (NonFiniteLossError, FileExistsError, ValueError, _data.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
