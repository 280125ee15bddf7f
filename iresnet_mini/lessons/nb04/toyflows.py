"""2D toy densities (paper Fig. 2): i-ResNet flows vs an affine-coupling flow, trained and compared.

* :func:`iresnet_flow` and :func:`coupling_flow` build the two models with a standard-normal
  base; :func:`count_parameters` compares their sizes.
* :func:`mlp_jacobian` gives the exact Jacobian of a dense residual branch by forward-mode
  differentiation (d tangents pushed through the layers), and :func:`exact_log_prob` uses it
  for log p(x) with the exact log-det of every block: cheap in 2D, so the toy models train
  and are evaluated without any estimator.
* :func:`train_toy` is the training loop (fresh samples every step, Adam, cosine schedule),
  with the log-det from the exact Jacobian or from the paper's estimators; :func:`evaluate_nll`,
  :func:`log_density_grid` and :class:`ToyFlowCache` evaluate and cache results;
  :func:`bench_main` trains against the clock (``python -m iresnet_mini.bench toy``).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import facts, toy
from ...averaging import ParameterAverage
from ...blocks import mlp_branch
from ...flows import ActNorm, AffineCoupling, ResidualFlowLayer, SequentialFlow, coupling_flow, set_estimator  # noqa: F401
from ...lipschitz import LipschitzLinear, LipSwish, certify
from ...logdet import jacobian
from ...train import cosine
from .. import shipped

__all__ = [
    "TOY_SHAPE", "TOY_IRESNET", "TOY_TRAINING", "MODELS", "LOGDET_MODES", "TEST_POINTS", "ENTROPY_POINTS",
    "INVERSE_MAX_ITER", "ScaledActNorm", "iresnet_flow", "AffineCoupling", "coupling_flow", "model_kwargs",
    "build_model", "count_parameters", "mlp_jacobian", "log_det_identity_plus", "exact_log_prob",
    "time_exact_logdet", "train_toy", "evaluate_nll", "true_nll", "data_entropy", "log_density_grid",
    "ToyResult", "fit_toy", "ToyFlowCache", "bench_main", "ParameterAverage", "DATASETS", "SHIPPED_FIG2",
    "SHIPPED_WIDGET", "FIG2_STEPS", "WIDGET_MODEL", "WIDGET_C", "WIDGET_STEPS", "shipped_key", "shipped_settings",
    "precompute", "shipped_flow", "shipped_result",
]

INVERSE_MAX_ITER = 500         # fixed-point iterations at most per block when sampling
TEST_POINTS = 10_000           # fresh test points for the NLL (the benchmark's protocol)
TEST_SEED_OFFSET = 1_000_003   # test points never share a seed with the training stream
ENTROPY_POINTS = 50_000        # Monte Carlo points for the data's entropy where it is not exact
LOGDET_MODES = ("exact", "series", "unbiased")

# The tuned settings (bench_main and notebook 04 read them here): the shape both models share,
# the i-ResNet's own options, and the optimiser.
TOY_SHAPE = dict(n_blocks=16, hidden=64, n_hidden_layers=3)
TOY_IRESNET = dict(coeff=0.97, activation="lipswish", working_std=40.0)
TOY_TRAINING = dict(batch_size=512, lr=1e-2, ema=0.999)


# --- the two models ------------------------------------------------------------------------
class ScaledActNorm(ActNorm):
    """ActNorm whose data-dependent init gives the output standard deviation ``std`` instead of 1."""

    def __init__(self, num_channels: int, std: float = 1.0):
        super().__init__(num_channels)
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std!r}")
        self.std = float(std)

    @torch.no_grad()
    def _initialize(self, x):
        super()._initialize(x)
        self.log_scale.add_(math.log(self.std))


def iresnet_flow(dim: int = 2, n_blocks: int = 16, hidden: int = 64, n_hidden_layers: int = 3,
                 coeff: float = TOY_IRESNET["coeff"], activation: str = TOY_IRESNET["activation"],
                 working_std: float = TOY_IRESNET["working_std"],
                 n_power_iterations: int = 1, estimator: str = "series", **estimator_kwargs) -> SequentialFlow:
    """An i-ResNet flow for vectors (Sec. 3): ActNorm, then n_blocks x (x + g(x), ActNorm).

    The ActNorms start the blocks on data of standard deviation ``working_std`` (the last one
    maps to unit scale for the N(0, I) base). Spectral normalisation spreads a slope of at
    most c over ``hidden`` units, so at unit scale each unit sees a nearly constant
    pre-activation and the branch starts almost linear; on a wider scale it starts non-linear
    and training leaves the Gaussian fit at once. The inverse (Alg. 1) iterates to a
    tolerance of 1e-5 relative to that scale.
    """
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    layers: list[nn.Module] = [ScaledActNorm(dim, working_std)]
    for i in range(n_blocks):
        branch = mlp_branch(dim, hidden, n_hidden_layers, coeff, activation, n_power_iterations)
        layers.append(ResidualFlowLayer(branch, estimator=estimator, inverse_max_iter=INVERSE_MAX_ITER,
                                        inverse_atol=1e-5 * working_std, **estimator_kwargs))
        layers.append(ScaledActNorm(dim, working_std if i < n_blocks - 1 else 1.0))
    return SequentialFlow(layers, event_shape=(dim,))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- the exact log-det in small dimension -----------------------------------------------------
def _elu(m, h):
    y = m(h)
    return y, torch.where(h > 0, torch.ones_like(h), y + m.alpha)


def _lipswish(m, h):
    beta = F.softplus(m.raw_beta)
    s = torch.sigmoid(beta * h)
    return h * s / 1.1, (s + beta * h * s * (1 - s)) / 1.1


def _relu(m, h):
    return m(h), (h > 0).to(h.dtype)


def _leaky_relu(m, h):
    return m(h), torch.where(h > 0, torch.ones_like(h), torch.full_like(h, m.negative_slope))


def _softplus(m, h):
    return m(h), torch.sigmoid(m.beta * h).masked_fill(m.beta * h > m.threshold, 1.0)


def _tanh(m, h):
    y = m(h)
    return y, 1 - y * y


# activation type -> (module, pre-activation) -> (value, elementwise derivative)
_ACTIVATION_DERIVATIVES = {nn.ELU: _elu, LipSwish: _lipswish, nn.ReLU: _relu,
                           nn.LeakyReLU: _leaky_relu, nn.Softplus: _softplus, nn.Tanh: _tanh}


def mlp_jacobian(branch: nn.Sequential, x: torch.Tensor):
    """(g(x), J_g(x)) for a dense branch, J as (batch, d, d), by forward-mode differentiation.

    The d columns of J are pushed through the layers beside the value: a linear layer maps
    them by W (no bias), an activation multiplies them by phi'(h). Cost about (1 + d) forward
    passes, differentiable, and equal to :func:`iresnet_mini.logdet.jacobian`. Spectral
    normalisation runs as in ``branch(x)`` (one power-iteration update in training mode).
    """
    if x.dim() != 2:
        raise ValueError(f"mlp_jacobian needs flat inputs (batch, d), got shape {tuple(x.shape)}")
    h = x
    tangents = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).unsqueeze(1).expand(-1, x.shape[0], -1)
    for m in branch:
        if isinstance(m, nn.Linear):
            weight = m.normalized_weight(h) if isinstance(m, LipschitzLinear) else m.weight
            h, tangents = F.linear(h, weight, m.bias), F.linear(tangents, weight)
        elif type(m) in _ACTIVATION_DERIVATIVES:
            h, slope = _ACTIVATION_DERIVATIVES[type(m)](m, h)
            tangents = tangents * slope
        else:
            raise ValueError(f"mlp_jacobian supports Linear layers and the activations "
                             f"{sorted(t.__name__ for t in _ACTIVATION_DERIVATIVES)}, got {type(m).__name__}")
    return h, tangents.permute(1, 2, 0)  # tangents[j, b, i] = dg_i/dx_j -> J[b, i, j]


def log_det_identity_plus(jac: torch.Tensor) -> torch.Tensor:
    """log det(I + J) per sample; closed form for 2x2. Raises if det <= 0 (then Lip(g) >= 1)."""
    if jac.shape[-2:] == (2, 2):
        det = (1 + jac[:, 0, 0]) * (1 + jac[:, 1, 1]) - jac[:, 0, 1] * jac[:, 1, 0]
    else:
        eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
        det = torch.linalg.det(eye + jac)
    if not bool((det > 0).all()):
        raise FloatingPointError(
            f"det(I + J_g) <= 0 at {int((det <= 0).sum())} points (min {float(det.min()):.3g}): the block is "
            "not invertible there, so Lip(g) >= 1; check the Lipschitz constraint (coeff < 1)")
    return torch.log(det)


def exact_log_prob(flow: SequentialFlow, x: torch.Tensor) -> torch.Tensor:
    """log p(x) by change of variables (Sec. 3) with the exact log-det of every residual layer."""
    logdet = x.new_zeros(x.shape[0])
    for layer in flow.layers:
        if isinstance(layer, ResidualFlowLayer):
            gx, jac = mlp_jacobian(layer.block.branch, x)
            x, ld = x + gx, log_det_identity_plus(jac)
        else:
            x, ld = layer(x)
        logdet = logdet + ld
    return flow.base.log_prob(x) + logdet


# --- training and evaluation ---------------------------------------------------------------
def _test_points(dataset: str, n: int, seed: int) -> torch.Tensor:
    return toy.sample(dataset, n, seed=TEST_SEED_OFFSET + seed)


@torch.no_grad()
def evaluate_nll(flow: SequentialFlow, dataset: str, n: int = TEST_POINTS, seed: int = 0,
                 batch: int = 5000) -> float:
    """Mean -log p(x) in nats on n fresh test points, exact log-det, the model in eval mode."""
    was_training = flow.training
    flow.eval()
    try:
        x = _test_points(dataset, n, seed)
        nll = torch.cat([-exact_log_prob(flow, xb) for xb in x.split(batch)])
    finally:
        flow.train(was_training)
    return float(nll.mean())


def _loss(flow, x, logdet: str):
    log_p = exact_log_prob(flow, x) if logdet == "exact" else flow.log_prob(x)
    return -log_p.mean()


def train_toy(flow: SequentialFlow, dataset: str, steps: int | None = None, seconds: float | None = None,
              batch_size: int = TOY_TRAINING["batch_size"], lr: float = TOY_TRAINING["lr"],
              logdet: str = "exact", seed: int = 0,
              eval_every: float | None = None, eval_points: int = TEST_POINTS, callback=None,
              ema: float | None = TOY_TRAINING.get("ema"), **estimator_kwargs) -> list[dict]:
    """Maximum likelihood on fresh samples each step; Adam with a cosine-decaying learning rate.

    Stops after ``steps`` or after ``seconds`` of training (evaluation time not counted);
    the schedule follows whichever is given. ``logdet``: "exact" (the exact Jacobian) or a
    paper estimator, "series" (biased) or "unbiased" (Russian roulette), with
    ``estimator_kwargs``. ``eval_every`` (steps, or seconds with ``seconds``) records the
    exact test NLL; each record {"seconds", "step", "test_nll", "train_nll"} also goes to
    ``callback``. Returns the records (a final one always). Stops with an error on a NaN loss.

    ``ema`` (a decay such as 0.999, or None): keep an exponential moving average of the
    parameters (Polyak averaging, as Residual Flows evaluate); the records then measure the
    averaged model, and at the end the flow holds the averaged parameters, each layer's norm
    re-estimated for them by :attr:`ParameterAverage.POWER_ITERATIONS` power-iteration steps
    (:func:`iresnet_mini.lipschitz.certify` makes it exact, as the shipped flows do).
    """
    if (steps is None) == (seconds is None):
        raise ValueError("give exactly one of steps (an int) or seconds (a float) as the training budget")
    if logdet not in LOGDET_MODES:
        raise ValueError(f"unknown logdet {logdet!r}: use one of {LOGDET_MODES}")
    if logdet != "exact":
        set_estimator(flow, logdet, **estimator_kwargs)
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"ema must be a decay in (0, 1) or None, got {ema!r}")
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    average = ParameterAverage(flow, ema) if ema is not None else None
    by_time = seconds is not None
    budget = float(seconds) if by_time else int(steps)
    records: list[dict] = []
    clock, step, next_eval, recent = 0.0, 0, eval_every, []
    flow.train()

    def record():
        measured = flow if average is None else average.model(flow)
        rec = {"seconds": clock, "step": step, "test_nll": evaluate_nll(measured, dataset, eval_points, seed),
               "train_nll": float(np.mean(recent)) if recent else math.nan}
        records.append(rec)
        recent.clear()
        if callback is not None:
            callback(rec)

    while (clock if by_time else step) < budget:
        start = time.perf_counter()
        progress = min(1.0, (clock if by_time else step) / budget)
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine(progress)
        x = toy.sample(dataset, batch_size, seed=rng)
        loss = _loss(flow, x, logdet)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {float(loss.detach())} at step {step}; "
                                     "try a smaller learning rate or a smaller coeff")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(flow, step)
        clock += time.perf_counter() - start
        step += 1
        recent.append(float(loss.detach()))
        if eval_every is not None and (clock if by_time else step) >= next_eval:
            record()
            next_eval += eval_every
    if not records or records[-1]["step"] != step:
        record()
    if average is not None:
        average.copy_to(flow)
    return records


@functools.lru_cache(maxsize=None)
def data_entropy(dataset: str, n: int = ENTROPY_POINTS) -> float | None:
    """The data's true entropy in nats (the floor for the test NLL), or None where the density is unknown."""
    return toy.entropy(dataset, n=n) if dataset in toy.HAS_DENSITY else None


