"""One switch for the whole collection: quick (CPU, minutes) or full (GPU, paper scale).

The mode is chosen, in order of priority, by

1. notebook or script code: ``set_mode("quick")`` / ``set_mode("full")``;
2. the environment variable ``IRESNET_MINI_MODE=quick|full``;
3. the hardware: ``full`` when a CUDA GPU is present, ``quick`` otherwise.

Every size, epoch count and iteration count that differs between the modes lives in
:data:`SIZES` below and is read with :func:`size`; nothing else in the package or the
notebooks hard-codes a quick or full number. ``$IRESNET_MINI_SIZES`` may name a JSON file of
sizes that win over both modes (:func:`size_overrides`).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

MODES = ("quick", "full")
ENV_VAR = "IRESNET_MINI_MODE"
SIZES_ENV_VAR = "IRESNET_MINI_SIZES"

_override: str | None = None


@dataclass(frozen=True)
class Size:
    """A number that depends on the mode: ``quick`` for CPU/CI, ``full`` for the real run."""

    quick: object
    full: object
    doc: str = ""


# name -> Size. One place for every quick/full number of the collection.
# Keys are "<where>.<what>" (a notebook number or a package module).
SIZES: dict[str, Size] = {
    # --- package-wide -----------------------------------------------------------------
    "bench.repeats": Size(3, 10, "timing repeats in iresnet_mini.bench"),
    # --- notebooks 01-04 (toy problems) -------------------------------------------------
    "nb01.grid": Size(41, 81, "grid points per axis for crossings and fold maps in notebook 01"),
    "nb02.power_iters": Size(30, 100, "power-iteration steps traced in notebook 02"),
    "nb02.conv_sizes": Size((4, 8, 16, 32), (4, 8, 16, 32, 64), "input sizes of the conv-norm table"),
    "nb02.norm_power_iters": Size(300, 2000, "float64 power iterations for the true norm of a large conv"),
    "nb02.inverse_iters": Size(60, 200, "fixed-point / Anderson iterations in the convergence study"),
    "nb02.n_points": Size(256, 2048, "sample points for measured Lipschitz and bi-Lipschitz constants"),
    "nb03.dim": Size(16, 64, "dimension d of the log-det study block (the exact log-det is the reference)"),
    "nb03.n_points": Size(8, 16, "points x at which the log-det estimators are studied"),
    "nb03.n_repeats": Size(400, 2000, "independent draws of an estimator per point"),
    "nb03.max_terms": Size(20, 30, "largest number of series terms in the bias/variance study"),
    "nb03.cost_dim": Size(64, 512, "width d of the block whose gradient cost is measured"),
    "nb03.cost_batch": Size(64, 256, "batch size of the gradient-cost measurement"),
    "nb03.cost_terms": Size((1, 2, 5, 10, 20), (1, 2, 5, 10, 20, 50), "series terms in the cost table"),
    "nb03.cost_repeats": Size(5, 10, "timing repeats (fastest kept) of the gradient cost"),
    "nb03.widget_draws": Size(1000, 4000, "estimates drawn per redraw of the log-det widget"),
    "nb04.model": Size({"n_blocks": 4, "hidden": 32}, {}, "changes to toyflows.TOY_SHAPE (both flows) in notebook 04"),
    "nb04.batch_size": Size(256, 512, "samples per training step of the 2D flows"),
    "nb04.scale_steps": Size(60, 300, "training steps per run of the working-scale comparison"),
    "nb04.estimator_steps": Size(30, 400, "training steps per log-det estimator compared"),
    "nb04.widget_steps": Size(60, 400, "training steps of a widget model off the shipped grid of c"),
    "nb04.widget_datasets": Size(("8gaussians",), ("8gaussians", "checkerboard", "moons", "circles"),
                                 "data sets whose shipped widget flows are evaluated up front (others on request)"),
    "nb04.test_points": Size(2000, 10_000, "fresh test points for every test NLL in notebook 04"),
    "nb04.entropy_points": Size(5000, 50_000, "Monte Carlo points for the data entropies"),
    "nb04.grid": Size(80, 200, "grid points per axis of the density heat maps"),
    "nb04.samples": Size(1000, 5000, "samples drawn by inverting each flow"),
    # --- notebooks 05-08 (images) -------------------------------------------------------
    "nb05.recipe": Size({}, {"epochs": 15, "train_subset": None, "batch_size": 128},
                        "changes to the shipped MNIST recipes for the runs TRAIN_HERE = True trains"),
    "nb05.own_recipe": Size({"preset": "tiny", "epochs": 4, "train_subset": 2048, "threads": 1},
                            {"preset": "cpu", "epochs": 1, "train_subset": None},
                            "the two classifiers notebook 05 always trains (section 7: seconds to a few minutes)"),
    "nb05.test_images": Size(300, 10_000, "MNIST test images each classifier is re-evaluated on"),
    "nb05.norm_iterations": Size(30, 500, "power-iteration steps for an unconstrained layer's norm"),
    "nb06.recipe": Size({}, {"preset": "paper", "epochs": 200, "train_subset": None, "batch_size": None,
                             "model": (), "lr": None, "test_subset": None},
                        "changes to the shipped CIFAR-10 recipes for the runs TRAIN_HERE = True trains (full: the paper's)"),
    "nb06.own_recipe": Size({"preset": "tiny", "epochs": 4, "train_subset": 2048, "threads": 1, "model": (), "lr": None,
                             "test_subset": None},
                            {"preset": "cpu", "epochs": 2, "train_subset": 10_000, "model": (), "lr": None},
                            "the two classifiers notebook 06 always trains (section 6: seconds to a few minutes)"),
    "nb06.coupling_recipe": Size({}, {"preset": "paper", "epochs": 200, "train_subset": None, "batch_size": None,
                                      "model": ("block=coupling",), "lr": None, "test_subset": None},
                                 "changes to the shipped coupling classifier's recipe for TRAIN_HERE = True (full: "
                                 "the paper's layout with coupling steps)"),
    "nb06.test_images": Size(300, 10_000, "CIFAR-10 test images each classifier is re-evaluated on"),
    "nb06.norm_iterations": Size(30, 500, "power-iteration steps for an unconstrained layer's norm"),
    "nb07.recipe": Size({}, {"preset": "paper", "epochs": 50, "time_budget": None, "train_subset": None,
                             "batch_size": None},
                        "changes to the shipped MNIST density recipe for the run TRAIN_HERE = True trains"),
    "nb07.test_images": Size(64, 10_000, "MNIST test images of the bits/dim breakdown"),
    "nb07.estimator_repeats": Size(8, 40, "independent draws of each stochastic estimator per image"),
    "nb07.series_terms": Size((1, 2, 5, 10), (1, 2, 3, 5, 10, 20), "series terms compared with the exact log-det"),
    "nb07.exact_images": Size(1, 8, "images whose exact bits/dim (a full Jacobian per block) is computed"),
    "nb07.samples": Size(36, 100, "samples drawn by inverting the flow"),
    "nb07.reconstructions": Size(16, 500, "test images reconstructed by the fixed-point inverse"),
    "nb08.recipe": Size({}, {"preset": "paper", "epochs": 100, "time_budget": None, "train_subset": None,
                             "batch_size": None},
                        "changes to the shipped CIFAR-10 density recipe for the run TRAIN_HERE = True trains"),
    "nb08.test_images": Size(32, 10_000, "CIFAR-10 test images of the bits/dim evaluation"),
    "nb08.samples": Size(25, 64, "samples drawn by inverting the flow (Fig. 5)"),
    "nb08.block_points": Size(3, 16, "test images whose crops the trained block is studied at"),
    "nb08.block_dim": Size(400, 1000, "largest d = channels x side^2 of the crops a trained block is studied on"),
    "nb08.study_repeats": Size(20, 1000, "independent estimates per point in the trained-block study"),
    "nb08.max_terms": Size(10, 30, "largest number of series terms in the trained-block study"),
    "nb08.widget_draws": Size(300, 2000, "estimates drawn per redraw of the trained-block widget"),
}


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: allowed are {', '.join(map(repr, MODES))}")
    return mode


def set_mode(mode: str | None) -> None:
    """Force ``"quick"`` or ``"full"`` for this process; ``None`` returns to the default."""
    global _override
    _override = None if mode is None else _check_mode(mode)


def get_mode() -> str:
    """The current mode: code override, then ``$IRESNET_MINI_MODE``, then the hardware."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env:
        if env not in MODES:
            raise ValueError(
                f"{ENV_VAR}={env!r} is not a mode: set it to 'quick' or 'full' (or unset it)"
            )
        return env
    return "full" if torch.cuda.is_available() else "quick"


