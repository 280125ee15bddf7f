"""2D toy flows (Fig. 2): log-densities by brute force, the forward-mode Jacobian, training, the benchmark."""
import math
import re

import numpy as np
import pytest
import torch

from iresnet_mini import blocks, facts, lipschitz, logdet, toy
from iresnet_mini.lessons.nb04 import toyflows


def _brute_force_log_prob(flow, x):
    """log N(F(x); 0, I) + log|det dF/dx| with the Jacobian of the whole flow by autograd, point by point."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda t: flow(t[None])[0][0], xi)
        z = flow(xi[None])[0][0]
        out.append(-0.5 * (z ** 2).sum() - math.log(2 * math.pi) + torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


def _initialised(flow, seed=0):
    flow = flow.double()
    flow(toy.sample("8gaussians", 256, seed=seed).double())  # ActNorm data init, power iteration
    for p in flow.parameters():  # move off the identity init so that the check is not trivial
        p.data.add_(0.05 * torch.randn_like(p))
    return flow.eval()


@pytest.mark.parametrize("activation", ["elu", "lipswish"])
def test_iresnet_flow_log_prob_equals_brute_force_change_of_variables(activation):
    torch.manual_seed(0)
    flow = _initialised(toyflows.iresnet_flow(n_blocks=3, hidden=16, activation=activation, coeff=0.9))
    x = torch.randn(6, 2, dtype=torch.float64) * 2
    expected = _brute_force_log_prob(flow, x)
    assert torch.allclose(toyflows.exact_log_prob(flow, x), expected, atol=1e-9)
    toyflows.set_estimator(flow, "exact")
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-9)


def test_coupling_flow_log_prob_equals_brute_force_and_inverts():
    torch.manual_seed(1)
    flow = _initialised(toyflows.coupling_flow(n_layers=4, hidden=16))
    x = torch.randn(6, 2, dtype=torch.float64) * 2
    assert torch.allclose(toyflows.exact_log_prob(flow, x), _brute_force_log_prob(flow, x), atol=1e-9)
    z, _ = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-10)


def test_coupling_layer_leaves_the_masked_coordinate_unchanged():
    layer = toyflows.AffineCoupling(torch.tensor([1.0, 0.0]), hidden=8)
    torch.nn.init.normal_(layer.net[-1].weight)
    x = torch.randn(5, 2)
    y, logdet = layer(x)
    assert torch.equal(y[:, 0], x[:, 0]) and not torch.allclose(y[:, 1], x[:, 1])
    with pytest.raises(ValueError, match="0/1"):
        toyflows.AffineCoupling(torch.tensor([1.0, 1.0]))


def test_models_of_the_comparison_have_similar_parameter_counts():
    n_iresnet, n_coupling = (toyflows.count_parameters(toyflows.build_model(m, **toyflows.model_kwargs(m)))
                             for m in toyflows.MODELS)
    assert abs(n_iresnet - n_coupling) / n_iresnet < 0.05
    with pytest.raises(ValueError, match="unknown model"):
        toyflows.model_kwargs("glow")


@pytest.mark.parametrize("activation", ["elu", "lipswish", "relu", "softplus", "tanh", "leakyrelu"])
def test_forward_mode_jacobian_equals_logdet_jacobian(activation):
    torch.manual_seed(2)
    branch = blocks.mlp_branch(2, 12, 3, coeff=0.9, activation=activation).double()
    x = torch.randn(9, 2, dtype=torch.float64)
    branch(x)
    branch.eval()
    gx, jac = toyflows.mlp_jacobian(branch, x)
    assert torch.allclose(gx, branch(x), atol=1e-12)
    assert torch.allclose(jac, logdet.jacobian(branch, x), atol=1e-12)
    assert torch.allclose(toyflows.log_det_identity_plus(jac), logdet.exact_logdet(branch, x), atol=1e-12)


def test_forward_mode_jacobian_gives_the_same_gradients_as_torch_func():
    torch.manual_seed(3)
    branch = blocks.mlp_branch(2, 8, 2, coeff=0.9, activation="lipswish").double()
    x = torch.randn(7, 2, dtype=torch.float64)
    branch(x)
    branch.eval()
    grads = []
    for ld in (lambda: toyflows.log_det_identity_plus(toyflows.mlp_jacobian(branch, x)[1]),
               lambda: logdet.exact_logdet(branch, x)):
        branch.zero_grad()
        ld().sum().backward()
        grads.append(torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                                for p in branch.parameters()]))  # the last bias does not enter J
    assert torch.allclose(grads[0], grads[1], atol=1e-10)


def test_forward_mode_jacobian_rejects_unknown_layers():
    with pytest.raises(ValueError, match="supports Linear"):
        toyflows.mlp_jacobian(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid()), torch.zeros(1, 2))


def test_log_det_of_a_non_invertible_jacobian_is_an_error():
    jac = torch.tensor([[[-2.0, 0.0], [0.0, 0.5]]])  # det(I + J) = -1.5
    with pytest.raises(FloatingPointError, match="Lip"):
        toyflows.log_det_identity_plus(jac)
    big = 0.1 * torch.randn(4, 3, 3, dtype=torch.float64)
    expected = torch.linalg.slogdet(torch.eye(3, dtype=torch.float64) + big).logabsdet
    assert torch.allclose(toyflows.log_det_identity_plus(big), expected)


def test_a_few_training_steps_lower_the_test_nll():
    torch.manual_seed(0)
    flow = toyflows.iresnet_flow(n_blocks=3, hidden=32)
    before = toyflows.evaluate_nll(flow, "8gaussians", n=2000)  # ActNorm not yet fitted
    records = toyflows.train_toy(flow, "8gaussians", steps=60, batch_size=256, lr=5e-3, eval_every=30,
                                 eval_points=2000)
    assert [r["step"] for r in records] == [30, 60]
    assert records[-1]["test_nll"] < records[0]["test_nll"] < before


@pytest.mark.parametrize("estimator", ["series", "unbiased"])
def test_training_with_the_paper_estimators_lowers_the_nll(estimator):
    torch.manual_seed(0)
    flow = toyflows.iresnet_flow(n_blocks=2, hidden=16)
    records = toyflows.train_toy(flow, "8gaussians", steps=40, batch_size=128, lr=5e-3, logdet=estimator,
                                 eval_every=20, eval_points=1000)
    assert records[-1]["test_nll"] < records[0]["test_nll"]
    assert all(b.estimator == estimator for b in flow.modules() if isinstance(b, blocks.InvertibleResidualBlock))


def test_parameter_average_starts_bias_free_and_moves_towards_the_weights():
    torch.manual_seed(0)
    flow = toyflows.iresnet_flow(n_blocks=1, hidden=8)
    flow(toy.sample("moons", 16, seed=0))  # ActNorm init, power-iteration vectors
    average = toyflows.ParameterAverage(flow, decay=0.99)
    start = {n: p.detach().clone() for n, p in flow.named_parameters()}
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(1.0)
    average.update(flow, step=0)  # d_0 = min(0.99, 1 / 10): 90 % of the new weights at once
    for name, p in flow.named_parameters():
        assert torch.allclose(average.shadow[name], start[name] + 0.9)
    averaged = average.model(flow)
    assert averaged is not flow
    for name, p in averaged.named_parameters():
        assert torch.allclose(p, average.shadow[name])
        assert torch.allclose(dict(flow.named_parameters())[name], start[name] + 1.0)  # the live flow is left alone
    for layer in lipschitz.lipschitz_layers(averaged):  # sigma re-estimated for the averaged weights
        assert float(layer.sigma) == pytest.approx(torch.linalg.matrix_norm(layer.weight, 2).item(), rel=2e-2)


def test_training_with_ema_leaves_the_averaged_weights_in_the_flow():
    runs = {}
    for ema in (None, 0.9):
        torch.manual_seed(0)
        flow = toyflows.iresnet_flow(n_blocks=1, hidden=8)
        records = toyflows.train_toy(flow, "moons", steps=20, batch_size=64, eval_points=500, ema=ema)
        runs[ema] = (flow, records)
        assert records[-1]["test_nll"] == pytest.approx(toyflows.evaluate_nll(flow, "moons", 500), abs=1e-6)
    weights = [dict(f.named_parameters())["layers.1.block.branch.0.weight"] for f, _ in runs.values()]
    assert not torch.allclose(*weights)  # the same training stream, but the average differs from the last step
    with pytest.raises(ValueError, match="ema"):
        toyflows.train_toy(runs[None][0], "moons", steps=1, ema=1.0)


def test_training_budget_and_mode_are_checked():
    flow = toyflows.iresnet_flow(n_blocks=1, hidden=8)
    with pytest.raises(ValueError, match="exactly one"):
        toyflows.train_toy(flow, "moons", steps=5, seconds=1.0)
    with pytest.raises(ValueError, match="logdet"):
        toyflows.train_toy(flow, "moons", steps=5, logdet="hutchinson")


def test_training_stops_with_an_error_on_a_nan_loss():
    flow = toyflows.coupling_flow(n_layers=1, hidden=8)
    flow.layers[0].bias.data.fill_(float("nan"))
    flow.layers[0].is_initialized = True  # keep the NaN: no data-dependent initialisation
    with pytest.raises(FloatingPointError, match="step 0"):
        toyflows.train_toy(flow, "moons", steps=3)


def test_training_by_the_clock_stops_after_the_budget():
    flow = toyflows.iresnet_flow(n_blocks=1, hidden=8)
    records = toyflows.train_toy(flow, "moons", seconds=0.5, batch_size=64, eval_points=500)
    assert 0.5 <= records[-1]["seconds"] < 5.0 and records[-1]["step"] >= 1


def test_fit_toy_result_has_a_normalised_density_and_samples_from_the_inverse():
    result = toyflows.fit_toy("8gaussians", steps=20, batch_size=128, eval_points=1000, grid=30, n_samples=300,
                              n_blocks=2, hidden=16)
    assert result.log_p_grid.shape == (30, 30) and result.extent == (-4.5, 4.5, -4.5, 4.5)
    log_p, _ = toyflows.log_density_grid(result.flow, lim=12.0, n=161)
    assert np.exp(log_p).sum() * (24 / 160) ** 2 == pytest.approx(1.0, abs=0.02)
    assert result.samples.shape == (300, 2) and np.isfinite(result.samples).all()
    z, _ = result.flow(torch.as_tensor(result.samples))
    assert torch.allclose(result.flow.inverse(z), torch.as_tensor(result.samples), atol=1e-3)
    assert math.isfinite(result.test_nll) and result.n_parameters == toyflows.count_parameters(result.flow)


def test_cache_trains_once_per_dataset_and_rounded_c():
    cache = toyflows.ToyFlowCache(steps=5, batch_size=64, eval_points=200, grid=10, n_samples=20,
                                  n_blocks=1, hidden=8)
    first = cache.get("moons", 0.901)
    assert cache.get("moons", 0.9) is first and ("moons", 0.9) in cache and len(cache) == 1
    assert first.coeff == 0.9 and first.flow.layers[1].block.branch[0].coeff == 0.9
    cache.fill(["moons"], [0.9, 0.5])
    assert len(cache) == 2


def test_bench_main_ends_with_the_summary_line_and_the_target(capsys):
    out = toyflows.bench_main("checkerboard", minutes=0.01, n_blocks=1, hidden=8)
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"target <= 3\.55 nats \(entropy 3\.466\): (not )?reached", lines[-1])
    assert lines[-1].endswith("not reached") == (out["test_nll"] > facts.TARGETS["toy_checkerboard_nll"].value)
    assert re.fullmatch(r"checkerboard: test NLL \d+\.\d{3} nats after \d+ s \(entropy 3\.466\)", lines[-2])
    assert re.fullmatch(r"\s*\d+\.\d\s+\d+\s+\d+\.\d{4}", lines[-3])
    assert out["test_nll"] == pytest.approx(float(lines[-2].split()[3]), abs=1e-3)
    assert out["entropy"] == pytest.approx(math.log(32))


def test_moons_and_circles_densities_integrate_to_one_and_entropy_is_plausible():
    axis = torch.linspace(-6, 6, 241, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    for name in ("moons", "circles"):
        mass = toy.log_density(name, grid).exp().sum() * (12 / 240) ** 2
        assert float(mass) == pytest.approx(1.0, abs=1e-3)
        x = toy.sample(name, 4000, seed=3).double()
        # the sampler's points are likelier under the density than shuffled-noise points
        assert toy.log_density(name, x).mean() > toy.log_density(name, x + 0.5 * torch.randn_like(x)).mean()
    # thin-tube approximation: each curve (weight 1/2) uniform along its length L, N(0, s^2) across it:
    # H ~ log 2 + mean of log L + log(2 pi e s^2) / 2, up to the curvature and the moons' arc ends
    def tube(lengths, s):
        return math.log(2) + np.mean(np.log(lengths)) + 0.5 * math.log(2 * math.pi * math.e * s**2)
    assert toy.entropy("moons", n=20_000) == pytest.approx(tube([2 * math.pi, 2 * math.pi], 0.2), abs=0.06)
    assert toy.entropy("circles", n=20_000) == pytest.approx(tube([6 * math.pi, 3 * math.pi], 0.24), abs=0.03)


def test_widget_panel_draws_the_cached_model_and_reads_out_its_nll():
    import matplotlib.pyplot as plt

    from iresnet_mini.lessons import nb04

    cache = toyflows.ToyFlowCache(steps=5, batch_size=64, eval_points=200, grid=12, n_samples=50,
                                  entropy_points=1000, n_blocks=1, hidden=8)
    fig, numbers = nb04.figures.draw_toy_flow(cache, "8gaussians", 0.7)
    assert len(fig.axes) == 3 and "c = 0.70" in fig.axes[1].get_title()
    assert numbers["test NLL (nats)"] == cache.get("8gaussians", 0.7).test_nll
    assert numbers["c"] == 0.7 and numbers["data entropy (nats)"] == pytest.approx(2.83, abs=0.1)
    _, other = nb04.figures.draw_toy_flow(cache, "8gaussians", 0.5)
    assert other["test NLL (nats)"] != numbers["test NLL (nats)"]
    plt.close("all")


def test_exercise_checks_accept_the_solutions_and_reject_wrong_answers():
    from iresnet_mini.lessons import nb04

    def logdet_2x2(J):
        return torch.log((1 + J[:, 0, 0]) * (1 + J[:, 1, 1]) - J[:, 0, 1] * J[:, 1, 0])

    assert nb04.checks.check_logdet_2x2(logdet_2x2)
    assert not nb04.checks.check_logdet_2x2(lambda J: torch.log(J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]))
    assert not nb04.checks.check_logdet_2x2(lambda J: None)
    log_p = np.full((11, 11), -math.log(4.0))  # uniform density 1/4 on [-1, 1]^2
    assert nb04.checks.check_density_mass(1.0 * (11 / 10) ** 2, log_p, (-1, 1, -1, 1))
    assert not nb04.checks.check_density_mass(1.0, log_p, (-1, 1, -1, 1))
    assert nb04.checks.check_checkerboard_entropy(math.log(32))
    assert not nb04.checks.check_checkerboard_entropy(math.log(16))


def test_bench_figure_shows_the_curve_and_a_test_set_floor_only_when_it_differs_from_the_entropy():
    import matplotlib.pyplot as plt

    from iresnet_mini.lessons import nb04

    records = [{"seconds": 30.0 * i, "step": 100 * i, "test_nll": 3.0 - 0.01 * i} for i in range(1, 5)]
    labels = []
    for floor in (2.819, 2.830):
        fig = nb04.figures.plot_toy_bench({"dataset": "8gaussians", "records": records, "entropy": 2.830,
                                    "true_nll": floor},
                                   target=facts.TARGETS["toy_8gaussians_nll"].value)
        labels.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        assert list(fig.axes[0].lines[0].get_ydata()) == [r["test_nll"] for r in records]
        plt.close(fig)
    assert any("test points 2.819" in t for t in labels[0]) and not any("test points" in t for t in labels[1])


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_bench_main_rejects_a_bad_thread_count(threads):
    with pytest.raises(ValueError, match="threads must be a positive"):
        toyflows.bench_main("checkerboard", minutes=0.01, threads=threads, n_blocks=1, hidden=8)
