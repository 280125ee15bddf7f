"""The log-det estimators against the exact log-determinant (paper Sec. 3, Thm. 3)."""
import itertools
import math

import pytest
import torch

from iresnet_mini import blocks, lipschitz, logdet


def _branch(dim=3, coeff=0.5, seed=0):
    torch.manual_seed(seed)
    branch = blocks.mlp_branch(dim, 16, 1, coeff=coeff).double()
    with torch.no_grad():
        for name, p in branch.named_parameters():
            if name.endswith("weight"):
                p.mul_(4)
    x = torch.randn(4, dim, dtype=torch.float64)
    for _ in range(30):
        branch(x)
    branch.eval()
    return branch, x


def _lip_upper_bound(branch):
    """Lip(g) <= product of the layers' true operator norms (1-Lipschitz activations)."""
    norm = 1.0
    for layer in branch:
        if isinstance(layer, torch.nn.Linear):
            norm *= lipschitz.operator_norm(layer, (layer.in_features,))
    return norm


def _grads(value, params):
    """d value / d params, zeros for parameters the value does not depend on (the last bias)."""
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _all_sign_probes(monkeypatch, dim, batch):
    """Make Hutchinson exact: every Rademacher sign vector once (E[v v^T] = I over the set)."""
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=dim)), dtype=torch.float64)
    probes = signs.repeat_interleave(batch, 0)  # matches x.repeat(len(signs), 1)
    monkeypatch.setattr(logdet, "draw_probe", lambda x, probe="gaussian", generator=None: probes)
    return len(signs)


def test_exact_logdet_matches_slogdet_of_the_explicit_jacobian():
    branch, x = _branch()
    jac = torch.autograd.functional.jacobian(lambda z: branch(z).sum(0), x).permute(1, 0, 2)
    expected = torch.linalg.slogdet(torch.eye(3, dtype=torch.float64) + jac).logabsdet
    assert torch.allclose(logdet.exact_logdet(branch, x), expected, atol=1e-10)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
@pytest.mark.parametrize("n_terms", [1, 3, 10])
def test_power_series_matches_exact_within_truncation_bound_plus_monte_carlo_error(probe, n_terms):
    branch, x = _branch(coeff=0.6)
    exact = logdet.exact_logdet(branch, x)
    n_rep = 4000
    est = logdet.power_series_logdet(branch, x.repeat(n_rep, 1), n_terms=n_terms, probe=probe)
    est = est.reshape(n_rep, -1)
    mean, se = est.mean(0), est.std(0) / math.sqrt(n_rep)
    bound = logdet.truncation_error_bound(_lip_upper_bound(branch), 3, n_terms)
    assert ((mean - exact).abs() <= bound + 4 * se + 1e-12).all()


def test_truncated_series_error_is_within_the_paper_bound_and_shrinks_with_terms():
    branch, x = _branch(coeff=0.9)
    jac = logdet.jacobian(branch, x)
    exact = torch.linalg.slogdet(torch.eye(3, dtype=torch.float64) + jac).logabsdet
    lip = float(torch.linalg.matrix_norm(jac.detach(), ord=2).max())
    errors = []
    for n in range(1, 12):
        series = sum((-1) ** (k + 1) / k * torch.linalg.matrix_power(jac, k).diagonal(dim1=1, dim2=2).sum(1)
                     for k in range(1, n + 1))
        err = float((series - exact).detach().abs().max())
        assert err <= logdet.truncation_error_bound(lip, 3, n) + 1e-12
        errors.append(err)
    assert errors[-1] < errors[0]


def test_unbiased_estimator_mean_is_within_a_few_standard_errors_of_exact():
    branch, x = _branch(coeff=0.6)
    exact = logdet.exact_logdet(branch, x)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([logdet.unbiased_logdet(branch, x.repeat(50, 1), generator=gen).reshape(50, -1)
                         for _ in range(300)]).reshape(-1, x.shape[0])
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    assert ((mean - exact).abs() <= 4 * se).all()


@pytest.mark.parametrize("neumann", [False, True])
def test_power_series_gradient_equals_autograd_through_exact_logdet(monkeypatch, neumann):
    branch, x = _branch(coeff=0.5)
    params = [p for p in branch.parameters()]
    exact_grads = _grads(logdet.exact_logdet(branch, x).sum(), params)
    n = _all_sign_probes(monkeypatch, 3, x.shape[0])
    est = logdet.power_series_logdet(branch, x.repeat(n, 1), n_terms=40, probe="rademacher",
                                     neumann_gradient=neumann)
    grads = _grads(est.sum() / n, params)
    for g_est, g_exact in zip(grads, exact_grads):
        assert torch.allclose(g_est, g_exact, atol=1e-8)


