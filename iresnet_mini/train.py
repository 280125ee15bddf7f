"""Training the image models: the loop, its loss, the optimiser and the learning-rate schedule.

    python -m iresnet_mini.train --task classify --dataset mnist --preset cpu --time-budget 10 --out runs/mnist

A run reads top to bottom across a few modules, each named for what it holds:

* ``recipes`` - every setting of a run (:class:`TrainConfig`) and the recipes, in one table
  (``TRAIN_PRESETS``): what learning rate notebook 05 uses is ``TRAIN_PRESETS[("classify", "cpu")]``;
* this module - the data loaders, the loss of each task, :func:`train` and its loop
  (:func:`_train`, one epoch in :func:`_train_epoch`, one step in :func:`train_step`);
* ``checkpoints`` - the run directory: ``config.json`` (every setting), ``metrics.jsonl`` (one
  JSON object per epoch), ``checkpoint.pt`` (the latest epoch, written atomically, loadable with
  ``torch.load(weights_only=True)``) and loading a run back (:func:`load_run`);
* ``certificate`` - what ``summary.json`` certifies at the end: spectral norms to tolerance, true
  operator norms of a few layers, the reconstruction error of the inverse (paper Sec. 6);
* ``cli`` - the command line; ``throughput`` - how fast a step runs, and a run's estimate.

The learning-rate schedule is a function of the training *progress* in [0, 1]: the fraction
of the planned steps, or of the time budget, that has been used (whichever is larger). So a
``--time-budget`` run anneals its learning rate exactly as its time runs out.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data as _data
from . import distributed, models
from .averaging import ParameterAverage
from .certificate import certificate, no_tf32, reconstruction  # noqa: F401  (also train.X)
from .checkpoints import (CHECKPOINT, config_from_dict, load_checkpoint, load_run,  # noqa: F401
                          save_checkpoint, set_rng_state, write_json, write_metrics)
from .config import flush_denormals, get_device, seed_everything, seeded_streams
from .data import postprocess, preprocess  # noqa: F401
from .flows import bits_per_dim, using_estimator
from .recipes import (DATASET_DEFAULTS, DATASETS, IMAGE_SHAPES, TASKS, TRAIN_PRESETS,  # noqa: F401
                      TrainConfig, make_config, model_config)

__all__ = [
    "TrainConfig", "TRAIN_PRESETS", "make_config", "train", "train_step", "evaluate", "certificate",
    "lr_factor", "density_bits_per_dim", "step_function", "load_checkpoint", "load_run", "NonFiniteLossError",
]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


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


EVAL_SEED = 0  # of the test estimator's probes and roulette counts


@contextlib.contextmanager
def test_estimator(model, config: TrainConfig, device: torch.device | None = None):
    """Test log-dets by the unbiased estimator (``eval_n_terms`` exact terms, then Russian roulette).

    Unbiased, so the test bits/dim carry no truncation bias, whatever the training estimator. Its
    probes and term counts come from streams seeded with ``EVAL_SEED`` (the training's own streams
    are left as they were), so a model's test figure can be computed again, to rounding.
    """
    if config.task != "density":
        yield model
        return
    with using_estimator(model, "unbiased", n_exact_terms=config.eval_n_terms, n_samples=1), \
            seeded_streams(EVAL_SEED, device):
        yield model


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
    with test_estimator(model, config, device), no_tf32():
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


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), Adam, AdamW or Adamax over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[config.optimizer]
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def cosine(progress: float) -> float:
    """The cosine decay from 1 at the start (progress 0) to 0 at the end (progress 1)."""
    return 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_factor(progress: float, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]: linear warm-up, then cosine, step or constant."""
    progress = min(max(progress, 0.0), 1.0)
    warm = min(1.0, progress / config.warmup) if config.warmup > 0 else 1.0
    if config.schedule == "cosine":
        return warm * cosine(progress)
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
    if device.type == "cpu":
        flush_denormals()
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
        config = dataclasses.replace(config_from_dict(checkpoint["config"]), device=config.device)
    _prepare_run_dir(out, resume)
    distributed.barrier(context)  # every rank has looked at the run directory before rank 0 writes to it
    device, train_loader, test_loader, full_test_loader, arch, model = _setup(config, context)
    optimizer = make_optimizer(model, config)
    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0, "finished": False, "history": [],
             "model_config": models.config_to_dict(arch), "params": models.count_parameters(model)}
    average = None
    if checkpoint is None:
        _initialize(model, train_loader, config)  # the same images on every rank: the same ActNorms
        average = ParameterAverage(model, config.ema) if config.ema is not None else None
        if main:
            write_json(out / "config.json", {**dataclasses.asdict(config), "model_config": state["model_config"],
                                              "params": state["params"], "world_size": context.world_size,
                                              "global_batch_size": config.batch_size * context.world_size})
    else:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state.update(checkpoint["state"])
        if config.ema is not None:
            average = ParameterAverage(model, config.ema)
            if "average" in checkpoint:
                average.load_state_dict(checkpoint["average"])
        if not context.enabled:
            set_rng_state(checkpoint["rng"], device)
        if main:
            write_metrics(out / "metrics.jsonl", state["history"])
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
                              epoch, progress and main, out, context, average)
        state["finished"] = record.get("partial", False) or (config.epochs is not None and epoch >= config.epochs)
        distributed.broadcast_buffers(context, model)
        if record["train_images"]:  # else the budget ran out exactly at the end of the previous epoch
            record.update(evaluate(average.model(model) if average is not None else model, test_loader, config,
                                   device, context))
            state["epoch"] = epoch
            state["history"].append(record)
            say(_epoch_line(record))
        if main:
            write_metrics(out / "metrics.jsonl", state["history"])
            save_checkpoint(out / CHECKPOINT, model, optimizer, state, config, device, average)
    if average is not None:  # the average is the run's model from here on: certified, evaluated, kept
        average.copy_to(model)
    summary = _finish(model, config, device, full_test_loader, state, context)
    if main:
        save_checkpoint(out / CHECKPOINT, model, optimizer, state, config, device, average)  # the certified weights
        write_json(out / "summary.json", summary)
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
                 out, context: distributed.Context = distributed.SINGLE, average=None) -> dict:
    """One pass over the training data (or until the time budget is spent); updates ``state`` (and the
    weight ``average``, if any, after every step).

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
        if average is not None:
            average.update(model, state["step"])
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
            "train_minutes": state["elapsed_s"] / 60,
            "weights": f"average (decay {config.ema:g})" if config.ema is not None else "last step", **final,
            "last_epoch_test": {k: v for k, v in state["history"][-1].items() if k.startswith("test_")},
            "certificate": cert}


if __name__ == "__main__":  # python -m iresnet_mini.train: the command line (iresnet_mini.cli)
    from .cli import main

    sys.exit(main())
