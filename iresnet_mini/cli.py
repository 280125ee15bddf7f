"""The command line of ``python -m iresnet_mini.train``: a recipe, the options given on top, a run."""
from __future__ import annotations

import argparse
import sys

from . import data as _data
from .config import get_device
from .models import parse_model_options
from .recipes import DATASETS, IMAGE_SHAPES, TASKS, TrainConfig, make_config, model_config

__all__ = ["parser", "config_from_args", "main"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iresnet_mini.train",
                                description="Train an i-ResNet classifier or density model (paper Sec. 4).")
    p.add_argument("--task", choices=TASKS, default="classify")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--preset", default="tiny", help="tiny, cpu or paper")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--coeff", type=float, help="Lipschitz coefficient c in (0, 1)")
    c.add_argument("--vanilla", action="store_true", help="no Lipschitz constraint (non-invertible baseline)")
    p.add_argument("--model", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="architecture options on top of the preset, e.g. widths=64,128 blocks=3,5 "
                        "activation=lipswish")
    p.add_argument("--epochs", type=int)
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="minutes of training")
    p.add_argument("--train-subset", type=int, metavar="N")
    p.add_argument("--test-subset", type=int, metavar="N", help="per-epoch evaluation on N test images")
    p.add_argument("--final-test-subset", type=int, metavar="N",
                   help="final evaluation on N test images (default: the whole test set)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999): it is evaluated, "
                        "certified and saved instead of the last step's weights")
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
        ("batch_size", args.batch_size), ("lr", args.lr), ("ema", args.ema), ("threads", args.threads), ("amp", args.amp),
        ("channels_last", args.channels_last), ("compile", args.compile)) if value is not None}
    if args.epochs is not None or args.time_budget is not None:
        overrides.update(epochs=args.epochs, time_budget_min=args.time_budget)
    model = parse_model_options(args.task, args.model)
    if args.vanilla:
        model["coeff"] = None
    elif args.coeff is not None:
        model["coeff"] = args.coeff
    if model:
        overrides["model"] = model
    device = args.device or str(get_device())
    config = make_config(args.task, args.dataset, args.preset, seed=args.seed, device=device, **overrides)
    model_config(config, IMAGE_SHAPES[config.dataset])  # a bad architecture option fails here, not after loading
    return config


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m iresnet_mini.train``."""
    from .train import NonFiniteLossError, train  # the loop imports this module's neighbours, not this module

    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
        train(config, args.out, resume=args.resume, progress=not args.no_progress)
    except (NonFiniteLossError, FileExistsError, ValueError, _data.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
