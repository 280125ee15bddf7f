"""Flows: change of variables by brute force, round trips, bits/dim by hand."""
import math

import pytest
import torch

from iresnet_mini import blocks, flows


def _image_flow():
    torch.manual_seed(0)
    layers = [flows.ActNorm(1), flows.Squeeze(),
              flows.ResidualFlowLayer(blocks.conv_branch(4, 8, coeff=0.8), estimator="exact"),
              flows.ActNorm(4),
              flows.ResidualFlowLayer(blocks.conv_branch(4, 8, coeff=0.8), estimator="exact")]
    flow = flows.SequentialFlow(layers, event_shape=(4, 2, 2)).double()
    flow(torch.randn(16, 1, 4, 4, dtype=torch.float64))  # data-dependent init, power iteration
    flow.eval()
    return flow


def test_log_prob_equals_brute_force_change_of_variables():
    flow = _image_flow()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    for i in range(3):
        xi = x[i:i + 1]
        jac = torch.autograd.functional.jacobian(lambda t: flow(t)[0].reshape(-1), xi).reshape(16, 16)
        z = flow(xi)[0].reshape(-1)
        expected = -0.5 * (z ** 2).sum() - 8 * math.log(2 * math.pi) + torch.linalg.slogdet(jac).logabsdet
        assert flow.log_prob(xi).item() == pytest.approx(expected.item(), abs=1e-8)


def test_sample_then_log_prob_is_consistent():
    flow = _image_flow()
    gen = torch.Generator().manual_seed(1)
    z = flow.base.sample(5, generator=gen, dtype=torch.float64)
    x = flow.inverse(z)
    z_back, logdet = flow(x)
    assert torch.allclose(z_back, z, atol=1e-6)
    assert torch.allclose(flow.log_prob(x), flow.base.log_prob(z) + logdet, atol=1e-5)
    assert flow.sample(4).shape == (4, 1, 4, 4)


def test_actnorm_data_dependent_init_and_round_trip():
    torch.manual_seed(2)
    layer = flows.ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1) + 4
    y, logdet = layer(x)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(logdet, torch.full((64,), float(layer.log_scale.detach().sum() * 25)))
    assert torch.allclose(layer.inverse(y), x, atol=1e-5)


def test_actnorm_on_zero_padded_channels_keeps_a_finite_unit_scale():
    layer = flows.ActNorm(4)
    x = torch.cat([torch.randn(32, 2, 3, 3), torch.zeros(32, 2, 3, 3)], 1)
    y, logdet = layer(x)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert torch.equal(layer.log_scale[2:], torch.zeros(2))


def test_squeeze_round_trip_and_space_to_depth_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y, logdet = flows.Squeeze()(x)
    assert y.shape == (2, 12, 2, 3) and torch.equal(logdet, torch.zeros(2))
    assert torch.equal(flows.Squeeze().inverse(y), x)
    # the four channels of one input channel are its 2x2 blocks' corners
    assert torch.equal(y[0, :4, 0, 0], torch.tensor([x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="even H and W"):
        flows.Squeeze()(torch.zeros(1, 1, 3, 4))


def test_bits_per_dim_hand_computation():
    d = 784
    # uniform density on [0, 1)^D: log p = 0 -> exactly 8 bits per dimension
    assert flows.bits_per_dim(torch.tensor(0.0), d).item() == pytest.approx(8.0)
    # a density of 2^-D (one extra bit everywhere) -> 9 bits
    assert flows.bits_per_dim(torch.tensor(-d * math.log(2)), d).item() == pytest.approx(9.0)
    # preprocessing log-det enters with the model's log-likelihood
    assert flows.bits_per_dim(torch.tensor(-d * math.log(2)), d, logdet_preprocess=d * math.log(2)).item() \
        == pytest.approx(8.0)


def test_diagonal_gaussian_matches_torch_distributions():
    prior = flows.DiagonalGaussian((3,))
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        prior.log_std.copy_(torch.tensor([0.1, -0.3, 0.7]))
    z = torch.randn(10, 3)
    ref = torch.distributions.Normal(prior.mean, prior.log_std.exp()).log_prob(z).sum(1)
    assert torch.allclose(prior.log_prob(z), ref, atol=1e-5)


def test_set_estimator_switches_every_residual_layer():
    flow = _image_flow()
    flows.set_estimator(flow, "series", n_terms=3)
    kinds = [m.estimator for m in flow.modules() if isinstance(m, blocks.InvertibleResidualBlock)]
    assert kinds == ["series", "series"]
    with pytest.raises(ValueError, match="unknown log-det estimator"):
        flows.set_estimator(flow, "bogus")


def test_non_finite_input_is_rejected():
    flow = _image_flow()
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow.log_prob(x)


def test_actnorm_keeps_its_initialisation_in_a_python_flag_that_checkpoints_restore():
    from iresnet_mini.bench import DispatchCounter

    norm = flows.ActNorm(3)
    norm.train()
    x = torch.randn(16, 3, 4, 4) * 5 + 2
    norm(x)
    assert norm.is_initialized and bool(norm.initialized)
    with DispatchCounter() as counter:
        norm(x)
    assert counter.syncs == 0  # a forward pass reads nothing back to the host
    fresh = flows.ActNorm(3)
    fresh.load_state_dict(norm.state_dict())
    assert fresh.is_initialized
    fresh.train()
    fresh(torch.zeros(16, 3, 4, 4))  # already initialised: this batch must not re-initialise it
    assert torch.equal(fresh.bias, norm.bias)
