"""A run directory's files: config.json, metrics.jsonl, checkpoint.pt (atomic writes; tensors and
plain containers only, so that ``torch.load(weights_only=True)`` reads them) and loading a run back.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from . import models
from .config import get_device
from .files import atomic_open, write_atomically
from .recipes import TrainConfig

__all__ = ["CHECKPOINT", "write_json", "write_metrics", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "config_from_dict", "load_run"]


CHECKPOINT = "checkpoint.pt"


def write_json(path: Path, value) -> None:
    write_atomically(path, json.dumps(value, indent=2) + "\n")


def write_metrics(path: Path, history: list[dict]) -> None:
    write_atomically(path, "".join(json.dumps(m) + "\n" for m in history))


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, model, optimizer, state: dict, config: TrainConfig, device, average=None) -> None:
    """Model, optimiser, RNG and loop state (and the weight average, if any), written to a temporary
    file and renamed into place."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(device),
               "state": state, "config": dataclasses.asdict(config)}
    if average is not None:
        payload["average"] = average.state_dict()
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint of :func:`train` (loaded with ``weights_only=True``: tensors and plain types only)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def config_from_dict(values: dict) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"config has unknown settings {sorted(unknown)}")
    return TrainConfig(**values)


def load_run(run_dir: str | os.PathLike, device: str | None = None):
    """(model in eval mode, TrainConfig, checkpoint state) of a run directory's latest checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    config = config_from_dict(checkpoint["config"])
    arch = models.config_from_dict(config.task, checkpoint["state"]["model_config"])
    model = models.build_model(arch)
    model.load_state_dict(checkpoint["model"])
    return model.to(get_device(device or config.device)).eval(), config, checkpoint["state"]
