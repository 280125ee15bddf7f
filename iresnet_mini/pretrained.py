"""Shipped pretrained models: verified loading, load-or-train for the notebooks.

``data/pretrained/`` holds small checkpoints (each at most :data:`MAX_BYTES`) and
``manifest.json``, which says for every checkpoint how it was made (the exact
``python -m iresnet_mini.train`` command), its sha256, and its test figures::

    model, train_config, entry = load_pretrained("mnist-c0.9")
    model, train_config, info = load_or_train("mnist-c0.9")   # quick mode: the shipped file

A checkpoint file is hashed and compared with the manifest *before* it is unpickled, and
then read with ``torch.load(weights_only=True)`` (tensors and plain containers only).
``scripts/make_pretrained.py NAME...`` retrains a checkpoint from its recipe
(:data:`RECIPES`) and rewrites its manifest entry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cli, models, throughput, train
from . import data as _data
from .config import get_device
from .files import locked, write_atomically

__all__ = [
    "PRETRAINED_DIR", "MAX_BYTES", "EVAL_SUBSET", "FORMAT", "Recipe", "RECIPES", "CIFAR10_LAYOUT", "UNBIASED_TRAINING", "PretrainedError", "manifest", "names", "checkpoint_path", "sha256sum",
    "verified_file", "model_from_bytes", "load_pretrained", "load_or_train", "read_history", "test_transform", "evaluate_test",
    "checkpoint_bytes", "write_checkpoint", "write_entry",
]

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "data" / "pretrained"
MANIFEST = "manifest.json"
FORMAT = "iresnet-mini-pretrained/1"
MAX_BYTES = 5_000_000  # every shipped checkpoint stays at or below 5 MB
EVAL_SUBSET = 1000     # the first N test images: a fast re-check of the manifest's figures

class PretrainedError(RuntimeError):
    """A shipped checkpoint is unknown, missing, or does not match its manifest entry."""


# ----------------------------------------------------------------------------------------
# Recipes: how each shipped checkpoint is trained (the command line of iresnet_mini.train)
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """The training run behind a checkpoint, as options of ``python -m iresnet_mini.train``.

    ``None`` leaves an option to the train preset (``threads`` only changes the speed).
    """

    dataset: str
    coeff: float | None                  # None: the vanilla (unconstrained) baseline
    preset: str = "cpu"
    epochs: int | None = 1
    time_budget: float | None = None     # minutes of training
    train_subset: int | None = None      # the first N training images
    batch_size: int | None = None
    threads: int | None = None
    seed: int = 0
    task: str = "classify"
    model: tuple[str, ...] = ()          # architecture options on top of the preset, "KEY=VALUE" (--model)
    lr: float | None = None
    ema: float | None = None             # decay of the weight average that is kept (--ema)
    test_subset: int | None = None       # per-epoch evaluation on the first N test images (speed only)

    def argv(self) -> list[str]:
        """The command-line options (without ``--out``)."""
        args = ["--task", self.task, "--dataset", self.dataset, "--preset", self.preset]
        args += ["--vanilla"] if self.coeff is None else ["--coeff", f"{self.coeff:g}"]
        if self.model:
            args += ["--model", *self.model]
        for flag, value in (("--epochs", self.epochs), ("--time-budget", self.time_budget),
                            ("--train-subset", self.train_subset), ("--test-subset", self.test_subset),
                            ("--batch-size", self.batch_size), ("--lr", self.lr), ("--ema", self.ema),
                            ("--threads", self.threads)):
            if value is not None:
                args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return args + ["--seed", str(self.seed)]

    def command(self, out: str = "RUN_DIR") -> str:
        """The shell command that trains this recipe into ``out``."""
        return shlex.join(["python", "-m", "iresnet_mini.train", *self.argv(), "--out", str(out)])

    def _preset_coeff(self) -> float | None:
        """c of the model preset, for a run that did not set it."""
        table, default = ((models.CLASSIFIER_PRESETS, models.ClassifierConfig.coeff) if self.task == "classify"
                          else (models.FLOW_PRESETS, models.FlowConfig.coeff))
        return table.get(self.preset, {}).get("coeff", default)

    def mismatches(self, run_config: dict) -> list[str]:
        """Settings in which a run's config.json differs from this recipe (empty: same recipe)."""
        wanted = {"task": self.task, "dataset": self.dataset, "preset": self.preset, "seed": self.seed,
                  "coeff": self.coeff, "train_subset": self.train_subset}
        if self.epochs is not None or self.time_budget is not None:
            wanted.update(epochs=self.epochs, time_budget_min=self.time_budget)
        if self.batch_size is not None:
            wanted["batch_size"] = self.batch_size
        if self.lr is not None:
            wanted["lr"] = self.lr
        if self.ema is not None:
            wanted["ema"] = self.ema
        run_model = {k: tuple(v) if isinstance(v, list) else v for k, v in run_config.get("model", {}).items()}
        wanted["model options"] = models.parse_model_options(self.task, self.model)
        found = {**run_config, "coeff": run_model.pop("coeff", self._preset_coeff()), "model options": run_model}
        return [f"{k}: run has {found.get(k)!r}, recipe wants {v!r}" for k, v in wanted.items()
                if found.get(k) != v]


