# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · i-ResNet flows on 2D densities (paper Fig. 2)
#
# Notebooks 01-03 built the pieces: a residual block with $\mathrm{Lip}(g) < 1$ is invertible, its inverse is a
# fixed-point iteration, and $\ln\det(I + J_g)$ can be estimated. Here we put them together into a **normalising
# flow**, train it by maximum likelihood on 2D toy data, and compare it with an affine-coupling flow
# (RealNVP / Glow style) of about the same size, as in the paper's Fig. 2.
#
# **What you will learn**
# - how a stack of i-ResNet blocks and ActNorms becomes a density model, and why the test NLL can never go below
#   the data's entropy;
# - that in 2D the log-determinant is cheap to compute *exactly*, by pushing two tangent vectors through the branch
#   (forward-mode differentiation);
# - why the scale on which the blocks work matters a lot for training speed;
# - how the i-ResNet flow and a coupling flow differ on multi-modal and sharp-edged densities;
# - what training with the paper's biased series estimator, or Residual Flows' unbiased one, costs and gives,
#   against the exact log-det;
# - how to sample from an i-ResNet flow: draw $z \sim \mathcal N(0, I)$ and invert every block by fixed-point iteration.
#
# **Time:** about 50 minutes. In quick mode (CPU) the notebook runs in under a minute: the Fig. 2 flows and the
# widget's flows were trained ahead of time and ship with the course (made by
# `python -m iresnet_mini.lessons.precompute nb04-fig2 nb04-widget`), and the training experiments of sections 3 and 5
# use tiny models for a few seconds. Full mode (`IRESNET_MINI_MODE=full`) runs those experiments at full size, in some
# minutes on a laptop CPU; `TRAIN_HERE = True` in section 4 retrains the Fig. 2 flows (about half an hour).

# %%
import functools

import ipywidgets
import numpy as np
import torch
from IPython.display import Markdown, display

from iresnet_mini import blocks, course, facts, flows, logdet, toy
from iresnet_mini.lessons import widgets
from iresnet_mini.lessons.nb04 import checks, figures, toyflows
from iresnet_mini.config import size

course.setup(threads=1)  # 2D batches are small matrices: one CPU thread
DATASETS = toyflows.DATASETS  # 8gaussians, checkerboard, moons, circles
SHAPE = {**toyflows.TOY_SHAPE, **size("nb04.model")}        # shared by both models
KWARGS = {m: toyflows.model_kwargs(m, **SHAPE) for m in toyflows.MODELS}
LAYERS = SHAPE["n_hidden_layers"] + 1  # linear layers per i-ResNet branch: Lip(g) <= c^LAYERS
FIT = dict(batch_size=size("nb04.batch_size"), lr=toyflows.TOY_TRAINING["lr"], eval_points=size("nb04.test_points"),
           grid=size("nb04.grid"), n_samples=size("nb04.samples"), entropy_points=size("nb04.entropy_points"))
print("i-ResNet flow:", KWARGS["iresnet"])
print("coupling flow:", KWARGS["coupling"])
print("training:", FIT)

# %% [markdown]
# ## 1. Four toy densities, and the floor for the NLL
#
# A flow $F$ maps data $x$ to $z = F(x)$ with a standard normal base density. By the change of variables
# $$\ln p(x) = \ln \mathcal N(F(x); 0, I) + \sum_{\text{layers}} \ln\left|\det J_{\text{layer}}\right| ,$$
# and we train by minimising the negative log-likelihood (NLL) on fresh samples. Its expectation over the data is the
# cross-entropy
# $$\mathbb E_{x \sim p_{\text{data}}}[-\ln p(x)] = H(p_{\text{data}}) + \mathrm{KL}(p_{\text{data}} \,\|\, p) \;\ge\; H(p_{\text{data}}),$$
# so the data's entropy is the floor of every model's test NLL and the gap above it measures the KL divergence.
# For the checkerboard (uniform on 8 squares) the entropy is exact; for the others it is a Monte Carlo average of the
# true log-density (moons and circles: arcs blurred by Gaussian noise, the density their sampler converges to).

