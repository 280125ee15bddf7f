# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Making a ResNet invertible
#
# Notebook 01 showed that a residual block $F(x) = x + g(x)$ with $\mathrm{Lip}(g) < 1$ cannot fold. This notebook
# turns that condition into an algorithm: how to *invert* such a block (the paper's Alg. 1, a fixed-point
# iteration), why it converges (Banach's fixed-point theorem), how to *enforce* $\mathrm{Lip}(g) < 1$ during
# training (spectral normalisation by power iteration), and what goes wrong when any of this is done carelessly.
# Every claim is checked numerically.
#
# **What you will learn**
# - Thm. 1 and Banach's fixed-point theorem in plain words, and Alg. 1 step by step;
# - spectral normalisation: the power-iteration estimate $\hat\sigma$, why it approaches $\|W\|_2$ from below, and what
#   a lagging estimate does to the guarantee;
# - why the norm of a convolution is *not* the norm of its reshaped kernel (what `torch`'s `spectral_norm` bounds);
# - how fast the inverse converges, against Banach's bound $L^k/(1-L)\,\|x_1 - x_0\|$, and how Anderson acceleration helps;
# - the bi-Lipschitz bounds $\mathrm{Lip}(F) \le 1 + L$ and $\mathrm{Lip}(F^{-1}) \le 1/(1 - L)$.
#
# **Time:** about 55 minutes (with the implement-it-yourself exercises). In quick mode (CPU) the notebook runs in well
# under a minute.

# %%
import math

import torch

from iresnet_mini import blocks, course, lipschitz
from iresnet_mini.lessons import widgets
from iresnet_mini.lessons.nb02 import checks, figures, invertibility
from iresnet_mini.config import size

course.setup(threads=1)  # every computation here is small: one CPU thread
DIM, N_POINTS = 8, size("nb02.n_points")  # a block on R^8, studied at N_POINTS inputs
N_POWER, N_INVERSE = size("nb02.power_iters"), size("nb02.inverse_iters")
x = 0.5 * torch.randn(N_POINTS, DIM, dtype=torch.float64)
print(f"{N_POINTS} points in R^{DIM}; {N_POWER} power-iteration steps, {N_INVERSE} inverse iterations traced")

# %% [markdown]
# ## 1. Thm. 1 and Banach's fixed-point theorem, in plain words
#
# To invert $y = F(x) = x + g(x)$ we must solve for $x$. Rewrite the equation as
# $$x = y - g(x) =: T(x),$$
# so the $x$ we want is a **fixed point** of the map $T$. If $\mathrm{Lip}(g) = L < 1$, then $T$ is a
# *contraction*: $\|T(a) - T(b)\| = \|g(a) - g(b)\| \le L\,\|a - b\|$, it pulls any two points closer together.
# Banach's fixed-point theorem then says three things:
#
# 1. $T$ has **exactly one** fixed point. So every $y$ has exactly one preimage: $F$ is a bijection (**Thm. 1**).
# 2. The iteration $x_{k+1} = T(x_k)$ reaches it **from any start**, for instance $x_0 = y$.
# 3. It does so **geometrically fast**: each step multiplies the distance to the solution by at most $L$, and
#    summing the geometric series gives the a-priori bound
#    $$\|x - x_k\| \;\le\; \frac{L^k}{1 - L}\,\|x_1 - x_0\|.$$
#
# That iteration is the paper's **Alg. 1**:
#
# ```
# x_0 = y
# repeat: x_{k+1} = y - g(x_k)      # until ||x_{k+1} - x_k|| is small, or for a fixed number of steps
# ```
#
# The package's `InvertibleResidualBlock.inverse` runs it to a tolerance and reports how it went. Here is a block
# whose branch has $\mathrm{Lip}(g) = 0.9$ exactly (section 4 explains the branch):