# CPU runs of the cpu presets, planned in epochs (not minutes) where they can be, so that a
# recipe gives the same model on any machine. MNIST classifiers: two passes over the 60,000
# training images (938 steps of 128). CIFAR-10 classifiers: the first 10,000 images (data_batch_1,
# all that a partial download may hold), 100 passes (35-50 minutes on 2 cores), all in one layout:
# the cpu preset's made wider and deeper (3 + 5 blocks of widths 64 and 128, 0.89M parameters).
# The i-ResNets take Adam at 5e-2 (the preset has 2e-2; ten-epoch runs of c = 0.9: 44.2 % at 7e-3,
# 48.1 % at 2e-2, 50.8 % at 5e-2; its hundred epochs gave 73.6 % against 71.6 % at 2e-2); the
# vanilla network, which does not learn at 2e-2, its own (1e-3, the best of a five-epoch sweep).
# The coupling classifier (Table 3) has Glow-style
# steps in the same stages, widths 80 and 160 for as many parameters, and the vanilla rate. The
# MNIST density model is the README's 20-minute benchmark run itself; the CIFAR-10 one trains for 60
# minutes on the first 10,000 images.
_MNIST = dict(epochs=2)
CIFAR10_LAYOUT = ("blocks=3,5", "widths=64,128")
_CIFAR10 = dict(epochs=100, train_subset=10_000, test_subset=1000, model=CIFAR10_LAYOUT)
UNCONSTRAINED_LR = 1e-3
# Residual Flows' training estimator: 2 terms always, then a geometric number (p = 0.5, one more on average),
# with the Neumann-series gradient
UNBIASED_TRAINING = ("estimator=unbiased", "estimator_kwargs=n_exact_terms:2,p:0.5,n_samples:1,neumann_gradient:true")
CONSTRAINED_LR = 5e-2
RECIPES: dict[str, Recipe] = {
    "mnist-vanilla": Recipe("mnist", None, **_MNIST),
    **{f"mnist-c{c:g}": Recipe("mnist", c, **_MNIST) for c in (0.9, 0.8, 0.7, 0.6, 0.5)},
    "cifar10-vanilla": Recipe("cifar10", None, **_CIFAR10, lr=UNCONSTRAINED_LR),
    **{f"cifar10-c{c:g}": Recipe("cifar10", c, **_CIFAR10, lr=CONSTRAINED_LR) for c in (0.9, 0.5)},
    "cifar10-coupling": Recipe("cifar10", None, **{**_CIFAR10, "model": ("block=coupling", "blocks=3,5",
                                                                        "widths=80,160")}, lr=UNCONSTRAINED_LR),
    # Density models (notebooks 07-08): the cpu flow preset (c = 0.9) with LipSwish (Residual Flows'
    # activation), the weight average kept; for MNIST at Adam 2e-2 instead of the preset's 3e-3 (five-minute
    # runs, bits/dim on 2,000 test images: 1.450 at 3e-3, 1.346 at 1e-2, and on a quicker machine 1.298 at 2e-2,
    # 1.294 at 4e-2), and trained with Residual Flows' unbiased estimator (UNBIASED_TRAINING): a flow trained on
    # the preset's 3-term series learns to exploit its bias (the 3-term estimate of the model it gave overstated
    # its log-likelihood by 0.23 bits/dim), while the roulette costs the same 3 terms per block on average.
    "mnist-density": Recipe("mnist", 0.9, task="density", epochs=None, time_budget=20.0,
                            model=("activation=lipswish", *UNBIASED_TRAINING), lr=2e-2, ema=0.999),
    # CIFAR-10's also has Glow's conditional split prior (five-minute runs, one seed, 1,000 test images: 4.79
    # bits/dim with the paper's unconditional priors, 4.64 with it; a third scale of 8 blocks, 1.5x slower per step,
    # 4.84; the hour: 4.071 without it, 3.954 with it), and Residual Flows' c = 0.98 instead of the paper's 0.9 (the
    # same five-minute runs: 4.61 at 0.9, 4.53 at 0.98; the hour, 8,834 steps against 8,777: 3.895 against 3.954).
    "cifar10-density": Recipe("cifar10", 0.98, task="density", epochs=None, time_budget=60.0, train_subset=10_000,
                              model=("activation=lipswish", *UNBIASED_TRAINING, "split_prior=conditional"),
                              ema=0.999, test_subset=1000),
}