def true_nll(dataset: str, n: int = TEST_POINTS, seed: int = 0) -> float | None:
    """The true density's NLL on the test points of :func:`evaluate_nll` (their own floor), or None if unknown."""
    if dataset not in toy.HAS_DENSITY:
        return None
    return float(-toy.log_density(dataset, _test_points(dataset, n, seed)).mean())


@torch.no_grad()
def log_density_grid(flow: SequentialFlow, lim: float = 4.5, n: int = 200, batch: int = 10_000):
    """The model's log-density on an n x n grid over [-lim, lim]^2: (log p as (n, n) array, extent)."""
    was_training = flow.training
    flow.eval()
    try:
        axis = torch.linspace(-lim, lim, n)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # row = y, column = x
        points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
        log_p = torch.cat([exact_log_prob(flow, pb) for pb in points.split(batch)])
    finally:
        flow.train(was_training)
    return log_p.reshape(n, n).numpy(), (-lim, lim, -lim, lim)


MODELS = ("iresnet", "coupling")


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: use one of {MODELS}")


def model_kwargs(model: str, **changes) -> dict:
    """The tuned settings of 'iresnet' (TOY_SHAPE and TOY_IRESNET) or 'coupling' (TOY_SHAPE), with changes."""
    _check_model(model)
    return {**TOY_SHAPE, **(TOY_IRESNET if model == "iresnet" else {}), **changes}


