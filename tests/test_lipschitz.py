"""Spectral normalisation: the true operator norm ends below c (paper Sec. 2)."""
import copy
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from iresnet_mini import lipschitz as L


def _train_power_iteration(layer, x, steps):
    layer.train()
    for _ in range(steps):
        layer(x)


@pytest.mark.parametrize("coeff", [0.5, 0.9])
def test_dense_layer_true_norm_is_at_most_c_after_power_iteration(coeff):
    torch.manual_seed(0)
    layer = L.LipschitzLinear(20, 30, coeff=coeff)
    with torch.no_grad():
        layer.weight.mul_(5.0)  # make the constraint bind
    _train_power_iteration(layer, torch.randn(4, 20), 50)
    true = L.operator_norm(layer, (20,))
    assert true <= coeff * 1.01
    assert true >= coeff * 0.99  # it binds: the layer was rescaled exactly to c


@pytest.mark.parametrize("size", [5, 8, 16])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3_operator_norm_is_at_most_c_at_several_input_sizes(size, stride):
    torch.manual_seed(size)
    layer = L.LipschitzConv2d(3, 4, 3, coeff=0.9, stride=stride)
    with torch.no_grad():
        layer.weight.mul_(4.0)
    x = torch.randn(2, 3, size, size)
    _train_power_iteration(layer, x, 1)
    layer.power_iteration_to_tolerance(1e-8)
    true = L.operator_norm(layer, (3, size, size))
    assert true <= 0.9 * 1.01


def test_reshaped_kernel_norm_is_not_the_conv_operator_norm():
    torch.manual_seed(1)
    layer = L.LipschitzConv2d(4, 4, 3, coeff=None)
    kernel = L.reshaped_kernel_norm(layer)
    true = L.operator_norm(layer, (4, 16, 16))
    # for a 3x3 kernel the operator norm can exceed the reshaped norm by up to a factor 3 = k
    assert abs(true - kernel) / true > 0.05
    assert true <= 3 * kernel + 1e-9


def test_one_by_one_conv_reshaped_norm_is_exact():
    torch.manual_seed(2)
    layer = L.LipschitzConv2d(5, 6, 1, coeff=None)
    assert L.operator_norm(layer, (5, 4, 4)) == pytest.approx(L.reshaped_kernel_norm(layer), rel=1e-6)


def test_exact_and_power_operator_norm_agree():
    torch.manual_seed(3)
    layer = L.LipschitzConv2d(2, 3, 3, coeff=None)
    exact = L.operator_norm(layer, (2, 6, 6), method="exact")
    power = L.operator_norm(layer, (2, 6, 6), method="power", n_iter=3000)
    assert power == pytest.approx(exact, rel=1e-4)


def test_power_iteration_runs_only_in_training_mode():
    layer = L.LipschitzLinear(6, 6, coeff=0.9)
    x = torch.randn(3, 6)
    layer.train()
    layer(x)
    u = layer.u.clone()
    layer.eval()
    layer(x)
    assert torch.equal(u, layer.u)
    layer.train()
    layer(x)
    assert not torch.equal(u, layer.u)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_new_input_size_is_normalised_as_tightly_as_the_first(mode):
    # The operator (and its norm) depends on the input size. A layer trained on 6x6 inputs
    # and then called on 10x10 must estimate the new operator's norm, not start afresh from
    # a random vector whose estimate is well below the truth (a weaker constraint).
    torch.manual_seed(6)
    layer = L.LipschitzConv2d(3, 4, 3, coeff=0.5)
    with torch.no_grad():
        layer.weight.mul_(4.0)
    _train_power_iteration(layer, torch.randn(2, 3, 6, 6), 200)
    getattr(layer, mode)()
    layer(torch.randn(2, 3, 10, 10))
    assert layer.v.shape == (1, 3, 10, 10)
    effective = L.operator_norm(layer, (3, 10, 10))  # the normalised weight's true norm there
    assert 0.5 * 0.98 <= effective <= 0.5 * 1.02


def test_power_iteration_vectors_are_saved_in_the_state_dict_and_restored():
    torch.manual_seed(4)
    layer = L.LipschitzConv2d(3, 5, 3, coeff=0.7)
    x = torch.randn(2, 3, 7, 9)
    layer(x)
    state = layer.state_dict()
    assert state["v"].shape == (1, 3, 7, 9) and state["u"].shape == (1, 5, 7, 9)
    fresh = L.LipschitzConv2d(3, 5, 3, coeff=0.7)
    fresh.load_state_dict(state)
    fresh.eval(), layer.eval()
    assert torch.allclose(fresh(x), layer(x))


def test_certify_reports_every_constrained_layer_at_most_c():
    torch.manual_seed(5)
    net = nn.Sequential(L.LipschitzLinear(4, 8, coeff=0.6), nn.ELU(), L.LipschitzLinear(8, 4, coeff=0.6),
                        L.LipschitzLinear(4, 4, coeff=None))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    net(torch.randn(2, 4))
    report = L.certify(net)
    assert len(report) == 2
    for row in report:
        assert row["effective_norm"] <= 0.6 + 1e-9


