"""ResNets as dynamics (notebook 01): crossings and folds are measured right, and Thm. 1 holds."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iresnet_mini import lipschitz
from iresnet_mini.lessons import checks as lesson_checks
from iresnet_mini.lessons import nb01
from iresnet_mini.lessons.nb01 import dynamics
from iresnet_mini.lipschitz import certify, lipschitz_upper_bound


def folding_stack() -> torch.nn.Sequential:
    """One plain 1D block F(x) = x - 3 relu(x): F' = -2 for x > 0 and F' = 1 for x < 0 (a fold)."""
    stack = dynamics.residual_stack(1, 1, hidden=1, coeff=None)
    first, last = stack[0].branch[0], stack[0].branch[-1]
    with torch.no_grad():
        first.weight.fill_(1.0)
        first.bias.zero_()
        last.weight.fill_(-3.0)
        last.bias.zero_()
    return stack.eval()


def constrained_stack(dim: int, depth: int, c: float, seed: int, scale: float = 5.0) -> torch.nn.Sequential:
    """An i-ResNet with random weights drawn `scale` times too large, normalised and certified."""
    torch.manual_seed(seed)
    stack = dynamics.residual_stack(dim, depth, hidden=8, coeff=c)
    with torch.no_grad():
        for p in stack.parameters():
            p.mul_(scale)
    stack.eval()
    stack(dynamics.grid_inputs(dim, 3))  # layers learn their power-iteration vectors
    certify(stack, tol=1e-12)
    return stack


# --- count_crossings ------------------------------------------------------------------------
def test_full_reversal_of_three_points_is_three_crossings():
    assert dynamics.count_crossings(torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])) == 3


def test_increasing_maps_have_no_crossings():
    x = torch.linspace(-2, 2, 9)
    assert dynamics.count_crossings(torch.stack([x, 3 * x + 1, torch.exp(x)])) == 0


def test_crossings_are_summed_over_layers():
    a = torch.tensor([0.0, 1.0])
    assert dynamics.count_crossings(torch.stack([a, -a, a])) == 2


def test_count_crossings_accepts_trailing_unit_dimension():
    states = torch.tensor([[0.0, 1.0], [1.0, 0.0]])[..., None]
    assert dynamics.count_crossings(states) == 1


def test_count_crossings_rejects_2d_states():
    with pytest.raises(ValueError, match="fold_fraction"):
        dynamics.count_crossings(torch.zeros(3, 4, 2))


# --- folds ----------------------------------------------------------------------------------
def test_a_folding_map_has_crossings_and_folds():
    stack = folding_stack()
    x = dynamics.grid_inputs(1, 41)
    assert dynamics.count_crossings(dynamics.trajectory(stack, x)) > 0
    assert 0 < dynamics.fold_fraction(stack, x) < 1
    dets = dynamics.layer_dets(stack, x)[0]
    assert torch.allclose(dets[x[:, 0] > 0], torch.tensor(-2.0, dtype=dets.dtype))


def test_layer_det_is_the_derivative_in_1d():
    stack = folding_stack()
    x = dynamics.grid_inputs(1, 11)
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(stack(x_req).sum(), x_req)
    assert torch.allclose(dynamics.network_det(stack, x), grad[:, 0])


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(1, 2), depth=st.integers(1, 4), c=st.floats(0.05, 0.99), seed=st.integers(0, 10_000))
def test_an_iresnet_never_folds_or_crosses(dim, depth, c, seed):
    """Thm. 1: Lip(g_t) <= c < 1 gives det(I + J_g) >= (1 - c)^d > 0 and, in 1D, increasing layers."""
    stack = constrained_stack(dim, depth, c, seed)
    x = dynamics.grid_inputs(dim, 25 if dim == 1 else 9) * 2  # also outside the training range
    dets = dynamics.layer_dets(stack, x)
    assert float(dets.min()) >= (1 - c) ** dim - 1e-9
    assert dynamics.fold_fraction(stack, x) == 0.0
    if dim == 1:
        assert dynamics.count_crossings(dynamics.trajectory(stack, x)) == 0


# --- building blocks ------------------------------------------------------------------------
def test_grid_inputs_is_row_major_with_x1_fastest():
    grid = dynamics.grid_inputs(2, 3)
    assert grid.shape == (9, 2)
    assert grid[:3, 0].tolist() == [-2.0, 0.0, 2.0] and grid[:3, 1].tolist() == [-2.0, -2.0, -2.0]


def test_sample_inputs_lie_in_the_box_and_are_seeded():
    x = dynamics.sample_inputs("fold", 100, seed=3)
    assert x.shape == (100, 2) and x.abs().max() <= dynamics.LIMIT
    assert torch.equal(x, dynamics.sample_inputs("fold", 100, seed=3))


def test_targets_of_the_tasks():
    x = torch.tensor([[-1.0, 2.0]], dtype=dynamics.DTYPE)
    assert dynamics.task_target("fold", x).tolist() == [[1.0, 2.0]]
    assert dynamics.task_target("reflect", x).tolist() == [[1.0, 2.0]]
    assert dynamics.task_target("abs", x[:, :1]).tolist() == [[1.0]]


def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="unknown task"):
        dynamics.task_dim("spiral")
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        dynamics.task_target("abs", torch.zeros(3, 2))
    with pytest.raises(ValueError, match="depth"):
        dynamics.residual_stack(1, 0)
    with pytest.raises(ValueError, match="Thm. 1"):
        dynamics.residual_stack(1, 2, coeff=1.0)


def test_residual_stack_bounds_each_layer_by_c_and_each_branch_by_c_to_the_m():
    stack = constrained_stack(2, 3, 0.7, seed=0)  # weights 5x too large: the normalisation binds
    m = dynamics.BRANCH_LAYERS
    for block in stack:
        norms = [lipschitz.operator_norm(layer, (layer.in_features,)) for layer in lipschitz.lipschitz_layers(block.branch)]
        assert len(norms) == m and norms == pytest.approx([0.7] * m, rel=1e-6)  # c is a per-layer bound
        assert lipschitz_upper_bound(block.branch, (2,)) == pytest.approx(0.7 ** m, rel=1e-6)


# --- trained models: what notebook 01 shows ------------------------------------------------
def test_trained_resnet_folds_where_the_iresnet_cannot():
    plain, plain_mse = dynamics.trained_stack("abs", 6, None)
    inv, inv_mse = dynamics.trained_stack("abs", 6, 0.9)
    assert dynamics.trained_stack("abs", 6, None)[0] is plain  # kept for the session
    plain_numbers = dynamics.measure(plain, "abs", 41)
    inv_numbers = dynamics.measure(inv, "abs", 41)
    assert plain_mse < 0.05 and plain_numbers["crossings"] > 0 and plain_numbers["fold fraction"] > 0
    # no increasing map fits |x| on [-2, 2] better than 0.229 (flat up to 2 sqrt(2) - 2, then the diagonal);
    # the recipe's i-ResNet gets close to it
    assert 0.2 < inv_mse < 0.26 and inv_numbers["crossings"] == 0 and inv_numbers["fold fraction"] == 0


@pytest.mark.slow
def test_trained_2d_resnet_folds_the_plane_and_the_iresnet_does_not():
    plain, plain_mse = dynamics.trained_stack("fold", 6, None)
    inv, _ = dynamics.trained_stack("fold", 6, 0.9)
    x = dynamics.grid_inputs(2, 21)
    assert plain_mse < 0.05
    assert float((dynamics.network_det(plain, x) <= 0).double().mean()) > 0.3
    assert dynamics.fold_fraction(inv, x) == 0.0


# --- figures and the widget's draw function --------------------------------------------------
def test_draw_dynamics_readout_changes_with_c():
    fig_a, a = nb01.figures.draw_dynamics(0.5, False, depth=2, steps=20, n_grid=11)
    fig_b, b = nb01.figures.draw_dynamics(0.9, False, depth=2, steps=20, n_grid=11)
    assert a["model"] != b["model"] and a["min det"] != b["min det"]
    assert a["max Lip(g_t)"] <= 0.5 + 1e-6 and b["max Lip(g_t)"] <= 0.9 + 1e-6
    assert a["crossings"] == b["crossings"] == 0 and a["fold fraction"] == b["fold fraction"] == 0.0
    assert fig_a.axes[0].get_title() and fig_a.axes[0].get_xlabel()
    plt.close(fig_a)
    plt.close(fig_b)


def test_draw_dynamics_shows_the_shipped_model_on_the_grid_and_says_so():
    fig_a, a = nb01.figures.draw_dynamics(0.9, False, depth=6, n_grid=11)
    fig_b, b = nb01.figures.draw_dynamics(0.9, False, depth=2, steps=20, n_grid=11)
    assert a["weights"] == f"precomputed (shipped, {dynamics.RECIPE['steps']} steps)"
    assert b["weights"] == "trained now (20 steps)"
    plt.close(fig_a)
    plt.close(fig_b)


def test_draw_dynamics_without_constraint_ignores_c():
    fig_a, a = nb01.figures.draw_dynamics(0.5, True, depth=2, task="fold", steps=20, n_grid=9)
    fig_b, b = nb01.figures.draw_dynamics(0.9, True, depth=2, task="fold", steps=20, n_grid=9)
    assert a == b and a["model"] == "ResNet" and "crossings" not in a
    plt.close(fig_a)
    plt.close(fig_b)


def test_depth_figures_have_one_panel_per_layer():
    stacks = {None: dynamics.trained_stack("fold", 2, None, 5)[0], 0.9: dynamics.trained_stack("fold", 2, 0.9, 5)[0]}
    fig = nb01.figures.plot_grid_through_depth(stacks)
    assert len(fig.axes) == 2 * 3
    plt.close(fig)
    fig = nb01.figures.plot_layer_folds(stacks, 9)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert [t.split(":")[0] for t in titles] == ["layer 1", "layer 2", "layer 1", "layer 2"]
    assert titles[2:] == ["layer 1: 0% fold", "layer 2: 0% fold"]  # the i-ResNet row
    plt.close(fig)


# --- exercise checks --------------------------------------------------------------------------
def test_min_slope_check_accepts_the_product_and_rejects_one_block():
    assert nb01.checks.check_min_slope(0.5 ** 8)
    assert not nb01.checks.check_min_slope(0.5)


def test_crossing_counter_check():
    def right(a, b):
        return int((((a[:, None] - a[None]) * (b[:, None] - b[None])) < 0).sum()) // 2

    def twice(a, b):
        return 2 * right(a, b)

    def broken(a, b):
        raise RuntimeError("oops")

    assert nb01.checks.check_crossing_counter(right)
    assert not nb01.checks.check_crossing_counter(twice)
    assert not nb01.checks.check_crossing_counter(broken)


def test_crossing_counter_check_reports_an_unwritten_function_as_not_answered(capsys):
    def stub(before, after):
        ...

    def not_implemented(before, after):
        raise NotImplementedError

    assert not nb01.checks.check_crossing_counter(stub)
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_ANSWERED)
    assert not nb01.checks.check_crossing_counter(not_implemented)
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_ANSWERED)
    assert not nb01.checks.check_crossing_counter(lambda a, b: 0)  # a wrong count is not "unanswered"
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_YET)