def build_model(model: str = "iresnet", **kwargs) -> SequentialFlow:
    """The i-ResNet flow (:func:`iresnet_flow`) or the coupling baseline (:func:`coupling_flow`) by name.

    Both take ``n_blocks`` (for the coupling flow: its number of coupling layers).
    """
    _check_model(model)
    if model == "iresnet":
        return iresnet_flow(**kwargs)
    if "n_blocks" in kwargs:
        kwargs["n_layers"] = kwargs.pop("n_blocks")
    return coupling_flow(**kwargs)


@dataclass
class ToyResult:
    """A trained toy model with what the notebook shows: test NLL, density grid, samples, curve."""

    dataset: str
    model: str
    coeff: float | None
    logdet: str
    flow: SequentialFlow
    records: list[dict]
    n_parameters: int
    entropy: float | None
    log_p_grid: np.ndarray = field(repr=False)
    extent: tuple
    samples: np.ndarray = field(repr=False)
    source: str = "trained now"  # or "shipped": precomputed by ``python -m iresnet_mini.lessons.precompute``

    @property
    def label(self) -> str:
        """Where the model comes from, for a figure or a readout."""
        steps = self.records[-1]["step"]
        return f"precomputed (shipped, {steps} steps)" if self.source == "shipped" else f"trained now ({steps} steps)"

    @property
    def test_nll(self) -> float:
        return self.records[-1]["test_nll"]

    @property
    def seconds(self) -> float:
        return self.records[-1]["seconds"]


