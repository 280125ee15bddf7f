# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The log-determinant: power series, Hutchinson's trace and Russian roulette
#
# An invertible residual block $F(x) = x + g(x)$ with $\mathrm{Lip}(g) < 1$ can be inverted (notebooks 01-02).
# To use a stack of such blocks as a **density model** we also need $\ln\det J_F(x)$ for every block, and for a
# free-form network that determinant is the expensive part. This notebook takes the paper's estimator apart.
#
# **What you will learn**
# - why $\det(I + J_g) > 0$ for an i-ResNet block, so that $\ln|\det|$ needs no absolute value;
# - the power series $\ln\det(I+J) = \sum_{k\ge1} (-1)^{k+1}\,\mathrm{tr}(J^k)/k$ and when it converges;
# - Hutchinson's trace estimator (Gaussian and Rademacher probes) and vector-Jacobian products;
# - the truncation bound (Thm. 3) and the bias/variance trade-off of the paper's Fig. 4, measured against the exact value;
# - Residual Flows' unbiased **Russian-roulette** estimator, and the **Neumann-series gradient** that keeps memory constant.
#
# **Time:** about 55 minutes (with the implement-it-yourself exercises). In quick mode (CPU) the notebook runs in well
# under a minute.

# %%
import functools

import numpy as np
import torch

from iresnet_mini import course, logdet
from iresnet_mini.lessons import widgets
from iresnet_mini.lessons.nb03 import checks, figures, logdet_study
from iresnet_mini.config import size

device = course.setup(threads=1)  # the tensors here are tiny: one CPU thread
DIM, N_POINTS = size("nb03.dim"), size("nb03.n_points")
N_REPEATS, MAX_TERMS = size("nb03.n_repeats"), size("nb03.max_terms")
CS = (0.7, 0.85, 0.95)  # Lipschitz coefficients c compared throughout: each of a branch's two layers has norm <= c
LAYERS = 2  # so Lip(g) <= L = c^2: about 0.5, 0.72 and 0.9
print(f"block dimension d = {DIM}, {N_POINTS} points, {N_REPEATS} draws per point, up to {MAX_TERMS} terms")

# %% [markdown]
# ## 1. Change of variables, and why $\det(I + J_g) > 0$
#
# For a bijection $z = F(x)$ with a base density $p_z$, the change of variables gives
# $$\ln p_x(x) = \ln p_z(F(x)) + \ln\left|\det J_F(x)\right|,$$
# and for a stack of blocks the log-determinants add up. For a residual block $J_F = I + J_g$.
#
# Every eigenvalue $\lambda$ of $J_g(x)$ satisfies $|\lambda| \le \|J_g(x)\|_2 \le \mathrm{Lip}(g) < 1$. The eigenvalues of
# $I + J_g$ are $1 + \lambda$, with real part $\ge 1 - |\lambda| > 0$. Since
# $\det(I + J_g) = \prod_i (1 + \lambda_i)$, real eigenvalues give positive factors and complex ones come in conjugate
# pairs with $(1+\lambda)(1+\bar\lambda) = |1+\lambda|^2 > 0$. Hence $\det(I+J_g) > 0$: we may write
# $\ln\det$ instead of $\ln|\det|$, and the matrix logarithm $\ln(I + J_g)$ exists.
#
# ### A block that is as hard as the theory allows
# As in notebooks 01 and 02, $c$ bounds the spectral norm of each layer; our branches have two layers, so spectral
# normalisation only guarantees $\mathrm{Lip}(g) \le L = c^2$. A randomly initialised branch is usually far from that
# bound: its layers' norms sit at $c$, but their singular vectors do not line up, so $\|J_g(x)\|$ is much smaller, the
# series below converges fast and the study would look better than it should. Our study block
# (`logdet_study.study_branch`) uses orthogonal layers drawn too large, so that spectral normalisation binds and every
# singular value of every layer equals $c$: then $\|J_g(x)\|_2 = c^2$ exactly wherever a unit is active.

