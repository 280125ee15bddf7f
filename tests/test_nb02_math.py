"""Making a ResNet invertible (notebook 02): Banach's bound, power iteration, bi-Lipschitz bounds, measured."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iresnet_mini.blocks import conv_branch, mlp_branch
from iresnet_mini.lessons import nb02
from iresnet_mini.lessons.nb02 import invertibility
from iresnet_mini.lipschitz import LipschitzConv2d, LipschitzLinear, certify, operator_norm, reshaped_kernel_norm

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one CPU thread (conftest.py)


def sample(dim: int, n: int = 128, seed: int = 0) -> torch.Tensor:
    return 0.5 * torch.randn(n, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def certified_branch(dim: int, c: float, seed: int) -> torch.nn.Sequential:
    """A random MLP branch drawn too large, normalised so each layer has norm c^(1/3), certified."""
    torch.manual_seed(seed)
    branch = mlp_branch(dim, 16, 2, coeff=c ** (1 / 3)).to(torch.float64)
    with torch.no_grad():
        for p in branch.parameters():
            p.mul_(4.0)
    branch.eval()
    branch(torch.zeros(1, dim, dtype=torch.float64))
    certify(branch, tol=1e-12)
    return branch


# --- Banach's bound ---------------------------------------------------------------------------
def test_banach_bound_formula():
    assert invertibility.banach_bound(0.5, 2.0, 3) == pytest.approx(0.5 ** 3 / 0.5 * 2.0)
    assert invertibility.banach_bound(1.0, 2.0, 3) == math.inf
    ks = torch.arange(1, 4)
    assert torch.allclose(invertibility.banach_bound(0.5, 1.0, ks), 2.0 * 0.5 ** ks)


@given(L=st.floats(0.01, 0.999), tol=st.floats(1e-12, 1e-1), first=st.floats(1e-3, 1e3))
def test_banach_iterations_is_the_fewest_that_suffice(L, tol, first):
    k = invertibility.banach_iterations(L, tol, first)
    assert invertibility.banach_bound(L, first, k) <= tol * (1 + 1e-9)
    if k > 0:
        assert invertibility.banach_bound(L, first, k - 1) > tol


def test_banach_iterations_rejects_lipschitz_one():
    with pytest.raises(ValueError, match="0 < L < 1"):
        invertibility.banach_iterations(1.0, 1e-6, 1.0)


@pytest.mark.parametrize("L", [0.5, 0.9, 0.99])
def test_fixed_point_error_stays_below_the_banach_bound(L):
    branch = invertibility.tight_branch(8, L, spectral_norm=False)
    x = sample(8)
    errors = invertibility.reconstruction_errors(branch, x, 40)
    with torch.no_grad():
        first_step = branch(x + branch(x)).norm(dim=1)  # ||x_1 - x_0|| = ||g(y)|| per sample
    assert len(errors) == 40
    for k, error in enumerate(errors, start=1):
        assert error <= invertibility.banach_bound(L, float(first_step.max()), k) + 1e-12


def test_tight_branch_converges_at_the_rate_lipschitz():
    """Near x = 0 the Jacobian of the tight branch is -W^T W: the error shrinks by L per step."""
    L = 0.8
    errors = invertibility.reconstruction_errors(invertibility.tight_branch(8, L, spectral_norm=False), sample(8), 40)
    rate = (errors[39] / errors[19]) ** (1 / 20)
    assert rate == pytest.approx(L, abs=0.02)


def test_anderson_needs_far_fewer_iterations_near_lipschitz_one():
    branch = invertibility.tight_branch(8, 0.99, spectral_norm=False)
    x = sample(8)
    fixed = invertibility.reconstruction_errors(branch, x, 60)
    anderson = invertibility.reconstruction_errors(branch, x, 60, method="anderson")
    assert anderson[-1] < 1e-10 < fixed[-1]


def test_inverse_iterates_follow_alg_1():
    branch = invertibility.tight_branch(3, 0.5, spectral_norm=False)
    y = sample(3, n=4)
    iterates = invertibility.inverse_iterates(branch, y, 3)
    with torch.no_grad():
        x1 = y - branch(y)
        x2 = y - branch(x1)
    assert torch.allclose(iterates[0], x1) and torch.allclose(iterates[1], x2)


def test_without_the_constraint_the_inverse_diverges():
    errors = invertibility.reconstruction_errors(invertibility.tight_branch(8, 1.5, spectral_norm=False),
                                                 sample(8), 30)
    assert errors[-1] > 10 * errors[0]


# --- Lipschitz constants and the bi-Lipschitz bounds ------------------------------------------
def test_tight_branch_attains_the_product_bound():
    branch = invertibility.tight_branch(8, 0.7, spectral_norm=False)
    assert invertibility.lipschitz_upper_bound(branch, (8,)) == pytest.approx(0.7, rel=1e-9)
    x = torch.cat([torch.zeros(1, 8, dtype=torch.float64), sample(8)])  # at x = 0 every unit is active
    assert invertibility.jacobian_lipschitz(branch, x) == pytest.approx(0.7, rel=1e-9)


def test_lipschitz_upper_bound_covers_conv_branches():
    torch.manual_seed(0)
    branch = conv_branch(2, 4, coeff=None).to(torch.float64).eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    bound = invertibility.lipschitz_upper_bound(branch, (2, 5, 5))
    assert invertibility.jacobian_lipschitz(branch, x) <= bound
    assert bound == pytest.approx(math.prod(operator_norm(m, s) for m, s in
                                            zip([branch[0], branch[2], branch[4]], [(2, 5, 5), (4, 5, 5), (4, 5, 5)])))


def test_lipschitz_upper_bound_leaves_the_branch_untouched():
    torch.manual_seed(0)
    branch = conv_branch(2, 4, coeff=0.9).to(torch.float64)
    branch(torch.randn(3, 2, 6, 6, dtype=torch.float64))  # training mode: vectors for 6x6 inputs
    before = {k: v.clone() for k, v in branch.state_dict().items()}
    invertibility.lipschitz_upper_bound(branch, (2, 9, 9))  # another input size
    assert branch.training
    assert all(torch.equal(before[k], v) for k, v in branch.state_dict().items())


@settings(max_examples=10, deadline=None)
@given(c=st.floats(0.1, 0.95), seed=st.integers(0, 10_000), dim=st.integers(1, 4))
def test_measured_bi_lipschitz_constants_respect_the_bounds(c, seed, dim):
    branch = certified_branch(dim, c, seed)
    L = invertibility.lipschitz_upper_bound(branch, (dim,))
    assert L <= c + 1e-9
    lip_F, lip_F_inv = invertibility.bi_lipschitz_constants(branch, sample(dim, n=64, seed=seed))
    bound_F, bound_F_inv = invertibility.bi_lipschitz_bounds(L)
    assert lip_F <= bound_F + 1e-9 and lip_F_inv <= bound_F_inv + 1e-9


@pytest.mark.parametrize("sign, which", [(-1, 1), (1, 0)])
def test_tight_branches_attain_the_bi_lipschitz_bounds(sign, which):
    L = 0.9
    branch = invertibility.tight_branch(8, L, spectral_norm=False, sign=sign)
    x = torch.cat([torch.zeros(1, 8, dtype=torch.float64), sample(8)])
    measured = invertibility.bi_lipschitz_constants(branch, x)[which]
    assert measured == pytest.approx(invertibility.bi_lipschitz_bounds(L)[which], rel=1e-9)


def test_bi_lipschitz_bounds_values():
    assert invertibility.bi_lipschitz_bounds(0.75) == (1.75, 4.0)
    assert invertibility.bi_lipschitz_bounds(1.0) == (2.0, math.inf)
    with pytest.raises(ValueError):
        invertibility.bi_lipschitz_bounds(-0.1)


# --- power iteration --------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", [
    (LipschitzLinear(32, 24, coeff=0.9), (32,)),
    (LipschitzConv2d(3, 5, 3, coeff=0.9), (3, 6, 6)),
])
def test_power_iteration_rises_to_the_true_norm_from_below(layer, shape):
    torch.manual_seed(0)
    layer = layer.to(torch.float64)
    estimates, true = invertibility.power_iteration_trace(layer, shape, 300)
    assert len(estimates) == 301
    assert all(b >= a - 1e-12 for a, b in zip(estimates, estimates[1:]))
    assert max(estimates) <= true + 1e-9
    assert estimates[-1] == pytest.approx(true, rel=2e-3)  # a conv's top singular values cluster: slow
    assert estimates[0] < 0.95 * true  # a fresh start is well below: that is the lag


def test_power_iteration_trace_needs_a_constrained_layer():
    with pytest.raises(TypeError, match="coeff"):
        invertibility.power_iteration_trace(LipschitzLinear(3, 3, coeff=None), (3,), 5)


def test_reshaped_kernel_norm_is_not_the_operator_norm_of_a_3x3_conv():
    torch.manual_seed(0)
    conv = LipschitzConv2d(8, 8, 3, coeff=None).to(torch.float64)
    op = operator_norm(conv, (8, 8, 8))
    assert abs(op - reshaped_kernel_norm(conv)) > 0.1 * op
    one_by_one = LipschitzConv2d(8, 8, 1, coeff=None).to(torch.float64)
    assert operator_norm(one_by_one, (8, 4, 4)) == pytest.approx(reshaped_kernel_norm(one_by_one), rel=1e-9)


def test_too_few_power_iterations_let_lipschitz_exceed_c():
    x = sample(8)

    def true_lipschitz(n):
        branch = invertibility.tight_branch(8, 0.9, n_power_iterations=n)
        branch.train()
        with torch.no_grad():
            branch(x)
        return invertibility.lipschitz_upper_bound(branch, (8,))

    assert true_lipschitz(1) > 1.0
    assert true_lipschitz(50) == pytest.approx(0.9, rel=1e-3)


def test_tight_branch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Thm. 1"):
        invertibility.tight_branch(4, 1.2)
    with pytest.raises(ValueError, match="decay"):
        invertibility.tight_branch(4, 0.5, decay=0.0)
    with pytest.raises(ValueError, match="sign"):
        invertibility.tight_branch(4, 0.5, sign=0)


# --- the widget's draw function and figures ---------------------------------------------------
def test_draw_inverse_demo_readout_changes_with_c_and_power_iterations():
    # c bounds each of the branch's two layers, so the tight branch ends at Lip(g) = c^2
    fig_a, a = nb02.figures.draw_inverse_demo(0.7, 50, 20)
    fig_b, b = nb02.figures.draw_inverse_demo(0.95, 50, 20)
    fig_c, c = nb02.figures.draw_inverse_demo(0.95, 1, 20)
    fig_d, d = nb02.figures.draw_inverse_demo(1.2, 1, 20)
    assert a["true Lip(g)"] == pytest.approx(0.49, rel=1e-3) and b["true Lip(g)"] == pytest.approx(0.9025, rel=1e-3)
    assert a["c (each layer)"] == 0.7
    assert a["error after 20 iterations"] < b["error after 20 iterations"]
    assert c["true Lip(g)"] > 1 and c["observed rate per iteration"] > 1  # lagging estimate: it breaks
    assert d["true Lip(g)"] == pytest.approx(1.44) and d["observed rate per iteration"] > 1
    for fig in (fig_a, fig_b, fig_c, fig_d):
        assert all(ax.get_title() and ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)


def test_inverse_convergence_figure_draws_every_curve():
    results = {0.5: {"fixed point": [1.0, 0.5], "Anderson": [1.0, 0.1], "Banach bound": [2.0, 1.0]}}
    fig = nb02.figures.plot_inverse_convergence(results)
    assert len(fig.axes[0].lines) == 3
    plt.close(fig)


# --- exercise checks --------------------------------------------------------------------------
def test_banach_exercise_check():
    k = invertibility.banach_iterations(0.9, 1e-6, 1.0)
    assert nb02.checks.check_banach_iterations(k)
    assert not nb02.checks.check_banach_iterations(k - 1)
    assert not nb02.checks.check_banach_iterations(True)


def test_bi_lipschitz_exercise_check():
    assert nb02.checks.check_bi_lipschitz_bounds(1.75, 4.0)
    assert not nb02.checks.check_bi_lipschitz_bounds(1.75, 1 / 0.75)


def test_conv_exercise_check_wants_the_operator_norm():
    torch.manual_seed(0)
    conv = LipschitzConv2d(4, 4, 3, coeff=None).to(torch.float64)
    before = conv.weight.detach().clone()
    assert not nb02.checks.check_conv_normalised(conv, 0.9 / reshaped_kernel_norm(conv))  # the wrong norm
    assert nb02.checks.check_conv_normalised(conv, 0.9 / operator_norm(conv, (4, 16, 16)))
    assert torch.equal(conv.weight, before)  # the check measures a copy: the learner's layer is unchanged
