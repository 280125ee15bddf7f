# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Classifying MNIST with an invertible ResNet (paper Table 2 and Fig. 3)
#
# An i-ResNet classifier is an ordinary ResNet whose residual branches are kept contractive,
# $\mathrm{Lip}(g) < 1$, by spectral normalisation with a coefficient $c$ (notebook 02). Its whole feature
# extractor is then a bijection: every test image can be recovered from its features. The paper's claim
# (Sec. 4, Table 2) is that this costs almost no accuracy. This notebook checks the claim on MNIST.
#
# **What you will learn**
# - how an i-ResNet classifier is built: squeeze, injective zero padding, invertible stages, a small head;
# - the paper's Table 2 for MNIST (i-ResNets for several $c$ against the same network without the constraint,
#   "vanilla") beside our own short runs, and how to read the difference;
# - how to invert a trained classifier's features with the fixed-point iteration (Alg. 1), and why the
#   vanilla network gives no such guarantee (paper Fig. 3);
# - how to certify a trained network: every layer's operator norm against $c$ and the bound on $\mathrm{Lip}(g)$;
# - where the shipped checkpoints come from, how they are verified, and how to train your own.
#
# **Time:** about 40 minutes. The notebook loads the shipped checkpoints (or your own finished runs) and runs in
# under a minute on a CPU; it trains the six classifiers itself only if you set `TRAIN_HERE = True` in section 2.

# %%
import math
from functools import partial
from pathlib import Path

import torch
from IPython.display import Markdown, display

from iresnet_mini import blocks, config, course, facts, models, pretrained
from iresnet_mini.lessons import widgets
from iresnet_mini.lessons.nb05 import checks, classification, figures
from iresnet_mini.config import size

device = course.setup()
DATASET = "mnist"
NAMES = classification.checkpoints_for(DATASET)  # label ("c=0.9", "vanilla") -> checkpoint name
x_test, y_test = classification.test_batch(DATASET, size("nb05.test_images"), device)
print(f"classifiers: {', '.join(NAMES)}; re-evaluated on the first {len(y_test)} test images")

# %% [markdown]
# ## 1. An i-ResNet classifier: invertible features, then a small head
#
# The classifier (`models.IResNetClassifier`, the layout of the official code) maps an image to features with
# invertible pieces only, and then to class scores with a head that need not be invertible:
#
# 1. **Squeeze** (space-to-depth): $(C, H, W) \to (4C, H/2, W/2)$, a permutation of the pixels.
# 2. **Injective zero padding**: append zero channels (the paper pads CIFAR-10's 3 channels to 16). The map
#    $x \mapsto (x, 0)$ is injective and its inverse just drops the zeros; the extra channels give the
#    residual blocks room to work in, since a bijection cannot change the number of dimensions.
# 3. **Stages of steps** $[\text{squeeze}] \to \text{ActNorm} \to F(x) = x + g(x)$ with
#    $g = W_3 \circ \phi \circ W_2 \circ \phi \circ W_1$ (3x3, 1x1, 3x3 convolutions, $\phi$ = ELU), each
#    convolution spectrally normalised: $W \leftarrow W / \max(1, \hat\sigma / c)$. ActNorm is affine with a
#    closed-form inverse; the blocks are inverted by fixed-point iteration (Alg. 1).
# 4. **Head**: BatchNorm $\to$ ReLU $\to$ global average pooling $\to$ linear layer: class scores.
#
# Our `cpu` preset squeezes first, pads to 16 channels and has 2 stages of 2 and 4 blocks (widths 32 and 64):
# the parameter count printed below, small enough to train on a laptop CPU in minutes. The paper's models are far
# larger (notebook 06 builds its CIFAR-10 classifier).

# %%
model, train_config, entry = pretrained.load_pretrained("mnist-c0.9", device)
features = model.features(x_test[:4])
print(model.config)
print(f"{models.count_parameters(model):,} parameters; features of one 1x28x28 image: {tuple(features.shape[1:])} "
      f"= {math.prod(features.shape[1:])} numbers (784 pixels, the rest is zero padding reshaped by squeezes)")

