"""The log-det study (notebook 03): the series, Hutchinson's variance, the estimators' bias and cost."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from iresnet_mini import logdet
from iresnet_mini.lessons import nb03
from iresnet_mini.lessons.nb03 import logdet_study

DIM = 8


def points(n: int = 4, dim: int = DIM, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def block_09():
    return logdet_study.study_branch(DIM, 0.9)


@pytest.fixture(scope="module")
def study_05():
    c = math.sqrt(0.5)  # two layers of norm c: Lip(g) = c^2 = 0.5
    branch = logdet_study.study_branch(DIM, c)
    return logdet_study.bias_variance_study(branch, points(), c, max_terms=10, n_repeats=300)


# --- the study block ----------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.5, 0.9])
def test_orthogonal_study_branch_attains_its_lipschitz_bound(c):
    branch = logdet_study.study_branch(DIM, c)  # c bounds each of its two layers: Lip(g) <= c^2
    est = logdet_study.lipschitz_estimates(branch, points())
    assert est["certified"] == pytest.approx(c ** 2, rel=1e-6)
    assert est["attained"] == pytest.approx(c ** 2, rel=1e-6)
    three = logdet_study.lipschitz_estimates(logdet_study.study_branch(DIM, c, n_layers=3), points())
    assert three["certified"] == pytest.approx(c ** 3, rel=1e-6)


def test_random_study_branch_stays_well_below_its_bound():
    est = logdet_study.lipschitz_estimates(logdet_study.study_branch(16, 0.9, init="random"), points(dim=16))
    assert est["certified"] == pytest.approx(0.9 ** 2, rel=1e-6)
    assert est["attained"] < 0.85 * 0.9 ** 2


def test_study_branch_is_reproducible_and_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a, b = logdet_study.study_branch(DIM, 0.7, seed=3), logdet_study.study_branch(DIM, 0.7, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    x = points()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("kwargs, match", [({"c": 1.0}, "c must be in"), ({"n_layers": 1}, "n_layers"),
                                           ({"init": "xavier"}, "unknown init")])
def test_study_branch_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        logdet_study.study_branch(DIM, **{"c": 0.5, **kwargs})


# --- the exact series ---------------------------------------------------------------------------
def test_partial_sums_converge_to_the_exact_logdet(block_09):
    x = points()
    jac = logdet.jacobian(block_09, x).detach()
    sums = logdet_study.series_partial_sums(jac, 150)
    exact = logdet.exact_logdet(block_09, x).detach()
    assert torch.allclose(sums[:, -1], exact, atol=1e-6)
    assert not torch.allclose(sums[:, 0], exact, atol=1e-2)  # one term is not enough at c = 0.9


def test_series_matrix_trace_is_the_partial_sum(block_09):
    jac = logdet.jacobian(block_09, points()).detach()
    traces = torch.diagonal(logdet_study.series_matrix(jac, 6), dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(traces, logdet_study.series_partial_sums(jac, 6)[:, -1], atol=1e-12)


def test_estimator_draw_is_the_hutchinson_quadratic_form(block_09):
    x = points(1)
    v = logdet.draw_probe(x, "gaussian", torch.Generator().manual_seed(7))
    estimate = logdet.power_series_logdet(block_09, x, n_terms=4, generator=torch.Generator().manual_seed(7))
    matrix = logdet_study.series_matrix(logdet.jacobian(block_09, x).detach(), 4)[0]
    assert float(estimate.detach()) == pytest.approx(float(v[0] @ matrix @ v[0]), rel=1e-10)


# --- Hutchinson's variance ----------------------------------------------------------------------
def test_hutchinson_variance_formulas_match_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64, generator=gen)
    probes = torch.empty(200_000, 5, dtype=torch.float64)
    for name in logdet.PROBES:
        v = logdet.draw_probe(probes, name, gen)
        draws = torch.einsum("ni,ij,nj->n", v, a, v)
        assert float(draws.mean()) == pytest.approx(float(torch.trace(a)), abs=0.05)
        assert float(draws.var()) == pytest.approx(float(logdet_study.hutchinson_variance(a, name)), rel=0.05)


def test_rademacher_variance_is_below_gaussian_for_a_symmetric_jacobian():
    gen = torch.Generator().manual_seed(1)
    half = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    sym = (half + half.T) / 2
    gauss, rad = (float(logdet_study.hutchinson_variance(sym, p)) for p in ("gaussian", "rademacher"))
    assert gauss == pytest.approx(2 * float(sym.pow(2).sum()))
    assert gauss - rad == pytest.approx(2 * float(torch.diagonal(sym).pow(2).sum()))
    assert rad < gauss


def test_rademacher_spread_is_below_gaussian_on_the_study_block(block_09):
    x = points()
    stds = {p: logdet_study.spread(logdet_study.estimator_draws(block_09, x, 5, 400, probe=p))
            for p in logdet.PROBES}
    assert stds["rademacher"] < stds["gaussian"]


def test_hutchinson_variance_rejects_an_unknown_probe():
    with pytest.raises(ValueError, match="unknown probe"):
        logdet_study.hutchinson_variance(torch.eye(2), "uniform")


# --- bias and variance of the truncated estimator (Fig. 4) -------------------------------------
def test_bias_decreases_with_terms_and_stays_within_the_bound(study_05):
    s = study_05
    assert np.all(s.truncation_error <= s.bound + 1e-12)
    assert s.truncation_error[-1] < 1e-3 * s.truncation_error[0]
    assert s.truncation_error[4:].max() < s.truncation_error[:2].min()
    # the measured bias agrees with the exact one within the Monte-Carlo noise
    assert np.all(np.abs(s.bias - s.truncation_bias) <= 4 * s.bias_se)
    assert np.all(s.abs_bias <= s.bound + 4 * s.std / math.sqrt(s.n_repeats))


def test_measured_std_matches_hutchinson_theory(study_05):
    assert np.allclose(study_05.std, study_05.std_theory, rtol=0.15)


def test_std_scales_like_one_over_sqrt_of_probes(block_09):
    x = points()
    stds = [logdet_study.spread(logdet_study.estimator_draws(block_09, x, 5, 400, n_samples=m)) for m in (1, 4)]
    assert stds[0] / stds[1] == pytest.approx(2.0, rel=0.15)


def test_study_row_and_lipschitz_report(study_05):
    row = study_05.row(3)
    assert row["n_terms"] == 3
    assert row["bound"] == pytest.approx(logdet.truncation_error_bound(0.5, DIM, 3), rel=1e-6)
    assert study_05.lipschitz == pytest.approx(0.5, rel=1e-6)


def test_estimator_draws_needs_two_repeats(block_09):
    with pytest.raises(ValueError, match="n_repeats"):
        logdet_study.estimator_draws(block_09, points(), 3, 1)


# --- Russian roulette ----------------------------------------------------------------------------
def test_roulette_is_unbiased_where_the_short_series_is_not(block_09):
    x = points()
    roulette = logdet_study.roulette_study(block_09, x, 0.9, n_repeats=600, p=0.2)
    assert abs(roulette.bias) < 4 * roulette.bias_se
    series = logdet_study.bias_variance_study(block_09, x, 0.9, max_terms=2, n_repeats=600)
    assert abs(series.truncation_bias[0]) > 4 * roulette.bias_se  # one term: clearly biased
    assert roulette.expected_terms == pytest.approx(6.0)


@pytest.mark.parametrize("distribution, p, expected", [("geometric", 0.5, 3.0), ("geometric", 0.25, 5.0),
                                                       ("poisson", 1.5, 3.5)])
def test_expected_terms_of_the_roulette(distribution, p, expected):
    assert logdet_study.expected_terms(2, distribution, p) == pytest.approx(expected)


# --- cost -----------------------------------------------------------------------------------------
def test_count_saved_bytes_counts_what_autograd_keeps():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    with logdet_study.count_saved_bytes() as counter:
        y = x.exp()  # exp saves its result for the backward pass
    assert counter["bytes"] == y.numel() * y.element_size()
    with logdet_study.count_saved_bytes() as counter, torch.no_grad():
        x.exp()
    assert counter["bytes"] == 0


def test_neumann_gradient_memory_is_constant_in_the_number_of_terms():
    branch = logdet_study.study_branch(16, 0.9, dtype=torch.float32)
    x = torch.randn(32, 16)
    saved = {(n, neumann): logdet_study.gradient_cost(branch, x, n, neumann, n_repeats=1)["saved_bytes"]
             for n in (2, 4, 8) for neumann in (False, True)}
    assert saved[(2, True)] == saved[(4, True)] == saved[(8, True)]
    grow = [saved[(n, False)] for n in (2, 4, 8)]
    assert grow[0] < grow[1] < grow[2]
    assert grow[2] - grow[1] == pytest.approx(2 * (grow[1] - grow[0]), rel=0.05)  # linear in n
    assert saved[(8, False)] > 2 * saved[(8, True)]


def test_gradient_cost_restores_the_thread_count():
    before = torch.get_num_threads()
    logdet_study.gradient_cost(logdet_study.study_branch(4, 0.5), points(2, 4), 2, False, n_repeats=1)
    assert torch.get_num_threads() == before


# --- figures and the widget's draw function -----------------------------------------------------
def test_draw_logdet_estimator_reports_the_numbers_and_reacts_to_c():
    fig, low = nb03.figures.draw_logdet_estimator(0.5, 3, 1, dim=DIM, n_draws=200)
    assert fig.axes[0].get_title() and fig.axes[1].get_xlabel() == "number of terms n"
    plt.close(fig)
    fig, high = nb03.figures.draw_logdet_estimator(0.9, 3, 1, dim=DIM, n_draws=200)
    plt.close(fig)
    assert set(low) >= {"exact ln det", "estimate mean", "bias", "std"}
    assert low["||J_g(x)||_2"] == pytest.approx(0.5 ** 2, rel=1e-6)  # two layers of norm c
    assert high["||J_g(x)||_2"] == pytest.approx(0.9 ** 2, rel=1e-6)
    assert high["truncation error"] > low["truncation error"]
    assert low["bias"] == pytest.approx(low["estimate mean"] - low["exact ln det"])


def test_draw_logdet_estimator_std_shrinks_with_more_probes():
    stds = []
    for m in (1, 16):
        fig, numbers = nb03.figures.draw_logdet_estimator(0.7, 4, m, dim=DIM, n_draws=300)
        plt.close(fig)
        stds.append(numbers["std"])
    assert stds[0] / stds[1] == pytest.approx(4.0, rel=0.25)


def test_study_figures_have_titles_and_labels(study_05, block_09):
    x = points()
    roulette = logdet_study.roulette_study(block_09, x, 0.9, n_repeats=20)
    series = logdet_study.bias_variance_study(block_09, x, 0.9, max_terms=4, n_repeats=20)
    errors = logdet_study.estimator_draws(block_09, x, 3, 20).numpy() - series.exact
    jac = logdet.jacobian(block_09, x).detach()
    rows = [{"n_terms": n, "neumann_gradient": g, "seconds": 1e-3 * n, "saved_bytes": 1000 * n}
            for n in (1, 2) for g in (False, True)]
    figures = [
        nb03.figures.plot_jacobian_spectrum({0.9: torch.linalg.eigvals(jac).numpy()}),
        nb03.figures.plot_partial_sums({0.9: logdet_study.series_partial_sums(jac, 5)[0].numpy()},
                                {0.9: series.exact[0]}),
        nb03.figures.plot_bias_variance([study_05, series]),
        nb03.figures.plot_probe_comparison({"gaussian": [study_05]}),
        nb03.figures.plot_roulette_vs_series(series, [roulette], errors, series_terms=3),
        nb03.figures.plot_gradient_cost(rows),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_title() and ax.get_xlabel()
        plt.close(fig)


# --- exercise checks -----------------------------------------------------------------------------
def test_truncation_bound_check_accepts_the_right_answer_and_rejects_a_wrong_one(capsys):
    right = -2 * (math.log(0.5) + 0.5 + 0.5**2 / 2 + 0.5**3 / 3)
    assert nb03.checks.check_truncation_bound(right)
    assert not nb03.checks.check_truncation_bound(2 * (math.log(0.5) + 0.5 + 0.125 + 0.5**3 / 3))  # sign slip
    assert not nb03.checks.check_truncation_bound(None)
    assert "Not yet" in capsys.readouterr().out


def test_hutchinson_check_accepts_the_right_answer_and_rejects_a_wrong_one():
    (a, b), (c, d) = nb03.checks.HUTCHINSON_J
    assert nb03.checks.check_hutchinson_2x2(a + b + c + d, a - b - c + d)
    assert not nb03.checks.check_hutchinson_2x2(a + b + c + d, a + b + c + d)
    assert not nb03.checks.check_hutchinson_2x2(0.8, None)


def test_terms_needed_check_accepts_the_right_answer_and_rejects_a_wrong_one():
    assert nb03.checks.check_terms_needed(7)
    assert logdet.truncation_error_bound(0.5, 10, 7) <= 0.01 < logdet.truncation_error_bound(0.5, 10, 6)
    assert not nb03.checks.check_terms_needed(6)
    assert not nb03.checks.check_terms_needed(True)