# %%
block = blocks.InvertibleResidualBlock(invertibility.tight_branch(DIM, 0.9, spectral_norm=False))
with torch.no_grad():
    y = block(x)
x_rec, info = block.inverse(y, max_iter=500, atol=1e-10, return_info=True)
print(f"Alg. 1: {info.iterations} iterations, residual max|y - F(x_k)| = {info.residual:.1e}, "
      f"converged: {info.converged}")
print(f"reconstruction error max|x_k - x| = {float((x_rec - x).abs().max()):.1e}")

# %% [markdown]
# ### Alg. 1 step by step, in 1D
#
# In one dimension we can draw the iteration as a *cobweb*: from $x_k$ go up to the curve $T(x_k)$, then across to
# the diagonal to get $x_{k+1} = T(x_k)$. The fixed point is where $T$ meets the diagonal. Left, a branch with
# $\mathrm{Lip}(g) = 0.7$: the cobweb spirals in. Right, the same branch with $\mathrm{Lip}(g) = 1.5$: $F$ is still
# increasing here (so still invertible!), but $T$ now *expands* distances near the fixed point and the iterates
# spiral outwards into an endless oscillation. $\mathrm{Lip}(g) < 1$ is what makes the *algorithm* work.

# %%
fig, axes = figures.subplots(1, 2, width=4.6, height=4.6)
x_star = torch.tensor([[0.5]], dtype=torch.float64)  # the preimage we are looking for
for ax, L in zip(axes, (0.7, 1.5)):
    g1 = invertibility.tight_branch(1, L, spectral_norm=False, sign=1)
    with torch.no_grad():
        y1 = float(x_star + g1(x_star))
    path = figures.plot_cobweb(ax, g1, y1, 12, f"Lip(g) = {L}: " + ("converges" if L < 1 else "oscillates"))
    print(f"Lip(g) = {L}: iterates " + ", ".join(f"{p:.3f}" for p in path[:7]) + ", ...  (x* = 0.5)")

# %% [markdown]
# ## 2. Enforcing $\mathrm{Lip}(g) < 1$: spectral normalisation by power iteration
#
# A branch $g = W_3 \circ \phi \circ W_2 \circ \phi \circ W_1$ with 1-Lipschitz activations $\phi$ (ELU, ReLU, ...) has
# $\mathrm{Lip}(g) \le \prod_i \|W_i\|_2$, the product of the layers' spectral norms (largest singular values). The
# i-ResNet rescales each weight after every update,
# $$W \leftarrow \frac{W}{\max(1,\ \hat\sigma / c)},$$
# so that its norm is at most $c$, where $\hat\sigma$ estimates $\|W\|_2$ by **power iteration**: starting from a random
# unit vector $u$, repeat
# $$v \leftarrow \frac{W^\top u}{\|W^\top u\|}, \qquad u \leftarrow \frac{W v}{\|W v\|}, \qquad \hat\sigma = u^\top W v = \|W v\|$$
# (the order the package uses). This $c$ is the **Lipschitz coefficient** of notebook 01: a bound on each layer's
# norm, so a branch of $m$ layers has $\mathrm{Lip}(g) \le c^m = L$ once every estimate is exact. Two facts matter. First, $\hat\sigma = \|W v\| \le \|W\|_2$ for any unit $v$: the
# estimate is a **lower bound** and approaches the truth from below, at a rate set by the gap between the two largest singular values. Second, in
# training only one step is taken per weight update (the vectors $u, v$ persist between steps), so the estimate
# can lag behind the weights.
#
# The package's layers (`lipschitz.LipschitzLinear`, `lipschitz.LipschitzConv2d`) do exactly this.
# `invertibility.power_iteration_trace` restarts a layer's power iteration and records $\hat\sigma$ after each step,
# next to the true norm from `lipschitz.operator_norm`:

# %%
dense = lipschitz.LipschitzLinear(64, 64, coeff=0.9).double()
conv = lipschitz.LipschitzConv2d(16, 16, 3, coeff=0.9).double()
traces = {
    "dense 64x64": invertibility.power_iteration_trace(dense, (64,), N_POWER),
    "3x3 conv on 16x8x8": invertibility.power_iteration_trace(conv, (16, 8, 8), N_POWER),
}
for name, (estimates, true) in traces.items():
    print(f"{name}: true norm {true:.4f}; sigma_hat after 0, 1, 5 steps: "
          f"{estimates[0]:.4f}, {estimates[1]:.4f}, {estimates[5]:.4f}")
fig = figures.plot_power_iteration(traces)

# %% [markdown]
# An underestimate is not harmless. If $\hat\sigma < \|W\|_2$, the layer is divided by too little and its true norm
# ends up at $c\,\|W\|_2/\hat\sigma > c$. The product over layers can then exceed 1 and the guarantee is gone. This is
# the pitfall users of the official code ran into (invertibility silently lost after training, "use more power
# iterations"). The branch of section 1 with both of its layers normalised to $c = \sqrt{0.9} \approx 0.95$ (so that
# $\mathrm{Lip}(g) \le c^2 = 0.9$ if $\hat\sigma$ were exact), after $n$ power-iteration steps from a fresh start:

# %%
for n in (0, 1, 2, 3, 5, 10, 30):
    branch = invertibility.tight_branch(DIM, 0.9, n_power_iterations=n)
    branch.train()
    with torch.no_grad():
        branch(x)  # one training-mode forward pass runs n power-iteration steps per layer
    true_lip = invertibility.lipschitz_upper_bound(branch, (DIM,))
    print(f"n = {n:2d}: true Lip(g) = {true_lip:.3f}" + ("   > 1: Thm. 1 no longer applies" if true_lip > 1 else ""))

# %% [markdown]
# The remedy is cheap: before trusting a trained model, run the power iteration to convergence
# (`lipschitz.certify`) and compare the certified norms with $c$.

# %% [markdown]
# ### Implement it yourself: power iteration and spectral normalisation
#
# Write the power iteration for a dense matrix $W$: from the unit vector `u`, take `n_steps` steps
# $v \leftarrow W^\top u / \|W^\top u\|$, $u \leftarrow W v / \|W v\|$, and return $\hat\sigma = u^\top W v$.
# `checks.check_power_iteration` runs yours and the package's on the same $W$ and start, after 1, 3 and 30 steps.

# %% tags=["exercise"]
def power_iteration(W, u, n_steps):
    ...  # your code: n_steps steps from the unit vector u, then return sigma_hat


checks.check_power_iteration(power_iteration)


# %% [markdown] tags=["solution"]
# **Solution.** Two matrix-vector products and two normalisations per step, the estimate at the end.

# %% tags=["solution"]
def power_iteration(W, u, n_steps):
    for _ in range(n_steps):
        v = W.T @ u
        v = v / v.norm()
        u = W @ v
        u = u / u.norm()
    return float(u @ (W @ v))


checks.check_power_iteration(power_iteration)


# %% [markdown]
# Then the rescaling with coefficient $c$: given $W$ and its estimate $\hat\sigma$, return $W / \max(1, \hat\sigma / c)$.

# %% tags=["exercise"]
def normalise(W, sigma_hat, c):
    ...  # your code: the rescaled weight


checks.check_spectral_normalisation(normalise)


# %% [markdown] tags=["solution"]
# **Solution.** Divide by $\hat\sigma / c$ only when it exceeds 1: dividing always would *inflate* a weight whose norm
# is already below $c$ up to $c$, changing what the network computes for no reason.

# %% tags=["solution"]
def normalise(W, sigma_hat, c):
    return W / max(1.0, sigma_hat / c)


checks.check_spectral_normalisation(normalise)

