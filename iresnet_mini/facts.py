"""What the papers report and what this project measures and aims at: every such number, once.

* :data:`TABLE2` - the i-ResNet paper's Table 2 (classification error), :func:`paper_error`;
* :data:`TABLE4` - its Table 4 (bits/dim), and :data:`RESIDUAL_FLOWS_BITS` - the Residual Flows
  paper's own figures, which are *theirs* (Chen et al., 2019), not the i-ResNet paper's;
  :func:`paper_bits_per_dim`, :func:`bits_per_dim_references`;
* :data:`NOTES` - what to keep in mind when comparing our figures with the papers';
* :data:`TARGETS` - the figures this project aims at, and :data:`RESULTS` - what it measured, with
  the commands that measure it. The README's tables are written from these
  (``python -m iresnet_mini.facts readme``) and a test checks that they agree.

Notebooks, the README and the tests read the numbers from here; nothing else restates them.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomically

__all__ = [
    "IRESNET_PAPER", "RESIDUAL_FLOWS_PAPER", "PaperTable", "TABLE2", "TABLE4", "RESIDUAL_FLOWS_BITS",
    "TABLE1", "TABLE1_PROPERTIES", "RESIDUAL_FLOWS_TABLE1_ROW", "PaperFinding", "TABLE3", "NOTES", "paper_error", "paper_bits_per_dim", "bits_per_dim_references", "Target", "TARGETS", "Result",
    "RESULTS", "STEP_PROFILE", "readme_blocks", "update_readme", "main",
]

IRESNET_PAPER = "Behrmann et al., Invertible Residual Networks (ICML 2019, arXiv:1811.00995)"
RESIDUAL_FLOWS_PAPER = "Chen et al., Residual Flows for Invertible Generative Modeling (NeurIPS 2019, arXiv:1906.02735)"


@dataclass(frozen=True)
class PaperTable:
    """A table as a paper prints it: ``rows[row][column]`` (None where the paper gives no figure)."""

    source: str   # the paper
    where: str    # "Table 2"
    what: str     # what the numbers are, with their unit
    rows: dict

    def caption(self) -> str:
        return f"{self.where} of {self.source}: {self.what}"


# Columns: ResNet-164, the same i-ResNet architecture without the Lipschitz constraint ("vanilla"),
# and i-ResNets with coefficient c. The paper gives no ResNet-164 figure for MNIST.
TABLE2 = PaperTable(
    source=IRESNET_PAPER, where="Table 2", what="test classification error in %",
    rows={
        "mnist": {"ResNet-164": None, "vanilla": 0.38, "c=0.9": 0.40, "c=0.8": 0.42, "c=0.7": 0.40,
                  "c=0.6": 0.42, "c=0.5": 0.86},
        "cifar10": {"ResNet-164": 5.50, "vanilla": 6.69, "c=0.9": 6.78, "c=0.8": 6.86, "c=0.7": 6.93,
                    "c=0.6": 7.72, "c=0.5": 8.71},
        "cifar100": {"ResNet-164": 24.30, "vanilla": 23.97, "c=0.9": 24.58, "c=0.8": 24.99, "c=0.7": 25.99,
                     "c=0.6": 27.30, "c=0.5": 29.45},
    })

# Table 1 of the i-ResNet paper: where i-ResNets sit among flows (True = yes, False = no, None = not applicable).
# The Residual Flow row is not in that table: it is what Chen et al. (2019) changed (an unbiased estimator).
TABLE1_PROPERTIES = ("free-form", "analytic forward", "analytic inverse", "non-volume preserving",
                     "exact likelihood", "unbiased log-det estimator")
TABLE1 = PaperTable(
    source=IRESNET_PAPER, where="Table 1", what="properties of flow-based models",
    rows={
        "NICE / i-RevNet": dict(zip(TABLE1_PROPERTIES, (False, True, True, False, True, None))),
        "Real NVP / Glow": dict(zip(TABLE1_PROPERTIES, (False, True, True, True, True, None))),
        "FFJORD": dict(zip(TABLE1_PROPERTIES, (True, False, False, True, False, True))),
        "i-ResNet": dict(zip(TABLE1_PROPERTIES, (True, True, False, True, False, False))),
    })
RESIDUAL_FLOWS_TABLE1_ROW = ("Residual Flow (Chen et al. 2019)",
                             dict(zip(TABLE1_PROPERTIES, (True, True, False, True, False, True))))


@dataclass(frozen=True)
class PaperFinding:
    """What a table of a paper shows, in words, where its figures are not quoted here."""

    source: str
    where: str
    finding: str

    def caption(self) -> str:
        return f"{self.where} of {self.source}: {self.finding}"


# Table 3 of the i-ResNet paper: CIFAR-10 classification by a Glow network and by an i-ResNet built like it.
# Its figures are not quoted here: they could not be checked against the paper's text.
TABLE3 = PaperFinding(
    source=IRESNET_PAPER, where="Table 3",
    finding="an i-ResNet built like Glow classifies CIFAR-10 much better than Glow itself: the coupling "
            "architecture, whose dimension splitting makes it invertible, discriminates worse")

# The i-ResNet paper's Table 4 compares it with the flows before it; Residual Flows came later.
TABLE4 = PaperTable(
    source=IRESNET_PAPER, where="Table 4", what="test bits/dim",
    rows={
        "mnist": {"Real NVP": 1.06, "Glow": 1.05, "FFJORD": 0.99, "i-ResNet": 1.06},
        "cifar10": {"Real NVP": 3.49, "Glow": 3.35, "FFJORD": 3.40, "i-ResNet": 3.45},
    })

# The Residual Flows paper's own bits/dim (its results table), the follow-up that fixes the i-ResNet's bias.
RESIDUAL_FLOWS_BITS = PaperTable(
    source=RESIDUAL_FLOWS_PAPER, where="results table", what="test bits/dim of a Residual Flow",
    rows={"mnist": {"Residual Flow": 0.97}, "cifar10": {"Residual Flow": 3.28}})

NOTES = {
    "mnist_density_dims": (
        "The official i-ResNet code pads MNIST to 32x32 and repeats it to 3 channels before its density model, "
        "so its bits/dim are per 3 x 32 x 32 = 3072 dimensions, in which each 28 x 28 image appears three times "
        "beside 720 dimensions of zero padding; ours are per 28 x 28 = 784 pixels. The two are not the same "
        "quantity: compare them with care."),
    "short_runs": (
        "The paper's figures come from 200-epoch (classification) and multi-day (density) GPU runs; the "
        "shipped checkpoints and the CPU figures are minutes of training. Compare patterns (the constraint "
        "costs little accuracy; the inverse works), not levels."),
    "cifar10_subset": (
        "The shipped CIFAR-10 models were trained on data_batch_1 alone, the first 10,000 of CIFAR-10's "
        "50,000 training images: a fifth of the training set the paper used."),
}


def _column(coeff: float | None) -> str:
    return "vanilla" if coeff is None else f"c={coeff:g}"


def paper_error(dataset: str, coeff: float | None) -> float | None:
    """Table 2's test error in % for ``dataset`` and Lipschitz coefficient ``coeff`` (None: vanilla)."""
    if dataset not in TABLE2.rows:
        raise ValueError(f"Table 2 has no data set {dataset!r}: it has {', '.join(TABLE2.rows)}")
    column = _column(coeff)
    if column not in TABLE2.rows[dataset]:
        raise ValueError(f"Table 2 has no column {column!r}: it has {', '.join(TABLE2.rows[dataset])}")
    return TABLE2.rows[dataset][column]


