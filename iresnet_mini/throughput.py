"""How fast a training step runs: synthetic batches of the data's shape, the median step time, and
the estimate of a whole run that ``load_or_train`` prints before it trains.
"""
from __future__ import annotations

import math
import time

import torch

from . import data as _data
from . import models
from .config import flush_denormals, get_device, seed_everything
from .recipes import IMAGE_SHAPES, TrainConfig, make_config, model_config
from .train import make_optimizer, step_function, train_step

__all__ = ["synthetic_setup", "estimate_run", "bench_throughput", "REFERENCE_STEP", "REFERENCE_STEP_SECONDS",
           "REFERENCE_STEP_COMMAND", "reference_step_seconds"]


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
    if dev.type == "cpu":
        flush_denormals()  # as train does: a long run's subnormal numbers would slow it
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


# The step that time-budgeted figures are stated against: a machine where it takes about
# REFERENCE_STEP_SECONDS is the one the README's budgets were measured on.
REFERENCE_STEP = dict(task="classify", dataset="mnist", preset="cpu", batch_size=128)
REFERENCE_STEP_SECONDS = 0.16
REFERENCE_STEP_COMMAND = ("python -m iresnet_mini.bench throughput --task classify --dataset mnist --preset cpu "
                          "--batch-size 128")


def reference_step_seconds(steps: int = 5, threads: int | None = None) -> float:
    """This machine's median classifier training step (:data:`REFERENCE_STEP`, on the CPU), in seconds.

    Printed beside every time-budgeted figure, because budgets do not transfer between
    machines: a run of N minutes does about N / step_time steps. ``threads`` (default: as
    set) is the number of CPU threads used for the measurement, restored afterwards.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return round(bench_throughput(**REFERENCE_STEP, steps=steps, device="cpu")["seconds_per_step"], 4)
    finally:
        torch.set_num_threads(previous)