# %%
entropies = {name: toyflows.data_entropy(name, size("nb04.entropy_points")) for name in DATASETS}
data = {name: toy.sample(name, size("nb04.samples"), seed=1) for name in DATASETS}
for name, h in entropies.items():
    print(f"{name:>12}: entropy {h:.3f} nats")
fig = figures.plot_toy_datasets(data, entropies)

# %% [markdown]
# ## 2. The exact log-determinant in 2D
#
# In $d$ dimensions the paper estimates $\ln\det(I + J_g)$ with a power series and Hutchinson's trace (notebook 03),
# because the full Jacobian costs $d$ backward passes. In 2D that is only two: the exact value is cheaper than the
# estimator, has no bias and no variance. For a $2\times 2$ matrix
# $$\det(I + J) = (1 + J_{11})(1 + J_{22}) - J_{12} J_{21} ,$$
# which is positive for every i-ResNet block (all eigenvalues of $J_g$ lie inside the unit disk, notebook 03).
#
# How to get $J_g(x)$ for a whole batch quickly? `logdet.jacobian` uses `torch.func` (`vmap` of `jacrev`: reverse mode
# per sample). `toyflows.mlp_jacobian` uses **forward mode** by hand: next to the value $h$ it carries the two columns
# $\partial h / \partial x_1$, $\partial h / \partial x_2$ through the branch: a linear layer maps them by $W$ (without
# bias), an activation multiplies them by $\varphi'(h)$. That is about three forward passes, and backpropagation through
# it gives the gradient of the exact log-det for training. Both ways cost about the same here (forward mode is usually a
# little faster, and it needs no `torch.func` machinery); timings on a shared CPU are noisy.

# %%
branch = blocks.mlp_branch(2, SHAPE["hidden"], SHAPE["n_hidden_layers"], coeff=0.97, activation="lipswish")
x = toy.sample("8gaussians", 512, seed=2) * 10  # points on the scale the blocks will work on (Sec. 3)
branch(x)  # sets up spectral normalisation
gx, jac = toyflows.mlp_jacobian(branch, x)
with torch.no_grad():
    print("max |J_forward - J_torch.func|:", float((jac - logdet.jacobian(branch, x)).abs().max()))
    print("smallest det(I + J_g) on the batch:", float(toyflows.log_det_identity_plus(jac).exp().min()))
for method, ms in toyflows.time_exact_logdet(branch, x, repeats=10).items():
    print(f"log-det + gradient, batch 512, {method:>28}: {ms:6.1f} ms")

# %% [markdown]
# ## 3. The flow, and the scale its blocks work on
#
# `toyflows.iresnet_flow` stacks ActNorm, then blocks $x \mapsto x + g(x)$ each followed by an ActNorm (Glow's
# per-dimension affine layer with data-dependent initialisation and an exact log-det). Each branch $g$ is an MLP
# $2 \to h \to \dots \to 2$ with LipSwish activations (Residual Flows' $x\,\sigma(\beta x)/1.1$, 1-Lipschitz, smooth, with a
# learned $\beta$) and spectral normalisation, every layer with $\|W\|_2 \le c$. With $m = 4$ layers
# per branch that guarantees $\mathrm{Lip}(g) \le c^4$ (notebook 01's $L = c^m$): $c = 0.9$ gives 0.66, $c = 0.98$ gives
# 0.92. The cell below prints the bound for the coefficient used here.
#
# One detail matters a lot. Spectral normalisation bounds the slope of a whole layer by $c$; spread over $h$ hidden
# units, each unit's pre-activation changes only by about $c/\sqrt h$ per unit of input. On data of unit scale every
# unit then sits on a nearly straight piece of its activation: the branch starts out almost linear, and a linear $g$ cannot
# improve on the Gaussian that ActNorm already fits. Training sits on that plateau for a long time. We therefore let
# the ActNorms place the data at a standard deviation `working_std` (see `toyflows.TOY_IRESNET`) for the blocks, and the last
# ActNorm returns it to unit scale for the base distribution. The model class is the same (the Lipschitz constraint
# does not depend on the scale); only the starting point differs. Compare:

