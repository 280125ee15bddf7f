"""Make the shipped lesson results: ``python -m iresnet_mini.lessons.precompute NAME [NAME ...]``.

* ``nb01-dynamics``: notebook 01's toy ResNets and i-ResNets, every task x depth 1-10 x
  (plain, each c of ``dynamics.GRID_C``), trained with ``dynamics.RECIPE``.
* ``nb04-fig2``: notebook 04's Fig. 2 pair for each toy data set, the i-ResNet flow and the
  affine-coupling flow with the benchmark's tuned settings, ``toyflows.FIG2_STEPS`` steps each.
* ``nb04-widget``: the widget's smaller i-ResNet flows (``toyflows.WIDGET_MODEL``), one per data
  set and c of ``toyflows.WIDGET_C``, ``toyflows.WIDGET_STEPS`` steps each.

Each is written with its figures to ``data/pretrained/lessons/`` (see
:mod:`iresnet_mini.lessons.shipped`); the tests re-check every figure from the shipped files.
Training is planned in steps, not minutes, so the files do not depend on the machine; the
time it took is recorded beside the classifier step time of this machine.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time

import torch

from .. import throughput
from . import shipped
from .nb01 import dynamics
from .nb04 import toyflows

PRODUCERS = {
    "nb01-dynamics": dynamics.precompute,
    toyflows.SHIPPED_FIG2: functools.partial(toyflows.precompute, toyflows.SHIPPED_FIG2),
    toyflows.SHIPPED_WIDGET: functools.partial(toyflows.precompute, toyflows.SHIPPED_WIDGET),
}


def make(name: str, workers: int = 1, directory=None) -> dict:
    """Train ``name``'s models, write its file and manifest entry; returns the entry."""
    if name not in PRODUCERS:
        raise ValueError(f"unknown lesson results {name!r}: use one of {', '.join(PRODUCERS)}")
    step = throughput.reference_step_seconds()  # with all of torch's threads, as the bench measures it
    torch.set_num_threads(1)
    start = time.perf_counter()
    content, metrics = PRODUCERS[name](workers=workers)
    wall = time.perf_counter() - start
    return shipped.save(name, content, shipped.remake_command(name) + (f" --workers {workers}" if workers > 1 else ""),
                        metrics, directory, wall_seconds=round(wall, 1), workers=workers,
                        classifier_step_seconds=step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.lessons.precompute",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", choices=sorted(PRODUCERS), metavar="NAME",
                        help=f"among: {', '.join(PRODUCERS)}")
    parser.add_argument("--workers", type=int, default=1, help="processes training in parallel (one thread each)")
    parser.add_argument("--directory", default=None, help="default: data/pretrained/lessons")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    for name in args.names:
        entry = make(name, args.workers, args.directory)
        print(f"[{name}] {entry['bytes'] / 1e6:.2f} MB in {entry['wall_seconds'] / 60:.1f} min "
              f"({args.workers} workers; classifier step {entry['classifier_step_seconds']:.3f} s)")
        for key, value in entry["metrics"].items():
            print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
