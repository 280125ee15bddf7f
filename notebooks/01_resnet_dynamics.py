# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · ResNets as dynamics: folding vs bijective
#
# A residual block computes $x_{t+1} = x_t + g_t(x_t)$. Read as one step of a differential equation, a ResNet
# moves points along trajectories, and the question of this notebook is simple: **can those trajectories
# cross?** For a plain ResNet they can, and then the network is not a bijection: it folds space, glues
# different inputs together and cannot be inverted. An *invertible* ResNet (i-ResNet, Behrmann et al., 2019)
# rules this out with one condition on every residual branch, $\mathrm{Lip}(g_t) < 1$ (the paper's Thm. 1).
# We train both kinds of network on the same tasks and *measure* the difference: trajectory crossings and
# folds (points where a layer's Jacobian determinant is $\le 0$).
#
# **What you will learn**
# - a ResNet as the explicit Euler discretisation of an ODE, and why Euler steps can cross where the ODE cannot;
# - how a plain ResNet fits a target that needs a fold, and why an i-ResNet cannot (the paper's Fig. 1, in 1D and 2D);
# - to count crossings and locate folds with $\det(I + J_g) \le 0$, and to check Thm. 1 numerically;
# - what the Lipschitz coefficient $c$ costs: an i-ResNet can squeeze space, but never turn it over.
#
# **Time:** about 40 minutes. In quick mode (CPU) the notebook runs in well under a minute. Its small models were
# trained ahead of time for every setting the widget offers and ship with the course (`dynamics.stack_for`; made by
# `python -m iresnet_mini.lessons.precompute nb01-dynamics`), so moving a slider only redraws; a setting off that grid
# is trained on the spot in a few seconds, and every figure says which it shows.

# %%
import ipywidgets
import torch

from iresnet_mini import course
from iresnet_mini.lessons import widgets
from iresnet_mini.lessons.nb01 import checks, dynamics, figures
from iresnet_mini.lessons.nb02 import invertibility
from iresnet_mini.config import size

course.setup(threads=1)  # the models are tiny: one CPU thread
DEPTH, C = 6, 0.9  # six residual blocks; every layer of an i-ResNet branch has spectral norm <= c = 0.9
L = C ** dynamics.BRANCH_LAYERS  # the bound on Lip(g_t) that c implies for a branch of two layers (section 2)

# %% [markdown]
# ## 1. A ResNet is a discretised ODE
#
# An ordinary differential equation $\frac{dx}{dt} = f(x, t)$ moves every point $x(0)$ along a trajectory. Its
# explicit Euler discretisation with step $h$ is
# $$x_{t+1} = x_t + h\, f(x_t, t),$$
# which is a residual block with branch $g_t = h\, f(\cdot, t)$. A ResNet of depth $T$ is $T$ Euler steps, each with
# its own learned vector field.
#
# For a smooth $f$ the exact flow is a **bijection**: two trajectories that met would have to coincide for all
# time (uniqueness of solutions), so in 1D they can never swap order and in any dimension they can never merge.
# A *finite* Euler step has no such protection. If $f$ changes quickly compared with the step, a point can jump
# over its neighbour: in 1D, the map $F(x) = x + h f(x)$ has slope $F'(x) = 1 + h f'(x)$, which turns negative as
# soon as $h f'(x) < -1$. That is a **fold**: on one side of it $F$ is increasing, on the other decreasing, and
# inputs on both sides land on the same outputs.
#
# Let us see this with one fixed vector field whose Lipschitz constant is 2 (`invertibility.tight_branch`
# builds a small branch $f(x) = -w\,\mathrm{elu}(w x)$ with $w^2 = 2$, so $f'(x) = -2$ for $x > 0$), taking
# Euler steps of growing size $h$ and counting how many pairs of points swap order
# (`dynamics.count_crossings`):

# %%
GRID = size("nb01.grid")  # points per axis of every measurement grid (quick: 41, full: 81)
field = invertibility.tight_branch(1, 2.0, spectral_norm=False)  # f with Lip(f) = 2
x = dynamics.grid_inputs(1, GRID)
with torch.no_grad():
    fx = field(x)
for h in (0.1, 0.25, 0.45, 0.55, 1.0):
    crossings = dynamics.count_crossings(torch.stack([x, x + h * fx]))
    print(f"step h = {h:4.2f}:  Lip(h f) = {2 * h:4.2f}  ->  {crossings:4d} pairs of points swap order")

