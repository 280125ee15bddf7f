"""Image models: shapes, the paper's parameter count, reconstruction by the inverse, bits/dim by hand."""
import json
import math

import pytest
import torch

from iresnet_mini import certificate, data, flows, lipschitz, models, train


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one CPU thread (conftest.py)


def _mnist_batch(n=32):
    x, _ = data.load_mnist("test")
    return data.Normalize.for_dataset("mnist")(x[:n])


def _initialised(model, x):
    """ActNorm's data-dependent init and the power iteration's first vectors, then eval mode."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_classifier_shapes(shape, preset):
    model = models.IResNetClassifier(models.classifier_config(preset, shape, n_classes=7))
    x = torch.randn(3, *shape)
    assert model.features(x).shape == (3, *model.feature_shape)
    assert model(x).shape == (3, 7)


def test_paper_classifier_has_about_4_9_million_parameters():
    config = models.classifier_config("paper", (3, 32, 32))
    assert (config.pad_channels, config.blocks, config.widths) == (13, (7, 7, 7), (32, 64, 128))
    n = models.count_parameters(models.IResNetClassifier(config))
    assert abs(n - 4.9e6) / 4.9e6 < 0.02


def test_features_have_the_padded_input_dimension():
    model = models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28)))
    assert math.prod(model.feature_shape) == model.config.channels * 14 * 14


def test_actnorm_on_zero_padded_channels_stays_finite(mnist_available):
    model = _initialised(models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28))), _mnist_batch())
    first = model.steps[0].actnorm
    padded = slice(model.config.squeezed_in_channels, None)
    assert torch.all(first.log_scale[padded] == 0)  # std 0: no division by zero
    assert torch.isfinite(first.log_scale).all() and torch.isfinite(model.features(_mnist_batch())).all()


def test_classifier_inverse_reconstructs_test_images_at_c_0_9(mnist_available):
    x = _mnist_batch()
    model = _initialised(models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28), coeff=0.9)), x)
    report = lipschitz.certify(model)
    assert all(r["effective_norm"] <= 0.9 + 1e-6 for r in report)
    x_rec, infos = model.inverse(model.features(x), return_info=True)
    assert all(info.converged for info in infos)
    assert (x_rec - x).abs().max() < 1e-4


def test_classifier_inverse_fails_for_vanilla_with_large_weights(mnist_available):
    x = _mnist_batch()
    model = _initialised(models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28), coeff=None)), x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(4.0)
    x_rec, infos = model.inverse(model.features(x), max_iter=50, return_info=True)
    assert not all(info.converged for info in infos)
    error = (x_rec - x).abs()
    assert not torch.isfinite(error).all() or error.max() > 0.1


def test_bad_architectures_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown preset"):
        models.classifier_config("huge", (1, 28, 28))
    with pytest.raises(ValueError, match="injective padding only adds"):
        models.classifier_config("tiny", (3, 32, 32), channels=8)
    with pytest.raises(ValueError, match="even side length"):
        models.classifier_config("tiny", (1, 28, 28), strides=(2, 2, 2), blocks=(1, 1, 1), widths=(4, 4, 4))
    with pytest.raises(ValueError, match="coeff"):
        models.flow_config("tiny", (1, 28, 28), coeff=None)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        models.classifier_config("tiny", (1, 28, 28), activation="swishy")
    with pytest.raises(ValueError, match="unknown block"):
        models.classifier_config("tiny", (1, 28, 28), block="dense")
    with pytest.raises(ValueError, match="coeff must be None"):
        models.classifier_config("tiny", (1, 28, 28), block="coupling")


def test_coupling_classifier_has_the_layout_and_inverts_in_closed_form(mnist_available):
    x = _mnist_batch()
    config = models.classifier_config("tiny", (1, 28, 28), block="coupling", coeff=None)
    model = _initialised(models.IResNetClassifier(config), x)
    assert all(isinstance(step, models.CouplingStep) for step in model.steps)
    assert model.feature_shape == models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28))).feature_shape
    assert lipschitz.lipschitz_layers(model) == []  # nothing constrained: invertible by the splitting
    with torch.no_grad():
        for step in model.steps:  # leave the identity start: a trained-like coupling
            for p in step.coupling.net.parameters():
                p.normal_(0, 0.05)
    x_rec, infos = model.inverse(model.features(x), return_info=True)
    assert all(info.converged and info.iterations == 0 for info in infos)
    assert 0 < (x_rec - x).abs().max() < 1e-4


@pytest.mark.parametrize("items, expected", [
    (["widths=64,128", "blocks=3,5"], {"widths": (64, 128), "blocks": (3, 5)}),
    (["activation=lipswish", "actnorm=false", "channels=32"], {"activation": "lipswish", "actnorm": False,
                                                               "channels": 32}),
    (["block=coupling"], {"block": "coupling"}),
])
def test_model_options_are_typed_by_the_architecture(items, expected):
    assert models.parse_model_options("classify", items) == expected


@pytest.mark.parametrize("items, complaint", [
    (["widths"], "not KEY=VALUE"),
    (["depth=3"], "unknown model option 'depth'.*allowed are"),
    (["coeff=0.5"], "unknown model option 'coeff'"),  # --coeff / --vanilla set c
    (["blocks=3.5"], "comma-separated integers"),
    (["actnorm=yes"], "true or false"),
])
def test_bad_model_options_say_what_is_allowed(items, complaint):
    with pytest.raises(ValueError, match=complaint):
        models.parse_model_options("classify", items)


@pytest.mark.parametrize("items, expected", [
    (["estimator=unbiased", "estimator_kwargs=n_exact_terms:2,p:0.5,n_samples:1,neumann_gradient:true"],
     {"estimator": "unbiased", "estimator_kwargs": {"n_exact_terms": 2, "p": 0.5, "n_samples": 1,
                                                    "neumann_gradient": True}}),
    (["estimator=series", "estimator_kwargs=n_terms:5,probe:rademacher"],
     {"estimator": "series", "estimator_kwargs": {"n_terms": 5, "probe": "rademacher"}}),
    (["estimator=exact", "estimator_kwargs=none"], {"estimator": "exact", "estimator_kwargs": {}}),
])
def test_the_training_estimator_is_a_model_option(items, expected):
    options = models.parse_model_options("density", items)
    assert options == expected
    flow = models.MultiScaleFlow(models.flow_config("tiny", (1, 4, 4), **options))
    layers = [m for m in flow.modules() if isinstance(m, flows.ResidualFlowLayer)]
    assert layers and all(layer.block.estimator == expected["estimator"] and
                          layer.block.estimator_kwargs == expected["estimator_kwargs"] for layer in layers)


@pytest.mark.parametrize("items, complaint", [
    (["estimator_kwargs=n_terms"], "not KEY:VALUE"),
    (["estimator_kwargs=terms:3"], "unknown setting 'terms'.*take n_terms"),
    (["estimator_kwargs=n_terms:3.5"], "n_terms takes an integer"),
    (["estimator_kwargs=neumann_gradient:yes"], "true or false"),
])
def test_bad_estimator_options_say_what_is_allowed(items, complaint):
    with pytest.raises(ValueError, match=complaint):
        models.parse_model_options("density", items)


def test_an_estimator_without_its_own_settings_says_how_to_give_them():
    # the cpu preset's settings are the series' (n_terms): the roulette takes n_exact_terms instead
    with pytest.raises(ValueError, match="'unbiased' does not take n_terms.*estimator_kwargs=KEY:VALUE"):
        models.flow_config("cpu", (1, 28, 28), estimator="unbiased")
    with pytest.raises(ValueError, match="unknown log-det estimator 'magic'"):
        models.flow_config("cpu", (1, 28, 28), estimator="magic")


def _tiny_flow(side: int = 4, n_scales: int = 2, split_prior: str = "diagonal", seed: int = 0):
    torch.manual_seed(seed)
    config = models.flow_config("tiny", (1, side, side), blocks=(1,) * n_scales, widths=(6,) * n_scales,
                                estimator="exact", estimator_kwargs={}, split_prior=split_prior)
    flow = models.MultiScaleFlow(config).double()
    flow.train()
    with torch.no_grad():
        flow(torch.rand(64, 1, side, side, dtype=torch.float64) - 0.5)  # ActNorm init, power iteration
        for parameter in flow.priors.parameters():  # priors that are not N(0, I) and, where conditional, use h
            parameter.normal_(0, 0.3)
    return flow.eval()


def test_flow_scales_squeeze_and_factor_out_half():
    flow = models.MultiScaleFlow(models.flow_config("tiny", (1, 28, 28)))
    assert flow.config.strides == (2, 2)
    assert [p.shape for p in flow.priors] == [(2, 14, 14), (8, 7, 7)]
    assert sum(math.prod(p.shape) for p in flow.priors) == 28 * 28


def test_flow_log_prob_is_finite_with_the_series_estimator(mnist_available):
    x, _ = data.load_mnist("test")
    y, _ = train.preprocess(data.dequantize(x[:16]), 1e-6)
    flow = models.MultiScaleFlow(models.flow_config("tiny", (1, 28, 28)))
    flow.train()
    log_p = flow.log_prob(y)
    assert log_p.shape == (16,) and torch.isfinite(log_p).all()


def test_flow_inverse_and_samples():
    flow = _tiny_flow()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) - 0.5
    zs, _ = flow(x)
    assert torch.allclose(flow.inverse(zs), x, atol=1e-8)
    samples = flow.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 4, 4) and torch.isfinite(samples).all()


def _latents_and_kept_halves(flow, y):
    """Scale by scale: the factored-out z_i and the half h_i that stays (what z_i is conditioned on)."""
    h, pairs = y, []
    for i, scale in enumerate(flow.scales):
        for layer in scale:
            h = layer(h)[0]
        if i < len(flow.scales) - 1:
            k = flow.priors[i].shape[0]
            pairs.append((h[:, :k], h[:, k:]))
            h = h[:, k:]
    return pairs, h


def _conditional_mean_std(prior, h):
    # the prior's formula written out again (the net's output: shifts first, then log-scales, bounded by 3 tanh(s/3))
    raw = prior.net(h)
    k = prior.shape[0]
    return prior.mean + raw[:, :k], (prior.log_std + 3 * torch.tanh(raw[:, k:] / 3)).exp()


@pytest.mark.parametrize("side, n_scales, split_prior", [(4, 2, "diagonal"), (4, 2, "conditional"),
                                                      (8, 3, "conditional")])
def test_flow_bits_per_dim_equals_hand_computation(side, n_scales, split_prior):
    flow = _tiny_flow(side, n_scales, split_prior)
    factored = flows.ConditionalGaussian if split_prior == "conditional" else flows.DiagonalGaussian
    assert [type(p) for p in flow.priors] == [factored] * (n_scales - 1) + [flows.DiagonalGaussian]
    d = side * side
    x = (torch.randint(0, 256, (3, 1, side, side)).double() + torch.rand(3, 1, side, side, dtype=torch.float64)) / 256
    alpha = 0.05
    expected = []
    for i in range(3):
        xi = x[i:i + 1]

        def to_z(t):  # x -> logit -> flow -> all z_i, flattened
            s = alpha + (1 - 2 * alpha) * t
            return torch.cat([z.reshape(-1) for z in flow(torch.log(s / (1 - s)))[0]])

        jac = torch.autograd.functional.jacobian(to_z, xi).reshape(d, d)
        pairs, z_last = _latents_and_kept_halves(flow, train.preprocess(xi, alpha)[0])
        last = flow.priors[-1]
        log_pz = torch.distributions.Normal(last.mean, last.log_std.exp()).log_prob(z_last[0]).sum()
        for prior, (z, h) in zip(flow.priors, pairs):
            mean, std = _conditional_mean_std(prior, h) if flow.conditional else (prior.mean, prior.log_std.exp())
            log_pz = log_pz + torch.distributions.Normal(mean, std).log_prob(z).sum()
        log_px = log_pz + torch.linalg.slogdet(jac).logabsdet
        expected.append((-log_px / (d * math.log(2)) + 8).item())
    # the whole batch at once: every prior term is reduced per image
    assert train.density_bits_per_dim(flow, x, alpha).tolist() == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("side, n_scales, temperature", [(4, 2, 1.0), (8, 3, 0.7)])
def test_conditional_samples_are_drawn_given_the_reconstructed_half(side, n_scales, temperature):
    flow = _tiny_flow(side, n_scales, "conditional", seed=1)  # seed 0 draws latents of |z| ~ 40, too far out for 1e-6
    n = 5
    samples = flow.sample(n, generator=torch.Generator().manual_seed(3), temperature=temperature)
    gen = torch.Generator().manual_seed(3)  # the draws in sampling order: the last z first, then z_i | h_i backwards
    eps = [torch.randn((n, *prior.shape), generator=gen, dtype=torch.float64) for prior in reversed(flow.priors)]
    pairs, z_last = _latents_and_kept_halves(flow, samples)
    last = flow.priors[-1]
    assert torch.allclose((z_last - last.mean) / last.log_std.exp(), temperature * eps[0], atol=1e-6)
    for (z, h), prior, e in zip(reversed(pairs), reversed(flow.priors[:-1]), eps[1:]):
        mean, std = _conditional_mean_std(prior, h)
        assert torch.allclose((z - mean) / std, temperature * e, atol=1e-6)
    assert torch.allclose(flow.inverse(flow(samples)[0]), samples, atol=1e-8)


def test_a_conditional_flow_trains_its_priors_and_round_trips_its_config():
    flow = _tiny_flow(split_prior="conditional")
    flow.train()
    (-flow.log_prob(torch.rand(8, 1, 4, 4, dtype=torch.float64) - 0.5).mean()).backward()
    assert flow.priors[0].net[-1].weight.grad.abs().sum() > 0
    config = models.config_from_dict("density", json.loads(json.dumps(models.config_to_dict(flow.config))))
    assert config == flow.config
    models.MultiScaleFlow(config).double().load_state_dict(flow.state_dict(), strict=True)


def test_certificate_measures_the_true_norms_of_lipschitz_layers_only():
    # A coupling block's net and a conditional prior's are plain convolutions with no bound to check against c.
    flow = _tiny_flow(split_prior="conditional")
    cert = certificate.certificate(flow, torch.rand(4, 1, 4, 4, dtype=torch.float64),
                                   train.make_config("density", "mnist", "tiny"))
    modules = dict(flow.named_modules())
    assert len({t["layer"] for t in cert["true_norms"]}) == 3  # the first, the middle, the last of six
    for t in cert["true_norms"]:
        assert isinstance(modules[t["layer"]], lipschitz.LipschitzConv2d)
        assert t["operator_norm"] <= flow.config.coeff * (1 + 1e-3)
    torch.manual_seed(0)
    coupling = models.build_model(models.classifier_config("tiny", (1, 8, 8), 10, block="coupling", coeff=None))
    x = torch.randn(4, 1, 8, 8)
    _initialised(coupling, x)
    cert = certificate.certificate(coupling, x, train.make_config("classify", "mnist", "tiny"))
    assert cert["true_norms"] == [] and cert["n_constrained_layers"] == 0


def test_conditional_prior_checks_its_context():
    prior = flows.ConditionalGaussian((2, 4, 4), context_channels=3)
    z = torch.zeros(2, 2, 4, 4)
    assert torch.allclose(prior.log_prob(z, torch.randn(2, 3, 4, 4)), flows.DiagonalGaussian((2, 4, 4)).log_prob(z))
    with pytest.raises(ValueError, match="context must have shape \\(B, 3, 4, 4\\)"):
        prior.log_prob(z, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="needs the context"):
        prior.log_prob(z)
    with pytest.raises(ValueError, match="a context of 2 rows"):
        prior.sample(2, context=torch.zeros(3, 3, 4, 4))
    with pytest.raises(ValueError, match="needs an image shape"):
        flows.ConditionalGaussian((8,), context_channels=3)
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        flows.ConditionalGaussian((2, 4, 4), context_channels=3, hidden=0)
    with pytest.raises(ValueError, match="unknown split_prior 'glow'.*'diagonal', 'conditional'"):
        models.flow_config("tiny", (1, 4, 4), split_prior="glow")
    assert models.parse_model_options("density", ["split_prior=conditional"]) == {"split_prior": "conditional"}
    old = models.config_to_dict(models.flow_config("cpu", (3, 32, 32)))
    del old["split_prior"]  # a checkpoint written before the option: the paper's diagonal priors
    assert models.config_from_dict("density", old).split_prior == "diagonal"


def test_config_round_trips_through_plain_types():
    config = models.flow_config("cpu", (3, 32, 32))
    values = json.loads(json.dumps(models.config_to_dict(config)))
    assert models.config_from_dict("density", values) == config