# ----------------------------------------------------------------------------------------
# The manifest and verified loading
# ----------------------------------------------------------------------------------------

def manifest(directory: str | os.PathLike | None = None) -> dict:
    """name -> entry of ``<directory>/manifest.json`` (default: the shipped ``data/pretrained``)."""
    path = Path(directory or PRETRAINED_DIR) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def names(directory: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped checkpoints."""
    return sorted(manifest(directory))


def checkpoint_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where checkpoint ``name``'s file lives."""
    return Path(directory or PRETRAINED_DIR) / f"{name}.pt"


def sha256sum(payload: bytes) -> str:
    """Hex sha256 of a file's contents (the manifest's check)."""
    return hashlib.sha256(payload).hexdigest()


def _entry(name: str, directory) -> dict:
    entries = manifest(directory)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none (the manifest is empty or missing)"
        raise PretrainedError(f"no pretrained checkpoint named {name!r}; shipped are: {known}")
    return entries[name]


def _verified_bytes(name: str, entry: dict, directory, remake: str | None = None) -> bytes:
    """The checkpoint file's bytes, only if their sha256 is the manifest's."""
    remake = remake or f"python scripts/make_pretrained.py {name}"
    path = Path(directory or PRETRAINED_DIR) / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"checkpoint file {path} of {name!r} is missing; restore it from the "
                              f"repository, or remake it: {remake}")
    payload = path.read_bytes()
    digest = sha256sum(payload)
    if digest != entry["sha256"]:
        raise PretrainedError(f"{path} has sha256 {digest}, but the manifest says {entry['sha256']}: the file "
                              f"is corrupt or was changed, so it is not loaded. Restore it from the repository "
                              f"or remake it: {remake}")
    return payload


def verified_file(name: str, directory: str | os.PathLike | None = None, remake: str | None = None) -> tuple:
    """(bytes, manifest entry) of shipped file ``name`` in ``directory``, its sha256 checked first.

    ``remake`` is the command that rebuilds the file, for the error messages.
    """
    entry = _entry(name, directory)
    return _verified_bytes(name, entry, directory, remake), entry