def test_gradient_with_respect_to_the_input_is_correct():
    branch, x = _branch(coeff=0.5)
    x = x.clone().requires_grad_(True)
    (g_exact,) = torch.autograd.grad(logdet.exact_logdet(branch, x).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    est = logdet.power_series_logdet(branch, x2.repeat(3000, 1), n_terms=30, probe="gaussian")
    (g_est,) = torch.autograd.grad(est.sum() / 3000, x2)
    assert torch.allclose(g_est, g_exact, atol=0.05)


def test_unbiased_estimator_gradient_is_unbiased(monkeypatch):
    branch, x = _branch(coeff=0.5)
    params = list(branch.parameters())
    exact_grads = _grads(logdet.exact_logdet(branch, x).sum(), params)
    n = _all_sign_probes(monkeypatch, 3, x.shape[0])
    gen = torch.Generator().manual_seed(1)
    total = [torch.zeros_like(p) for p in params]
    draws = 200
    for _ in range(draws):
        est = logdet.unbiased_logdet(branch, x.repeat(n, 1), generator=gen, neumann_gradient=True)
        for t, g in zip(total, _grads(est.sum() / n, params)):
            t += g / draws
    for t, g_exact in zip(total, exact_grads):
        assert torch.allclose(t, g_exact, atol=2e-3, rtol=2e-2)


def test_estimates_are_detached_under_no_grad():
    branch, x = _branch()
    with torch.no_grad():
        for name in ("series", "unbiased"):
            gx, ld = logdet.get_estimator(name)(branch, x, return_gx=True)
            assert not gx.requires_grad and not ld.requires_grad
            assert torch.allclose(gx, branch(x))


def test_truncation_bound_hand_computation():
    # d = 2, L = 0.5, n = 1: -2 (ln 0.5 + 0.5) = 2 (ln 2 - 0.5)
    assert logdet.truncation_error_bound(0.5, 2, 1) == pytest.approx(2 * (math.log(2) - 0.5))
    assert logdet.truncation_error_bound(0.5, 2, 200) == pytest.approx(0.0, abs=1e-12)


def test_bad_estimator_arguments_get_clear_errors():
    branch, x = _branch()
    with pytest.raises(ValueError, match="unknown probe"):
        logdet.power_series_logdet(branch, x, probe="uniform")
    with pytest.raises(ValueError, match="n_terms"):
        logdet.power_series_logdet(branch, x, n_terms=0)
    with pytest.raises(ValueError, match="unknown distribution"):
        logdet.unbiased_logdet(branch, x, distribution="binomial")
    with pytest.raises(ValueError, match="unknown log-det estimator"):
        logdet.get_estimator("hutch")
    with pytest.raises(ValueError, match="Lip"):
        logdet.truncation_error_bound(1.0, 2, 3)


# --- the roulette's count: never from u = 0, and a distribution with finite variance --------------
def _scalar_branch(L: float = 0.9):
    """g(x) = L x in 1D: J = L exactly, so a Rademacher probe adds no variance (only the roulette does)."""
    from iresnet_mini.lipschitz import LipschitzLinear

    layer = LipschitzLinear(1, 1, coeff=L, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_(L)
    layer.eval()
    layer(torch.zeros(1, 1, dtype=torch.float64))
    return layer


class _FixedStream:
    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


@pytest.mark.parametrize("draw", [0.0, 1.0 - 2.0 ** -53])  # the smallest and the largest uniform draw
def test_the_roulette_stays_finite_at_the_extreme_uniform_draws(draw, monkeypatch):
    monkeypatch.setattr(logdet, "_count_stream", lambda generator: _FixedStream(draw))
    weights = logdet._roulette_weights(2, "geometric", 0.5, None)
    assert all(math.isfinite(w) for w in weights) and len(weights) <= 2 + 60
    with torch.no_grad():
        value = logdet.unbiased_logdet(_scalar_branch(), torch.zeros(1, 1, dtype=torch.float64), p=0.5,
                                       probe="rademacher")
    assert torch.isfinite(value).all()


def test_the_default_roulette_p_keeps_the_variance_finite_for_the_branchs_bound():
    assert logdet.lipschitz_bound(_scalar_branch(0.9)) == pytest.approx(0.9)
    assert logdet.lipschitz_bound(torch.nn.Linear(2, 2)) is None  # unconstrained: no bound
    conv = blocks.conv_branch(4, 8, coeff=0.9)
    assert logdet.lipschitz_bound(conv) == pytest.approx(0.9 ** 3)
    p = logdet.roulette_p(0.9 ** 3)
    assert (0.9 ** 3) ** 2 / (1 - p) < 1 <= (0.9 ** 3) ** 2 / (1 - 0.5)  # Residual Flows' p = 0.5 is not enough

    def second_moment(L, p, n_max):  # E[Y^2] of the roulette on the scalar series, summed over N < n_max
        total = 0.0
        for n in range(n_max):
            y = sum((-1) ** (k + 1) * L ** k / k / (1 - p) ** k for k in range(1, n + 1))
            total += p * (1 - p) ** n * y * y
        return total
    safe = logdet.roulette_p(0.9)
    assert second_moment(0.9, safe, 400) == pytest.approx(second_moment(0.9, safe, 200), rel=1e-6)  # converged
    assert second_moment(0.9, 0.5, 200) > 1e6 * second_moment(0.9, 0.5, 50)  # diverges


def test_the_unbiased_estimate_is_unbiased_and_its_spread_small_with_the_default_p():
    branch, x = _scalar_branch(0.9), torch.zeros(1, 1, dtype=torch.float64)
    spreads = {}
    for p in (None, 0.5):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            draws = torch.cat([logdet.unbiased_logdet(branch, x, p=p, probe="rademacher", generator=generator)
                               for _ in range(2000)])
        spreads[p] = float(draws.std())
        if p is None:
            assert abs(float(draws.mean()) - math.log(1.9)) < 4 * spreads[p] / math.sqrt(len(draws))
    assert spreads[None] < 0.2 and spreads[0.5] > 10 * spreads[None]