def fit_toy(dataset: str, model: str = "iresnet", steps: int = 1000, logdet: str = "exact", seed: int = 0,
            batch_size: int = TOY_TRAINING["batch_size"], lr: float = TOY_TRAINING["lr"],
            eval_every: int | None = None, eval_points: int = TEST_POINTS, grid: int = 200,
            n_samples: int = 2000, entropy_points: int = ENTROPY_POINTS, estimator_kwargs: dict | None = None,
            **kwargs) -> ToyResult:
    """Build (``kwargs`` to :func:`build_model`), train (:func:`train_toy`) and evaluate one toy model.

    The result holds the test NLL, the density on a grid and samples drawn by inverting the flow.
    """
    torch.manual_seed(seed)
    flow = build_model(model, **kwargs)
    records = train_toy(flow, dataset, steps=steps, batch_size=batch_size, lr=lr, logdet=logdet, seed=seed,
                        eval_every=eval_every, eval_points=eval_points, **(estimator_kwargs or {}))
    coeff = kwargs.get("coeff", TOY_IRESNET["coeff"]) if model == "iresnet" else None
    return _result(dataset, model, coeff, logdet, flow, records, grid, n_samples, entropy_points, seed)


def _result(dataset, model, coeff, logdet, flow, records, grid, n_samples, entropy_points, seed,
            source="trained now") -> ToyResult:
    """What the notebook shows of a flow: its density on the grid and samples drawn by inverting it."""
    flow.eval()
    log_p, extent = log_density_grid(flow, n=grid)
    samples = flow.sample(n_samples, generator=torch.Generator().manual_seed(seed)).numpy()
    return ToyResult(dataset, model, coeff, logdet, flow, records, count_parameters(flow),
                     data_entropy(dataset, entropy_points), log_p, extent, samples, source=source)