# %% [markdown]
# The package's layers do exactly this, in a few lines that `LipschitzLinear` and `LipschitzConv2d` share (for a
# convolution, $W$ and $W^\top$ are `conv2d` and `conv_transpose2d` on an input-shaped vector):

# %%
import inspect

print(inspect.getsource(lipschitz._SpectralNormMixin.power_iteration))
print(inspect.getsource(lipschitz._SpectralNormMixin.normalized_weight))

# %% [markdown]
# **Think!** The power iteration approaches $\|W\|_2$ from below. Why is a *lower* bound the dangerous direction for
# spectral normalisation?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# The layer divides by $\max(1, \hat\sigma / c)$. With $\hat\sigma < \|W\|_2$ it divides too little, so the
# normalised weight has norm $c\,\|W\|_2 / \hat\sigma > c$: the bound the guarantee rests on is broken, silently. An
# upper bound would only make the network more cautious than needed. Hence the certificate: run the power iteration to
# convergence after training and compare with $c$ (section 2 above, `lipschitz.certify`).
# </details>

# %% [markdown]
# ## 3. Convolutions: the operator norm is not the reshaped-kernel norm
#
# A convolution is a linear map on whole images, of shape $C \times H \times W$; its spectral norm is that of the (huge,
# structured) matrix acting on the flattened image. The popular shortcut, and what `torch.nn.utils.spectral_norm`
# bounds, reshapes the kernel to a $C_\text{out} \times (C_\text{in} k k)$ matrix and takes *its* norm. For a $1 \times 1$
# convolution the two agree. For $k > 1$ they do not, and the operator norm even depends on the input size (with zero
# padding, border pixels see fewer kernel taps). `LipschitzConv2d` therefore runs its power iteration on the operator
# itself: `conv2d` forward, `conv_transpose2d` backward, on a vector shaped like the input.

# %%
conv = lipschitz.LipschitzConv2d(16, 16, 3, coeff=None).double()  # a freshly initialised 3x3 conv
reshaped = lipschitz.reshaped_kernel_norm(conv)
rows = []
for s in size("nb02.conv_sizes"):
    shape = (16, s, s)
    method = "exact" if 16 * s * s <= 1024 else "power"  # explicit matrix for small inputs
    op = lipschitz.operator_norm(conv, shape, method=method, n_iter=size("nb02.norm_power_iters"))
    rows.append({"size": s, "operator": op, "reshaped": reshaped})
    print(f"input 16x{s}x{s}: operator norm {op:.4f}, reshaped-kernel norm {reshaped:.4f}, ratio {op / reshaped:.2f}")
fig = figures.plot_conv_norms(rows)
print(f"normalising the reshaped kernel to c = 0.9 leaves a true norm of {0.9 * rows[-1]['operator'] / reshaped:.3f} "
      f"on {rows[-1]['size']}x{rows[-1]['size']} inputs")

# %% [markdown]
# Here the reshaped-kernel norm *underestimates* the operator norm, so a layer normalised that way is not
# $c$-Lipschitz, and a product of several such layers is easily above 1.
#
# ## 4. How fast does the inverse converge?
#
# We now measure the reconstruction error $\max_i \|x_k - x_i\|$ after every iteration, for branches with
# $L = \mathrm{Lip}(g) \in \{0.5, 0.9, 0.99\}$, against Banach's bound. To make the comparison honest we need a branch
# whose Lipschitz constant *equals* its bound. A random branch does not: its layers' singular vectors do not line up,
# so $\|J_g\|$ is usually far below $\prod \|W_i\|$ and everything converges faster than the theory says.
# `invertibility.tight_branch` builds $g(x) = -W^\top \mathrm{elu}(W x)$: its Jacobian $-W^\top D W$ ($D$ = diag of
# $\mathrm{elu}' \in (0, 1]$) is symmetric, $\mathrm{Lip}(g) = \|W\|_2^2$ exactly, and near $x = 0$ the iteration contracts
# at exactly the rate $L$. It is the worst case the theory allows.
#
# `invertibility.reconstruction_errors` runs the package's inverse (`blocks.fixed_point_inverse` or
# `blocks.anderson_inverse`) and records every iterate.