# %% [markdown]
# As long as the branch $g = h f$ has $\mathrm{Lip}(g) = 2h < 1$ nothing crosses; beyond it, points overtake each
# other. This is the paper's **Thm. 1** in ODE language: a residual block $x + g(x)$ with $\mathrm{Lip}(g) < 1$ is
# invertible, because the step is small compared with how fast the vector field changes. (In 1D it is one line:
# $F'(x) = 1 + g'(x) \ge 1 - \mathrm{Lip}(g) > 0$.) A plain ResNet learns its branches freely and nothing keeps
# $\mathrm{Lip}(g_t)$ below 1; an i-ResNet enforces it with spectral normalisation (notebook 02).
#
# ## 2. Two networks, one architecture, a target that needs a fold
#
# `dynamics.residual_stack` builds $T$ residual blocks with small MLP branches
# (`blocks.mlp_branch`, ReLU activations). With `coeff=None` it is a plain ResNet; with `coeff=c` it is an i-ResNet.
# Everything else, including the initialisation and the training loop (`dynamics.fit`: 600 steps of full-batch Adam on
# the squared error, the learning rate decaying as a cosine, the gradient clipped to norm 1; `dynamics.RECIPE`), is the
# same.
#
# **What $c$ means, here and in every later lesson.** The *Lipschitz coefficient* $c$ bounds the spectral norm of
# each linear layer of a branch: $\|W_i\|_2 \le c$ (spectral normalisation, notebook 02). The activations (ReLU) are
# 1-Lipschitz, and the Lipschitz constant of a composition is at most the product of its parts', so a branch of
# $m$ layers has
# $$\mathrm{Lip}(g_t) \;\le\; \prod_{i=1}^m \|W_i\|_2 \;\le\; c^m =: L.$$
# Our branches here have $m = 2$ layers, so $c = 0.9$ guarantees $\mathrm{Lip}(g_t) \le L = 0.81$; the image
# models of notebooks 05-08 have $m = 3$ ($L = c^3$), the 2D flows of notebook 04 $m = 4$. Every $c$ control in the
# course shows the bound $c^m$ it implies. Thm. 1 needs $L < 1$, which every $c < 1$ gives.
#
# The 1D task maps $x \in [-2, 2]$ to $|x|$. The inputs $x$ and $-x$ must land on the same output, so any network
# that fits it must fold the line. `dynamics.stack_for` gives the model of a setting (the shipped one, trained with
# `dynamics.RECIPE`; `dynamics.trained_stack` trains the same recipe now, in about three seconds):

# %%
models = {coeff: dynamics.stack_for("abs", DEPTH, coeff) for coeff in (None, C)}
plain, iresnet = models[None].stack, models[C].stack
for coeff, model in models.items():
    mse = dynamics.measure(model.stack, "abs", GRID)["mse"]
    print(f"{figures.model_label(coeff):>20}: mean squared error on a uniform grid of [-2, 2]: {mse:.4f}  ({model.label})")
print("(no increasing map gets below 0.229)")

# %% [markdown]
# Below, left: every input's trajectory $x_0, x_1, \dots, x_T$ through the layers, coloured by where it started
# (blue: negative, red: positive), like the paper's Fig. 1. Right: the map $x_0 \mapsto x_T$ of the whole
# network against the target; the shaded band marks where $F'(x) \le 0$.

# %%
fig = figures.plot_dynamics({None: plain, C: iresnet}, "abs", GRID)

# %% [markdown]
# The plain ResNet fits $|x|$, and to do so its trajectories swing wildly and cross again and again: between two
# layers the blue and red bundles pass through each other. The i-ResNet's trajectories never cross. Unable to fold,
# it squeezes: the negative inputs are pressed together into a narrow bundle. Squeezing is allowed (slopes may shrink
# towards 0); turning around is not. The best any *increasing* map can do for this target is to stay flat at
# $t = 2\sqrt{2} - 2 \approx 0.83$ up to $x = t$ and follow the diagonal beyond, with mean squared error $\approx 0.229$,
# and the i-ResNet gets close to it (about 0.24). That optimum is piecewise linear, one kink between a flat part and the
# diagonal, which is why the branches use ReLU: a ReLU unit bends sharply at any scale, while a spectrally normalised
# ELU branch starts almost straight and needs several times as many steps to bend (try it: going further, 1).
#
# **Think!** In 1D, what is the smallest slope a stack of $T$ blocks with $\mathrm{Lip}(g_t) \le L$ can have?
# (That is exercise 1 below.)