def is_quick() -> bool:
    return get_mode() == "quick"


_overrides_cache: dict = {}


def size_overrides() -> dict:
    """Sizes fixed by ``$IRESNET_MINI_SIZES``: a JSON file {name: value} that wins over both modes.

    For a classroom of slow machines, or a test that runs full mode with small numbers. Unknown
    names are an error (a typo would otherwise be ignored silently).
    """
    path = os.environ.get(SIZES_ENV_VAR, "").strip()
    if not path:
        return {}
    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError as error:
        raise ValueError(f"{SIZES_ENV_VAR}={path!r}: cannot read it ({error}); unset it or point it at a "
                         "JSON file of sizes") from None
    if key not in _overrides_cache:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
        unknown = sorted(set(values) - set(SIZES)) if isinstance(values, dict) else None
        if unknown is None or unknown:
            raise ValueError(f"{SIZES_ENV_VAR}={path!r} must map known size names to values; unknown: {unknown}")
        _overrides_cache.clear()
        _overrides_cache[key] = values
    return _overrides_cache[key]


def size(name: str):
    """The value of a mode-dependent size (see :data:`SIZES`) in the current mode (or as overridden)."""
    try:
        entry = SIZES[name]
    except KeyError:
        raise KeyError(f"unknown size {name!r}; known sizes: {', '.join(sorted(SIZES))}") from None
    overrides = size_overrides()
    if name in overrides:
        value = overrides[name]
        return tuple(value) if isinstance(entry.quick, tuple) and isinstance(value, list) else value
    return entry.quick if is_quick() else entry.full


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); returns a seeded torch Generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded_streams(seed: int, device: torch.device | str | None = None):
    """Inside: torch's generators (CPU, and ``device``'s if it is a GPU) and Python's ``random`` start
    from ``seed``; afterwards all of them are back where they were, so the caller's stream is untouched."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    host_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            random.seed(seed)
            yield
    finally:
        random.setstate(host_state)


def flush_denormals() -> bool:
    """Compute with subnormal floats (below 1.2e-38) as zero on this CPU; False where it cannot.

    As a network trains, some activations and gradients fall into that range (ELU's exp(x) for very
    negative x, for one), and x86 CPUs handle such numbers many times slower: without this a
    CIFAR-10 epoch went from 34 s to 91 s over 24 epochs (one step 4x slower), while the weights and
    Adam's moments held no subnormal number. It is process-wide, and no result here needs numbers
    that small.
    """
    return torch.set_flush_denormal(True)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU. Checks that CUDA exists."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is available; use 'cpu'")
    return device


def describe() -> str:
    """One line for a notebook's setup cell: mode, device, torch version, threads."""
    return (
        f"iresnet-mini: mode={get_mode()} device={get_device()} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
