"""The exercise checks: an open exercise says "not answered yet" and never raises; a check needs an answer."""
from __future__ import annotations

import inspect

import pytest

from iresnet_mini.lessons import checks as lesson_checks
from iresnet_mini.lessons import nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08

# every lesson's own checks (re-exports excluded)
CHECKS = {name: fn for lesson in (nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08)
          for name, fn in vars(lesson.checks).items()
          if name.startswith("check_") and callable(fn) and fn.__module__ == lesson.checks.__name__}


def test_every_exercise_check_knows_its_answer_parameters():
    undecorated = [name for name, fn in CHECKS.items() if not hasattr(fn, "__wrapped__")]
    assert not undecorated, f"checks without @answers(...): {undecorated}"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_a_placeholder_answer_is_reported_as_not_answered(name, capsys):
    check = CHECKS[name]
    parameters = inspect.signature(check).parameters
    required = [p for p in parameters.values() if p.default is inspect.Parameter.empty]
    assert isinstance(result := check(*[None] * len(required)), lesson_checks.Verdict) and not result
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_ANSWERED)
    assert not check(*[...] * len(required))  # the other placeholder a stub may hold
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_ANSWERED)


def test_a_wrong_answer_is_not_yet_and_a_right_one_correct(capsys):
    assert not nb01.checks.check_min_slope(0.5) and nb01.checks.check_min_slope(0.5) == False  # noqa: E712
    assert capsys.readouterr().out.startswith(lesson_checks.NOT_YET)
    assert nb01.checks.check_min_slope(0.5 ** 8) == True  # noqa: E712
    assert capsys.readouterr().out.startswith(lesson_checks.CORRECT)


def test_answers_refuses_a_parameter_the_check_does_not_have():
    with pytest.raises(TypeError, match="no parameter"):
        @lesson_checks.answers("answr")
        def check_typo(answer):
            return True


# --- the implement-it-yourself checks accept the algorithm and reject a planted slip -----------------
import math  # noqa: E402

import torch  # noqa: E402

from iresnet_mini.lessons.nb04 import toyflows  # noqa: E402


def _power_iteration(W, u, n_steps, order="package"):
    for _ in range(n_steps):
        if order == "package":
            v = W.T @ u
            v = v / v.norm()
            u = W @ v
            u = u / u.norm()
        else:  # the other order: u from v first
            v = W.T @ u
            v = v / v.norm()
    return float(u @ (W @ v)) if order == "package" else float((W.T @ u).norm())


def test_power_iteration_check():
    assert nb02.checks.check_power_iteration(_power_iteration)
    assert not nb02.checks.check_power_iteration(lambda W, u, n: _power_iteration(W, u, n, order="other"))
    assert not nb02.checks.check_power_iteration(lambda W, u, n: float(torch.linalg.matrix_norm(W, ord=2)))


def test_spectral_normalisation_check():
    assert nb02.checks.check_spectral_normalisation(lambda W, s, c: W / max(1.0, s / c))
    assert not nb02.checks.check_spectral_normalisation(lambda W, s, c: W * c / s)  # rescales a weight below c too


def _inverse(g, y, atol, max_iter, stop=True):
    x = y.clone()
    for k in range(1, max_iter + 1):
        x_next = y - g(x)
        done = float((x_next - x).abs().max()) <= atol
        x = x_next
        if done and stop:
            return x, k
    return x, max_iter


def test_fixed_point_inverse_check():
    assert nb02.checks.check_fixed_point_inverse(_inverse)
    assert not nb02.checks.check_fixed_point_inverse(lambda g, y, atol, n: _inverse(g, y, atol, n, stop=False))
    assert not nb02.checks.check_fixed_point_inverse(lambda g, y, atol, n: (y - g(y), 1))  # one step is not enough


def _series(g, x, v, n_terms, sign=True):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        gx = g(x)
        w, total = v, torch.zeros(x.shape[0], dtype=x.dtype)
        for k in range(1, n_terms + 1):
            (w,) = torch.autograd.grad(gx, x, w, retain_graph=True)
            total = total + ((-1) ** (k + 1) if sign else 1) / k * (w * v).sum(1)
    return total.detach()


def test_series_logdet_check():
    assert nb03.checks.check_series_logdet(_series)
    assert not nb03.checks.check_series_logdet(lambda g, x, v, n: _series(g, x, v, n, sign=False))


def test_roulette_weights_check_wants_the_survival_probability():
    assert nb03.checks.check_roulette_weights(lambda n0, n, p: [1.0] * n0 + [(1 - p) ** -m for m in range(1, n + 1)])
    assert not nb03.checks.check_roulette_weights(
        lambda n0, n, p: [1.0] * n0 + [1 / (p * (1 - p) ** m) for m in range(1, n + 1)])  # 1 / P(N = m)
    assert not nb03.checks.check_roulette_weights(lambda n0, n, p: [1.0] * (n0 + n))  # no reweighting: biased


def _log_prob(flow, x, base=True):
    logdet = torch.zeros(x.shape[0], dtype=x.dtype)
    for layer in flow.layers:
        if hasattr(layer, "block"):
            gx, jac = toyflows.mlp_jacobian(layer.block.branch, x)
            x, ld = x + gx, toyflows.log_det_identity_plus(jac)
        else:
            x, ld = layer(x)
        logdet = logdet + ld
    z_term = flow.base.log_prob(x) if base else -0.5 * (x ** 2).sum(1)
    return z_term + logdet


def test_flow_log_prob_check():
    assert nb04.checks.check_flow_log_prob(_log_prob)
    assert not nb04.checks.check_flow_log_prob(lambda flow, x: _log_prob(flow, x, base=False))  # no -d/2 ln 2 pi
    with torch.no_grad():
        assert math.isfinite(float(_log_prob(toyflows.iresnet_flow(n_blocks=1, hidden=4), torch.zeros(2, 2)).sum()))


def test_a_verdict_is_a_bool_that_shows_nothing_in_a_notebook():
    right, wrong = lesson_checks.Verdict(True), lesson_checks.Verdict(False)
    assert right and not wrong and right == True and wrong == False  # noqa: E712
    assert right != wrong and {right: 1}[lesson_checks.Verdict(True)] == 1
    assert right._ipython_display_() is None  # IPython calls this instead of printing the repr
    assert repr(wrong) == "Verdict(False)"