def test_certify_finds_the_top_singular_value_where_a_power_iteration_creeps():
    # Top two singular values 1.0 and 0.999, the power iteration started on the second right singular
    # vector (up to 1e-4): its estimate changes by less than 1e-6 per step, so a run "to tolerance" stops at
    # 0.999, and the layer's true norm ends above c. certify takes the top pair from an SVD instead.
    torch.manual_seed(0)
    q_left, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    q_right, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    weight = q_left @ torch.diag(torch.tensor([1.0, 0.999, 0.5, 0.4, 0.3, 0.2], dtype=torch.float64)) @ q_right.T
    layer = L.LipschitzLinear(6, 6, coeff=0.9).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
    layer(torch.randn(1, 6, dtype=torch.float64))
    with torch.no_grad():
        layer.v.copy_(L._normalize(q_right[:, 1] + 1e-4 * q_right[:, 0]))
        layer.u.copy_(L._normalize(layer.weight @ layer.v))
    creeping = copy.deepcopy(layer)
    sigma, _ = creeping.power_iteration_to_tolerance(tol=1e-6)
    assert sigma < 0.9995  # stopped short of the top singular value
    creeping.eval()
    assert L.operator_norm(creeping, (6,)) > 0.9 * 1.0004  # so the layer's true norm exceeds c
    (row,) = L.certify(layer)
    assert row["sigma_hat"] == pytest.approx(1.0, rel=1e-12)
    layer.eval()
    assert L.operator_norm(layer, (6,)) == pytest.approx(0.9, rel=1e-12)


def test_no_constraint_layer_keeps_its_weights():
    layer = L.LipschitzLinear(3, 3, coeff=None)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3) * 7)
    assert torch.allclose(layer(torch.ones(1, 3)), 7 * torch.ones(1, 3) + layer.bias)


@given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(float("nan"))))
@settings(max_examples=25, deadline=None)
def test_coeff_outside_open_unit_interval_is_rejected(coeff):
    with pytest.raises(ValueError, match="coeff"):
        L.LipschitzLinear(2, 2, coeff=coeff)


def test_wrong_input_shape_gives_clear_error():
    with pytest.raises(ValueError, match="last dimension 4"):
        L.LipschitzLinear(4, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        L.LipschitzConv2d(3, 2, 3)(torch.randn(3, 4, 5, 5))


@pytest.mark.parametrize("name", sorted(L.ACTIVATIONS))
def test_every_activation_is_1_lipschitz(name):
    act = L.get_activation(name)
    x = torch.linspace(-8, 8, 20001, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    assert grad.abs().max() <= 1.0 + 1e-6


def test_unknown_activation_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match="lipswish"):
        L.get_activation("sigmoidish")


# --- checkpoints on another device or dtype; in-place power iteration ---------------------------
def _seen(layer, x):
    layer.train()
    layer(x)
    return layer


@pytest.mark.parametrize("make", [lambda: L.LipschitzConv2d(3, 4, 3, coeff=0.9), lambda: L.LipschitzLinear(6, 5)])
def test_a_float32_checkpoint_loads_into_a_float64_model_and_keeps_training(make):
    torch.manual_seed(0)
    shape = (2, 3, 8, 8) if isinstance(make(), L.LipschitzConv2d) else (2, 6)
    source = _seen(make(), torch.randn(shape))
    target = make().double()
    target.load_state_dict(source.state_dict())
    assert target.u.dtype == target.v.dtype == torch.float64  # the layer's dtype, not the checkpoint's
    assert torch.allclose(target.u, source.u.double())
    target.train()
    target(torch.randn(shape, dtype=torch.float64))  # the power iteration runs (it failed on mixed dtypes)


def test_a_checkpoint_whose_tensors_were_moved_loads_on_the_layers_own_terms():
    torch.manual_seed(0)
    source = _seen(L.LipschitzConv2d(3, 4, 3, coeff=0.9), torch.randn(2, 3, 8, 8))
    moved = {k: v.double() for k, v in source.state_dict().items()}  # e.g. saved from a float64 copy
    target = L.LipschitzConv2d(3, 4, 3, coeff=0.9)
    target.load_state_dict(moved)
    assert target.u.dtype == torch.float32 and target.u.device == target.weight.device
    target.train()
    target(torch.randn(2, 3, 8, 8))


def test_the_power_iteration_updates_u_and_v_in_place():
    torch.manual_seed(0)
    layer = _seen(L.LipschitzConv2d(3, 4, 3, coeff=0.9), torch.randn(2, 3, 8, 8))
    u, v, u_before = layer.u, layer.v, layer.u.clone()
    layer(torch.randn(2, 3, 8, 8))
    assert layer.u is u and layer.v is v  # the same tensors (a DataParallel replica's updates are kept)
    assert not torch.equal(layer.u, u_before)


def test_two_forward_passes_before_one_backward_still_differentiate():
    layer = L.LipschitzLinear(6, 5)
    layer.train()
    loss = layer(torch.randn(3, 6)).sum() + layer(torch.randn(3, 6)).sum()  # u, v change in between
    loss.backward()
    assert layer.weight.grad is not None
