"""Benchmarks that print figures (not tests): ``python -m iresnet_mini.bench {blocks,toy,throughput,step-profile,gpu}``.

* ``blocks``: for a conv and a dense i-ResNet block (c = 0.9, the constraint binding): forward
  time, inverse by plain fixed-point iteration and by Anderson acceleration (iterations and
  time to a residual of 1e-6), and the cost of each log-det estimator per series term,
  with ratios against the forward pass measured in the same process.
* ``toy``: 2D density training against the clock (``iresnet_mini.lessons.nb04.toyflows``), checkerboard and
  8 gaussians by default, with this machine's classifier step time beside the figures.
* ``throughput``: training images per second of the image models (``iresnet_mini.train``).
* ``step-profile``: dispatcher operators and host synchronisations per training step, per preset.
* ``gpu``: the GPU acceptance run (``iresnet_mini.acceptance``); ``--device cpu --smoke`` tests it.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import blocks, config, logdet, throughput


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


class DispatchCounter(TorchDispatchMode):
    """Counts the operators PyTorch dispatches, and those among them that read a value back to the host.

    ``.item()``, ``bool(t)``, ``float(t)``, ``if t:`` all dispatch ``aten._local_scalar_dense``, and
    ``nonzero`` must know its output size: on a GPU each waits for every queued kernel (a host
    synchronisation). On the CPU nothing waits, but they are dispatched the same, so counting them
    on the CPU tells how often a GPU step would stall.
    """

    SYNC_OPS = frozenset({"aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item"})

    def __init__(self, host_tensors=()):
        super().__init__()
        self.host_ids = {id(t) for t in host_tensors}  # scalars that stay on the CPU on any device
        self.ops = 0
        self.syncs = 0
        self.sync_ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        if name in self.SYNC_OPS and not (args and id(args[0]) in self.host_ids):
            self.syncs += 1
            self.sync_ops[name] = self.sync_ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


STEP_PROFILE_PRESETS = (("classify", "mnist", "tiny"), ("classify", "mnist", "cpu"), ("classify", "cifar10", "paper"),
                        ("density", "mnist", "tiny"), ("density", "mnist", "cpu"), ("density", "cifar10", "paper"))


def step_profile(task: str, dataset: str, preset: str, batch_size: int = 2, device: str | None = None) -> dict:
    """Dispatcher operators and host synchronisations of one training step of a preset (after a warm-up step).

    The step is the training loop's own (:func:`iresnet_mini.train.train_step`) with its finite-loss check,
    so the figures are those of the loop's worst step. Counts do not depend on the batch size.
    """
    from . import train

    config, dev, model, step_fn, optimizer, x, y = throughput.synthetic_setup(task, dataset, preset, batch_size, device)
    loss_sum = torch.zeros((), device=dev)

    def check(loss):  # what the loop checks before an update
        if not torch.isfinite(loss_sum + loss):
            raise FloatingPointError("non-finite loss")

    train.train_step(step_fn, optimizer, x, y, config, dev, config.lr, check)  # warm-up: ActNorm's init
    # The optimisers' step counters are CPU tensors even for a model on a GPU: reading them never waits.
    counters = [state["step"] for state in optimizer.state.values() if torch.is_tensor(state.get("step"))]
    with DispatchCounter(host_tensors=counters) as counter:
        train.train_step(step_fn, optimizer, x, y, config, dev, config.lr, check)
    return {"task": task, "dataset": dataset, "preset": preset, "params": sum(p.numel() for p in model.parameters()),
            "ops": counter.ops, "syncs": counter.syncs, "sync_ops": counter.sync_ops}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("blocks", help="forward / inverse / log-det cost of a conv and a dense block")
    toy = sub.add_parser("toy", help="2D density training against the clock")
    toy.add_argument("--dataset", nargs="+", default=["checkerboard", "8gaussians"],
                     help="toy data sets, trained one after the other (default: checkerboard 8gaussians)")
    toy.add_argument("--minutes", type=float, default=5.0)
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads (default 1, fastest on a busy machine; 2 is faster on an idle 2-core one)")
    tp = sub.add_parser("throughput", help="training images per second of the image models")
    tp.add_argument("--task", choices=["classify", "density"], default="classify")
    tp.add_argument("--dataset", choices=["mnist", "cifar10"], default="cifar10")
    tp.add_argument("--preset", default="paper")
    tp.add_argument("--batch-size", type=int, default=128)
    tp.add_argument("--steps", type=int, default=5)
    tp.add_argument("--device", default=None)
    sp = sub.add_parser("step-profile", help="dispatcher operators and host synchronisations per training step")
    sp.add_argument("--device", default=None)
    gpu = sub.add_parser("gpu", help="the GPU acceptance run (about 10 minutes on one GPU; see acceptance.py)")
    gpu.add_argument("--device", default=None, help="default: cuda when available")
    gpu.add_argument("--smoke", action="store_true", help="toy sizes (seconds), to test the script on a CPU")
    gpu.add_argument("--out", default=None, metavar="DIR", help="also write DIR/acceptance.json")
    args = parser.parse_args(argv)
    if args.what == "gpu":
        from .acceptance import main as acceptance_main
        acceptance_main(args)
        return
    print(config.describe())
    if args.what == "blocks":
        bench_blocks()
    elif args.what == "toy":
        from .lessons.nb04.toyflows import bench_main
        step = throughput.reference_step_seconds()
        print(f"classifier step on this machine: {step:.3f} s ({throughput.REFERENCE_STEP_COMMAND}); the "
              f"budgets in the README are for a machine where it is about {throughput.REFERENCE_STEP_SECONDS} s")
        finals = [bench_main(name, args.minutes, seed=args.seed, threads=args.threads) for name in args.dataset]
        for final in finals:
            print(f"{final['dataset']:>12}: test NLL {final['test_nll']:.3f} nats after {final['seconds']:.0f} s, "
                  f"{final['steps']} steps (classifier step {step:.3f} s)")
    elif args.what == "step-profile":
        print(f"{'task':<9} {'data':<8} {'preset':<6} {'params':>10} {'ops/step':>9} {'syncs/step':>10}  sync ops")
        for task, dataset, preset in STEP_PROFILE_PRESETS:
            r = step_profile(task, dataset, preset, device=args.device)
            print(f"{task:<9} {dataset:<8} {preset:<6} {r['params']:>10,} {r['ops']:>9,} {r['syncs']:>10}  "
                  f"{r['sync_ops']}", flush=True)
    else:
        from .throughput import bench_throughput
        result = bench_throughput(args.task, args.dataset, args.preset, args.batch_size, args.steps,
                                  device=args.device)
        print(result)


if __name__ == "__main__":
    main()
