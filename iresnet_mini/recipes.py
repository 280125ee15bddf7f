"""Every setting of a training run, and the recipes: the paper's and the CPU ones, in one table.

``TRAIN_PRESETS[(task, preset)]`` is the table: learning rate, optimiser, schedule, batch size,
epochs or time budget. ``DATASET_DEFAULTS`` adds what depends on the data set (augmentation, the
logit transform), and ``make_config(task, dataset, preset, **overrides)`` stacks them into a
:class:`TrainConfig`. The model's architecture comes from ``models`` (its own presets, same names).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import models
from .models import check_choice
from .averaging import check_decay

__all__ = ["TASKS", "DATASETS", "OPTIMIZERS", "SCHEDULES", "AUGMENTATIONS", "IMAGE_SHAPES", "TrainConfig", "check_choice", "TRAIN_PRESETS", "DATASET_DEFAULTS", "make_config", "model_config"]


TASKS = ("classify", "density")


DATASETS = ("mnist", "cifar10")


OPTIMIZERS = ("sgd", "adam", "adamw", "adamax")


SCHEDULES = ("cosine", "step", "constant")


AUGMENTATIONS = ("shift", "crop_flip", "flip")


IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # (C, H, W), for benchmarks without data


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
    ema: float | None = None                # decay of a weight average evaluated and kept instead of the last weights
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
        check_choice("task", self.task, TASKS)
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.augment is not None:
            check_choice("augment", self.augment, AUGMENTATIONS)
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
        if self.ema is not None:
            check_decay(self.ema)
        self.milestones = tuple(self.milestones)


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
    check_choice("task", task, TASKS)
    check_choice("dataset", dataset, DATASETS)
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