class ToyFlowCache:
    """Toy models by (data set, model, c) for the widget: shipped ones first, others trained on first request.

    With ``shipped`` (a shipped file such as :data:`SHIPPED_WIDGET`), a pair the file holds is
    loaded and evaluated (:func:`shipped_result`, its label says "precomputed"); any other pair
    is trained now (``steps`` steps, ``fit_kwargs`` to :func:`fit_toy`) and kept.
    """

    def __init__(self, steps: int, shipped: str | None = None, **fit_kwargs):
        self.steps = steps
        self.shipped = shipped
        self.fit_kwargs = fit_kwargs
        self._results: dict[tuple, ToyResult] = {}

    @staticmethod
    def key(dataset: str, coeff: float, model: str = "iresnet") -> tuple:
        return dataset, model, round(float(coeff), 2)

    def __contains__(self, key: tuple) -> bool:
        return self.key(*key) in self._results

    def __len__(self) -> int:
        return len(self._results)

    def get(self, dataset: str, coeff: float, model: str = "iresnet") -> ToyResult:
        """The cached result, else the shipped model evaluated now, else a model trained now; then cached."""
        key = self.key(dataset, coeff, model)
        if key not in self._results:
            result = None
            if self.shipped is not None:
                shown = {k: self.fit_kwargs[k] for k in ("grid", "n_samples", "entropy_points") if k in self.fit_kwargs}
                result = shipped_result(self.shipped, dataset, model, key[2] if model == "iresnet" else None,
                                        required=False, **shown)
            if result is None:
                options = {**self.fit_kwargs, **({"coeff": key[2]} if model == "iresnet" else {})}
                result = fit_toy(dataset, model, self.steps, **options)
            self._results[key] = result
        return self._results[key]

    def fill(self, datasets, coeffs, model: str = "iresnet") -> None:
        """Load or train every (data set, c) pair not cached yet."""
        for dataset in datasets:
            for coeff in coeffs:
                self.get(dataset, coeff, model)