# %% [markdown]
# **Think!** The i-ResNet's map is nearly flat on the negative half-line. Is a nearly flat map still invertible, and
# what would inverting it do to a small error in its output?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# It is invertible: every block is strictly increasing ($F_t' \ge 1 - L > 0$), so the whole map is. But its inverse is
# steep where the map is flat: one block's inverse is at most $1/(1-L)$-Lipschitz, a stack of $T$ blocks at most
# $(1-L)^{-T}$, which for $c = 0.9$ ($L = 0.81$) and $T = 6$ is about $2 \times 10^4$ (section 3 prints it). An error
# of $10^{-7}$ in the output can then move the reconstructed input by $2 \times 10^{-3}$, and the closer $L$ gets to 1 the
# worse it gets: squeezing is allowed, but it makes inversion ill-conditioned where it happens.
# </details>

# %% [markdown]
# ## 3. Measuring crossings and folds
#
# Pictures can mislead, so we count:
#
# - **crossings** (1D): the number of pairs $(i, j)$ whose order flips between two consecutive layers,
#   $(x_t^i - x_t^j)(x_{t+1}^i - x_{t+1}^j) < 0$, summed over layers (`dynamics.count_crossings`);
# - **folds**: a layer map $x \mapsto x + g_t(x)$ folds (or turns space over) at $x$ when
#   $\det(I + J_{g_t}(x)) \le 0$. `dynamics.layer_dets` evaluates this determinant at every layer along every
#   input's path, with the exact Jacobian (`logdet.jacobian`, `torch.func`); the **fold fraction** is the share of
#   inputs whose path meets such a point.
#
# Thm. 1 makes a precise prediction for the i-ResNet: every singular value of $I + J_g$ is at least
# $1 - \|J_g\|_2 \ge 1 - L$, so $\det(I + J_{g_t}) \ge (1 - L)^d > 0$ everywhere. Zero folds, zero crossings, and
# the smallest determinant is bounded away from 0:

# %%
for coeff, stack in ((None, plain), (C, iresnet)):
    numbers = dynamics.measure(stack, "abs", GRID)
    print(f"{figures.model_label(coeff):>20}: " + ", ".join(f"{k} = {v:.4g}" for k, v in numbers.items()))
print(f"c = {C}: Lip(g_t) <= L = c^2 = {L:.2f}; Thm. 1 guarantees min det >= (1 - L)^d = {(1 - L) ** 1:.4g} "
      "for the i-ResNet (d = 1)")
print(f"and its inverse is at most (1 - L)^-T = {(1 - L) ** -DEPTH:.2g}-Lipschitz (T = {DEPTH} blocks)")

# %% [markdown]
# ## 4. In 2D: folding the plane
#
# In two dimensions trajectories may pass each other without harm, so "crossing" is no longer the right word;
# what cannot happen to a bijection is a **fold**: a region turned over onto another. The task
# $(x_1, x_2) \mapsto (|x_1|, x_2)$ asks for exactly that: fold the left half-plane onto the right one along the
# line $x_1 = 0$.

# %%
models2d = {coeff: dynamics.stack_for("fold", DEPTH, coeff) for coeff in (None, C)}
plain2d, iresnet2d = models2d[None].stack, models2d[C].stack
print(f"mean squared error on a grid: ResNet {dynamics.measure(plain2d, 'fold', GRID)['mse']:.4f}, "
      f"i-ResNet {dynamics.measure(iresnet2d, 'fold', GRID)['mse']:.4f} ({models2d[C].label})")
fig = figures.plot_dynamics({None: plain2d, C: iresnet2d}, "fold", GRID)

# %% [markdown]
# Left: the image of a square grid under the whole network (the dotted square is the input domain); the vertical
# lines are coloured by their input $x_1$ (blue: left, red: right). Right: $\det J_F(x)$ of the whole network, the product of the layer determinants
# (chain rule), on a symmetric-log colour scale. The ResNet lays the blue lines on top of the red ones: the
# left half-plane is turned over ($\det J_F < 0$, red) and folded onto the right one, with the crease (black
# contour) near $x_1 = 0$. The i-ResNet's $\det J_F$ is positive everywhere; it can only squeeze the left half into
# a thin band.
#
# How does the ResNet get there? The grid after each layer, and where each layer folds:

# %%
fig = figures.plot_grid_through_depth({None: plain2d, C: iresnet2d})

# %%
fig = figures.plot_layer_folds({None: plain2d, C: iresnet2d}, GRID)
for coeff, stack in ((None, plain2d), (C, iresnet2d)):
    numbers = dynamics.measure(stack, "fold", GRID)
    print(f"{figures.model_label(coeff):>20}: " + ", ".join(f"{k} = {v:.4g}" for k, v in numbers.items()))