# %%
x = torch.randn(N_POINTS, DIM, dtype=torch.float64, device=device)  # the points we study
for c in CS:
    for init in ("random", "orthogonal"):
        est = logdet_study.lipschitz_estimates(logdet_study.study_branch(DIM, c, init=init).to(device), x)
        print(f"c = {c} (c^2 = {c ** LAYERS:.4f}): {init:>10} layers  certified Lip(g) = {est['certified']:.3f}, "
              f"largest ||J_g(x)||_2 on the points = {est['attained']:.3f}")
blocks = {c: logdet_study.study_branch(DIM, c).to(device) for c in CS}

# %% [markdown]
# The orthogonal blocks attain their bound; the random ones stay well below it. All results
# below use the orthogonal blocks and report the $L = \max_x \|J_g(x)\|_2$ they actually have. Now the eigenvalues:

# %%
jacobians = {c: logdet.jacobian(blocks[c], x).detach() for c in CS}
eigenvalues = {c: torch.linalg.eigvals(jac).cpu().numpy() for c, jac in jacobians.items()}
fig = figures.plot_jacobian_spectrum(eigenvalues, layers=LAYERS)
for c, jac in jacobians.items():
    det = torch.linalg.det(torch.eye(DIM, dtype=jac.dtype, device=device) + jac)
    print(f"c = {c}: largest |lambda| = {np.abs(eigenvalues[c]).max():.3f},  smallest det(I + J_g) = {det.min():.3g}")

# %% [markdown]
# Every eigenvalue of $J_g$ lies in the disk of radius $L = c^2$ (left); shifted by one they lie in a disk around 1 that
# never reaches the imaginary axis (right), so no factor of the determinant can be zero or negative.
#
# ## 2. The power series
#
# Because $\ln\det A = \sum_i \ln \mu_i = \mathrm{tr}\ln A$ for the eigenvalues $\mu_i$ of $A$, and because the Mercator
# series $\ln(1+\lambda) = \sum_{k\ge1}(-1)^{k+1}\lambda^k/k$ converges for $|\lambda| < 1$,
# $$\ln\det(I + J_g) = \mathrm{tr}\,\ln(I + J_g) = \sum_{k=1}^{\infty} \frac{(-1)^{k+1}}{k}\,\mathrm{tr}\left(J_g^k\right).$$
# Call $S_n$ the sum of the first $n$ terms. For one point, computed exactly from the full Jacobian:

# %%
partial = {c: logdet_study.series_partial_sums(jacobians[c][:1], MAX_TERMS)[0].cpu().numpy() for c in CS}
exact = {c: float(logdet.exact_logdet(blocks[c], x[:1]).detach()) for c in CS}
fig = figures.plot_partial_sums(partial, exact)

# %% [markdown]
# The partial sums oscillate around the exact value (the signs alternate) and settle within a few terms for
# $c = 0.7$ ($L \approx 0.5$); for $c = 0.95$ ($L \approx 0.9$) the terms shrink like $0.9^k/k$ and many more are needed.
#
# **Think!** Why does the series converge at all for $c = 0.95$, when $\ln(1+\lambda)$ has a singularity at
# $\lambda=-1$?
#
# <details><summary>Answer</summary>
#
# The Mercator series converges for every $|\lambda| < 1$, and all eigenvalues satisfy $|\lambda| \le c^2 \approx 0.9$;
# the terms shrink at least like $0.9^k/k$. Only a block with $\mathrm{Lip}(g) \ge 1$ could put an eigenvalue on or
# outside the unit circle, where the series diverges (and $\det(I + J_g)$ could be zero or negative).
# </details>
#
# ## 3. Hutchinson's trace estimator and vector-Jacobian products
#
# Forming $J_g$ costs $d$ backward passes and $J_g^k$ costs matrix products: hopeless for an image ($d = 3072$ per
# block for CIFAR-10). Two tricks avoid the matrix entirely.
#
# **Hutchinson.** For a random probe $v$ with $\mathbb{E}[vv^\top] = I$,
# $\mathbb{E}[v^\top A v] = \mathbb{E}[\mathrm{tr}(A\,vv^\top)] = \mathrm{tr}(A\,\mathbb{E}[vv^\top]) = \mathrm{tr}(A)$.
# The variance of one draw depends only on the symmetric part $A_s = (A + A^\top)/2$:
# $$\mathrm{Var}_{\text{Gauss}} = 2\|A_s\|_F^2, \qquad \mathrm{Var}_{\text{Rademacher}} = 2\Big(\|A_s\|_F^2 - \sum_i A_{ii}^2\Big),$$
# so Rademacher probes ($v_i = \pm1$) are never worse: they do not pay for the diagonal.
#
# **Vector-Jacobian products.** $v^\top J_g(x)$ is exactly what one backward pass computes
# (`torch.autograd.grad(g(x), x, v)`), at the cost of about one forward pass and without ever forming $J_g$. Then
# $v^\top J_g^k = (v^\top J_g^{k-1}) J_g$ takes $k$ such products, and the paper's estimator is
# $$\ln\det(I + J_g) \approx \sum_{k=1}^{n} \frac{(-1)^{k+1}}{k}\, v^\top J_g^k v \qquad (n \text{ vector-Jacobian products per probe}).$$