def paper_bits_per_dim(dataset: str, model: str = "i-ResNet") -> float:
    """Test bits/dim of ``model`` on ``dataset``: Table 4 of the i-ResNet paper, or Residual Flows' own paper."""
    tables = [table for table in (TABLE4, RESIDUAL_FLOWS_BITS) if dataset in table.rows]
    if not tables:
        raise ValueError(f"no bits/dim for data set {dataset!r}: known are {', '.join(TABLE4.rows)}")
    for table in tables:
        if model in table.rows[dataset]:
            return table.rows[dataset][model]
    known = [m for table in tables for m in table.rows[dataset]]
    raise ValueError(f"no bits/dim of {model!r} on {dataset}: known are {', '.join(known)}")


def bits_per_dim_references(dataset: str) -> dict[str, float]:
    """label -> bits/dim for a figure: Table 4's flows, then Residual Flow labelled as Chen et al.'s."""
    if dataset not in TABLE4.rows:
        raise ValueError(f"Table 4 has no data set {dataset!r}: it has {', '.join(TABLE4.rows)}")
    refs = dict(TABLE4.rows[dataset])
    refs.update({f"{m} (Chen et al. 2019)": v for m, v in RESIDUAL_FLOWS_BITS.rows[dataset].items()})
    return refs


# ----------------------------------------------------------------------------------------------
# What this project aims at, and what it measured
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A figure to reach: ``value`` in ``unit``, lower or higher being better."""

    value: float
    unit: str
    better: str = "lower"
    note: str = ""

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"better must be 'lower' or 'higher', got {self.better!r}")

    def met_by(self, figure: float) -> bool:
        """Does a measured figure reach the target?"""
        if not math.isfinite(figure):
            return False
        return figure <= self.value if self.better == "lower" else figure >= self.value

    def text(self) -> str:
        sign = "<=" if self.better == "lower" else ">="
        return f"{sign} {self.value:g} {self.unit}" + (f" ({self.note})" if self.note else "")


TARGETS: dict[str, Target] = {
    "toy_8gaussians_nll": Target(2.84, "nats", note="entropy 2.830"),
    "toy_checkerboard_nll": Target(3.55, "nats", note="entropy 3.466"),
    "mnist_cpu_accuracy": Target(99.4, "%", "higher", note=f"paper, full scale: {100 - paper_error('mnist', 0.9):.2f} %"),
    "mnist_cpu_bits_per_dim": Target(1.25, "bits/dim", note=f"paper: {paper_bits_per_dim('mnist'):.2f}, see Notes"),
    "cifar10_cpu_bits_per_dim": Target(3.9, "bits/dim", note=f"paper: {paper_bits_per_dim('cifar10'):.2f}"),
    "cifar10_cpu_accuracy": Target(75.0, "%", "higher",
                                   note=f"paper, all 50,000 images, 200 GPU epochs: {100 - paper_error('cifar10', 0.9):.2f} %"),
    "paper_cifar10_step_s": Target(1.2, "s", note="official code: 2.39 s"),
}


@dataclass(frozen=True)
class Result:
    """A row of the README's results table: what was run, the command, what it gave, the target if any."""

    experiment: str
    command: str
    measured: str
    target: str | None = None   # a key of TARGETS
    remark: str = ""