def bench_main(dataset: str, minutes: float, seed: int = 0, threads: int | None = 1, **changes) -> dict:
    """Train the tuned i-ResNet flow (:func:`model_kwargs`, TOY_TRAINING) for ``minutes`` of training time.

    Prints one line per evaluation (elapsed training seconds, step, exact test NLL on
    :data:`TEST_POINTS` fresh points) and ends with ``NAME: test NLL X nats after T s
    (entropy H)``. ``threads`` sets torch's CPU threads (None leaves them; one thread is
    fastest for these small matrices on a busy machine); ``changes`` alter the model.
    Returns the records and the final numbers.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive number of CPU threads (or None), got {threads!r}")
    config = model_kwargs("iresnet", **changes)
    if threads is not None:
        torch.set_num_threads(threads)
    entropy = data_entropy(dataset)
    torch.manual_seed(seed)
    flow = iresnet_flow(**config)
    floor = true_nll(dataset, TEST_POINTS, seed)
    print(f"{dataset}: i-ResNet flow, {count_parameters(flow)} parameters, {config}, {TOY_TRAINING}, "
          f"{torch.get_num_threads()} threads, {minutes:g} min of training")
    if floor is not None:
        print(f"the true density's NLL on the same {TEST_POINTS} test points: {floor:.3f} nats")
    print(f"{'seconds':>8} {'step':>6} {'test NLL':>9}")
    records = train_toy(flow, dataset, seconds=60.0 * minutes, seed=seed, eval_every=6.0 * minutes,
                        callback=lambda r: print(f"{r['seconds']:8.1f} {r['step']:6d} {r['test_nll']:9.4f}",
                                                 flush=True), **TOY_TRAINING)
    final = records[-1]
    entropy_text = "n/a" if entropy is None else f"{entropy:.3f}"
    print(f"{dataset}: test NLL {final['test_nll']:.3f} nats after {final['seconds']:.0f} s "
          f"(entropy {entropy_text})")
    target = facts.TARGETS.get(f"toy_{dataset}_nll")
    if target is not None:
        print(f"target {target.text()}: {'reached' if target.met_by(final['test_nll']) else 'not reached'}")
    return {"dataset": dataset, "minutes": minutes, "seed": seed, "config": config, "records": records,
            "test_nll": final["test_nll"], "seconds": final["seconds"], "steps": final["step"],
            "entropy": entropy, "true_nll": floor, "n_parameters": count_parameters(flow)}


def time_exact_logdet(branch: nn.Sequential, x: torch.Tensor, repeats: int = 5) -> dict:
    """Milliseconds for log det(I + J_g) and its gradient: torch.func (vmap + jacrev) vs forward mode.

    Both give the same numbers (see the tests); the fastest of ``repeats`` interleaved runs is kept.
    """
    methods = {"torch.func (vmap + jacrev)": lambda: jacobian(branch, x),
               "forward mode (mlp_jacobian)": lambda: mlp_jacobian(branch, x)[1]}
    times = dict.fromkeys(methods, math.inf)
    for _ in range(repeats):  # interleaved, so that a busy moment hits both methods alike
        for name, jac in methods.items():
            start = time.perf_counter()
            branch.zero_grad(set_to_none=True)
            log_det_identity_plus(jac()).sum().backward()
            times[name] = min(times[name], 1000 * (time.perf_counter() - start))
    return times


# --- shipped flows: Fig. 2 and the widget, precomputed -------------------------------------------
# ``python -m iresnet_mini.lessons.precompute nb04-fig2 nb04-widget`` trains them; notebook 04 loads them,
# so that quick mode shows well-trained densities and a slider move only redraws.
DATASETS = ("8gaussians", "checkerboard", "moons", "circles")
SHIPPED_FIG2 = "nb04-fig2"
SHIPPED_WIDGET = "nb04-widget"
FIG2_STEPS = 2500               # each Fig. 2 flow: about the benchmark's 5 minutes on one CPU thread
# Two power iterations per step: with one, the estimate of a layer's norm can lag weights that move
# fast enough for some point to get det(I + J_g) <= 0 (the paper's Sec. 6 pitfall; seen at c = 0.97).
WIDGET_MODEL = dict(n_blocks=8, hidden=64, n_hidden_layers=3, n_power_iterations=2)
WIDGET_C = (0.5, 0.7, 0.8, 0.9, 0.97)
WIDGET_STEPS = 1200
SHIPPED_SEED = 0


def shipped_key(dataset: str, model: str, coeff: float | None = None) -> str:
    """A shipped flow's name: ``checkerboard/coupling`` (Fig. 2) or ``checkerboard/iresnet/c0.9`` (widget)."""
    _check_model(model)
    return f"{dataset}/{model}" + ("" if coeff is None else f"/c{float(coeff):g}")