# %%
branch, jac = blocks[0.95], jacobians[0.95]
xg = x[:1].clone().requires_grad_(True)
v = logdet.draw_probe(xg, "gaussian")
(vjp,) = torch.autograd.grad(branch(xg), xg, v)
print(f"one backward pass = v^T J: max |difference| = {(vjp - v @ jac[0]).abs().max():.1e}")

# Hutchinson on tr(J) at one point: the mean of many probes, and the spread of one probe against the formulas
n_probes = 20_000
probes = {name: logdet.draw_probe(torch.empty(n_probes, DIM, dtype=torch.float64, device=device), name)
          for name in logdet.PROBES}
print(f"exact tr(J) = {torch.trace(jac[0]):.4f}")
for name, p in probes.items():
    draws = torch.einsum("ni,ij,nj->n", p, jac[0], p)
    theory = logdet_study.hutchinson_variance(jac[0], name).sqrt()
    print(f"{name:>10}: mean of {n_probes} probes = {draws.mean():.4f}, std of one probe = {draws.std():.3f} "
          f"(theory {theory:.3f})")

# %% [markdown]
# ### Implement it yourself: the truncated series by vector-Jacobian products
#
# Write `series_logdet(g, x, v, n_terms)`: for one probe `v` (shaped like `x`), the estimate
# $\sum_{k=1}^{n} \frac{(-1)^{k+1}}{k}\, v^\top J_g^k v$ per sample, where each $w^\top \leftarrow w^\top J_g$ is one
# vector-Jacobian product, `torch.autograd.grad(g(x), x, w, retain_graph=True)`. The check gives yours and
# `logdet.power_series_logdet` the same probe.

# %% tags=["exercise"]
def series_logdet(g, x, v, n_terms):
    ...  # your code: one value per sample


checks.check_series_logdet(series_logdet)


# %% [markdown] tags=["solution"]
# **Solution.** One forward pass, then $n$ backward passes through the same graph; $v^\top J^k v$ is the sum of
# $(v^\top J^k) \odot v$ over each sample's entries.

# %% tags=["solution"]
def series_logdet(g, x, v, n_terms):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        gx = g(x)
        w, total = v, torch.zeros(x.shape[0], dtype=x.dtype)
        for k in range(1, n_terms + 1):
            (w,) = torch.autograd.grad(gx, x, w, retain_graph=True)  # w^T <- w^T J
            total = total + (-1) ** (k + 1) / k * (w * v).flatten(1).sum(1)
    return total.detach()


checks.check_series_logdet(series_logdet)

# %% [markdown]
# The package's estimators share this core (with more probes, weights for the roulette, and the Neumann gradient):

# %%
import inspect

print(inspect.getsource(logdet._series))

