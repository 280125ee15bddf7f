"""Train the shipped checkpoints from their recipes and (re)write their manifest entries.

    python scripts/make_pretrained.py mnist-c0.9 mnist-vanilla      # the recipes in RECIPES
    python scripts/make_pretrained.py mnist-c0.9 --time-budget 10 --epochs 0   # 10 minutes instead
    python scripts/make_pretrained.py mnist-c0.9 --time-budget 10 --epochs 0 --train-subset 0 --batch-size 0
        # the cpu preset's own recipe (all images, its batch size) for 10 minutes
    python scripts/make_pretrained.py --list
    python scripts/make_pretrained.py cifar10-density --from-run runs/cifar10-density   # package a finished run

For each name: run ``python -m iresnet_mini.train`` with the recipe into a temporary run
directory; run every layer's power iteration to tolerance (so the shipped u, v certify the
weights); keep the weights only (float16 when float32 would exceed 5 MB); evaluate the
*saved* file on the real test set (all of it, and the first EVAL_SUBSET images that the tests
re-check); write ``data/pretrained/<name>.pt`` and its manifest entry, each atomically.
``--from-run`` skips the training and packages a finished run directory of the same recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from iresnet_mini import data, lipschitz, pretrained, throughput, train

CERTIFICATE_IMAGES = 64  # test images whose reconstruction error enters the certificate


def certified_run(run_dir: Path):
    """The run's final model, with every power iteration run to tolerance (paper Sec. 6 pitfall)."""
    model, config, state = train.load_run(run_dir, device="cpu")
    lipschitz.certify(model)
    return model, config, state


def train_images(recipe: pretrained.Recipe) -> int:
    """How many training images the run saw (CIFAR-10 may have only some batches on disk)."""
    n = len(data.load_dataset(recipe.dataset, "train", allow_partial=True)[1])
    return min(n, recipe.train_subset) if recipe.train_subset is not None else n


def shipped_metrics(payload: bytes, state: dict) -> dict:
    """Test figures and certificate of the checkpoint bytes exactly as they will be shipped."""
    model, config = pretrained.model_from_bytes(payload, "cpu")
    full = pretrained.evaluate_test(model, config)
    subset = pretrained.evaluate_test(model, config, pretrained.EVAL_SUBSET)
    x, _ = data.load_dataset(config.dataset, "test")
    cert_x = pretrained.test_transform(config)(x[:CERTIFICATE_IMAGES], torch.Generator().manual_seed(0))
    cert = train.certificate(model, cert_x, config)
    if config.task == "classify":
        figures = {"test_accuracy": full["test_accuracy"], "test_error_percent": 100 * (1 - full["test_accuracy"]),
                   "test_loss": full["test_loss"], "subset_accuracy": subset["test_accuracy"]}
    else:
        figures = {"test_bits_per_dim": full["test_bits_per_dim"], "subset_bits_per_dim": subset["test_bits_per_dim"]}
    return {**figures, "test_images": full["test_images"], "subset_images": subset["test_images"],
            "epochs": state["epoch"], "steps": state["step"], "train_seconds": state["elapsed_s"],
            "params": state["params"], "certificate": cert}


def finished_run(recipe: pretrained.Recipe, run_dir: Path) -> Path:
    """``run_dir`` if it holds a finished run of ``recipe`` (its config.json agrees); else an error."""
    config_path = run_dir / "config.json"
    if not (run_dir / train.CHECKPOINT).is_file() or not config_path.is_file():
        raise SystemExit(f"{run_dir} holds no run (it needs config.json and {train.CHECKPOINT})")
    different = recipe.mismatches(json.loads(config_path.read_text()))
    if different:
        raise SystemExit(f"{run_dir} is a run of another recipe: {'; '.join(different)}")
    return run_dir