def shipped_settings(name: str) -> list[dict]:
    """What shipped file ``name`` holds: one dict (key, dataset, model, kwargs, steps) per flow."""
    if name == SHIPPED_FIG2:
        return [{"key": shipped_key(d, m), "dataset": d, "model": m, "kwargs": model_kwargs(m), "steps": FIG2_STEPS}
                for d in DATASETS for m in MODELS]
    if name == SHIPPED_WIDGET:
        return [{"key": shipped_key(d, "iresnet", c), "dataset": d, "model": "iresnet",
                 "kwargs": model_kwargs("iresnet", **WIDGET_MODEL, coeff=c), "steps": WIDGET_STEPS}
                for d in DATASETS for c in WIDGET_C]
    raise ValueError(f"unknown shipped flows {name!r}: use {SHIPPED_FIG2!r} or {SHIPPED_WIDGET!r}")


@torch.no_grad()
def _shippable_state(flow: SequentialFlow) -> dict:
    """The flow's state with weight matrices in float16 (half the bytes), and the power iterations
    re-run for exactly those rounded weights, so that the shipped u, v certify what is loaded."""
    for name, p in flow.named_parameters():
        if name.endswith("weight") and p.dim() == 2:
            p.copy_(p.half().float())
    certify(flow)  # dense layers: u, v from an SVD of the rounded weights
    return {k: v.half() if k.endswith("weight") and v.dim() == 2 else v.clone() for k, v in flow.state_dict().items()}