# %% [markdown]
# ## 2. The classifiers: shipped checkpoints, or trained here
#
# Training six classifiers takes GPU time, so the repository ships small ones in `data/pretrained/`, with
# `manifest.json` recording for each the exact command that made it (`python -m iresnet_mini.train ...`), its
# sha256 and its test figures. `pretrained.load_pretrained(name)` hashes the file and compares it with the
# manifest *before* unpickling anything, then loads tensors only (`torch.load(weights_only=True)`).
#
# `pretrained.load_or_train(name, train_now, **recipe)` decides what you see: a *finished* run of the recipe in
# `runs/` if there is one; else, if `train_now` is set, it trains the recipe here (printing the expected time and the
# equivalent command first, with a progress bar, resuming an interrupted run); else the shipped file, saying so. The
# recipe is the shipped one with the changes in `size("nb05.recipe")` (full mode: all 60,000 images, 15 epochs).
# Nothing trains unless you set `TRAIN_HERE = True` below.
#
# The shipped models are *short CPU runs* of the `cpu` preset: two passes over the 60,000 training images; the cell
# prints each one's steps and training minutes from the manifest, and what the paper's runs were (`facts.NOTES`).

# %%
TRAIN_HERE = False  # True: train the six classifiers of RECIPE in this notebook (full mode: about an hour on a GPU)
RECIPE = size("nb05.recipe")  # changes to the shipped recipes
RUNS = Path("runs") / f"nb05-{config.get_mode()}"  # where runs trained in this notebook go
loaded = {label: pretrained.load_or_train(name, train_now=TRAIN_HERE, run_dir=RUNS / name, device=device, **RECIPE)
          for label, name in NAMES.items()}
for label, (_, _, info) in loaded.items():
    m = info["metrics"]
    print(f"{label:8s} ({info['source']}) test error {m['test_error_percent']:.2f}% on {m['test_images']:,} images, "
          f"{m['epochs']} epoch(s), {m['steps']:,} steps in {m['train_seconds'] / 60:.1f} min\n    {info['command']}")
print(facts.NOTES["short_runs"])
if any("not_trained" in info for _, _, info in loaded.values()):
    print(f"These are the shipped checkpoints, not the recipe asked for ({RECIPE}): TRAIN_HERE = True trains it.")

# %% [markdown]
# ## 3. Table 2: does the constraint cost accuracy?
#
# The paper's Table 2 (stored once, in `facts.TABLE2`; its column in the table below) reports MNIST test errors
# that hardly differ between the vanilla network and every $c$ from 0.9 down to 0.6, and about twice as large for
# $c = 0.5$: a strong constraint starts to hurt. Below, our figures: the error on the whole test set (from the manifest, or from the run in full
# mode) and a re-evaluation on the first test images here. `classification.examine` also *certifies* each model
# first (section 5), inverts a few test images (section 4) and measures every layer's norm.
#
# Compare trends, not absolute values: our models trained for the epochs printed above, the paper's for far longer.

# %%
RESULTS = {label: classification.examine(model, DATASET, x_test, y_test, norm_iterations=size("nb05.norm_iterations"))
           for label, (model, _, _) in loaded.items()}
rows = classification.table2_rows(list(RESULTS.values()), {label: info["metrics"] for label, (_, _, info) in loaded.items()})
display(Markdown(classification.markdown_table(rows)))
figures.plot_table2(rows, DATASET);