def make(name: str, recipe: pretrained.Recipe, directory: Path, from_run: Path | None = None) -> dict:
    """Train ``recipe`` (or take its finished run ``from_run``), write ``<directory>/<name>.pt`` and its entry."""
    with tempfile.TemporaryDirectory(prefix=f"pretrained-{name}-") as tmp:
        if from_run is None:
            run_dir = Path(tmp) / "run"
            argv = [sys.executable, "-m", "iresnet_mini.train", *recipe.argv(), "--out", str(run_dir),
                    "--no-progress"]
            print(f"[{name}] {recipe.command()}", flush=True)
            start = time.perf_counter()
            subprocess.run(argv, check=True)
            wall_s = time.perf_counter() - start
        else:
            run_dir, wall_s = finished_run(recipe, from_run), None
        model, config, state = certified_run(run_dir)
        history = pretrained.read_history(run_dir)
    payload, dtype = pretrained.checkpoint_bytes(model, config)
    metrics = shipped_metrics(payload, state)
    entry = {
        "file": f"{name}.pt", "sha256": pretrained.sha256sum(payload), "bytes": len(payload), "dtype": dtype,
        "command": recipe.command(), "task": recipe.task, "dataset": recipe.dataset, "preset": recipe.preset,
        "coeff": recipe.coeff, "seed": recipe.seed, "train_images": train_images(recipe),
        "metrics": metrics, "history": history, "wall_seconds": wall_s,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": config.threads,
    }
    # this machine's speed (with the run's threads), for the times: measure on an idle machine
    entry["classifier_step_seconds"] = throughput.reference_step_seconds(threads=config.threads)
    if recipe.dataset == "cifar10" and entry["train_images"] < 50_000:
        entry["note"] = (f"trained on {entry['train_images']:,} of the 50,000 CIFAR-10 training images "
                         f"(data_batch_1 only) for {metrics['train_seconds'] / 60:.0f} CPU minutes "
                         f"({metrics['epochs']} epochs): far from the paper's 200 GPU epochs on all of them")
    pretrained.write_checkpoint(name, payload, directory)
    pretrained.write_entry(name, entry, directory)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"among: {', '.join(pretrained.RECIPES)}")
    p.add_argument("--list", action="store_true", help="print the recipes and exit")
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="train for this many minutes")
    p.add_argument("--epochs", type=int, help="replace the recipe's epochs (0: none, train for --time-budget)")
    p.add_argument("--train-subset", type=int, metavar="N", help="replace the recipe's training images (0: all)")
    p.add_argument("--batch-size", type=int, help="replace the recipe's batch size (0: the preset's)")
    p.add_argument("--preset", help="replace the recipe's preset (e.g. tiny for a smoke test)")
    p.add_argument("--threads", type=int, help="CPU threads (1 is fastest on a busy machine)")
    p.add_argument("--directory", type=Path, default=pretrained.PRETRAINED_DIR,
                   help="where the checkpoints and manifest.json go (default: data/pretrained)")
    p.add_argument("--from-run", type=Path, metavar="RUN_DIR",
                   help="package this finished run of the (one) named recipe instead of training")
    args = p.parse_args(argv)
    if args.from_run is not None and len(args.names) != 1:
        p.error("--from-run packages the run of exactly one name")
    if args.list or not args.names:
        for name, recipe in pretrained.RECIPES.items():
            print(f"{name:16s} {recipe.command()}")
        return 0
    unknown = [n for n in args.names if n not in pretrained.RECIPES]
    if unknown:
        p.error(f"unknown names {', '.join(unknown)}; known are {', '.join(pretrained.RECIPES)}")
    overrides = {k: v for k, v in (("time_budget", args.time_budget), ("preset", args.preset),
                                   ("threads", args.threads), ("epochs", args.epochs),
                                   ("train_subset", args.train_subset), ("batch_size", args.batch_size))
                 if v is not None}
    overrides.update({k: None for k in ("epochs", "train_subset", "batch_size") if overrides.get(k) == 0})
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.names:
        entry = make(name, dataclasses.replace(pretrained.RECIPES[name], **overrides), args.directory, args.from_run)
        m = entry["metrics"]
        test, first = ((f"accuracy {100 * m['test_accuracy']:.2f}%", f"{100 * m['subset_accuracy']:.2f}%")
                       if "test_accuracy" in m else
                       (f"{m['test_bits_per_dim']:.4f} bits/dim", f"{m['subset_bits_per_dim']:.4f} bits/dim"))
        print(f"[{name}] test {test} ({m['test_images']} images), "
              f"first {m['subset_images']}: {first}, {m['epochs']} epochs, "
              f"{m['train_seconds'] / 60:.1f} min, {entry['bytes'] / 1e6:.2f} MB ({entry['dtype']}), "
              f"reconstruction max error {m['certificate']['reconstruction_max_abs_error']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