RESULTS: tuple[Result, ...] = (
    Result("2D density, 8 gaussians (Fig. 2), 5 min on one thread", "python -m iresnet_mini.bench toy --minutes 5",
           "test NLL 2.820 nats after 300 s, 2,722 steps (classifier step here 0.128 s)", "toy_8gaussians_nll"),
    Result("2D density, checkerboard (Fig. 2), 5 min on one thread", "python -m iresnet_mini.bench toy --minutes 5",
           "test NLL 3.561 nats after 300 s, 2,859 steps (classifier step here 0.128 s); 3.621 before LipSwish "
           "and weight averaging; 3.556 after 3,305 steps with `--threads 2` on an idle machine", "toy_checkerboard_nll",
           "not reached: the squares' edges stay blurred"),
    Result("Inverse to 1e-6, conv block c = 0.9", "python -m iresnet_mini.bench blocks",
           "7 fixed-point iterations, 8.7x a forward pass"),
    Result("Log-det cost per series term, conv block", "python -m iresnet_mini.bench blocks",
           "0.80x a forward+backward (backprop), 0.15x (Neumann gradient)"),
    Result("MNIST classification, c = 0.9, `cpu` preset, 10 min",
           "python -m iresnet_mini.train --task classify --dataset mnist --preset cpu --coeff 0.9 --time-budget 10 "
           "--out runs/mnist-cpu",
           "99.53 % test accuracy after 7 epochs; per epoch 95.24, 98.48, 99.10, 99.36, 99.48 (7.3 min), 99.49, "
           "99.53 %", "mnist_cpu_accuracy"),
    Result("CIFAR-10 classification, c = 0.9, the `cpu` layout at 3 + 5 blocks of widths 64 and 128 (0.89M "
           "parameters), the first 10,000 training images, 100 epochs, Adam at 5e-2",
           "python -m iresnet_mini.train --task classify --dataset cifar10 --preset cpu --coeff 0.9 --model "
           "blocks=3,5 widths=64,128 --epochs 100 --train-subset 10000 --test-subset 1000 --lr 0.05 "
           "--out runs/cifar10-c0.9",
           "73.64 % test accuracy on all 10,000 test images after 36.5 min of training (classifier step here "
           "0.099 s); 95.5 % on the last epoch's augmented training batches; at the preset's rate (2e-2) 71.62 % "
           "(92.4 % on the training batches), and ten-epoch runs gave 44.2 % at 7e-3, 48.1 % at 2e-2, 50.8 % at "
           "5e-2 (1,000 test images); the ten-epoch run of the 0.33M `cpu` layout it replaces reached 46.3 %",
           "cifar10_cpu_accuracy", "not reached: the network overfits 10,000 images"),
    Result("CIFAR-10 classification, c = 0.5, the same layout and recipe",
           "python -m iresnet_mini.train --task classify --dataset cifar10 --preset cpu --coeff 0.5 --model "
           "blocks=3,5 widths=64,128 --epochs 100 --train-subset 10000 --test-subset 1000 --lr 0.05 "
           "--out runs/cifar10-c0.5",
           "71.05 % test accuracy on all 10,000 test images after 36.9 min of training (classifier step here "
           "0.102 s); 86.4 % on the last epoch's training batches; at 2e-2 it gave 68.33 % (84.2 %)"),
    Result("CIFAR-10 classification, vanilla (no constraint), the same layout and recipe at its own learning rate "
           "(1e-3, the best of a five-epoch sweep: 1e-3 46.6 %, 2e-3 45.4 %, 5e-3 28.5 %, 2e-2 does not learn)",
           "python -m iresnet_mini.train --task classify --dataset cifar10 --preset cpu --vanilla --model "
           "blocks=3,5 widths=64,128 --epochs 100 --train-subset 10000 --test-subset 1000 --lr 0.001 "
           "--out runs/cifar10-vanilla",
           "74.62 % test accuracy on all 10,000 test images after 35.8 min of training (classifier step here "
           "0.092 s); 99.8 % on the last epoch's training batches; its fixed-point inverse diverges (Fig. 3)"),
    Result("CIFAR-10 classification, Glow-style coupling classifier (Table 3): ActNorm, 1x1 convolution and affine "
           "coupling steps in the same stages, widths 80 and 160 (0.92M parameters), the same recipe at the vanilla "
           "learning rate",
           "python -m iresnet_mini.train --task classify --dataset cifar10 --preset cpu --vanilla --model "
           "block=coupling blocks=3,5 widths=80,160 --epochs 100 --train-subset 10000 --test-subset 1000 --lr 0.001 "
           "--out runs/cifar10-coupling",
           "77.55 % test accuracy on all 10,000 test images after 46.3 min of training (classifier step here "
           "0.096 s); 96.6 % on the last epoch's training batches; its closed-form inverse reconstructs to 4e-9 in "
           "float64 but is off by up to 5 pixel values in float32 (an exploding inverse)",
           remark="the paper's Table 3 (coupling classifies worse) is not reproduced at this scale: notebook 06 "
                  "says what differs"),
    Result("MNIST density, `cpu` preset with LipSwish, the weight average, Adam at 2e-2 and Residual Flows' "
           "unbiased estimator in training, 20 min",
           "python -m iresnet_mini.train --task density --dataset mnist --preset cpu --model activation=lipswish "
           "estimator=unbiased estimator_kwargs=n_exact_terms:2,p:0.5,n_samples:1,neumann_gradient:true "
           "--lr 0.02 --ema 0.999 --time-budget 20 --out runs/mnist-density-cpu",
           "1.221 bits/dim on all 10,000 test images after 4,483 steps (classifier step here 0.104-0.114 s); "
           "trained on the preset's 3-term series instead it gave 1.260 after 4,830 steps (classifier step 0.100 s), "
           "and that model's 3-term estimate overstated its log-likelihood by 0.23 bits/dim; with the series at 1e-2 "
           "1.277 after 3,503 steps (0.113 s), at the preset's 3e-3 1.333 after 3,238 steps (0.156 s), the `cpu` "
           "preset as it is (ELU, the last step's weights) 1.361 after 3,861 steps; five-minute runs without the "
           "average (2,000 test images): 1.450 at 3e-3 (900 steps), 1.346 at 1e-2 (948), and on a quicker machine "
           "1.298 at 2e-2 (1,249), 1.294 at 4e-2 (1,221), and 1.295 at 2e-2 with the unbiased estimator (1,193)",
           "mnist_cpu_bits_per_dim"),
    Result("CIFAR-10 density, `cpu` preset with LipSwish, the weight average, the unbiased estimator in training, "
           "Glow's conditional split prior and Residual Flows' c = 0.98, the first 10,000 training images, 60 min",
           "python -m iresnet_mini.train --task density --dataset cifar10 --preset cpu --coeff 0.98 --model "
           "activation=lipswish estimator=unbiased estimator_kwargs=n_exact_terms:2,p:0.5,n_samples:1,"
           "neumann_gradient:true split_prior=conditional --ema 0.999 --time-budget 60 --train-subset 10000 "
           "--test-subset 1000 --seed 0 --out runs/cifar10-density-cpu",
           "3.895 bits/dim on all 10,000 test images after 8,834 steps (classifier step here 0.127-0.143 s; the "
           "last epoch's training loss 3.885, its test figure on 1,000 images 3.907); on a quicker machine "
           "(0.115 s) 3.866 after 10,817 steps; at the preset's c = 0.9 3.954 after 8,777 steps (0.163 s); with the "
           "paper's unconditional priors it gave 4.071 after 9,480 steps on a quicker machine (0.099-0.114 s), "
           "trained on the preset's 3-term series instead 4.093 after 9,159 steps (0.119 s), and that model's "
           "3-term estimate overstated its log-likelihood by 0.19 bits/dim; the two-epoch run before it (624 steps, "
           "11 min on one thread, ELU, the last step's weights) gave 4.497; five-minute runs (1,000 test images, "
           "one seed): with the average 4.788 with unconditional priors, 4.639 with the conditional one (4.610 "
           "in a second run), 4.527 with it at c = 0.98, 4.842 with a third scale of 8 blocks; without the "
           "average 4.723 at the preset's 3e-3 (919 steps), 4.825 at 1e-2 (876 steps)",
           "cifar10_cpu_bits_per_dim",
           "its training loss stays within 0.03 bits/dim of the test figure: the model and its hour, not the "
           "10,000 images, limit it"),
    Result("Training throughput, classifier `cpu` preset (MNIST, 0.33M parameters)",
           "python -m iresnet_mini.bench throughput --task classify --dataset mnist --preset cpu --batch-size 128",
           "0.163 s per step, 784 images/s"),
    Result("Training throughput, classifier `tiny` preset (MNIST)",
           "python -m iresnet_mini.bench throughput --task classify --dataset mnist --preset tiny --batch-size 64",
           "0.026 s per step, 2,483 images/s"),
    Result("Training throughput, density `cpu` preset (MNIST / CIFAR-10)",
           "python -m iresnet_mini.bench throughput --task density --dataset mnist --preset cpu --batch-size 32",
           "0.285 s per step, 112 images/s (CIFAR-10: 0.395 s, 81 images/s)"),
    Result("Training step, paper's CIFAR-10 classifier (`paper` preset: 7-7-7 blocks, 4.9M parameters)",
           "python -m iresnet_mini.bench throughput --task classify --dataset cifar10 --preset paper --batch-size 128",
           "3.64 s at batch 128 (35 images/s); 0.96 s at batch 32", "paper_cifar10_step_s",
           "not reached, see below"),
)