# %% [markdown]
# **Reading the table.** Three things to check in your run:
# - the i-ResNets' errors against the vanilla network's: the price of invertibility;
# - the trend with $c$: a smaller $c$ is a stronger constraint; with $c = 0.5$ each branch satisfies
#   $\mathrm{Lip}(g) \le 0.125$ and the blocks are close to the identity;
# - the last columns: every i-ResNet reconstructs its inputs and no layer exceeds its $c$; the vanilla network
#   has no such guarantee.
#
# **What the shipped checkpoints show** (the table's column for the whole test set). After two epochs the i-ResNets
# with $c$ = 0.9, 0.8 and 0.7 are within a few hundredths of a point of each other, and the error grows a little for
# $c$ = 0.6 and 0.5: the trend of Table 2, at a higher error level after a small fraction of its training. A plausible reading of the
# trend (not a proof): an i-ResNet block stretches distances by at most $1 + \mathrm{Lip}(g) \le 1 + c^3$, so a small
# $c$ leaves each block only small moves to pull the classes apart. The vanilla network trails here; it was trained
# with the same recipe, whose high learning rate was chosen for the i-ResNets (`train.TRAIN_PRESETS`), so read this
# as "the constraint costs nothing here", not as "the constraint helps". Full mode (15 epochs) shows the longer run.

# %% [markdown]
# **Think!** Limiting every layer to a norm of $c = 0.5$ costs little accuracy on MNIST. How can a network whose every
# block is a mild perturbation of the identity still classify well?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# Mild changes compound over many blocks, and the head (BatchNorm, ReLU, pooling, a linear layer) is not constrained at
# all: it can stretch whatever small differences the blocks create between classes. Classification needs the classes
# to end up in different places, not a large Lipschitz constant; the constraint limits how fast the features may move,
# not where they may go.
# </details>

# %% [markdown]
# ## 4. Fig. 3: images from their features
#
# Given features $z$, the classifier is inverted block by block from the last: squeeze and ActNorm have closed-form
# inverses, the padding is dropped, and each residual block $y = x + g(x)$ is solved by the fixed-point iteration of
# Alg. 1,
# $$x_0 = y, \qquad x_{k+1} = y - g(x_k),$$
# which by Banach's theorem converges geometrically when $L = \mathrm{Lip}(g) < 1$:
# $\|x - x_k\| \le \frac{L^k}{1 - L}\,\|x_1 - x_0\|$. For the vanilla network nothing bounds $L$: the iteration may
# converge, wander, or blow up. The paper's Fig. 3 shows this on **CIFAR-10** (notebook 06): there the
# reconstructions of a fully trained vanilla network fail. Nothing decides in advance what happens on MNIST: whether a
# vanilla network's inverse converges depends on what training made of its branches, which the figure below measures.

# %%
figures.plot_reconstructions([RESULTS["c=0.9"], RESULTS["c=0.5"], RESULTS["vanilla"]]);
for label in ("c=0.9", "c=0.5", "vanilla"):
    r = RESULTS[label]
    print(f"{label:8s} max pixel error {r['max_pixel_error']:.1e}, converged: {r['converged']}, "
          f"iterations per block (last block first): {r['iterations']}")

# %% [markdown]
# A smaller $c$ needs fewer iterations per block: the contraction factor is smaller. Whether the vanilla
# network's inverse fails depends on how far training has pushed its branches beyond $\mathrm{Lip}(g) = 1$; the next
# section measures exactly that.

# %% [markdown]
# **Think!** The i-ResNet's features keep every bit of the image: it is invertible. Doesn't a good classifier have to
# throw information away?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# It does, but only at the very end: the non-invertible head (global average pooling and the linear layer) discards
# everything but the class scores. Up to the head nothing is lost, which is what makes Fig. 3 possible, and Table 2
# shows that keeping the information until then costs little. (Whether invertible features are useful beyond
# classification, e.g. for detecting unusual inputs, is a question the paper raises.)
# </details>

# %% [markdown]
# ## 5. The certificate: every layer's norm against $c$
#
# Spectral normalisation divides each weight by a power-iteration *estimate* $\hat\sigma$, updated by one step per
# training step; the estimate lags the weights and is a lower bound, so after training a layer's true norm can
# exceed $c$ (a pitfall users of the official code met: invertibility silently lost). The remedy is to
# **certify** after training: run each layer's power iteration to a tolerance (on the convolution *operator*, not
# the reshaped kernel) and use that $\hat\sigma$. With 1-Lipschitz activations,
# $$\mathrm{Lip}(g) \le \|W_1\|\,\|W_2\|\,\|W_3\|,$$
# so three layers at $c = 0.9$ give $\mathrm{Lip}(g) \le 0.729$. For the vanilla layers we run power iteration
# from a random start: a lower bound of each norm, so a value above 1 *proves* that a layer expands.