# %% [markdown]
# ## 4. How many terms? The truncation bound (Thm. 3)
#
# Truncating after $n$ terms leaves the tail $\sum_{k>n}$. Since $|\mathrm{tr}(J^k)| \le \sum_i |\lambda_i|^k \le d\,L^k$
# with $L = \|J_g\|_2 \le \mathrm{Lip}(g)$,
# $$\Big|\ln\det(I+J_g) - S_n\Big| \le \sum_{k>n} \frac{d\,L^k}{k} = -d\Big(\ln(1-L) + \sum_{k=1}^{n}\frac{L^k}{k}\Big).$$
# The bound grows with the dimension and shrinks like $L^n$: close to $L = 1$ it needs many terms.

# %%
print(f"Thm. 3 bound for d = {DIM}:")
print("  n " + "".join(f"  L = {c ** LAYERS:<6.4f}" for c in CS))
for n in (1, 2, 5, 10, 20):
    print(f"{n:>3} " + "".join(f"{logdet.truncation_error_bound(c ** LAYERS, DIM, n):>12.3g}" for c in CS))

# %% [markdown]
# ## 5. Bias and variance of the estimator (paper Fig. 4)
#
# The truncated estimator has two errors: a **bias** $\mathbb{E}_v[\hat S_n] - \ln\det = S_n - \ln\det$ (the
# truncation, since Hutchinson is unbiased) and a **variance** from the random probe. We draw the estimator
# `N_REPEATS` times at every point with `logdet.power_series_logdet` itself and compare with the exact value.
# Per panel: the exact $|$bias$|$ (line), its Monte-Carlo estimate from the draws (circles; it cannot go below the
# dotted noise floor $\approx$ std$/\sqrt{\text{draws}}$), the standard deviation of one estimate, and the bound.

# %%
studies = {c: logdet_study.bias_variance_study(blocks[c], x, c, MAX_TERMS, N_REPEATS) for c in CS}
fig = figures.plot_bias_variance(list(studies.values()))
for c, s in studies.items():
    print(f"c = {c} (||J_g(x)||_2 up to {s.lipschitz:.3f}, certified Lip(g) <= {s.lipschitz_certified:.3f}), "
          f"mean exact ln det = {s.exact.mean():.3f}")
    for n in (1, 2, 5, 10, MAX_TERMS):
        r = s.row(n)
        print(f"   n = {n:>2}: |bias| = {r['truncation_error']:.2e} (measured {r['abs_bias']:.2e}), "
              f"std = {r['std']:.3f}, bound = {r['bound']:.2e}")

# %% [markdown]
# What the figure says, as in the paper's Fig. 4:
# - the bias falls geometrically with $n$ (like $L^n$), fast for $c = 0.7$, slowly for $c = 0.95$;
# - the standard deviation barely changes after the first few terms: it is set by the first terms' traces, not by the tail;
# - beyond a handful of terms the error of one estimate is all variance, so more terms buy nothing unless more probes
#   are drawn too; the bound is valid but pessimistic by orders of magnitude (its factor $d$ ignores the cancellations
#   between eigenvalues of both signs and complex phases).
#
# ### Gaussian or Rademacher probes?

# %%
by_probe = {"gaussian": list(studies.values()),
            "rademacher": [logdet_study.bias_variance_study(blocks[c], x, c, MAX_TERMS, N_REPEATS,
                                                            probe="rademacher") for c in CS]}
fig = figures.plot_probe_comparison(by_probe)
for s_g, s_r in zip(*by_probe.values()):
    print(f"c = {s_g.c}: std with {MAX_TERMS} terms  gaussian {s_g.std[-1]:.3f}  rademacher {s_r.std[-1]:.3f}")

# %% [markdown]
# The measured spreads (markers) follow the formulas (lines), and Rademacher probes win by removing the diagonal's
# share, $2\sum_i A_{ii}^2$. Averaging $m$ independent probes divides the standard deviation by $\sqrt{m}$:

# %%
n_terms = 10
for m in (1, 4, 16):
    draws = logdet_study.estimator_draws(blocks[0.95], x, n_terms, N_REPEATS // 4, n_samples=m)
    std = logdet_study.spread(draws)
    print(f"{m:>2} probes per estimate: std = {std:.3f},  std x sqrt(m) = {std * np.sqrt(m):.3f}")

# %% [markdown]
# **Think!** Beyond a handful of terms the estimator's error stops shrinking as $n$ grows. Why, and what would make it
# shrink further?

# %% [markdown]
# <details><summary>Discussion</summary>
#
# The error has two parts. The truncation bias falls like $L^n / n$ and is soon negligible. The standard deviation
# comes from the random probe and is set mostly by the first terms ($\mathrm{tr}\,J$ has the largest variance), so it
# hardly changes with $n$. More terms cannot reduce it; more probes can ($1/\sqrt m$ for $m$ probes), and in training
# the average over a batch and over steps does the rest. This is the message of the paper's Fig. 4.
# </details>

# %% [markdown]
# ## 6. An unbiased estimator: Russian roulette (Residual Flows)
#
# Residual Flows remove the bias without computing infinitely many terms. For a random integer $N$ with
# $P(N \ge k) > 0$ for every $k$ (and terms that converge absolutely),
# $$\sum_{k=1}^{\infty} a_k = \mathbb{E}_N\Big[\sum_{k=1}^{N} \frac{a_k}{P(N \ge k)}\Big],$$
# since term $k$ is present with probability $P(N \ge k)$ and is then divided by it. `logdet.unbiased_logdet` always
# computes the first two terms exactly, then draws $N \sim \mathrm{Geometric}(p)$ extra terms, $P(N \ge m) = (1-p)^m$:
# $2 + (1-p)/p = 3$ terms on average for $p = 0.5$. The price is variance: term $k$ is multiplied by $(1-p)^{-(k-2)}$.
# If the terms decay like $\rho^k$ ($\rho$ = the largest $|\lambda|$ of $J_g$, at most $L$), the reweighted terms'
# second moment $\sum_m (1-p)^{-m} \rho^{2m}$ is finite only when $\rho^2 < 1-p$ ($\rho < 0.71$ for $p = 0.5$):
# close to $L = 1$ the estimator has heavy tails unless $p$ is lowered.

# %%
roulettes = {c: [logdet_study.roulette_study(blocks[c], x, c, N_REPEATS, p=p) for p in (0.5, 0.2)] for c in CS}
for c, group in roulettes.items():
    s = studies[c]
    for r in group:
        n = round(r.expected_terms)
        print(f"c = {c}, p = {r.p}: roulette bias = {r.bias:+.3f} +- {r.bias_se:.3f}, std = {r.std:.2f}, "
              f"max |error| = {abs(r.draws - r.exact).max():5.1f}, E[terms] = {r.expected_terms:.0f}  |  "
              f"series with {n} terms: bias = {s.bias[n - 1]:+.3f} +- {s.bias_se[n - 1]:.3f}, std = {s.std[n - 1]:.2f}")

c = 0.95
series_errors = logdet_study.estimator_draws(blocks[c], x, 3, N_REPEATS).cpu().numpy() - studies[c].exact
fig = figures.plot_roulette_vs_series(studies[c], roulettes[c], series_errors, series_terms=3)

# %% [markdown]
# Left: the roulette's mean error is zero within its error bars, where the series with the same average number of
# terms (3) is off by its truncation bias; the series needs many more terms to become as unbiased. Right: the price.
# At $c = 0.95$ the largest $|\lambda|$ printed in section 1 is well above 0.71, so $\rho^2 > 1 - p = 0.5$: with
# $p = 0.5$ rare long runs multiply small terms by large weights and produce errors many standard deviations out
# (the long tail of the histogram). With $p = 0.2$ (6 terms on average) the tail is much lighter. For training, Residual Flows argue that an unbiased estimate of the log-likelihood (and of its
# gradient) matters more than a small variance: a biased objective can be optimised into the bias.

# %% [markdown]
# ### Implement it yourself: the roulette's weights
#
# With $N$ extra terms drawn from a geometric distribution, $P(N \ge m) = (1 - p)^m$, the estimator computes terms
# $1, \dots, n_{\text{exact}} + N$. Write `roulette_weights(n_exact, n_extra, p)`: the weight of each computed term that
# makes the estimate unbiased. The check compares the weights, then averages your reweighted series over $N$ exactly.

# %% tags=["exercise"]
def roulette_weights(n_exact, n_extra, p):
    ...  # your code: a list of n_exact + n_extra numbers


checks.check_roulette_weights(roulette_weights)


# %% [markdown] tags=["solution"]
# **Solution.** Term $n_{\text{exact}} + m$ is present with probability $P(N \ge m)$; dividing it by that probability
# makes its expected contribution exactly the term itself.

# %% tags=["solution"]
def roulette_weights(n_exact, n_extra, p):
    return [1.0] * n_exact + [1.0 / (1.0 - p) ** m for m in range(1, n_extra + 1)]


checks.check_roulette_weights(roulette_weights)

# %% [markdown]
# The package draws $N$ on the host and builds the same weights; its default $p$ keeps the variance finite for the
# branch's Lipschitz bound (`logdet.roulette_p`):

# %%
print(inspect.getsource(logdet._roulette_weights))

# %% [markdown]
# ## 7. Cost: time, memory and the Neumann-series gradient
#
# Backpropagating through the estimator means backpropagating through all $n$ vector-Jacobian products: autograd keeps
# every intermediate graph, so memory grows linearly in $n$. Residual Flows differentiate the log-determinant directly:
# $$\frac{\partial}{\partial\theta}\ln\det(I+J_g) = \mathrm{tr}\Big((I+J_g)^{-1}\frac{\partial J_g}{\partial\theta}\Big)
#  = \sum_{k\ge0}(-1)^k\,\mathrm{tr}\Big(J_g^k\,\frac{\partial J_g}{\partial\theta}\Big),$$
# estimated by $a^\top \frac{\partial J_g}{\partial\theta} v$ with $a^\top = \sum_{k<n}(-1)^k v^\top J_g^k$. The row vector
# $a$ is accumulated **without** a graph; only one last vector-Jacobian product is differentiated, so memory stays
# constant in $n$ (`neumann_gradient=True`). In expectation over $v$ it equals the gradient of the truncated series.
# We time one forward + backward pass and count the bytes autograd saves for the backward pass
# (`logdet_study.count_saved_bytes`, a portable memory measure on CPU and GPU).

# %%
cost_dim, cost_batch = size("nb03.cost_dim"), size("nb03.cost_batch")
cost_block = logdet_study.study_branch(cost_dim, 0.9, dtype=torch.float32).to(device)
x_cost = torch.randn(cost_batch, cost_dim, device=device)
rows = [logdet_study.gradient_cost(cost_block, x_cost, n, neumann, n_repeats=size("nb03.cost_repeats"))
        for n in size("nb03.cost_terms") for neumann in (False, True)]
fig = figures.plot_gradient_cost(rows)
print(f"block d = {cost_dim}, batch {cost_batch}, float32 on {device}")
for r in rows:
    kind = "Neumann " if r["neumann_gradient"] else "backprop"
    print(f"  n = {r['n_terms']:>2} {kind}: {1e3 * r['seconds']:7.1f} ms, {r['saved_bytes'] / 2**20:6.2f} MiB saved")

# %% [markdown]
# Both take time linear in $n$ (one vector-Jacobian product per term, plus its backward for backprop), but only
# backprop's memory grows with $n$. Timings on a shared CPU are noisy; the byte counts are exact.
#
# ## 8. Try it
#
# Move $c$, the number of terms and the number of probes per estimate. The left panel is a histogram of the
# estimator's draws at one point against the exact log-determinant; the right panel shows where the chosen $n$ sits on
# the bias curve. Things to try:
# - at $c = 0.95$ ($L \approx 0.9$), how many terms until the bias is much smaller than the standard deviation?
# - with 16 probes per estimate, does the histogram get 4 times narrower?
# - with one term, is the estimate's error ever dominated by its bias rather than its spread, for any $c$?

# %%
draw = functools.partial(figures.draw_logdet_estimator, dim=DIM, n_draws=size("nb03.widget_draws"), max_terms=MAX_TERMS)
widgets.interactive_figure(draw, c=widgets.c_slider(0.95, layers=LAYERS),
                           n_terms=widgets.int_slider(5, 1, 30, description="series terms n"),
                           n_samples=widgets.int_slider(1, 1, 16, description="probes per estimate"))

# %% [markdown]
# <details><summary>Answers</summary>
#
# - At $c = 0.95$ the readout's truncation error is already below the standard deviation with one term, and below a
#   tenth of it from about five terms on (it does not fall monotonically: the terms alternate). Thm. 3's bound asks
#   for many more, because it assumes every eigenvalue of $J_g$ sits at $L = c^2$ with the same sign.
# - Yes: 16 independent probes divide the standard deviation by $\sqrt{16} = 4$, and leave the bias as it is.
# - No, not on this block: even at $c = 0.99$ the one-term truncation error in the readout is a small fraction of the
#   standard deviation. The one-term error is the tail $-\mathrm{tr}(J^2)/2 + \mathrm{tr}(J^3)/3 - \dots$, and
#   $\mathrm{tr}(J^k) = \sum_i \lambda_i^k$ cancels for eigenvalues spread around the disk (section 1's figure); a
#   Gaussian probe's standard deviation, about $\sqrt{2}\,\|J\|_F \approx \sqrt{2d}\,c^2$, has no such cancellation.
#   A block whose eigenvalues all sat near $+L$ (a symmetric Jacobian, like notebook 02's tight branch) would be
#   bias-dominated for $L$ close to 1.
# </details>

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (the bound by hand).** A block has $\mathrm{Lip}(g) = L = 0.5$ in dimension $d = 2$. Compute the
# Thm. 3 bound on the error of the series truncated after $n = 3$ terms (with `math.log`, not with `logdet`).

# %% tags=["exercise"]
import math

answer_1 = None  # your number
checks.check_truncation_bound(answer_1, lipschitz=0.5, dim=2, n_terms=3)

# %% [markdown] tags=["solution"]
# **Solution.** $-d\,(\ln(1-L) + L + L^2/2 + L^3/3) = -2\,(\ln 0.5 + 0.5 + 0.125 + 0.041\overline{6}) = -2\,(-0.69315 + 0.66667) \approx 0.0530$.

# %% tags=["solution"]
answer_1 = -2 * (math.log(1 - 0.5) + 0.5 + 0.5**2 / 2 + 0.5**3 / 3)
checks.check_truncation_bound(answer_1, lipschitz=0.5, dim=2, n_terms=3)

# %% [markdown]
# **Exercise 2 (Hutchinson by hand).** Take
# $J = \begin{pmatrix} 0.3 & 0.2 \\ -0.1 & 0.4 \end{pmatrix}$ (`checks.HUTCHINSON_J`) and the two Rademacher
# probes $v_1 = (1, 1)$, $v_2 = (1, -1)$. Compute $v_1^\top J v_1$ and $v_2^\top J v_2$ on paper. What is their mean,
# and why is it exactly $\mathrm{tr}(J)$ here?

# %% tags=["exercise"]
estimate_v1 = None  # v1^T J v1
estimate_v2 = None  # v2^T J v2
checks.check_hutchinson_2x2(estimate_v1, estimate_v2)

# %% [markdown] tags=["solution"]
# **Solution.** $v^\top J v = \sum_{ij} v_i J_{ij} v_j$. For $v_1$: $0.3 + 0.2 - 0.1 + 0.4 = 0.8$; for $v_2$: $0.3 - 0.2 + 0.1 + 0.4 = 0.6$.
# The mean is $0.7 = \mathrm{tr}(J)$: the off-diagonal entries enter with $v_1 v_2 = +1$ for one probe and $-1$ for
# the other and cancel. (Rademacher probes have $v_i^2 = 1$, so the diagonal is always exact; the two probes cover all
# sign patterns up to a global sign.)

# %% tags=["solution"]
estimate_v1, estimate_v2 = 0.8, 0.6
checks.check_hutchinson_2x2(estimate_v1, estimate_v2)

# %% [markdown]
# **Exercise 3 (how many terms?).** For a block with $L = 0.5$ and $d = 10$, what is the smallest $n$ for which the
# Thm. 3 bound guarantees a truncation error of at most $0.01$ nats? You may use `logdet.truncation_error_bound`.

# %% tags=["exercise"]
answer_3 = None  # a whole number of terms
checks.check_terms_needed(answer_3, lipschitz=0.5, dim=10, tol=0.01)

# %% [markdown] tags=["solution"]
# **Solution.** Evaluate the bound for growing $n$: 1.93, 0.68, 0.26, 0.11, 0.046, 0.020, 0.0089, ... The first value below 0.01 is at
# $n = 7$.

# %% tags=["solution"]
answer_3 = next(n for n in range(1, 100) if logdet.truncation_error_bound(0.5, 10, n) <= 0.01)
checks.check_terms_needed(answer_3, lipschitz=0.5, dim=10, tol=0.01)

# %% [markdown]
# ## Going further
#
# Open problems, without a check: write your own code in new cells.
#
# 1. **Rademacher probes.** Repeat the bias/variance study with `probe="rademacher"` and predict the ratio of the two
#    probes' variances from `logdet_study.hutchinson_variance` before you measure it.
# 2. **A Poisson roulette.** `logdet.roulette_p`'s docstring argues that a Poisson count has infinite variance. Draw a few
#    thousand estimates with `distribution="poisson", p=2.0` at $c = 0.95$ and look at the histogram's tail and at how
#    the sample standard deviation grows with the number of draws.
# 3. **At $c = 1$.** With $J = -1$ in one dimension, $\ln\det(I + J) = \ln 0$. Write out the series' terms there and
#    say why no number of terms (and no estimator) can work at $\mathrm{Lip}(g) = 1$.

# %% [markdown]
# ## Summary
#
# - For $\mathrm{Lip}(g) < 1$ every eigenvalue of $J_g$ lies inside the unit disk, so $\det(I + J_g) > 0$ and
#   $\ln\det(I+J_g) = \sum_k (-1)^{k+1}\mathrm{tr}(J_g^k)/k$ converges.
# - Hutchinson's estimator turns each trace into $v^\top J_g^k v$, built from $k$ vector-Jacobian products; Rademacher
#   probes have less variance than Gaussian ones, and $m$ probes divide the standard deviation by $\sqrt m$.
# - Truncating after $n$ terms is biased by at most $-d(\ln(1-L) + \sum_{k\le n} L^k/k)$ (Thm. 3); in practice the
#   bias is far below the bound and, after a few terms, far below the standard deviation (Fig. 4). Close to $L = 1$
#   the bias decays slowly: a block whose Lipschitz constant really reaches its bound $c^m$ is needed to see it.
# - The Russian-roulette estimator is unbiased for about the same average cost, with more variance; the Neumann-series
#   gradient keeps memory constant in the number of terms.
#
# ## References
#
# - J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual Networks.* ICML 2019,
#   arXiv:1811.00995 (Sec. 3, Thm. 3, Fig. 4).
# - R. T. Q. Chen, J. Behrmann, D. Duvenaud, J.-H. Jacobsen. *Residual Flows for Invertible Generative Modeling.*
#   NeurIPS 2019, arXiv:1906.02735 (Russian-roulette estimator, Neumann-series gradient).
# - M. F. Hutchinson. *A stochastic estimator of the trace of the influence matrix for Laplacian smoothing splines.*
#   Communications in Statistics - Simulation and Computation, 1989.
# - H. Avron, S. Toledo. *Randomized algorithms for estimating the trace of an implicit symmetric positive
#   semi-definite matrix.* Journal of the ACM, 2011 (variances of the trace estimators).