# A training step, counted by python -m iresnet_mini.bench step-profile on a CPU (the same code runs on a GPU):
# (task, data, preset, dispatched operators and host synchronisations before the change that removed the
# stalls, the same after it). Before: ActNorm read its initialised flag and every block checked its input
# for NaN, each a read-back; after: only the loop's loss check.
STEP_PROFILE: tuple[tuple, ...] = (
    ("classify", "mnist", "tiny", (530, 3), (552, 1)),
    ("classify", "mnist", "cpu", (1_414, 7), (1_480, 1)),
    ("classify", "cifar10", "paper", (3_951, 22), (4_182, 1)),
    ("density", "mnist", "tiny", (858, 6), (862, 1)),
    ("density", "mnist", "cpu", (5_502, 34), (5_576, 1)),
    ("density", "cifar10", "paper", (29_839, 98), (31_225, 1)),
)


# The c controls, timed by the JupyterLab browser test (tests/browser, quick mode, 2 CPU cores): seconds from a
# key press on the slider to the redrawn figure. (notebook, what a move does, median s, worst s, moves timed)
SLIDER_LATENCY: tuple[tuple[str, str, float, float, int], ...] = (
    ("01", "loads a shipped toy ResNet / i-ResNet, measures and draws it", 0.44, 0.50, 3),
    ("02", "normalises a block's weights, inverts it by fixed-point iteration, draws the error", 0.90, 0.92, 3),
    ("03", "draws the log-det estimator's samples at the new c", 0.71, 0.90, 3),
    ("04", "draws a shipped 2D flow's density and samples (evaluated when the cell ran)", 0.41, 0.45, 3),
    ("05", "redraws a shipped classifier's figures", 0.71, 0.88, 3),
    ("06", "redraws a shipped classifier's figures (one move timed)", 0.69, 0.69, 1),
    ("08", "rescales a trained block's Jacobian, draws the estimator's samples", 0.59, 0.99, 3),
)