# %%
figures.plot_layer_norms(RESULTS["c=0.9"]);
figures.plot_layer_norms(RESULTS["vanilla"]);
cert = loaded["c=0.9"][2]["metrics"]["certificate"]
print("true operator norms of three layers of the c=0.9 model (power iteration on the whole operator):",
      [round(t["operator_norm"], 4) for t in cert["true_norms"]])

# %% [markdown]
# ## 6. Try it: pick $c$
#
# The slider runs over the trained classifiers. For each you see reconstructions of six test images (with the
# maximal pixel error above each) and every layer's norm; the readout gives the test accuracy and the certificate.
#
# - Move from $c = 0.5$ to vanilla. Where does the accuracy change most?
# - Why do the i-ResNets' layer norms sit exactly *at* $c$ rather than below it?
# - How large is the vanilla network's largest branch bound? Is its inverse still guaranteed?

# %%
widgets.interactive_figure(partial(figures.draw_classifier, results=RESULTS), height="470px",
                           c=widgets.c_choice([(label.removeprefix("c="), label) for label in RESULTS], value="c=0.9",
                                              layers=blocks.CONV_BRANCH_LAYERS))

# %% [markdown]
# <details><summary>Answers</summary>
#
# - The readout's accuracy is measured on the few test images examined here, too few to separate models whose errors
#   differ by tenths of a point: in quick mode they may all agree. The table's column for the whole test set shows
#   the difference: the smallest $c$ is where the error grows first, and the vanilla network, trained with the
#   i-ResNets' learning rate for the same two epochs, is not better than them.
# - Nothing in training keeps the weights small, so they grow and every layer's estimate exceeds $c$; the normalisation
#   then divides by $\hat\sigma / c$ exactly, and the normalised layer sits *at* $c$ (the certificate, section 5).
# - The vanilla network's branch bound is the product of three unconstrained norms, far above 1 (the figure's bars):
#   nothing guarantees its inverse. It may still converge when the branches are gentle where the data are, but that is
#   luck, not a certificate.
# </details>

# %% [markdown]
# ## 7. Train your own, and read its log
#
# `load_or_train(..., train_now=True)` runs the command-line trainer's code in this kernel. A run directory holds
# `config.json`, `metrics.jsonl` (one record per epoch), `checkpoint.pt` and `summary.json` (final test figures
# and the certificate). In a terminal the same run is the printed command.
#
# This trains two small classifiers here, $c = 0.9$ and vanilla (`size("nb05.own_recipe")`): in quick mode the
# *tiny* preset (two blocks, 4 epochs on 2,048 images, a few seconds each), in full mode one epoch of the `cpu`
# preset on all 60,000 images (the cell prints the time it estimates before it trains). Run again, it loads them.

# %%
OWN = size("nb05.own_recipe")
own = {label: pretrained.load_or_train(NAMES[label], train_now=True, run_dir=RUNS / f"own-{NAMES[label]}",
                                       device=device, **OWN)
       for label in ("c=0.9", "vanilla")}
for label, (_, _, info) in own.items():
    print(f"{label}: {info['command']}")
figures.plot_training_curves({label: info["history"] for label, (_, _, info) in own.items()});

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (the guarantee of one block).** Every convolution of a branch has operator norm at most $c = 0.9$,
# and ELU is 1-Lipschitz. Give the best bound on $\mathrm{Lip}(g)$ that follows, and the bound on the Lipschitz
# constant of the block's inverse $F^{-1}$ (notebook 02: $\mathrm{Lip}(F^{-1}) \le 1 / (1 - \mathrm{Lip}(g))$).

# %% tags=["exercise"]
lip_g = None        # bound on Lip(g)
lip_inverse = None  # bound on Lip(F^-1) of one block
checks.check_branch_bound(lip_g, lip_inverse, coeff=0.9)