# %%
results = {}
for L in (0.5, 0.9, 0.99):
    branch = invertibility.tight_branch(DIM, L, spectral_norm=False)
    with torch.no_grad():
        first_step = float(branch(x + branch(x)).norm(dim=1).max())  # ||x_1 - x_0|| = ||g(y)||
    results[L] = {
        "fixed point": invertibility.reconstruction_errors(branch, x, N_INVERSE),
        "Anderson": invertibility.reconstruction_errors(branch, x, N_INVERSE, method="anderson"),
        "Banach bound": invertibility.banach_bound(L, first_step, torch.arange(1, N_INVERSE + 1)).numpy(),
    }
    digits = -math.log10(L)  # decimal digits gained per iteration at rate L
    print(f"L = {L}: {digits:.3f} decimal digits per iteration, {1 / digits:.0f} iterations per digit")
fig = figures.plot_inverse_convergence(results)

# %% [markdown]
# The fixed-point errors (solid) fall on straight lines in the log plot: geometric convergence, with slope
# $\log L$, just under Banach's bound (dotted), as promised. Each iteration gains $-\log_{10} L$ decimal digits
# (printed above): a third of a digit for $L = 0.5$, while $L = 0.99$ needs hundreds of iterations per digit. This is
# why a small fixed number of iterations at evaluation is fine for small $L$ and not for $L$ near 1.
#
# **Anderson acceleration** (dashed) keeps the last few iterates and mixes them, solving a small least-squares
# problem per step; it reaches machine precision in a few dozen steps even for $L = 0.99$. Both are behind
# `InvertibleResidualBlock.inverse(method=...)`, which iterates to a tolerance:

# %%
for L in (0.5, 0.9, 0.99):
    block = blocks.InvertibleResidualBlock(invertibility.tight_branch(DIM, L, spectral_norm=False))
    with torch.no_grad():
        y = block(x)
    counts = {}
    for method in ("fixed_point", "anderson"):
        _, info = block.inverse(y, max_iter=5000, atol=1e-10, method=method, return_info=True)
        counts[method] = info.iterations
    with torch.no_grad():
        first_step = float(block.branch(y).norm(dim=1).max())
    guaranteed = invertibility.banach_iterations(L, 1e-10, first_step)
    print(f"Lip(g) = {L}: fixed point {counts['fixed_point']:4d} iterations, Anderson {counts['anderson']:3d}; "
          f"Banach guarantees 1e-10 after {guaranteed}")

# %% [markdown]
# ### Implement it yourself: the inverse with a stopping rule
#
# Write Alg. 1 with a stopping rule: start from $x_0 = y$, iterate $x_{k+1} = y - g(x_k)$, and stop as soon as
# $\max |x_{k+1} - x_k| \le$ `atol` (or after `max_iter` steps); return $x$ and the number of iterations. The check
# compares with the package's `blocks.fixed_point_inverse` on a block with $\mathrm{Lip}(g) = 0.8$.

# %% tags=["exercise"]
def inverse(g, y, atol, max_iter):
    ...  # your code: return x, iterations


checks.check_fixed_point_inverse(inverse)


# %% [markdown] tags=["solution"]
# **Solution.** The step $\max|x_{k+1} - x_k| = \max|y - F(x_k)|$ is the residual of the previous iterate, so it is
# also the right stopping test; Banach's bound turns it into an error bound, $L / (1 - L)$ times the step.

# %% tags=["solution"]
def inverse(g, y, atol, max_iter):
    x = y.clone()
    for k in range(1, max_iter + 1):
        x_next = y - g(x)
        step = float((x_next - x).abs().max())
        x = x_next
        if step <= atol:
            return x, k
    return x, max_iter