print(f"Thm. 1 guarantees min det >= (1 - L)^d = {(1 - L) ** 2:.4g} for the i-ResNet (d = 2, L = {L:.2f})")

# %% [markdown]
# Here a single layer of the ResNet does the work: it folds half of the plane along a crease near $x_1 = 0$. (At other
# depths the ResNet's folds can spread: at depth 10, try it in the widget below, every input's path meets one.) None
# of this is available to the i-ResNet: every one of its layers has $\det(I + J_{g_t}) \ge (1 - L)^2$ everywhere.

# %% [markdown]
# **Think!** The plain ResNet folds where some layer has $\det(I + J_g) \le 0$. If every layer had a positive
# determinant everywhere, would the network have to be one-to-one?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# No. A positive Jacobian determinant everywhere makes a map invertible *locally* (around each point), not globally:
# in 2D, $(r, \theta) \mapsto (r, 2\theta)$ on an annulus has a positive determinant and still sends two points to one.
# The i-ResNet's guarantee comes from $\mathrm{Lip}(g) < 1$ (the Banach argument of notebook 02 gives a unique
# preimage of every $y$); $\det(I + J_g) > 0$ is a consequence of it, not its cause.
# </details>

# %% [markdown]
# ## Try it: the Lipschitz coefficient, depth and the task
#
# Every setting here (each task, depth 1-10, each $c$ on the slider and the plain ResNet) has a model trained ahead of
# time with the recipe above, so a move only loads and measures it; tick **no constraint** for the plain ResNet. The
# readout starts with the bound $\mathrm{Lip}(g_t) \le c^2$ that the slider's $c$ implies, gives the certified one of the
# model shown, and ends with where its weights come from (`precomputed` or `trained now`).
#
# - For $c$ near 1 the i-ResNet can squeeze harder (its layer determinants may go down to $(1 - c^2)^d$); for small
#   $c$ it can barely move the points. Does any setting give a crossing or a fold?
# - Switch to the task `reverse` ($x \mapsto -x$): it needs every pair to swap. How many crossings does the ResNet
#   make, and what does the i-ResNet do instead? In 2D, `reflect` ($(x_1, x_2) \mapsto (-x_1, x_2)$) is a bijection,
#   yet no i-ResNet can learn it: why? (Hint: the sign of $\det J_F$.)
# - With depth 1, can the plain ResNet still fit `abs`?

# %%
demo = widgets.interactive_figure(
    figures.draw_dynamics,
    height="440px",
    c=widgets.c_choice([(f"{c:g}", c) for c in dynamics.GRID_C], value=C, layers=dynamics.BRANCH_LAYERS),
    unconstrained=ipywidgets.Checkbox(value=False, description="no constraint (plain ResNet)"),
    depth=widgets.int_slider(DEPTH, 1, 10, description="depth T"),
    task=ipywidgets.Dropdown(options=["abs", "reverse", "fold", "reflect"], value="abs", description="task"),
)
demo

# %% [markdown]
# <details><summary>Answers</summary>
#
# - No: with the constraint, crossings and the fold fraction stay 0 for every $c$, depth and task. In 1D each block has
#   $F_t'(x) \ge 1 - c^2 > 0$; in 2D $\det(I + J_{g_t}) \ge (1 - c^2)^2 > 0$ (Thm. 1), since each of a branch's two
#   layers has norm at most $c$ and so $\mathrm{Lip}(g_t) \le c^2$.
# - `reverse` needs every pair of points to swap, so the ResNet's trajectories cross for every pair of grid points at
#   least once. An increasing map cannot follow a decreasing target: its best fit is the constant $0$, with mean squared
#   error $\mathbb{E}[x^2] = 4/3$ for $x$ uniform on $[-2, 2]$, and the i-ResNet squeezes towards it.
# - `reflect` is a bijection, but it turns the plane over: $\det J = -1 < 0$. An i-ResNet's $\det J_F$ is a product of
#   positive factors $\det(I + J_{g_t})$, so it preserves orientation: it cannot turn the plane over, and its best move
#   is to squeeze the plane almost flat (onto a bent curve, for $c = 0.9$), with an error far above the ResNet's.
# - Yes, coarsely: one unconstrained block can fold, since $x + g(x) = |x|$ only needs $g(x) = -2x$ for $x < 0$, a slope
#   of $-2$, which nothing forbids without the constraint ($\mathrm{Lip}(g) = 2 > 1$).
# </details>

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: how flat can an i-ResNet get?
# A 1D i-ResNet has $T = 8$ blocks with $\mathrm{Lip}(g_t) \le L = 0.5$. What is the smallest slope $F'(x)$ the whole
# network can possibly have? (Hint: the chain rule, and $F_t'(x) = 1 + g_t'(x)$.)