# ----------------------------------------------------------------------------------------------
# The README's tables
# ----------------------------------------------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- facts:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /facts:(?P=name) -->)", re.S)


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _paper_table(table: PaperTable, names: dict[str, str]) -> str:
    columns = list(next(iter(table.rows.values())))
    lines = ["| " + " | ".join([""] + columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([names[row]] + [_number(values.get(c)) for c in columns]) + " |"
              for row, values in table.rows.items()]
    return "\n".join(lines)


def readme_blocks() -> dict[str, str]:
    """name -> Markdown of every README block written from this module."""
    names = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
    results = ["| Experiment | Command | Measured | Target |", "|---|---|---|---|"]
    for r in RESULTS:
        target = TARGETS[r.target].text() if r.target else "-"
        if r.remark:
            target += f"; {r.remark}"
        results.append(f"| {r.experiment} | `{r.command}` | {r.measured} | {target} |")
    bits = {ds: {**TABLE4.rows[ds], **RESIDUAL_FLOWS_BITS.rows[ds]} for ds in TABLE4.rows}
    bits_table = PaperTable(TABLE4.source, TABLE4.where, TABLE4.what, bits)
    profile = ["| Step of | Operators before | Syncs before | Operators now | Syncs now |", "|---|---|---|---|---|"]
    profile += [f"| {task} {dataset} `{preset}` | {before[0]:,} | {before[1]} | {now[0]:,} | {now[1]} |"
                for task, dataset, preset, before, now in STEP_PROFILE]
    return {
        "results": "\n".join(results),
        "step_profile": "\n".join(profile),
        "table2": f"{TABLE2.caption()}:\n\n{_paper_table(TABLE2, names)}",
        "table3": (f"{TABLE3.caption()}. Its figures are not quoted here (they could not be checked against "
                   "the paper's text); notebook 06 sets our own coupling and i-ResNet classifiers side by side."),
        "table4": (f"{TABLE4.caption()}; the Residual Flow column is from {RESIDUAL_FLOWS_PAPER} "
                   f"(their figures, not the i-ResNet paper's):\n\n{_paper_table(bits_table, names)}"),
        "notes": "\n".join(f"- {text}" for text in NOTES.values()),
        "slider_latency": "\n".join(
            ["| Notebook | A move | Median | Worst | Moves timed |", "|---|---|---|---|---|"]
            + [f"| {nb} | {what} | {median:.2f} s | {worst:.2f} s | {moves} |"
               for nb, what, median, worst, moves in SLIDER_LATENCY]),
    }


def update_readme(path: str | Path = README, check: bool = False) -> list[str]:
    """Rewrite the ``<!-- facts:NAME -->`` blocks of the README; returns the names that were (or would be) changed.

    ``check=True`` writes nothing (for the test). Unknown block names and missing blocks raise ValueError.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    blocks = readme_blocks()
    found = {m.group("name") for m in _BLOCK.finditer(text)}
    if found != set(blocks):
        raise ValueError(f"{path.name} should hold the blocks {sorted(blocks)}, found {sorted(found)}")
    changed = []

    def replace(match):
        body = blocks[match.group("name")] + "\n"
        if match.group("body") != body:
            changed.append(match.group("name"))
        return match.group(1) + body + match.group(4)

    new = _BLOCK.sub(replace, text)
    if changed and not check:
        write_atomically(path, new)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m iresnet_mini.facts readme [--check]``: write (or check) the README's tables."""
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.facts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    readme = sub.add_parser("readme", help="write the README's tables from this module")
    readme.add_argument("--check", action="store_true", help="only say whether the README is up to date")
    args = parser.parse_args(argv)
    changed = update_readme(check=args.check)
    if args.check and changed:
        print(f"README.md is out of date in: {', '.join(changed)}; run python -m iresnet_mini.facts readme")
        return 1
    print(f"README.md: {'rewrote ' + ', '.join(changed) if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