checks.check_fixed_point_inverse(inverse)

# %% [markdown]
# The package's loop (`InvertibleResidualBlock.inverse` adds the warning when it does not converge):

# %%
print(inspect.getsource(blocks.fixed_point_inverse))

# %% [markdown]
# **Think!** Plain fixed-point iteration gains a factor $L$ per step. Why does Anderson acceleration help most when
# $L$ is close to 1?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# Plain iteration needs about $\ln(\text{tol}) / \ln L$ steps: 131 for $L = 0.9$ and $10^{-6}$, but 1,375 for
# $L = 0.99$. Anderson combines the last $m$ iterates so as to cancel their residuals, like a Krylov method on the
# linearised problem; its rate depends on how the residuals are spread over directions rather than on the slowest one
# alone, so it gains most exactly where plain iteration crawls (see the benchmark line in the README).
# </details>

# %% [markdown]
# ## 5. The bi-Lipschitz bounds
#
# $F = \mathrm{id} + g$ cannot stretch or squeeze distances arbitrarily. By the triangle inequality,
# $$\|F(a) - F(b)\| \le \|a - b\| + \|g(a) - g(b)\| \le (1 + L)\,\|a - b\|,$$
# $$\|F(a) - F(b)\| \ge \|a - b\| - \|g(a) - g(b)\| \ge (1 - L)\,\|a - b\|,$$
# so $\mathrm{Lip}(F) \le 1 + L$ and, reading the second line backwards, $\mathrm{Lip}(F^{-1}) \le 1/(1 - L)$. As
# $L \to 1$ the inverse may amplify errors without limit: that is the numerical price of large $c$.
#
# Locally, these constants are the largest singular value of $I + J_g(x)$ and the inverse of its smallest.
# `invertibility.bi_lipschitz_constants` computes both from the exact Jacobian over a sample. For
# $g = -W^\top \mathrm{elu}(Wx)$ the Jacobian has eigenvalues in $[-L, 0]$, so $\mathrm{Lip}(F^{-1})$ reaches its bound; with
# the sign flipped ($g = +W^\top \mathrm{elu}(Wx)$) it is $\mathrm{Lip}(F)$ that does:

# %%
x_with_zero = torch.cat([torch.zeros(1, DIM, dtype=torch.float64), x])  # at x = 0 every unit is active
rows = []
for L in (0.1, 0.3, 0.5, 0.7, 0.9, 0.95):
    for sign in (-1, 1):
        branch = invertibility.tight_branch(DIM, L, spectral_norm=False, sign=sign)
        lip_F, lip_F_inv = invertibility.bi_lipschitz_constants(branch, x_with_zero)
        kind = f"$g = {'-' if sign < 0 else '+'}W^\\top \\mathrm{{elu}}(Wx)$"
        rows.append({"L": L, "kind": kind, "lip_F": lip_F, "lip_F_inv": lip_F_inv})
fig = figures.plot_bi_lipschitz(rows)
worst = max(max(r["lip_F"] / invertibility.bi_lipschitz_bounds(r["L"])[0],
                r["lip_F_inv"] / invertibility.bi_lipschitz_bounds(r["L"])[1]) for r in rows)
print(f"largest measured / bound over all branches: {worst:.6f} "
      f"({'within the bounds' if worst <= 1 + 1e-9 else 'ABOVE a bound'})")

# %% [markdown]
# ## Try it: what breaks
#
# The widget builds the branch of section 2 with both layers spectrally normalised to norm $c$, so that
# $\mathrm{Lip}(g)$ *should* be $c^2$ (the readout's first entry); it lets the layers run a given number of
# power-iteration steps, and then inverts the block by plain fixed-point iteration. For $c \ge 1$ there is no
# normalisation: both layers have norm $c$. The readout shows the true $\mathrm{Lip}(g)$ and the observed error
# reduction per iteration.
#
# - With 30 power iterations, move $c$ from 0.7 to 0.99: the observed rate follows $c^2$ (and the error curve hugs the
#   Banach bound).
# - Set $c = 0.95$ and the power iterations to 0, 1, 2, 3: with too few, the true $\mathrm{Lip}(g)$ exceeds 1 and the
#   inverse diverges although $c < 1$ was asked for.
# - Move $c$ past 1: what happens to the error, however many iterations you allow?

