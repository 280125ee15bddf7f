"""Density models examined (notebooks 07-08): bits/dim bookkeeping, estimators, samples, a trained block."""
from __future__ import annotations

import math
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iresnet_mini import data, facts, flows, logdet, models, pretrained, train
from iresnet_mini.lessons import nb07, nb08
from iresnet_mini.lessons.nb03 import logdet_study
from iresnet_mini.lessons.nb07 import density
from iresnet_mini.blocks import InvertibleResidualBlock
from iresnet_mini.lipschitz import LipschitzConv2d
from iresnet_mini.lipschitz import frozen_power_iteration as lipschitz_frozen

SHAPE = (1, 8, 8)


def _images(n: int, seed: int = 0, shape=SHAPE) -> torch.Tensor:
    """Dequantised random 8-bit images (n, *shape) in [0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)
    return data.dequantize(k, generator)


def _flow(shape=SHAPE, seed: int = 0, logit_alpha=None) -> models.MultiScaleFlow:
    """A tiny flow with ActNorm initialised on data (eval mode)."""
    torch.manual_seed(seed)
    model = models.build_model(models.flow_config("tiny", shape))
    model.train()
    with torch.no_grad():
        model(train.preprocess(_images(64, seed=seed + 1, shape=shape), logit_alpha)[0])
    return model.eval()


@pytest.fixture(scope="module")
def flow():
    return _flow()


@pytest.fixture(scope="module")
def comparison(flow):
    return density.compare_estimators(flow, _images(3), None, series_terms=(1, 8), n_repeats=6)


# --- bits/dim bookkeeping -------------------------------------------------------------------------

@pytest.mark.parametrize("logit_alpha", [None, 0.05])
def test_breakdown_terms_add_up_to_the_bits_per_dim_of_train(logit_alpha):
    model, x = _flow(logit_alpha=logit_alpha), _images(5)
    with density.using_estimator(model, "exact"):
        breakdown = density.bits_per_dim_breakdown(model, x, logit_alpha, batch_size=2)
        expected = train.density_bits_per_dim(model, x, logit_alpha)
    assert sum(breakdown.contributions().values()) == pytest.approx(breakdown.bits_per_dim, abs=1e-5)
    np.testing.assert_allclose(breakdown.per_image, expected.detach().numpy(), rtol=1e-5)
    n_layers = sum(2 * n for n in model.config.blocks)
    assert len(breakdown.layer_names) == len(breakdown.per_layer_nats) == n_layers
    logit_logdet = 0.0 if logit_alpha is None else float(data.logit_transform(x, logit_alpha)[1].mean())
    assert breakdown.preprocess_nats == pytest.approx(logit_logdet, rel=1e-5, abs=1e-6)


def test_log_prob_terms_split_log_prob_into_prior_and_layer_log_dets(flow):
    y = train.preprocess(_images(4), None)[0]
    with density.using_estimator(flow, "exact"):
        terms = density.log_prob_terms(flow, y)
        log_prob = flow.log_prob(y)
    torch.testing.assert_close(terms["log_prob"], log_prob)
    torch.testing.assert_close(terms["prior"] + terms["per_layer"].sum(1), log_prob)
    assert terms["names"][0] == "scale 1 ActNorm 1" and terms["names"][1] == "scale 1 residual 1"


def test_using_estimator_restores_the_training_estimator(flow):
    blocks = [m for m in flow.modules() if isinstance(m, InvertibleResidualBlock)]
    with density.using_estimator(flow, "series", n_terms=7):
        assert blocks and all(b.estimator_kwargs == {"n_terms": 7} for b in blocks)
    assert all(b.estimator == flow.config.estimator and b.estimator_kwargs == flow.config.estimator_kwargs
               for b in blocks)


def _bits_per_dim_by_hand(model, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """bits/dim of dequantised MNIST images, written out from the formulas, not through the package's code paths:
    the logit transform and its Jacobian, ActNorm's affine map, every residual block's log-det from its full
    Jacobian (torch.func + slogdet), the squeezes and factored-out halves, and the diagonal Gaussian priors."""
    from torch.func import jacrev

    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    log_p = torch.log((1 - 2 * alpha) / (s * (1 - s))).flatten(1).sum(1)  # log|det dy/dx|
    assert not model.conditional  # the priors' term below is the unconditional diagonal Gaussians'
    h, latents = y, []
    for i, scale in enumerate(model.scales):
        for layer in scale:
            if isinstance(layer, flows.Squeeze):
                b, c, hh, ww = h.shape
                h = h.reshape(b, c, hh // 2, 2, ww // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, hh // 2, ww // 2)
            elif isinstance(layer, flows.ActNorm):
                h = (h + layer.bias.view(1, -1, 1, 1)) * torch.exp(layer.log_scale.view(1, -1, 1, 1))
                log_p = log_p + layer.log_scale.sum() * h[0, 0].numel()
            else:  # x + g(x), log det(I + J_g) of the full Jacobian, image by image
                branch = layer.block.branch
                for n in range(h.shape[0]):
                    jac = jacrev(lambda v: branch(v.unsqueeze(0)).squeeze(0))(h[n]).reshape(h[n].numel(), -1)
                    log_p[n] = log_p[n] + torch.linalg.slogdet(torch.eye(jac.shape[0], dtype=jac.dtype) + jac)[1]
                h = h + branch(h)
        if i < len(model.scales) - 1:
            k = model.priors[i].shape[0]
            latents.append(h[:, :k])
            h = h[:, k:]
    latents.append(h)
    for prior, z in zip(model.priors, latents):
        eps = (z - prior.mean) / torch.exp(prior.log_std)
        log_p = log_p + (-0.5 * eps ** 2 - prior.log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    return -log_p / (784 * math.log(2)) + 8


def test_bits_per_dim_of_the_shipped_mnist_model_equals_a_hand_computation(mnist_available):
    if "mnist-density" not in pretrained.manifest():
        pytest.skip("the MNIST density checkpoint is not shipped yet (scripts/make_pretrained.py mnist-density)")
    model, config, _ = pretrained.load_pretrained("mnist-density", device="cpu")
    model = model.double()
    x = density.test_images("mnist", 2).double()
    with torch.no_grad(), lipschitz_frozen():
        by_hand = _bits_per_dim_by_hand(model, x, config.logit_alpha)
    with density.using_estimator(model, "exact"), torch.no_grad():
        bits = -density.log_likelihood(model, x, config.logit_alpha) / (784 * math.log(2)) + 8
    torch.testing.assert_close(bits, by_hand, rtol=1e-9, atol=1e-9)
    assert 0.5 < float(bits.mean()) < 8


# --- estimators -----------------------------------------------------------------------------------

def test_exact_draws_are_deterministic_and_series_draws_are_reproducible(flow):
    x = _images(2)
    exact = density.estimator_draws(flow, x, None, "exact", 2)
    torch.testing.assert_close(exact[0], exact[1])
    a = density.estimator_draws(flow, x, None, "series", 3, seed=5, n_terms=2)
    b = density.estimator_draws(flow, x, None, "series", 3, seed=5, n_terms=2)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], a[1]), "every repeat must draw fresh probes"
    with pytest.raises(ValueError, match="n_repeats"):
        density.estimator_draws(flow, x, None, "series", 0)


def test_series_with_more_terms_is_closer_to_exact_in_expectation(comparison):
    rows = {r["estimator"]: r for r in comparison.rows()}
    assert set(rows) == {"series, 1 term", "series, 8 terms", "unbiased (roulette)"}
    assert rows["unbiased (roulette)"]["terms"] == 3.0
    assert all(r["std"] > 0 and r["bias_se"] > 0 for r in rows.values())
    # the exact truncation error of 8 terms is negligible: the measured bias is probe noise only
    assert abs(rows["series, 8 terms"]["bias"]) < 4 * rows["series, 8 terms"]["bias_se"] + 1e-6
    assert abs(rows["unbiased (roulette)"]["bias"]) < 4 * rows["unbiased (roulette)"]["bias_se"] + 1e-6


# --- samples and reconstructions --------------------------------------------------------------------

def test_samples_lie_in_the_unit_interval_and_every_inverse_converges(flow):
    images, report = density.sample_images(flow, 6, None, temperature=0.8, seed=2)
    assert images.shape == (6, *SHAPE) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert report["converged"] and len(report["iterations"]) == sum(flow.config.blocks)
    assert 0 <= report["outside_unit_interval"] <= 1
    again, _ = density.sample_images(flow, 6, None, temperature=0.8, seed=2)
    torch.testing.assert_close(images, again)
    with pytest.raises(ValueError, match="temperature"):
        density.sample_images(flow, 2, None, temperature=0)


@pytest.mark.parametrize("logit_alpha", [None, 0.05])
def test_reconstruction_recovers_test_images(logit_alpha):
    model, x = _flow(logit_alpha=logit_alpha), _images(4)
    result = density.reconstruct(model, x, logit_alpha)
    assert result["converged"]
    assert float(result["errors"].max()) < 1e-4
    assert result["x_rec"].shape == x.shape


# --- one trained block --------------------------------------------------------------------------------

def test_frozen_branch_is_the_same_function_and_leaves_the_original_alone(flow):
    layer = [m for _, m in density.flow_layers(flow) if isinstance(m, flows.ResidualFlowLayer)][1]
    branch = layer.block.branch
    inputs = density.block_input(flow, train.preprocess(_images(3), None)[0], 1)
    convs = [m for m in branch if isinstance(m, LipschitzConv2d)]
    u_before = [m.u.clone() for m in convs]
    effective = {id(m): m.normalized_weight().detach() for m in convs}  # eval mode: no power iteration
    frozen = density.frozen_branch(branch)
    torch.testing.assert_close(frozen(inputs), branch(inputs))
    small = density.center_crop(inputs, 2)  # another input size: the trained weights must stay
    expected = small
    for m in branch:
        expected = (F.conv2d(expected, effective[id(m)], m.bias, m.stride, m.padding)
                    if isinstance(m, LipschitzConv2d) else m(expected))
    torch.testing.assert_close(frozen(small), expected)
    assert all(m.coeff is None for m in frozen if isinstance(m, LipschitzConv2d))
    assert all(torch.equal(a, m.u) for a, m in zip(u_before, convs))


def test_block_input_is_what_the_first_residual_layer_receives(flow):
    y = train.preprocess(_images(2), None)[0]
    squeezed, _ = flow.scales[0][0](y)
    normed, _ = flow.scales[0][1](squeezed)
    torch.testing.assert_close(density.block_input(flow, y, 0), normed)
    with pytest.raises(ValueError, match="index"):
        density.block_input(flow, y, 99)


def test_center_crop_takes_the_middle_window():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    torch.testing.assert_close(density.center_crop(x, 2), torch.tensor([[[[14.0, 15.0], [20.0, 21.0]]]]))
    with pytest.raises(ValueError, match="side"):
        density.center_crop(x, 7)


def test_trained_block_crop_fits_max_dim_and_the_study_respects_thm3():
    model = _flow(shape=(3, 16, 16))
    block = density.trained_block(model, _images(2, shape=(3, 16, 16)), None, 0, max_dim=120)
    assert block.x.shape == (2, 12, 3, 3) and block.dim == 108 and block.x.dtype == torch.float64
    assert block.name == "scale 1 residual 1" and block.coeff == 0.9
    study = logdet_study.bias_variance_study(block.branch, block.x, block.coeff, max_terms=6, n_repeats=10)
    assert study.lipschitz <= study.lipschitz_certified + 1e-6
    assert np.all(study.truncation_error <= study.bound + 1e-9)
    assert study.truncation_error[-1] < study.truncation_error[0]
    with pytest.raises(ValueError, match="no crop fits"):
        density.trained_block(model, _images(1, shape=(3, 16, 16)), None, 0, max_dim=5)


def test_flow_summary_follows_the_shapes_through_the_scales():
    rows = density.flow_summary(models.build_model(models.flow_config("cpu", (3, 32, 32), widths=(64, 48))))
    assert [r["input"] for r in rows] == ["(3, 32, 32)", "(6, 16, 16)"]
    assert rows[0]["branch"] == "12 -> 64 -> 64 -> 12" and rows[1]["branch"] == "24 -> 48 -> 48 -> 24"
    assert rows[1]["to the prior"] == "(24, 8, 8) (all)"


def test_test_images_are_dequantised_within_their_cells(mnist_available):
    x = density.test_images("mnist", 5, seed=1)
    k = data.load_mnist("test")[0][:5]
    assert torch.equal((x * 256).floor().to(torch.uint8), k)
    with pytest.raises(ValueError, match="n must be"):
        density.test_images("mnist", 0)


# --- the core fix this module relies on -------------------------------------------------------------

@pytest.mark.slow
def test_exact_logdet_survives_set_num_threads_for_large_blocks():
    """MKL's batched LU hangs for d > 128 after torch.set_num_threads(2): exact_logdet must not use it."""
    code = ("import torch; torch.set_num_threads(2)\n"
            "from iresnet_mini import blocks, logdet\n"
            "branch = blocks.mlp_branch(200, 16, 1, coeff=0.5)\n"
            "x = torch.randn(3, 200)\n"
            "branch(x)\n"
            "print(float(logdet.exact_logdet(branch, x).sum()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "MKL ERROR" not in result.stderr + result.stdout, result.stderr
    assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))


