"""Benchmarks that print figures (not tests): ``python -m iresnet_mini.bench {blocks,toy,throughput}``.

* ``blocks``: for a conv and a dense i-ResNet block (c = 0.9, the constraint binding): forward
  time, inverse by plain fixed-point iteration and by Anderson acceleration (iterations and
  time to a residual of 1e-6), and the cost of each log-det estimator per series term,
  with ratios against the forward pass measured in the same process.
* ``toy``: 2D density training against the clock (``iresnet_mini.toyflows``).
* ``throughput``: training images per second of the image models (``iresnet_mini.train``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import blocks, config, logdet


def timed(fn, repeats: int | None = None) -> float:
    """Median wall time of fn() in seconds over ``repeats`` runs (after one warm-up run)."""
    repeats = repeats or config.size("bench.repeats")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _bound_block(branch, x, scale=3.0):
    """Scale weights up so spectral normalisation binds at c, then settle the power iteration."""
    with torch.no_grad():
        for name, p in branch.named_parameters():
            if name.endswith("weight"):
                p.mul_(scale)
    block = blocks.InvertibleResidualBlock(branch)
    block.train()
    for _ in range(20):
        block(x)
    block.eval()
    return block


def bench_block(name: str, block, x, terms=(1, 2, 5, 10), atol: float = 1e-6) -> dict:
    """Forward, inverse (plain and Anderson) and per-term log-det cost of one block on batch x."""
    with torch.no_grad():
        y = block(x)
        t_forward = timed(lambda: block(x))
    row = {"block": name, "batch": tuple(x.shape), "forward_ms": 1e3 * t_forward}
    print(f"\n== {name}: input {tuple(x.shape)}, {x.dtype}, {torch.get_num_threads()} threads")
    print(f"forward                      {1e3 * t_forward:9.2f} ms")
    for method in ("fixed_point", "anderson"):
        _, info = block.inverse(y, max_iter=500, atol=atol, method=method, return_info=True, warn=False)
        t = timed(lambda: block.inverse(y, max_iter=500, atol=atol, method=method, warn=False))
        row[f"inverse_{method}"] = {"iterations": info.iterations, "ms": 1e3 * t, "residual": info.residual}
        print(f"inverse {method:<12} to {atol:g}: {info.iterations:4d} iterations {1e3 * t:9.2f} ms "
              f"({t / t_forward:5.1f}x forward, residual {info.residual:.1e})")
    a, b = row["inverse_fixed_point"], row["inverse_anderson"]
    print(f"anderson / fixed point: {b['iterations'] / a['iterations']:.2f}x iterations, "
          f"{b['ms'] / a['ms']:.2f}x time")
    block.train()  # training-mode costs (graph for gradients)

    def series_step(n):
        def run():
            ld = logdet.power_series_logdet(block.branch, x, n_terms=n)
            ld.sum().backward()
        return run

    def neumann_step(n):
        def run():
            ld = logdet.power_series_logdet(block.branch, x, n_terms=n, neumann_gradient=True)
            ld.sum().backward()
        return run

    def train_forward():
        (block(x) ** 2).sum().backward()

    t_train = timed(train_forward)
    print(f"forward+backward (no log-det) {1e3 * t_train:8.2f} ms")
    row["train_forward_backward_ms"] = 1e3 * t_train
    for label, make in (("series (backprop)", series_step), ("series (Neumann grad)", neumann_step)):
        times = {n: timed(make(n)) for n in terms}
        per_term = (times[terms[-1]] - times[terms[0]]) / (terms[-1] - terms[0])
        row[f"{label}_per_term_ms"] = 1e3 * per_term
        cells = "  ".join(f"n={n}: {1e3 * t:7.2f} ms" for n, t in times.items())
        print(f"log-det {label:<22} fwd+bwd {cells}  -> {1e3 * per_term:.2f} ms/term "
              f"({per_term / t_train:.2f}x a forward+backward)")
    with torch.no_grad():
        t_exact = timed(lambda: logdet.exact_logdet(block.branch, x)) if x[0].numel() <= 1024 else None
    if t_exact is not None:
        print(f"exact log-det (full Jacobian, no grad) {1e3 * t_exact:8.2f} ms")
        row["exact_ms"] = 1e3 * t_exact
    block.eval()
    return row


def bench_blocks(seed: int = 0) -> list[dict]:
    """The ``blocks`` benchmark: one conv block and one dense block at c = 0.9."""
    config.seed_everything(seed)
    rows = []
    x = torch.randn(32, 16, 16, 16)
    conv = _bound_block(blocks.conv_branch(16, 32, coeff=0.9), x)
    rows.append(bench_block("conv block 16->32->16 ch, 3x3/1x1/3x3", conv, x))
    x = torch.randn(256, 64)
    dense = _bound_block(blocks.mlp_branch(64, 128, 2, coeff=0.9), x)
    rows.append(bench_block("dense block 64->128->128->64", dense, x))
    # Random layers rarely align, so the two blocks above have Lip(g) well below c. A single
    # layer has Lip(g) = c exactly: the slow case for plain fixed point, where Anderson pays off.
    slow = _bound_block(torch.nn.Sequential(blocks.LipschitzLinear(64, 64, coeff=0.97), torch.nn.ELU()), x)
    rows.append(bench_block("dense block, one layer, Lip(g) = 0.97", slow, x))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("blocks", help="forward / inverse / log-det cost of a conv and a dense block")
    toy = sub.add_parser("toy", help="2D density training against the clock")
    toy.add_argument("--dataset", default="8gaussians")
    toy.add_argument("--minutes", type=float, default=5.0)
    toy.add_argument("--seed", type=int, default=0)
    tp = sub.add_parser("throughput", help="training images per second of the image models")
    tp.add_argument("--task", choices=["classify", "density"], default="classify")
    tp.add_argument("--dataset", choices=["mnist", "cifar10"], default="cifar10")
    tp.add_argument("--preset", default="paper")
    tp.add_argument("--batch-size", type=int, default=128)
    tp.add_argument("--steps", type=int, default=5)
    tp.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    print(config.describe())
    if args.what == "blocks":
        bench_blocks()
    elif args.what == "toy":
        from .toyflows import bench_main
        bench_main(args.dataset, args.minutes, seed=args.seed)
    else:
        from .train import bench_throughput
        result = bench_throughput(args.task, args.dataset, args.preset, args.batch_size, args.steps,
                                  device=args.device)
        print(result)


if __name__ == "__main__":
    main()