# %%
demo = widgets.interactive_figure(
    figures.draw_inverse_demo,
    height="420px",
    c=widgets.c_slider(0.95, min=0.1, max=1.3, layers=2),
    power_iterations=widgets.int_slider(30, 0, 30, description="power iterations"),
    fixed_point_iterations=widgets.int_slider(40, 5, 100, description="fixed-point iterations"),
)
demo

# %% [markdown]
# <details><summary>Answers</summary>
#
# - The tight branch attains its bound, so the observed reduction per iteration is about $L = c^2$ itself, and the
#   error curve runs just under Banach's bound $L^k / (1 - L)\,\|x_1 - x_0\|$.
# - With up to 3 power iterations (section 2 printed the true $\mathrm{Lip}(g)$ after each) $\hat\sigma$ is still
#   below the weights' true norm, so the rescaling is too weak:
#   the readout's true $\mathrm{Lip}(g)$ lies above $c^2$, and once it passes 1 the error grows instead of shrinking.
#   After a few more steps $\hat\sigma$ catches up and the rate returns to $c^2$.
# - Past 1 there is no contraction: for this branch the error grows by about $c^2$ per iteration, and more iterations
#   only make it worse. (Whether such a block is invertible at all is no longer guaranteed.)
# </details>

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: how many iterations are enough?
# A block has $\mathrm{Lip}(g) = 0.9$, and the first fixed-point step moved the estimate by $\|x_1 - x_0\| = 1$.
# How many iterations does Banach's bound need to *guarantee* $\|x - x_k\| \le 10^{-6}$?

# %% tags=["exercise"]
answer = None  # a whole number
checks.check_banach_iterations(answer, lipschitz=0.9, tol=1e-6, first_step=1.0)

# %% [markdown] tags=["solution"]
# **Solution.** We need $0.9^k / (1 - 0.9) \le 10^{-6}$, i.e. $k \ge \log(10^{-7}) / \log(0.9) \approx 153$. Rounding up:

# %% tags=["solution"]
import math
answer = math.ceil(math.log(1e-6 * (1 - 0.9) / 1.0) / math.log(0.9))  # 153
checks.check_banach_iterations(answer, lipschitz=0.9, tol=1e-6, first_step=1.0)

# %% [markdown] tags=["solution"]
# `invertibility.banach_iterations(0.9, 1e-6, 1.0)` computes the same.

# %% [markdown]
# ### Exercise 2: the bi-Lipschitz bounds
# For $\mathrm{Lip}(g) = 0.75$, what are the bounds on $\mathrm{Lip}(F)$ and $\mathrm{Lip}(F^{-1})$?

# %% tags=["exercise"]
lip_F, lip_F_inv = None, None  # your two numbers
checks.check_bi_lipschitz_bounds(lip_F, lip_F_inv, lipschitz=0.75)

# %% [markdown] tags=["solution"]
# **Solution.** $\mathrm{Lip}(F) \le 1 + 0.75 = 1.75$ and $\mathrm{Lip}(F^{-1}) \le 1 / (1 - 0.75) = 4$: the inverse may amplify a
# perturbation of $y$ fourfold.

# %% tags=["solution"]
lip_F, lip_F_inv = 1 + 0.75, 1 / (1 - 0.75)
checks.check_bi_lipschitz_bounds(lip_F, lip_F_inv, lipschitz=0.75)

