"""The invertible residual block: Thm. 1 and the fixed-point inverse (Alg. 1)."""

import pytest
import torch

from iresnet_mini import blocks


def _bind(branch, scale=3.0):
    """Scale the weights up so that the spectral normalisation binds (Lip(g) near c^3)."""
    with torch.no_grad():
        for name, p in branch.named_parameters():
            if name.endswith("weight"):
                p.mul_(scale)
    return branch


def _dense_block(dim, coeff, dtype):
    return blocks.InvertibleResidualBlock(_bind(blocks.mlp_branch(dim, 32, 2, coeff=coeff))).to(dtype)


def _conv_block(channels, coeff, dtype):
    return blocks.InvertibleResidualBlock(_bind(blocks.conv_branch(channels, 8, coeff=coeff))).to(dtype)


def _settle(block, x, steps=30):
    block.train()
    for _ in range(steps):
        block(x)
    block.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("dim", [2, 7, 32])
def test_inverse_recovers_input_at_c_09_dense(dim, dtype, tol):
    torch.manual_seed(dim)
    block = _dense_block(dim, 0.9, dtype)
    x = torch.randn(16, dim, dtype=dtype) * 2
    _settle(block, x)
    x_rec, info = block.inverse(block(x), max_iter=200, return_info=True)
    assert info.converged
    assert (x_rec - x).abs().max() < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("shape", [(2, 8, 8), (3, 5, 7), (4, 16, 16)])
def test_inverse_recovers_input_at_c_09_conv(shape, dtype, tol):
    torch.manual_seed(sum(shape))
    block = _conv_block(shape[0], 0.9, dtype)
    x = torch.randn(4, *shape, dtype=dtype)
    _settle(block, x)
    x_rec = block.inverse(block(x), max_iter=200)
    assert (x_rec - x).abs().max() < tol


def test_anderson_inverse_matches_and_needs_fewer_iterations_near_c_1():
    torch.manual_seed(0)
    # a single constrained layer: Lip(g) = c exactly, the slowest case for plain fixed point
    branch = _bind(torch.nn.Sequential(blocks.LipschitzLinear(8, 8, coeff=0.97), torch.nn.Tanh()), 5.0)
    block = blocks.InvertibleResidualBlock(branch).double()
    x = torch.randn(32, 8, dtype=torch.float64)
    _settle(block, x, 60)
    y = block(x)
    x_fp, fp = block.inverse(y, max_iter=2000, atol=1e-9, return_info=True)
    x_aa, aa = block.inverse(y, max_iter=2000, atol=1e-9, method="anderson", return_info=True)
    assert fp.converged and aa.converged
    assert (x_aa - x).abs().max() < 1e-6 and (x_fp - x).abs().max() < 1e-6
    assert aa.iterations < fp.iterations


def test_inverse_fails_without_the_constraint_when_lip_g_exceeds_1():
    torch.manual_seed(1)
    branch = blocks.mlp_branch(4, 32, 2, coeff=None)
    _bind(branch, 4.0)
    block = blocks.InvertibleResidualBlock(branch).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    # Lip(g) > 1: the Jacobian of g has a singular value above 1 somewhere
    from iresnet_mini.logdet import jacobian
    assert torch.linalg.matrix_norm(jacobian(branch, x), ord=2).max() > 1
    with pytest.warns(blocks.InverseNotConvergedWarning, match="did not converge"):
        x_rec, info = block.inverse(block(x), max_iter=100, return_info=True)
    assert not info.converged
    assert not torch.isfinite(x_rec).all() or (x_rec - x).abs().max() > 1e-2


def test_float32_inverse_of_large_features_converges_to_float_precision():
    """Trained classifiers' features reach thousands, where a float32 step cannot get below 1e-5 absolute."""
    torch.manual_seed(3)
    block = _conv_block(4, 0.9, torch.float32)
    x = 5000 * torch.randn(2, 4, 8, 8)
    _settle(block, x)
    y = block(x)
    x_rec, info = block.inverse(y, max_iter=200, return_info=True)
    assert info.converged and info.iterations < 100
    reference = block.double().inverse(y.double(), max_iter=500, atol=1e-9)
    assert (x_rec.double() - reference).abs().max() < 1e-5 * y.abs().max()  # float32 accuracy, relatively
    block.float()
    with pytest.warns(blocks.InverseNotConvergedWarning):  # the floor never accepts an unconverged iterate
        _, early = block.inverse(y, max_iter=3, return_info=True)
    assert not early.converged


def test_inverse_reports_iterations_and_residual_history():
    torch.manual_seed(2)
    block = _dense_block(3, 0.5, torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    _settle(block, x)
    _, info = block.inverse(block(x), atol=1e-10, return_info=True)
    assert info.iterations == len(info.history)
    assert info.residual == info.history[-1] <= 1e-10
    # geometric convergence at a rate of at most Lip(g) <= 0.5^3 per step
    ratios = [b / a for a, b in zip(info.history[:-1], info.history[1:]) if a > 1e-13]
    assert max(ratios) <= 0.5


def test_inverse_does_not_run_power_iteration_and_restores_training_mode():
    block = _dense_block(3, 0.9, torch.float32)
    x = torch.randn(4, 3)
    block.train()
    y = block(x)
    u = block.branch[0].u.clone()
    block.inverse(y)
    assert block.training
    assert torch.equal(u, block.branch[0].u)


def test_forward_with_logdet_uses_the_chosen_estimator():
    torch.manual_seed(3)
    block = _dense_block(3, 0.7, torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    _settle(block, x)
    y, ld_exact = block.forward_with_logdet(x, estimator="exact")
    assert torch.allclose(y, block(x))
    _, ld_series = block.forward_with_logdet(x, estimator="series", n_terms=30, n_samples=200)
    assert torch.allclose(ld_series, ld_exact, atol=0.1)


def test_bad_inputs_get_clear_errors():
    block = _dense_block(3, 0.9, torch.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        block.inverse(torch.tensor([[float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="batch dimension"):
        block.inverse(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown inverse method"):
        block.inverse(torch.zeros(1, 3), method="newton")
    with pytest.raises(ValueError, match="unknown log-det estimator"):
        blocks.InvertibleResidualBlock(blocks.mlp_branch(2, 4), estimator="magic")
    with pytest.raises(ValueError, match="positive integer"):
        blocks.mlp_branch(0, 4)