# --- figures, widget panels, exercise checks -------------------------------------------------------------

def test_density_figures_draw(flow, comparison):
    x = _images(4)
    with density.using_estimator(flow, "exact"):
        breakdown = density.bits_per_dim_breakdown(flow, x, None)
    history = [{"epoch": 1, "train_loss": 5.0, "test_bits_per_dim": 4.5},
               {"epoch": 2, "train_loss": 4.0, "test_bits_per_dim": 3.9}]
    figures = [nb07.figures.plot_bits_breakdown(breakdown),
               nb07.figures.plot_bits_per_dim_table("MNIST", facts.bits_per_dim_references("mnist"), {"ours": 1.5}),
               nb07.figures.plot_image_grid(x, nrow=2, title="x"),
               nb07.figures.plot_density_reconstructions(x, density.reconstruct(flow, x, None), n=3),
               nb07.figures.plot_density_estimators(comparison), nb07.figures.plot_preprocessing(x),
               nb07.figures.plot_density_history(history, 1.06)]
    for fig in figures:
        assert fig.axes and any(ax.get_title() for ax in fig.axes)
        plt.close(fig)


def test_image_grid_tiles_rows_with_gaps():
    grid = nb07.figures.image_grid(torch.zeros(5, 3, 4, 4), nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[0].min() == 1 and grid[1, 1:5].max() == 0


def test_estimator_panel_shows_the_chosen_estimator(comparison):
    fig, numbers = nb07.figures.draw_density_estimator(comparison, "series, 1 term")
    other_fig, other = nb07.figures.draw_density_estimator(comparison, "unbiased (roulette)")
    assert numbers["series terms per block"] == 1.0 and other["series terms per block"] == 3.0
    assert numbers["bias (bits/dim)"] != other["bias (bits/dim)"]
    plt.close(fig), plt.close(other_fig)
    with pytest.raises(ValueError, match="no estimator"):
        nb07.figures.draw_density_estimator(comparison, "exact")


def test_trained_block_panel_follows_the_norm_terms_and_probes():
    branch = logdet_study.study_branch(12, 0.9, init="random")
    jac = logdet.jacobian(branch, torch.randn(1, 12, dtype=torch.float64))[0].detach()
    readouts = {}
    for key, (norm, n, m) in {"base": (0.9, 2, 1), "small norm": (0.3, 2, 1), "more terms": (0.9, 20, 1),
                              "more probes": (0.9, 2, 16), "five terms": (0.9, 5, 1),
                              "five terms, small norm": (0.3, 5, 1)}.items():
        fig, readouts[key] = nb08.figures.draw_trained_block_logdet(jac, norm, n, m, n_draws=200)
        plt.close(fig)
    trained = float(torch.linalg.matrix_norm(jac, ord=2))
    assert readouts["base"]["trained block's ||J_g(x)||_2"] == pytest.approx(trained)
    assert readouts["base"]["||J_g(x)||_2 (set)"] == pytest.approx(0.9)  # the control sets the norm itself
    assert readouts["small norm"]["||J_g(x)||_2 (set)"] == pytest.approx(0.3)
    # the bias curve moves visibly: the bias at n terms scales like norm^(n + 1), (0.3 / 0.9)^6 ~ 1e-3 at n = 5
    assert abs(readouts["five terms, small norm"]["bias"]) < 1e-2 * abs(readouts["five terms"]["bias"])
    assert readouts["small norm"]["|bias| at 20 terms"] < readouts["base"]["|bias| at 20 terms"]
    assert abs(readouts["more terms"]["bias"]) < 1e-1 * abs(readouts["base"]["bias"])
    assert readouts["more probes"]["std"] == pytest.approx(readouts["base"]["std"] / 4, rel=1e-9)
    scaled = (0.9 / trained) * jac
    exact = float(torch.linalg.slogdet(torch.eye(12, dtype=torch.float64) + scaled).logabsdet)
    assert readouts["base"]["exact ln det"] == pytest.approx(exact)
    with pytest.raises(ValueError, match="norm must be in"):
        nb08.figures.draw_trained_block_logdet(jac, 1.0, 2, 1)


def test_exercise_checks_accept_the_solutions_and_reject_slips(capsys):
    assert nb07.checks.check_bits_per_dim(-(-1000.0) / (784 * math.log(2)) + 8, -1000.0, 784)
    assert not nb07.checks.check_bits_per_dim(1000.0 / (784 * math.log(2)), -1000.0, 784)  # forgot the + 8
    logdet_answer = float(data.logit_transform(torch.full((1, 1, 28, 28), 0.5), alpha=0.05)[1])
    assert nb07.checks.check_logit_logdet(logdet_answer, -logdet_answer / (784 * math.log(2)))
    assert not nb07.checks.check_logit_logdet(logdet_answer, logdet_answer / (784 * math.log(2)))
    assert nb08.checks.check_log_density_from_bits((8 - 3.45) * 3072 * math.log(2))
    assert not nb08.checks.check_log_density_from_bits(-(8 - 3.45) * 3072 * math.log(2))
    assert nb08.checks.check_probes_needed(4, 0.02, 0.01)
    assert nb08.checks.check_probes_needed(5, 0.021, 0.01)
    assert not nb08.checks.check_probes_needed(2, 0.02, 0.01) and not nb08.checks.check_probes_needed(4.5, 0.02, 0.01)
    out = capsys.readouterr().out
    assert "Correct" in out and "Not yet" in out


def test_epoch_lines_describe_the_last_epochs_of_a_run():
    history = [{"epoch": e, "step": 1000 * e, "train_loss": 2.0 / e, "test_bits_per_dim": 2.5 / e, "test_images": 2000}
               for e in (1, 2, 3)]
    lines = density.epoch_lines(history, last=2)
    assert lines == ["epoch 2: 2,000 steps, training loss 1.000 bits/dim, test 1.250 bits/dim on 2,000 images",
                     "epoch 3: 3,000 steps, training loss 0.667 bits/dim, test 0.833 bits/dim on 2,000 images"]
    assert len(density.epoch_lines(history, last=5)) == 3
    with pytest.raises(ValueError, match="positive number of epochs"):
        density.epoch_lines(history, last=0)