def _train_shipped(setting: dict) -> tuple[str, dict, dict]:
    torch.set_num_threads(1)
    torch.manual_seed(SHIPPED_SEED)
    flow = build_model(setting["model"], **setting["kwargs"])
    start = time.perf_counter()
    try:
        records = train_toy(flow, setting["dataset"], steps=setting["steps"], seed=SHIPPED_SEED,
                            eval_every=max(setting["steps"] // 5, 1), **TOY_TRAINING)
    except FloatingPointError as error:
        raise FloatingPointError(f"{setting['key']}: {error}") from error
    seconds = time.perf_counter() - start
    state = _shippable_state(flow)
    loaded = _flow_from_state(setting, state)
    # train_seconds: the wall time of train_toy, its five test evaluations included
    figures = {"test_nll": evaluate_nll(loaded, setting["dataset"], TEST_POINTS, SHIPPED_SEED),
               "steps": setting["steps"], "train_seconds": round(seconds, 1), "parameters": count_parameters(loaded),
               "curve": [(r["step"], round(r["test_nll"], 4)) for r in records]}
    return setting["key"], state, figures


def _flow_from_state(setting: dict, state: dict) -> SequentialFlow:
    torch.manual_seed(SHIPPED_SEED)
    flow = build_model(setting["model"], **setting["kwargs"])
    flow.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return flow.eval()


def precompute(name: str, workers: int = 1) -> tuple[dict, dict]:
    """Train every flow of shipped file ``name`` (``workers`` processes, one thread each): (content, summary)."""
    settings = shipped_settings(name)
    rows = shipped.parallel_map(_train_shipped, settings, workers)
    flows = {key: {"state": state, "figures": figures} for key, state, figures in rows}
    summary = {key: {"test_nll": round(v["figures"]["test_nll"], 4), "steps": v["figures"]["steps"],
                     "train_seconds": v["figures"]["train_seconds"]} for key, v in flows.items()}
    summary["entropies"] = {d: round(data_entropy(d), 4) for d in DATASETS if data_entropy(d) is not None}
    content = {"settings": settings, "training": dict(TOY_TRAINING),
               "seed": SHIPPED_SEED, "test_points": TEST_POINTS, "flows": flows}
    return content, summary


def shipped_flow(name: str, key: str):
    """(flow in eval mode, figures) of one shipped flow, or None when the file or the flow is not shipped
    (or was made with settings other than this code's)."""
    if not shipped.available(name):
        return None
    content, _ = shipped.load(name)
    settings = {s["key"]: s for s in shipped_settings(name)}
    stored = {s["key"]: s for s in content["settings"]}
    if key not in settings or key not in content["flows"] or stored.get(key) != settings[key]:
        return None
    found = content["flows"][key]
    return _flow_from_state(settings[key], found["state"]), found["figures"]


def shipped_result(name: str, dataset: str, model: str = "iresnet", coeff: float | None = None, grid: int = 200,
                   n_samples: int = 2000, entropy_points: int = ENTROPY_POINTS, seed: int = 0,
                   required: bool = True) -> ToyResult | None:
    """The :class:`ToyResult` of a shipped flow (density grid and samples computed now).

    A flow that is not shipped (or was made with other settings) raises
    :class:`~iresnet_mini.pretrained.PretrainedError` saying how to remake it; with
    ``required=False`` it gives None instead (the widget then trains the setting now).
    """
    key = shipped_key(dataset, model, coeff)
    found = shipped_flow(name, key)
    if found is None:
        if not required:
            return None
        raise shipped.PretrainedError(
            f"the shipped flow {key!r} of {name!r} is missing from {shipped.LESSONS_DIR} or was made with other "
            f"settings than this code's; restore the folder from the repository, or remake it: "
            f"{shipped.remake_command(name)}")
    flow, figures = found
    records = [{"seconds": figures["train_seconds"], "step": figures["steps"], "test_nll": figures["test_nll"],
                "train_nll": math.nan}]
    c = (coeff if coeff is not None else TOY_IRESNET["coeff"]) if model == "iresnet" else None
    return _result(dataset, model, c, "exact", flow, records, grid, n_samples, entropy_points, seed, "shipped")