# %%
coeff = KWARGS["iresnet"]["coeff"]
print(f"c = {coeff} for every layer: each branch has Lip(g) <= c^{LAYERS} = {coeff ** LAYERS:.3f}")
steps = size("nb04.scale_steps")
scale_runs = {}
for std in (1.0, KWARGS["iresnet"]["working_std"]):
    torch.manual_seed(0)
    flow = toyflows.iresnet_flow(**{**KWARGS["iresnet"], "working_std": std})
    scale_runs[f"working_std = {std:g}"] = toyflows.train_toy(
        flow, "8gaussians", steps=steps, batch_size=FIT["batch_size"], lr=FIT["lr"],
        eval_every=max(steps // 6, 1), eval_points=FIT["eval_points"])
fig, ax = figures.subplots(width=6.0, height=3.8)
figures.plot_nll_curves(ax, scale_runs, "step", entropies["8gaussians"], title="8 gaussians: the blocks' working scale")

# %% [markdown]
# ### Implement it yourself: the log-likelihood of a 2D flow
#
# Write `log_prob(flow, x)` by the change of variables: pass $x$ through `flow.layers` in order, adding up the layers'
# log-determinants (an ActNorm layer returns `(y, logdet)` when called; for a residual layer take $g(x)$ and $J_g(x)$
# from `toyflows.mlp_jacobian(layer.block.branch, x)` and the log-det from `toyflows.log_det_identity_plus`), then
# add the base density `flow.base.log_prob(z)` of the final $z$. The check compares with `toyflows.exact_log_prob`.

# %% tags=["exercise"]
def log_prob(flow, x):
    ...  # your code: log p(x) per sample


checks.check_flow_log_prob(log_prob)


# %% [markdown] tags=["solution"]
# **Solution.** Every layer contributes its own log-determinant; the base density is evaluated at the end.

# %% tags=["solution"]
def log_prob(flow, x):
    logdet = torch.zeros(x.shape[0], dtype=x.dtype)
    for layer in flow.layers:
        if isinstance(layer, flows.ResidualFlowLayer):
            gx, jac = toyflows.mlp_jacobian(layer.block.branch, x)
            x, ld = x + gx, toyflows.log_det_identity_plus(jac)
        else:
            x, ld = layer(x)
        logdet = logdet + ld
    return flow.base.log_prob(x) + logdet


checks.check_flow_log_prob(log_prob)

# %% [markdown]
# The package's version, used for training and evaluating every 2D flow in this notebook:

# %%
import inspect

print(inspect.getsource(toyflows.exact_log_prob))

# %% [markdown]
# ## 4. i-ResNet flow vs affine coupling (Fig. 2)
#
# The baseline is an **affine-coupling flow**: each layer keeps one coordinate $x_a$ and transforms the other as
# $x_b \mapsto x_b\, e^{s(x_a)} + t(x_a)$ with an unconstrained MLP for $(s, t)$ (the log-scale bounded by a
# $\tanh$); the coordinate kept alternates from layer to layer, with ActNorm between layers as in Glow. Its Jacobian
# is triangular, so its log-det is $\sum s$ and its inverse is explicit. The i-ResNet flow is free-form: every block
# mixes both coordinates, and both its log-det and its inverse need more work (exact here, iterated for the inverse).
#
# Both models have the same number of layers of the same width, so about the same number of parameters, and are
# trained the same way: 2,500 steps of Adam with a cosine-decaying learning rate on fresh samples each step
# (`toyflows.FIG2_STEPS`, about the five minutes of section 6's benchmark on one CPU thread), evaluated with an
# exponential moving average of the weights, and the i-ResNet with the exact log-det. (The optimiser settings were
# tuned for the i-ResNet flow; the coupling flow gets the same ones.) These eight flows were trained ahead of time and
# ship with the course; the table says so, and `TRAIN_HERE = True` trains them here instead.
# The test NLL uses fresh test points and the exact log-det. Next to the Monte Carlo entropy the table shows the true
# density's NLL on the *same* test points. Both are floors only in expectation, averaged over test sets: on one finite
# set of test points a model can come out a little below either by chance, when the points happen to lie where the
# model puts slightly more mass than the truth. Samples come from inverting the flows:
# `SequentialFlow.sample` draws $z$ and runs Alg. 1 (fixed-point iteration) through every block.

# %%
TRAIN_HERE = False  # True: train the eight flows now (about half an hour on one CPU thread) instead of loading them
SHOWN = dict(grid=FIT["grid"], n_samples=FIT["n_samples"], entropy_points=FIT["entropy_points"])
results = {}
for name in DATASETS:
    for model in toyflows.MODELS:
        results[name, model] = (
            toyflows.fit_toy(name, model, toyflows.FIG2_STEPS, **SHOWN, **toyflows.model_kwargs(model))
            if TRAIN_HERE else toyflows.shipped_result(toyflows.SHIPPED_FIG2, name, model, **SHOWN))
print(f"{results[DATASETS[0], 'iresnet'].label}; {toyflows.FIG2_STEPS} steps of batch "
      f"{toyflows.TOY_TRAINING['batch_size']} per flow")
print(f"{'data set':>12} {'entropy':>8} {'true NLL':>9} {'i-ResNet NLL':>13} {'coupling NLL':>13}   (nats; "
      f"parameters {results[DATASETS[0], 'iresnet'].n_parameters} vs {results[DATASETS[0], 'coupling'].n_parameters})")
for name in DATASETS:
    floor = toyflows.true_nll(name, toyflows.TEST_POINTS)  # the true density on the same test points
    print(f"{name:>12} {entropies[name]:8.3f} {floor:9.3f} {results[name, 'iresnet'].test_nll:13.3f} "
          f"{results[name, 'coupling'].test_nll:13.3f}")
for model in toyflows.MODELS:
    seconds = np.mean([results[name, model].seconds for name in DATASETS])
    print(f"{model}: {seconds:.0f} s per flow on one CPU thread (training, with five test evaluations)")

# %%
fig = figures.plot_toy_comparison(data, results)

# %% [markdown]
# What to look for (the paper's Fig. 2 makes the same point):
# - **8 gaussians.** Both models have to turn one Gaussian into eight blobs. Both are continuous bijections, so neither
#   can cut the plane: the mass between the modes is squeezed into bridges of very low density. Each i-ResNet block
#   moves both coordinates at once, and its eight blobs come out round and separate; a coupling layer moves one
#   coordinate given the other, and its blobs keep the streaks and bridges of those axis-by-axis moves.
# - **Checkerboard.** Sharp edges are the hardest case for a smooth, bi-Lipschitz map. The i-ResNet flow draws the
#   eight squares with softened edges, and that blur is most of its gap to the entropy $\ln 32$; the coupling flow
#   tears the plane into streaks and misplaces whole squares, a gap several times as large.
# - **Moons and circles.** Thin curved structures; the rings need a hole in the middle, which a map that can never
#   fold the plane makes by stretching the centre into a thin annulus. The coupling flow's rings are lopsided.
# - **Cost.** The i-ResNet flow is closer to the floor on every data set, but a coupling step is about four times
#   cheaper (the training times under the table: about 75 s against 315 s for 2,500 steps): its log-det is a sum and
#   its inverse explicit, while the i-ResNet pays for the exact Jacobian here and for iterations when sampling.
# - The samples come from the inverse (Alg. 1); where they match the data histogram, the inverse iteration converged.

# %% [markdown]
# ### Where i-ResNets sit among flows (the paper's Table 1)
#
# You have now met both kinds of flow. The paper's Table 1 places them among the others; the last column says where
# this course showed each property (the Residual Flow row is the follow-up paper's, not the i-ResNet paper's):

# %%
SEEN_HERE = {
    "free-form": "the i-ResNet's branch is any Lipschitz MLP; a coupling layer changes half the coordinates given the rest",
    "analytic forward": "both flows compute F(x) in one pass (sections 2-4)",
    "analytic inverse": "AffineCoupling.inverse is closed-form; the i-ResNet's samples above needed Alg. 1's iterations",
    "non-volume preserving": "ActNorm and both kinds of block have log-dets other than 0 (section 2)",
    "exact likelihood": "exact here only because d = 2 (section 2); in images it is estimated (notebooks 03, 07)",
    "unbiased log-det estimator": "the truncated series is biased, Russian roulette is not (notebook 03, section 5 below)",
}
rows = {**facts.TABLE1.rows, facts.RESIDUAL_FLOWS_TABLE1_ROW[0]: facts.RESIDUAL_FLOWS_TABLE1_ROW[1]}
mark = {True: "yes", False: "no", None: "n/a"}
lines = ["| property | " + " | ".join(rows) + " | where you saw it |", "|---" * (len(rows) + 2) + "|"]
lines += [f"| {p} | " + " | ".join(mark[row[p]] for row in rows.values()) + f" | {SEEN_HERE[p]} |"
          for p in facts.TABLE1_PROPERTIES]
display(Markdown("\n".join(lines)))
print(facts.TABLE1.caption())

# %% [markdown]
# **Think!** Neither flow puts zero density between the 8 gaussians: thin bridges remain. Why can no flow avoid them?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# A flow's density is $p(x) = \mathcal N(F(x); 0, I)\,|\det J_F(x)|$, positive wherever $F$ is defined, and $F$ maps the
# connected plane onto the connected plane continuously. The Gaussian's mass cannot be cut into eight separate pieces by
# a continuous bijection; it can only be stretched very thin between them. Better flows make the bridges thinner, none
# removes them.
# </details>

# %% [markdown]
# ## 5. Training with the paper's estimator, evaluating exactly
#
# The paper trains with the **truncated power series** (5 terms, one Hutchinson probe: biased); Residual Flows with
# the **Russian-roulette** estimator (unbiased). Below the same i-ResNet flow is trained on 8 gaussians with each of
# them and with the exact log-det, for the same number of steps, and evaluated with the exact log-det. The series
# and roulette estimators need several vector-Jacobian products per block and have variance; the exact 2D log-det needs
# neither.

# %%
steps = size("nb04.estimator_steps")
estimator_results = {
    name: toyflows.fit_toy("8gaussians", "iresnet", steps, logdet=name, eval_every=max(steps // 5, 1),
                           **FIT, **KWARGS["iresnet"])
    for name in toyflows.LOGDET_MODES}
for name, r in estimator_results.items():
    print(f"trained with the {name:>8} log-det: test NLL (exact) {r.test_nll:.3f} nats, "
          f"{1000 * r.seconds / r.records[-1]['step']:.0f} ms per step")
fig = figures.plot_estimator_comparison(estimator_results, entropies["8gaussians"])

# %% [markdown]
# The evaluation above uses `toyflows.exact_log_prob`. The package's own reference is `flows.set_estimator(flow,
# "exact")`, which makes every block compute its log-det from the full Jacobian by `torch.func`; both agree:

# %%
flow = estimator_results["series"].flow.eval()
x_test = toy.sample("8gaussians", 1000, seed=7)
flows.set_estimator(flow, "exact")
with torch.no_grad():
    nll_reference = float(-flow.log_prob(x_test).mean())
    nll_forward = float(-toyflows.exact_log_prob(flow, x_test).mean())
print(f"NLL on 1000 test points: set_estimator('exact') {nll_reference:.6f}, exact_log_prob {nll_forward:.6f}")

# %% [markdown]
# **Think!** In 2D the exact log-determinant is cheaper than the paper's estimator. When does that stop being true?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# The exact value needs all $d$ columns of $J_g$ (here $d$ forward-mode tangents) and a $d \times d$ determinant, so its
# cost grows like $d$ passes plus $d^3$; the estimator needs $n$ vector-Jacobian products per probe, whatever $d$ is. Once
# $d$ exceeds the number of products the estimator uses (a few, times the probes), the estimator wins, and for an image
# block with $d$ in the thousands the exact Jacobian is out of reach (notebooks 03 and 07).
# </details>

# %% [markdown]
# ## 6. Against the clock
#
# How good can an i-ResNet flow get in five minutes on one CPU thread? The settings of the Fig. 2 flows
# (`toyflows.TOY_SHAPE`, `TOY_IRESNET` and `TOY_TRAINING`, printed in the setup cell) were tuned for that: many thin
# blocks, LipSwish, $c$ close to 1, a wide working scale, a large Adam step with a cosine schedule, an exponential
# moving average of the weights for evaluation, float32, one thread, and the exact 2D log-det from forward mode. On
# the checkerboard, the moving average took the 5-minute test NLL from 3.62 to 3.60 nats, and LipSwish instead of ELU
# (smooth like ELU, but with a curvature its learned $\beta$ tunes) from there to 3.56, against the entropy 3.466;
# what is left is mostly the blur at the squares' edges, still shrinking slowly when the five minutes end. The benchmark trains against the clock and prints the test NLL curve (and, next to the entropy, the
# true density's NLL on the same test points, their floor in expectation), with the machine's classifier step time,
# since a time budget means fewer steps on a slower machine:
#
# ```
# python -m iresnet_mini.bench toy --minutes 5
# ```
#
# For comparison, Residual Flows' own toy script uses far more and wider blocks with a stochastic log-det estimator:
# each of its steps costs many of ours.
#
# ## 7. Try it
#
# Pick a data set and the Lipschitz coefficient $c$ of every layer. For each data set and each $c$ on the slider an
# i-ResNet flow of 8 blocks was trained ahead of time (`toyflows.WIDGET_STEPS` steps; it ships with the course), so a
# move only evaluates and draws it; the readout says `precomputed`. The first visit of a pair evaluates its density on
# the grid and draws samples (about a second), later visits are instant.
# Things to try:
# - how does the test NLL change from $c = 0.5$ to $c = 0.97$? Where does a small $c$ hurt most?
# - at small $c$, can the flow still separate the 8 gaussians, or does it leave bridges between them?

# %%
cache = toyflows.ToyFlowCache(size("nb04.widget_steps"), shipped=toyflows.SHIPPED_WIDGET, **FIT,
                              **{k: v for k, v in KWARGS["iresnet"].items() if k != "coeff"})
cache.fill(size("nb04.widget_datasets"), toyflows.WIDGET_C)
widgets.interactive_figure(functools.partial(figures.draw_toy_flow, cache), height="360px",
                           dataset=ipywidgets.Dropdown(options=DATASETS, value="8gaussians", description="data set"),
                           c=widgets.c_choice([(f"{c:g}", c) for c in toyflows.WIDGET_C], value=0.9, layers=LAYERS))


# %% [markdown]
# <details><summary>Answers</summary>
#
# - The test NLL rises as $c$ falls. Here $c$ bounds each of a branch's four layers, so $\mathrm{Lip}(g) \le c^4$: at
#   $c = 0.97$ that is 0.89, at $c = 0.5$ only 0.06, and such blocks barely move points. A small $c$ hurts most on the
#   data with the sharpest structure (8 gaussians, checkerboard), where the flow must concentrate its mass most.
# - No: at small $c$ the flow is close to the affine map its ActNorms make, so it models one broad blob over all eight
#   modes instead of separate peaks.
# </details>

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (the 2x2 log-det).** Write `logdet_2x2(J)` that takes a batch of Jacobians of shape `(batch, 2, 2)` and
# returns $\ln\det(I + J)$ per sample, with the closed formula (no `torch.linalg`).

# %% tags=["exercise"]
def logdet_2x2(J):
    ...  # your code: one value per sample


checks.check_logdet_2x2(logdet_2x2)


# %% [markdown] tags=["solution"]
# **Solution.**

# %% tags=["solution"]
def logdet_2x2(J):
    return torch.log((1 + J[:, 0, 0]) * (1 + J[:, 1, 1]) - J[:, 0, 1] * J[:, 1, 0])


checks.check_logdet_2x2(logdet_2x2)

# %% [markdown]
# **Exercise 2 (is it a density?).** A flow's density integrates to one by construction. Check it numerically for the
# i-ResNet flow trained on moons: `results["moons", "iresnet"].log_p_grid` holds $\ln p$ on an $n \times n$ grid with
# `extent` $(-4.5, 4.5, -4.5, 4.5)$ (grid points from $-4.5$ to $4.5$ inclusive). Compute the probability mass on the
# square with a Riemann sum.

# %% tags=["exercise"]
moons = results["moons", "iresnet"]
mass = None  # your number
checks.check_density_mass(mass, moons.log_p_grid, moons.extent)

# %% tags=["solution"]
n = moons.log_p_grid.shape[0]
cell = (9.0 / (n - 1)) ** 2
mass = np.exp(moons.log_p_grid).sum() * cell
checks.check_density_mass(mass, moons.log_p_grid, moons.extent)

# %% [markdown] tags=["solution"]
# **Solution.** The mass is close to 1: change of variables keeps the density normalised, and the flow puts almost no mass outside
# the square where the data lives.

# %% [markdown]
# **Exercise 3 (the floor).** The checkerboard data is uniform on 8 squares of side 2. What is its entropy in nats?

# %% tags=["exercise"]
answer_3 = None  # a number
checks.check_checkerboard_entropy(answer_3)

# %% [markdown] tags=["solution"]
# **Solution.** A uniform density on a set of area $A$ is $1/A$, so $H = -\mathbb E[\ln(1/A)] = \ln A = \ln 32 \approx 3.466$ nats.

# %% tags=["solution"]
answer_3 = np.log(32)
checks.check_checkerboard_entropy(answer_3)

# %% [markdown]
# ## Going further
#
# Open problems, without a check: write your own code in new cells.
#
# 1. **ELU flows.** Train `toyflows.iresnet_flow(activation="elu", ...)` on the checkerboard with `toyflows.train_toy`
#    for the same steps as a LipSwish flow and compare their test NLLs and their density maps: where do the smooth
#    activations differ?
# 2. **The price of the iterative inverse.** Time `flow.sample` for both flows and count the fixed-point iterations
#    each i-ResNet block needs (`block.last_inverse_info`); how does the count change with $c$?
# 3. **Towards $c = 1$.** Train at $c = 0.99$ and at $c = 0.9$ (per layer, so $\mathrm{Lip}(g) \le c^4$): does the NLL
#    improve, and what happens to the number of inverse iterations?

# %% [markdown]
# ## Summary
#
# - An i-ResNet flow is a stack of invertible residual blocks and ActNorms; change of variables gives its exact
#   log-likelihood, and its test NLL is bounded below by the data's entropy.
# - In 2D the log-determinant is cheap to compute exactly: push two tangent vectors through the branch (forward mode)
#   and use the $2 \times 2$ determinant formula. No estimator, no bias, no variance, for about three forward passes.
# - Spectrally normalised branches start almost linear on unit-scale data; letting the blocks work on a wider scale
#   (`working_std`) removes a long plateau at the Gaussian fit.
# - The free-form i-ResNet flow and an affine-coupling flow of the same size both model the toy densities, the i-ResNet
#   closer to the entropy on every one (Fig. 2), the coupling flow with cheaper steps; neither
#   can cut the plane, so separate modes stay joined by bridges of very low density, and sharp edges stay blurred.
# - Training with the paper's series estimator or the unbiased roulette estimator works, but each step costs more and
#   is noisier than with the exact 2D log-det.
# - Sampling inverts each block by fixed-point iteration (Alg. 1).
#
# ## References
#
# - J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual Networks.* ICML 2019,
#   arXiv:1811.00995 (Sec. 3, Fig. 2).
# - R. T. Q. Chen, J. Behrmann, D. Duvenaud, J.-H. Jacobsen. *Residual Flows for Invertible Generative Modeling.*
#   NeurIPS 2019, arXiv:1906.02735 (LipSwish, the unbiased estimator, the toy experiments).
# - L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP.* ICLR 2017 (affine coupling).
# - D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1 Convolutions.* NeurIPS 2018 (ActNorm).
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD.* ICLR 2019 (the toy data sets).