# %% [markdown]
# ### Exercise 3: normalise a convolution correctly
# By what factor must the weight of the $3 \times 3$ convolution below be multiplied so that its **operator norm** on $4 \times 16 \times 16$ inputs is
# exactly 0.9. (Dividing by the reshaped-kernel norm is the trap.)

# %% tags=["exercise"]
torch.manual_seed(1)
my_conv = lipschitz.LipschitzConv2d(4, 4, 3, coeff=None).double()
factor = None  # your code: the number to multiply my_conv.weight by
checks.check_conv_normalised(my_conv, factor, input_shape=(4, 16, 16), target=0.9)

# %% [markdown] tags=["solution"]
# **Solution.** Measure the operator norm on the right input shape and divide the target by it:

# %% tags=["solution"]
factor = 0.9 / lipschitz.operator_norm(my_conv, (4, 16, 16))
checks.check_conv_normalised(my_conv, factor, input_shape=(4, 16, 16), target=0.9)

# %% [markdown] tags=["solution"]
# The norm is for *this* input size; on larger images it is slightly larger again (section 3).

# %% [markdown]
# ## Going further
#
# Open problems, without a check: write your own code in new cells.
#
# 1. **LipSwish.** Why is LipSwish divided by 1.1? Plot the derivative of $x\,\sigma(\beta x)$ for a few $\beta$, find its
#    maximum, and check that `lipschitz.LipSwish` is 1-Lipschitz for every $\beta > 0$.
# 2. **$c = 1$ in the inverse demo.** Move the widget's $c$ to exactly 1 (so $L = c^2 = 1$): does the error still
#    shrink? Relate what you see to Banach's bound, which gives nothing at $L = 1$.
# 3. **Anderson with one iterate.** Write Anderson acceleration with $m = 2$ (a secant step) yourself and compare its
#    iteration counts with `blocks.anderson_inverse` and with plain iteration at $L = 0.97$.

# %% [markdown]
# ## Summary
#
# - Inverting $y = x + g(x)$ is finding the fixed point of $T(x) = y - g(x)$. With $\mathrm{Lip}(g) = L < 1$, Banach's theorem
#   gives a unique solution (Thm. 1) and geometric convergence of Alg. 1, $\|x - x_k\| \le L^k \|x_1 - x_0\| / (1 - L)$;
#   measured errors follow the rate $L$ and stay under the bound. Anderson acceleration needs far fewer iterations near $L = 1$.
# - Spectral normalisation divides each weight by $\max(1, \hat\sigma / c)$. Power iteration gives $\hat\sigma \le \|W\|_2$, so a
#   lagging estimate silently breaks the guarantee: certify trained models by iterating to convergence.
# - For convolutions the norm must be that of the operator on the actual input size; the reshaped kernel's norm is a
#   different number.
# - $F$ is bi-Lipschitz: $\mathrm{Lip}(F) \le 1 + L$, $\mathrm{Lip}(F^{-1}) \le 1/(1 - L)$; both bounds are attained by suitable branches.
# - Next (notebook 03): the log-determinant that turns an i-ResNet into a density model.
#
# ## References
#
# - J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual Networks.* ICML 2019
#   (arXiv:1811.00995): Thm. 1, Alg. 1, Sec. 2 (spectral normalisation), the bi-Lipschitz lemma.
# - T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida. *Spectral Normalization for Generative Adversarial Networks.* ICLR 2018.
# - H. Sedghi, V. Gupta, P. M. Long. *The Singular Values of Convolutional Layers.* ICLR 2019.
# - D. G. Anderson. *Iterative procedures for nonlinear integral equations.* J. ACM 12, 1965; H. F. Walker, P. Ni.
#   *Anderson acceleration for fixed-point iterations.* SIAM J. Numer. Anal. 49, 2011.
# - R. T. Q. Chen, J. Behrmann, D. Duvenaud, J.-H. Jacobsen. *Residual Flows for Invertible Generative Modeling.*
#   NeurIPS 2019 (arXiv:1906.02735).