def model_from_bytes(payload: bytes, device: str | torch.device | None = None):
    """(model in eval mode, TrainConfig) from a checkpoint's bytes (``torch.load(weights_only=True)``)."""
    checkpoint = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise PretrainedError(f"not a pretrained checkpoint: format {found!r}, expected {FORMAT!r}")
    device = get_device(device)
    config = dataclasses.replace(train.TrainConfig(**checkpoint["train_config"]), device=str(device))
    model = models.build_model(models.config_from_dict(config.task, checkpoint["model_config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()})
    return model.to(device).eval(), config


def load_pretrained(name: str, device: str | torch.device | None = None,
                    directory: str | os.PathLike | None = None):
    """(model in eval mode, TrainConfig, manifest entry) of a shipped checkpoint, sha256-verified first."""
    entry = _entry(name, directory)
    model, config = model_from_bytes(_verified_bytes(name, entry, directory), device)
    return model, config, entry


# ----------------------------------------------------------------------------------------
# Load or train (notebooks)
# ----------------------------------------------------------------------------------------

def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run (its metrics.jsonl)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _run_info(run_dir: Path, recipe: Recipe, name: str, source: str) -> tuple:
    model, config, _state = train.load_run(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = {**summary, "train_seconds": 60 * summary["train_minutes"]}
    if "test_accuracy" in summary:
        metrics["test_error_percent"] = 100 * (1 - summary["test_accuracy"])
    return model, config, {"source": source, "name": name, "run_dir": str(run_dir), "coeff": recipe.coeff,
                           "dataset": recipe.dataset, "preset": recipe.preset, "command": recipe.command(run_dir),
                           "metrics": metrics, "history": read_history(run_dir)}


def load_or_train(name: str, train_now: bool = False, run_dir: str | os.PathLike | None = None,
                  device: str | torch.device | None = None, progress: bool = True, **overrides):
    """(model, TrainConfig, info) for recipe ``name`` with ``overrides``: what exists, or, if asked, a new run.

    In order: a *finished* run of this recipe in ``run_dir`` (default ``runs/<name>``) is loaded;
    else with ``train_now=True`` the recipe is trained here (the expected time on this device,
    measured on a few steps, and the equivalent command are printed first; a progress bar runs;
    an interrupted run is resumed); else the *shipped* checkpoint is loaded and ``info["note"]``
    says that the recipe was not trained. Nothing long ever starts unless ``train_now`` is set.
    A run directory made with other settings is never touched: that is an error. ``info`` has
    ``source`` ("run", "trained" or "shipped"), ``command``, ``metrics`` and ``history``.
    """
    if name not in RECIPES:
        raise PretrainedError(f"no recipe named {name!r}; known are: {', '.join(RECIPES)}")
    recipe = dataclasses.replace(RECIPES[name], **overrides)
    run_dir = Path(run_dir if run_dir is not None else Path("runs") / name)
    if (run_dir / "config.json").is_file():
        different = recipe.mismatches(json.loads((run_dir / "config.json").read_text()))
        if different:
            raise FileExistsError(f"{run_dir} holds a run with other settings ({'; '.join(different)}); it is "
                                  "left untouched. Pass another run_dir to train this recipe.")
    if (run_dir / "summary.json").is_file():
        model, config, info = _run_info(run_dir, recipe, name, "run")
        return model.to(get_device(device)), dataclasses.replace(config, device=str(get_device(device))), info
    if not train_now:
        model, config, entry = load_pretrained(name, device)
        info = {"source": "shipped", "name": name, **entry}
        if recipe != RECIPES[name]:  # the shipped file is not what was asked for: say so
            unfinished = (run_dir / train.CHECKPOINT).is_file()
            info["not_trained"] = (
                f"{name}: the shipped checkpoint (a short CPU run), not the recipe asked for"
                + (f"; an unfinished run of it waits in {run_dir} (train_now=True resumes it)" if unfinished else "")
                + f". To train that recipe: {recipe.command(run_dir)}")
        return model, config, info
    argv = recipe.argv() + ["--out", str(run_dir), "--resume", "--device", str(get_device(device))]
    estimate = throughput.estimate_run(cli.config_from_args(cli.parser().parse_args(argv)))
    print(f"training {name} now: about {_duration(estimate['seconds'])} on {estimate['device']} "
          f"({estimate['seconds_per_step']:.3g} s per step, measured, x {estimate['steps']:,} steps); "
          f"re-running this resumes it from {run_dir}.\nIn a terminal: {recipe.command(run_dir)}", flush=True)
    if cli.main(argv + ([] if progress else ["--no-progress"])) != 0:
        raise RuntimeError(f"training failed (see the error above): {recipe.command(run_dir)}")
    model, config, info = _run_info(run_dir, recipe, name, "trained")
    return model.to(get_device(device)), config, info


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------------------
# Evaluation on the real test set, writing checkpoints and manifest entries
# ----------------------------------------------------------------------------------------

def test_transform(config: train.TrainConfig):
    """How test images become model inputs: normalised (classifier) or dequantised (density model)."""
    return _data.Normalize.for_dataset(config.dataset) if config.task == "classify" else _data.dequantize


def evaluate_test(model, config: train.TrainConfig, n_images: int | None = None) -> dict:
    """Test accuracy and loss (classifier) or bits/dim (density model) on the first ``n_images`` test images.

    A density model's log-dets are the seeded unbiased estimates of ``train.test_estimator``, so the
    manifest's figures can be re-checked.
    """
    x, y = _data.load_dataset(config.dataset, "test")
    loader = _data.TensorLoader(x[:n_images], y[:n_images], config.test_batch_size, shuffle=False,
                                transform=test_transform(config), device=next(model.parameters()).device)
    return train.evaluate(model, loader, config, loader.device)


def checkpoint_bytes(model, config: train.TrainConfig) -> tuple[bytes, str]:
    """(file contents, dtype): weights + configs in float32, or if that exceeds MAX_BYTES, the weights and
    the power-iteration vectors u, v in float16 (other buffers stay float32)."""
    for dtype in ("float32", "float16"):
        state = {k: v.detach().cpu().to(getattr(torch, dtype)) if k.endswith(("weight", ".u", ".v"))
                 and v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()}
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "model": state, "model_config": models.config_to_dict(model.config),
                    "train_config": dataclasses.asdict(config), "dtype": dtype}, buffer)
        if buffer.tell() <= MAX_BYTES:
            return buffer.getvalue(), dtype
    raise PretrainedError(f"the model's weights need {buffer.tell():,} bytes even in float16, more than "
                          f"the {MAX_BYTES:,} allowed for a shipped checkpoint: use a smaller preset")


def write_checkpoint(name: str, payload: bytes, directory: str | os.PathLike | None = None) -> Path:
    """Write checkpoint bytes to ``<directory>/<name>.pt`` atomically (temp file, then rename)."""
    path = checkpoint_path(name, directory)
    write_atomically(path, payload)
    return path


def write_entry(name: str, entry: dict, directory: str | os.PathLike | None = None) -> None:
    """Add or replace one manifest entry: under a lock, re-read the manifest, then write it atomically."""
    directory = Path(directory or PRETRAINED_DIR)
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    with locked(Path(tempfile.gettempdir()) / f"iresnet-mini-manifest-{key}.lock"):
        # two scripts updating different entries keep both
        entries = {**manifest(directory), name: entry}
        write_atomically(directory / MANIFEST, json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