# %% tags=["exercise"]
answer = None  # your number here
checks.check_min_slope(answer, lipschitz=0.5, depth=8)

# %% [markdown] tags=["solution"]
# **Solution.** Each block has $F_t'(x) = 1 + g_t'(x) \ge 1 - L = 0.5$, and the chain rule multiplies the slopes of the 8 blocks:
# $F'(x) \ge 0.5^8 \approx 0.0039$. The slope can become small (the network squeezes) but stays positive, so the
# map is increasing: no crossing is possible.

# %% tags=["solution"]
answer = (1 - 0.5) ** 8
checks.check_min_slope(answer, lipschitz=0.5, depth=8)


# %% [markdown]
# ### Exercise 2: count the crossings yourself
# Write `count_flips(before, after)`: given the 1D states of $n$ points before and after one layer (two tensors of
# shape `(n,)`), return how many unordered pairs swap their order. Then compare with `dynamics.count_crossings`
# on the trained ResNet's first layer.

# %% tags=["exercise"]
def count_flips(before, after):
    ...  # your code here: return the number of pairs whose order flips


checks.check_crossing_counter(count_flips)


# %% [markdown] tags=["solution"]
# **Solution.** All pairwise differences at once with broadcasting; a pair flips when its differences before and after have
# opposite signs; every unordered pair appears twice in the $n \times n$ matrix.

# %% tags=["solution"]
def count_flips(before, after):
    d_before = before[:, None] - before[None, :]
    d_after = after[:, None] - after[None, :]
    return int((d_before * d_after < 0).sum()) // 2


checks.check_crossing_counter(count_flips)
states = dynamics.trajectory(plain, dynamics.grid_inputs(1, GRID))[..., 0]
print(count_flips(states[0], states[1]), dynamics.count_crossings(states[:2]))

# %% [markdown]
# ## Going further
#
# Open problems, without a check: write your own code in new cells.
#
# 1. **Smooth activations.** Build the i-ResNet with `dynamics.residual_stack(1, DEPTH, coeff=C, activation="elu")`
#    and with Residual Flows' LipSwish, $x\,\sigma(\beta x)/1.1$ (`activation="lipswish"`), train each with `dynamics.fit`
#    for 600 steps and compare their errors on `abs` with the ReLU network's (about 0.24) and with the best any
#    increasing map can do ($\approx 0.229$). How many steps does the ELU network need to catch up?
# 2. **The paper's own Fig. 1 task.** Read the caption of the paper's Fig. 1 (which targets, at which depth) and
#    reproduce it: a loss on `dynamics.trajectory`'s states rather than on the output alone.
# 3. **What happens at $c = 1$?** `residual_stack` refuses `coeff=1`. Find a branch with $\mathrm{Lip}(g) = 1$ whose
#    block $x + g(x)$ is not invertible (try $g(x) = -x$), and one whose block still is ($g(x) = x$). Which step of
#    the argument for Thm. 1 needs $\mathrm{Lip}(g) < 1$ strictly?

# %% [markdown]
# ## Summary
#
# - A ResNet is a sequence of explicit Euler steps $x_{t+1} = x_t + g_t(x_t)$. The ODE it discretises has
#   non-crossing trajectories; the discrete steps do not, once a branch changes faster than the step allows.
# - A plain ResNet uses this freedom: to fit $|x|$ or fold the plane, its trajectories cross (thousands of
#   order flips in 1D) and its layers fold ($\det(I + J_g) \le 0$ on a large share of the inputs).
# - With every layer's norm at most $c$, a branch of $m$ layers has $\mathrm{Lip}(g_t) \le L = c^m < 1$ (Thm. 1), and
#   every block has $\det(I + J_{g_t}) \ge (1 - L)^d > 0$: zero crossings
#   and zero folds, measured, for every $c$ we tried. The price: an i-ResNet cannot fit a target that needs a fold;
#   it squeezes instead.
# - Next (notebook 02): how to enforce $\mathrm{Lip}(g) < 1$ with spectral normalisation, and how to invert a block
#   by fixed-point iteration.
#
# ## References
#
# - J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual Networks.*
#   ICML 2019 (arXiv:1811.00995): Fig. 1, Thm. 1.
# - E. Haber, L. Ruthotto. *Stable architectures for deep neural networks.* Inverse Problems 34, 2018
#   (ResNets as discretised ODEs).
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations.* NeurIPS 2018.
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs.* NeurIPS 2019 (what flows cannot represent).