# %% [markdown] tags=["solution"]
# **Solution.** A composition's Lipschitz constant is at most the product of its parts': $\mathrm{Lip}(g) \le 0.9 \cdot 1 \cdot 0.9
# \cdot 1 \cdot 0.9 = 0.729$, so $\mathrm{Lip}(F^{-1}) \le 1 / (1 - 0.729) \approx 3.69$. The per-layer $c$ of Table 2
# is a looser knob than it looks: each branch is guaranteed to contract by $c^3$.

# %% tags=["solution"]
lip_g = 0.9 ** 3
lip_inverse = 1 / (1 - lip_g)
checks.check_branch_bound(lip_g, lip_inverse, coeff=0.9)

# %% [markdown]
# **Exercise 2 (Alg. 1 on a trained block).** `y_last` holds the features of four test images: the output of the
# c = 0.9 classifier's last block $F(x) = x + g(x)$ (`block.branch` is $g$). Recover that block's input with the
# fixed-point iteration, starting from $x_0 = y$, inside `torch.no_grad()`.

# %% tags=["exercise"]
model_09 = loaded["c=0.9"][0]
block = model_09.steps[-1].block
with torch.no_grad():
    y_last = model_09.features(x_test[:4])
x_last = None  # your fixed-point iteration
checks.check_block_inverse(block, y_last, x_last)

# %% tags=["solution"]
with torch.no_grad():
    x_last = y_last.clone()
    for _ in range(100):
        x_last = y_last - block.branch(x_last)
checks.check_block_inverse(block, y_last, x_last)

# %% [markdown] tags=["solution"]
# **Solution.** With $\mathrm{Lip}(g) \le 0.729$ the error shrinks at least by that factor per step, so 100 steps are far
# more than float32 precision needs (section 4 printed how many iterations each block's inverse took).
# `block.inverse(y_last)` does the same with a stopping rule.

# %% [markdown]
# ## Going further
#
# Open problems, without a check: write your own code in new cells.
#
# 1. **LipSwish.** Train the tiny classifier with `train.train(train.make_config("classify", "mnist", "tiny",
#    model={"activation": "lipswish"}), "runs/lipswish")` and compare with the ELU one trained alike.
# 2. **A fair vanilla baseline.** The shipped vanilla network used the i-ResNets' learning rate. Train it with
#    `--lr 2e-3` as well: does it overtake the i-ResNets, and by how much?
# 3. **At $c = 1$.** The trainer refuses `--coeff 1`. If every layer sat exactly at norm 1, what would the certificate
#    report, and what would the reconstructions be able to promise?

# %% [markdown]
# ## Summary
#
# - An i-ResNet classifier is a bijective feature extractor (squeeze, injective padding, ActNorm, residual blocks with
#   $\mathrm{Lip}(g) < 1$) followed by an ordinary head.
# - The paper's Table 2: on MNIST the constraint costs nothing measurable down to $c = 0.6$; $c = 0.5$ doubles the
#   error. Two-epoch CPU runs show the same trend: $c$ from 0.9 to 0.7 alike, a little worse
#   below.
# - Every i-ResNet reconstructs its inputs from its features to float precision (Fig. 3): the fixed-point
#   iteration converges geometrically, faster for smaller $c$. The vanilla network comes with no such guarantee.
# - Certify after training: power iteration to tolerance on the convolution operator, norms against $c$, and the
#   product bound on $\mathrm{Lip}(g)$.
# - Shipped checkpoints are verified by sha256 before loading; `load_or_train` trains the same recipe when you want
#   your own.
#
# ## References
#
# - J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual Networks.* ICML 2019,
#   arXiv:1811.00995: Sec. 4, Table 2, Fig. 3, Alg. 1.
# - Official code: github.com/jhjacobsen/invertible-resnet (the classifier layout used here).
# - R. T. Q. Chen, J. Behrmann, D. Duvenaud, J.-H. Jacobsen. *Residual Flows for Invertible Generative Modeling.*
#   NeurIPS 2019, arXiv:1906.02735.
# - Y. LeCun, C. Cortes, C. Burges. The MNIST database of handwritten digits.
