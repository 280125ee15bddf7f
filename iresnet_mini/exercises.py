"""Self-checks for the notebooks' exercises: each tells the learner whether an answer is right.

A check returns True/False and prints one verdict line: ``Correct: ...`` with what the answer
shows, ``Not yet: ...`` with a hint, or ``Not answered yet: ...`` while the exercise cell still
holds its placeholder (``None``, ``...``, or a function that returns ``None``). It never raises
on a learner's answer and never prints the solution: solutions are cells of their own, tagged
``solution``, which the student edition leaves out (:mod:`iresnet_mini.editions`).
"""
from __future__ import annotations

import copy
import functools
import inspect
import math

from .logdet import truncation_error_bound

__all__ = ["CORRECT", "NOT_YET", "NOT_ANSWERED", "Verdict", "verdict", "not_answered", "answers", "close_to"]

CORRECT, NOT_YET, NOT_ANSWERED = "Correct: ", "Not yet: ", "Not answered yet: "


class Verdict:
    """A check's outcome, true when the answer is right.

    It behaves like the bool it holds (``if check(...)``, ``assert check(...)``, ``== True``) but
    shows nothing as a cell's last value: the check has already printed its verdict, and a
    notebook would otherwise add a bare ``True`` or ``False`` under it.
    """

    __slots__ = ("ok",)

    def __init__(self, ok: bool):
        self.ok = bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other) -> bool:
        return self.ok == bool(other) if isinstance(other, (bool, Verdict)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ok)

    def __repr__(self) -> str:
        return f"Verdict({self.ok})"

    def _ipython_display_(self) -> None:
        """Display nothing (IPython calls this instead of showing the repr)."""


def verdict(ok: bool, success: str, hint: str) -> Verdict:
    """Print a friendly verdict; returns whether ok, as a :class:`Verdict`."""
    print((CORRECT + success) if ok else (NOT_YET + hint))
    return Verdict(ok)


def not_answered(what: str = "replace the placeholder (None or ...) in the cell with your answer") -> Verdict:
    """Print that the exercise is still open; returns a false :class:`Verdict` (an open exercise is not an error)."""
    print(NOT_ANSWERED + what + ", then run the cell again.")
    return Verdict(False)


def _is_placeholder(value) -> bool:
    return value is None or value is Ellipsis


def answers(*names: str):
    """Decorator: the check reports 'not answered yet' while any of the named arguments is None or ``...``."""
    def decorate(check):
        signature = inspect.signature(check)
        missing = [name for name in names if name not in signature.parameters]
        if missing:
            raise TypeError(f"{check.__name__} has no parameter(s) {missing}")

        @functools.wraps(check)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            if any(_is_placeholder(bound.arguments.get(name)) for name in names):
                return not_answered(f"set {', '.join(names)} (still None)")
            return check(*args, **kwargs)
        return checked
    return decorate


def close_to(value, target: float, rtol: float = 1e-2, atol: float = 1e-8) -> bool:
    """True when value is a finite number within rtol/atol of target."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and math.isclose(value, target, rel_tol=rtol, abs_tol=atol)


# --- notebook 03: the log-determinant --------------------------------------------------------
__all__ += ["HUTCHINSON_J", "check_truncation_bound", "check_hutchinson_2x2", "check_terms_needed"]

HUTCHINSON_J = ((0.3, 0.2), (-0.1, 0.4))  # the 2x2 Jacobian of exercise 03.2


@answers('answer')
def check_truncation_bound(answer, lipschitz: float = 0.5, dim: int = 2, n_terms: int = 3) -> Verdict:
    """Ex. 03.1: the Thm. 3 bound on the error of the series truncated after n_terms."""
    target = truncation_error_bound(lipschitz, dim, n_terms)
    return verdict(close_to(answer, target, rtol=1e-3),
                   f"the first {n_terms} terms are within {target:.4f} nats of ln det(I + J).",
                   f"use -d (ln(1 - L) + sum_{{k=1..n}} L^k / k) with L = {lipschitz}, d = {dim}, n = {n_terms}; "
                   "mind the minus sign and the natural logarithm.")


@answers('estimate_v1', 'estimate_v2')
def check_hutchinson_2x2(estimate_v1, estimate_v2) -> Verdict:
    """Ex. 03.2: v^T J v for the Rademacher probes v1 = (1, 1) and v2 = (1, -1), J = HUTCHINSON_J."""
    (a, b), (c, d) = HUTCHINSON_J
    targets = (a + b + c + d, a - b - c + d)
    ok = close_to(estimate_v1, targets[0], atol=1e-6) and close_to(estimate_v2, targets[1], atol=1e-6)
    return verdict(ok, f"their mean {(targets[0] + targets[1]) / 2:.2f} is tr(J) = {a + d:.2f}: the "
                       "off-diagonal entries cancel between the two probes.",
                   "expand v^T J v = sum_ij v_i J_ij v_j: with v = (1, -1) the off-diagonal entries "
                   "come with a minus sign.")


@answers('answer')
def check_terms_needed(answer, lipschitz: float = 0.5, dim: int = 10, tol: float = 0.01) -> Verdict:
    """Ex. 03.3: the smallest n for which the Thm. 3 bound is at most tol."""
    n = 1
    while truncation_error_bound(lipschitz, dim, n) > tol:
        n += 1
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == n
    return verdict(ok, f"{n} terms guarantee an error <= {tol} for L = {lipschitz}, d = {dim}.",
                   "evaluate the bound for n = 1, 2, 3, ... and stop at the first n where it is <= tol; "
                   "the answer is a whole number.")


# --- notebooks 05-06: image classifiers ------------------------------------------------------
__all__ += ["check_branch_bound", "check_block_inverse", "check_feature_size", "check_confusion"]


@answers('lip_g', 'lip_inverse')
def check_branch_bound(lip_g, lip_inverse, coeff: float = 0.9, n_layers: int = 3) -> Verdict:
    """Ex. 05.1: a branch of n_layers layers of norm <= c has Lip(g) <= c^n; one block's Lip(F^-1) <= 1/(1 - that)."""
    target_g = coeff ** n_layers
    target_inverse = 1 / (1 - target_g)
    ok = close_to(lip_g, target_g, rtol=1e-3) and close_to(lip_inverse, target_inverse, rtol=1e-3)
    return verdict(ok, f"Lip(g) <= {coeff:g}^{n_layers} = {target_g:.3f}, well below c = {coeff:g}, so one block's "
                       f"inverse is at most {target_inverse:.2f}-Lipschitz.",
                   "the Lipschitz constant of a composition is at most the product of its parts' (ELU is "
                   "1-Lipschitz); then use Lip(F^-1) <= 1 / (1 - Lip(g)).")


@answers('x')
def check_block_inverse(block, y, x, atol: float = 1e-4) -> Verdict:
    """Ex. 05.2: x inverts the residual block, i.e. block(x) = x + g(x) equals y to atol."""
    import torch

    if not isinstance(x, torch.Tensor) or x.shape != y.shape:
        return verdict(False, "", f"x must be a tensor of the same shape as y, {tuple(y.shape)}.")
    with torch.no_grad():
        residual = float((block(x) - y).abs().max())
    ok = math.isfinite(residual) and residual <= atol
    return verdict(ok, f"F(x) matches y to {residual:.1e}: Alg. 1 inverted a block of a trained network.",
                   f"max |F(x) - y| = {residual:.2e}; iterate x <- y - g(x) starting from x = y, with g = "
                   "block.branch, until the update stops changing x (a few dozen steps).")


@answers('n_features', 'n_zeros')
def check_feature_size(n_features, n_zeros, preset: str = "paper", in_shape=(3, 32, 32)) -> Verdict:
    """Ex. 06.1: numbers in one image's features, and how many of them are injective zero padding."""
    from .models import IResNetClassifier, classifier_config

    config = classifier_config(preset, in_shape)
    features = math.prod(IResNetClassifier(config).feature_shape)
    zeros = features - math.prod(in_shape)
    ok = n_features == features and n_zeros == zeros
    return verdict(ok, f"{features} numbers, {zeros} of them padding: squeezes only reshape, so the features "
                       f"have exactly as many numbers as the padded input.",
                   f"pad the {in_shape[0]} input channels to {config.channels}; a squeeze turns (C, H, W) into "
                   "(4C, H/2, W/2) and keeps C*H*W.")


@answers('true_class', 'predicted_class')
def check_confusion(true_class, predicted_class, predictions, labels, classes) -> Verdict:
    """Ex. 06.2: the most frequent confusion (true class, predicted class) among the predictions."""
    import torch

    n = len(classes)
    counts = torch.bincount(labels.cpu() * n + predictions.cpu(), minlength=n * n).view(n, n)
    counts.fill_diagonal_(0)
    top = int(counts.max())
    pairs = {(classes[i], classes[j]) for i, j in (counts == top).nonzero().tolist()}
    ok = (true_class, predicted_class) in pairs
    return verdict(ok, f"{true_class!r} taken for {predicted_class!r} {top} times, the most frequent mistake.",
                   "count, for every pair (true label i, prediction j) with i != j, how often it occurs "
                   "(a confusion matrix), and take the largest; answer with class names.")


# --- notebooks 01-02: ResNets as dynamics; making a ResNet invertible ------------------------
import torch  # noqa: E402

from .dynamics import count_crossings  # noqa: E402
from .invertibility import banach_iterations  # noqa: E402
from .lipschitz import operator_norm, reshaped_kernel_norm  # noqa: E402

__all__ += ["check_min_slope", "check_crossing_counter", "check_banach_iterations", "check_bi_lipschitz_bounds",
            "check_conv_normalised"]


@answers('answer')
def check_min_slope(answer, lipschitz: float = 0.5, depth: int = 8) -> Verdict:
    """Ex. 01.1: the smallest slope F'(x) a depth-T stack of 1D blocks with Lip(g_t) <= L can have."""
    target = (1 - lipschitz) ** depth
    return verdict(close_to(answer, target, rtol=1e-3),
                   f"each block has F'(x) = 1 + g'(x) >= 1 - {lipschitz}, and the chain rule multiplies "
                   f"{depth} such factors: the map can flatten to {target:.3g} but never turn around.",
                   "in 1D, F'(x) = 1 + g'(x) and |g'(x)| <= Lip(g); the slope of a stack is the product "
                   "of the blocks' slopes (chain rule).")


@answers('count_flips')
def check_crossing_counter(count_flips) -> Verdict:
    """Ex. 01.2: a function (before, after) -> number of pairs whose order flips, on hidden test cases."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])),
             (torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 5.0, 9.0])),
             (torch.tensor([-1.0, 0.0, 1.0, 2.0]), torch.tensor([1.0, 0.0, 1.5, 2.0]))]
    cases += [(torch.randn(12, generator=g), torch.randn(12, generator=g)) for _ in range(5)]
    try:
        counts = [count_flips(a, b) for a, b in cases]
    except NotImplementedError:
        return not_answered("write the body of count_flips")
    except Exception as error:  # the learner's code: report, do not crash the notebook
        return verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if all(_is_placeholder(count) for count in counts):
        return not_answered("write the body of count_flips (it still returns None)")
    try:
        ok = all(int(count) == count_crossings(torch.stack([a, b])) for count, (a, b) in zip(counts, cases))
    except (TypeError, ValueError) as error:
        return verdict(False, "", f"count_flips must return a whole number, got {counts[0]!r} ({error})")
    return verdict(ok, "your count agrees with dynamics.count_crossings on all test cases.",
                   "a pair (i, j) flips when (a_i - a_j) and (b_i - b_j) have opposite signs; count each "
                   "unordered pair once.")


@answers('answer')
def check_banach_iterations(answer, lipschitz: float = 0.9, tol: float = 1e-6, first_step: float = 1.0) -> Verdict:
    """Ex. 02.1: the fewest fixed-point iterations for which Banach's bound guarantees ||x - x_k|| <= tol."""
    target = banach_iterations(lipschitz, tol, first_step)
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == target
    return verdict(ok, f"{target} iterations: L^k / (1 - L) * {first_step:g} <= {tol:g} first holds at k = {target}.",
                   "solve L^k / (1 - L) * ||x_1 - x_0|| <= tol for k (take logarithms; log L < 0 flips the "
                   "inequality) and round up to a whole number.")


@answers('lip_F', 'lip_F_inv')
def check_bi_lipschitz_bounds(lip_F, lip_F_inv, lipschitz: float = 0.75) -> Verdict:
    """Ex. 02.2: the bounds on Lip(F) and Lip(F^-1) for F = id + g with Lip(g) = L."""
    ok = close_to(lip_F, 1 + lipschitz, rtol=1e-6) and close_to(lip_F_inv, 1 / (1 - lipschitz), rtol=1e-6)
    return verdict(ok, f"Lip(F) <= {1 + lipschitz:g} and Lip(F^-1) <= {1 / (1 - lipschitz):g}.",
                   "for Lip(F) use the triangle inequality on x + g(x) - y - g(y); for the inverse, "
                   "||F(x) - F(y)|| >= ||x - y|| - ||g(x) - g(y)||.")


@answers("factor")
def check_conv_normalised(layer, factor, input_shape=(4, 16, 16), target: float = 0.9) -> Verdict:
    """Ex. 02.3: ``factor`` rescales the conv's weight to operator norm ``target`` on inputs of ``input_shape``.

    The layer itself is left as it is: the check measures a rescaled copy.
    """
    try:
        scaled = copy.deepcopy(layer)
        with torch.no_grad():
            scaled.weight.mul_(float(factor))
        norm = operator_norm(scaled, input_shape)
    except Exception as error:
        return verdict(False, "", f"could not rescale the layer by {factor!r}: {type(error).__name__}: {error}")
    ok = close_to(norm, target, rtol=1e-2)
    return verdict(ok, f"the rescaled operator norm is {norm:.4f}; its reshaped-kernel norm is "
                       f"{reshaped_kernel_norm(scaled):.4f}, so dividing by that would have missed.",
                   f"with this factor the operator norm on {tuple(input_shape)} inputs is {norm:.4f}, not {target}: "
                   "measure the operator norm on those inputs (not the reshaped kernel's) and use target / norm.")


# --- notebook 04: 2D densities --------------------------------------------------------------
import numpy as np  # noqa: E402

from .toyflows import log_det_identity_plus  # noqa: E402

__all__ += ["check_logdet_2x2", "check_density_mass", "check_checkerboard_entropy"]


@answers('logdet_2x2')
def check_logdet_2x2(logdet_2x2) -> Verdict:
    """Ex. 04.1: a function J (batch, 2, 2) -> log det(I + J) per sample, by the closed 2x2 formula."""
    g = torch.Generator().manual_seed(4)
    jac = torch.randn(64, 2, 2, generator=g, dtype=torch.float64)
    jac = jac * (0.9 / torch.linalg.matrix_norm(jac, ord=2))[:, None, None]  # ||J|| = 0.9 < 1, as in a block
    try:
        answer = logdet_2x2(jac)
    except NotImplementedError:
        return not_answered("write the body of logdet_2x2")
    except Exception as error:
        return verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if answer is None:
        return not_answered("write the body of logdet_2x2 (it still returns None)")
    answer = torch.as_tensor(answer, dtype=torch.float64)
    expected = log_det_identity_plus(jac)
    ok = answer.shape == expected.shape and bool(torch.allclose(answer, expected, atol=1e-10))
    return verdict(ok, "log((1 + J11)(1 + J22) - J12 J21), one value per sample, as in log_det_identity_plus.",
                   "return one number per sample (shape (batch,)); det [[a, b], [c, d]] = ad - bc, and "
                   "the matrix is I + J, not J.")


@answers('mass')
def check_density_mass(mass, log_p_grid, extent) -> Verdict:
    """Ex. 04.2: the probability mass of a learned density on its plotted grid (a Riemann sum)."""
    n = log_p_grid.shape[0]
    cell = ((extent[1] - extent[0]) / (n - 1)) * ((extent[3] - extent[2]) / (n - 1))
    expected = float(np.exp(log_p_grid).sum() * cell)
    ok = close_to(mass, expected, rtol=0.02)
    return verdict(ok, f"{expected:.3f}: a normalised density, and almost all of its mass lies on the square "
                       "the data lives on (change of variables keeps the total at 1).",
                   "sum exp(log p) over the grid and multiply by the area of one cell: the grid has n points "
                   "per side from -lim to lim, so a cell is (2 lim / (n - 1)) squared.")


@answers('answer')
def check_checkerboard_entropy(answer) -> Verdict:
    """Ex. 04.3: the entropy of the checkerboard data (uniform on 8 squares of side 2), in nats."""
    ok = close_to(answer, math.log(32.0), rtol=1e-4)
    return verdict(ok, f"log 32 = {math.log(32.0):.4f} nats: a uniform density 1/A has entropy log A.",
                   "the density is uniform, p = 1/A on its support; H = -E[log p] = log A. What is the area A "
                   "of 8 squares of side 2?")


# --- notebooks 07-08: density models on images -----------------------------------------------
__all__ += ["check_bits_per_dim", "check_logit_logdet", "check_log_density_from_bits", "check_probes_needed"]


@answers('answer')
def check_bits_per_dim(answer, log_prob_nats: float, n_dims: int) -> Verdict:
    """Ex. 07.2: bits/dim of one 8-bit image from the model's log p(x) (nats) of its dequantised version."""
    target = -float(log_prob_nats) / (n_dims * math.log(2)) + 8
    return verdict(close_to(answer, target, rtol=1e-4),
                   f"{target:.4f} bits/dim: nats to bits (divide by ln 2), per dimension (divide by D), and "
                   "8 bits for squeezing 256 levels into [0, 1).",
                   f"bits/dim = -log p(x) / (D ln 2) + log2(256) with D = {n_dims}; log p is in nats, so use the "
                   "natural logarithm ln 2, and do not forget the + 8.")


@answers('logdet_nats', 'bits_shift')
def check_logit_logdet(logdet_nats, bits_shift, x: float = 0.5, alpha: float = 0.05, n_dims: int = 784) -> Verdict:
    """Ex. 07.1: log|det dy/dx| of the logit transform for an image whose every pixel is x, and its bits/dim shift."""
    s = alpha + (1 - 2 * alpha) * x
    target = n_dims * math.log((1 - 2 * alpha) / (s * (1 - s)))
    shift = -target / (n_dims * math.log(2))
    ok = close_to(logdet_nats, target, rtol=1e-4) and close_to(bits_shift, shift, rtol=1e-4)
    return verdict(ok, f"log|det| = {target:.2f} nats: the bits/dim of x are those computed from log p(y) alone, "
                       f"{shift:+.4f}. The transform stretches [0, 1), so a density in y is lower than in x.",
                   "the Jacobian is diagonal: dy/dx = (1 - 2 alpha) / (s (1 - s)) per pixel with s = alpha + "
                   "(1 - 2 alpha) x. Sum its log over the D pixels; the bits/dim shift is -log|det| / (D ln 2).")


@answers('answer')
def check_log_density_from_bits(answer, bits: float = 3.45, n_dims: int = 3072) -> Verdict:
    """Ex. 08.1: the log-density log p(x) in nats per image that a model with ``bits`` bits/dim assigns."""
    target = (8 - bits) * n_dims * math.log(2)
    return verdict(close_to(answer, target, rtol=1e-4),
                   f"log p(x) = {target:.0f} nats: positive! On [0, 1)^D a density above 1 is normal - the "
                   "8-bit data occupy a tiny part of the cube, and the model piles its mass there.",
                   "solve bits/dim = -log p(x) / (D ln 2) + 8 for log p(x); mind the sign.")


@answers('answer')
def check_probes_needed(answer, std_one_probe: float, target: float) -> Verdict:
    """Ex. 08.2: the fewest probes m for which the std of the averaged estimate, std_1 / sqrt(m), is <= target."""
    m = max(1, math.ceil((std_one_probe / target) ** 2 - 1e-9))
    ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == m
    return verdict(ok, f"{m} probes: averaging m independent probes divides the standard deviation by sqrt(m), "
                       "so halving it costs four times the work.",
                   "the std of the mean of m probes is std_1 / sqrt(m); solve std_1 / sqrt(m) <= target for the "
                   "smallest whole number m.")


# --- implement it yourself: the algorithms themselves (notebooks 02-04) ------------------------------
# Each check runs the learner's function and the package's own code on the same inputs (the same
# matrix, start vector, probe and seed) and compares; the tests show that each rejects a planted slip.
__all__ += ["check_power_iteration", "check_spectral_normalisation", "check_fixed_point_inverse",
            "check_series_logdet", "check_roulette_weights", "check_flow_log_prob"]


def _call(fn, *args):
    """(result, None) or (None, a verdict already printed) for a learner's function."""
    try:
        result = fn(*args)
    except NotImplementedError:
        return None, not_answered(f"write the body of {getattr(fn, '__name__', 'your function')}")
    except Exception as error:  # the learner's code: report, do not crash the notebook
        return None, verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if _is_placeholder(result):
        return None, not_answered(f"write the body of {getattr(fn, '__name__', 'your function')} (it returns None)")
    return result, None


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def _matches(result, expected: torch.Tensor, rtol: float = 1e-8, atol: float = 1e-10) -> bool:
    """Is a learner's tensor (or numbers) the package's ``expected``, shape and values?"""
    try:
        result = torch.as_tensor(result.detach() if isinstance(result, torch.Tensor) else result,
                                 dtype=expected.dtype)
    except (TypeError, ValueError, RuntimeError):
        return False
    return result.shape == expected.shape and bool(torch.allclose(result, expected, rtol=rtol, atol=atol))


@answers("power_iteration")
def check_power_iteration(power_iteration) -> Verdict:
    """Ex. 02.4: power_iteration(W, u, n_steps) -> sigma_hat, against the package's on the same W and start u."""
    from .lipschitz import LipschitzLinear

    g = torch.Generator().manual_seed(7)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64)
    u0 = torch.randn(6, generator=g, dtype=torch.float64)
    u0 = u0 / u0.norm()
    layer = LipschitzLinear(4, 6, coeff=0.9, bias=False).double()
    true_norm = float(torch.linalg.matrix_norm(W, ord=2))
    for n_steps in (1, 3, 30):
        with torch.no_grad():
            layer.weight.copy_(W)
        layer.u, layer.v = u0.clone(), torch.zeros(4, dtype=torch.float64)
        expected = float(layer.power_iteration(n_steps))
        result, failed = _call(power_iteration, W.clone(), u0.clone(), n_steps)
        if result is None:
            return failed
        try:
            sigma = float(_first(result))
        except (TypeError, ValueError):
            return verdict(False, "", f"return sigma_hat as a number (or first in a tuple), got {result!r}")
        if not close_to(sigma, expected, rtol=1e-8):
            return verdict(False, "", f"after {n_steps} step(s) the package has sigma_hat = {expected:.6f}, you "
                                      f"{sigma:.6f}: per step v <- W^T u / ||W^T u||, then u <- W v / ||W v||, "
                                      "and sigma_hat = u^T W v.")
    return verdict(True, f"your estimate matches the package's step by step and approaches ||W||_2 = {true_norm:.4f} "
                         "from below.", "")


@answers("normalise")
def check_spectral_normalisation(normalise) -> Verdict:
    """Ex. 02.5: normalise(W, sigma_hat, c) -> W / max(1, sigma_hat / c), against the package's layer."""
    from .lipschitz import LipschitzLinear

    for scale in (3.0, 0.3):  # a weight above c, and one already below it
        g = torch.Generator().manual_seed(11)
        layer = LipschitzLinear(5, 5, coeff=0.9).double()
        with torch.no_grad():
            layer.weight.copy_(torch.randn(5, 5, generator=g, dtype=torch.float64))
            layer.weight.mul_(scale / torch.linalg.matrix_norm(layer.weight, ord=2))
        layer.train()
        layer(torch.zeros(1, 5, dtype=torch.float64))
        layer.power_iteration(100)
        layer.eval()
        with torch.no_grad():
            expected = layer.normalized_weight()
        sigma_hat = float((layer.u * (layer.weight.detach() @ layer.v)).sum())
        result, failed = _call(normalise, layer.weight.detach().clone(), sigma_hat, 0.9)
        if result is None:
            return failed
        if not isinstance(result, torch.Tensor) or result.shape != expected.shape:
            return verdict(False, "", "return the rescaled weight: a tensor shaped like W.")
        if not _matches(result, expected, atol=1e-12):
            what = "above" if scale > 0.9 else "below"
            return verdict(False, "", f"for a weight whose norm is {what} c the package gives another matrix: "
                                      "divide by max(1, sigma_hat / c), so that a weight already below c is left "
                                      "as it is.")
    return verdict(True, "a weight above c is scaled down to norm c; one below c is left alone, as in the package.", "")


@answers("inverse")
def check_fixed_point_inverse(inverse) -> Verdict:
    """Ex. 02.6: inverse(g, y, atol, max_iter) -> (x, iterations) with the package's stopping rule (Alg. 1)."""
    from .blocks import fixed_point_inverse
    from .invertibility import tight_branch

    torch.manual_seed(3)
    branch = tight_branch(4, 0.8, spectral_norm=False)
    y = torch.randn(16, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        x_ref, history = fixed_point_inverse(branch, y, max_iter=500, atol=1e-10)
        result, failed = _call(inverse, branch, y.clone(), 1e-10, 500)
    if result is None:
        return failed
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        return verdict(False, "", "return two things: the inverse x and the number of iterations it took.")
    x, iterations = result
    with torch.no_grad():
        residual = float((x + branch(x) - y).abs().max()) if isinstance(x, torch.Tensor) else math.inf
    if not residual <= 1e-9:
        return verdict(False, "", f"F(x) misses y by {residual:.1e}: iterate x <- y - g(x) from x_0 = y.")
    if abs(int(iterations) - len(history)) > 1:
        return verdict(False, "", f"the package stops after {len(history)} iterations, you after {iterations}: stop as "
                                  "soon as max |x_(k+1) - x_k| <= atol (start from x_0 = y).")
    return verdict(True, f"x inverts the block to {residual:.0e} in {iterations} iterations, like the package "
                         f"({len(history)}).", "")


@answers("series_logdet")
def check_series_logdet(series_logdet) -> Verdict:
    """Ex. 03.4: series_logdet(g, x, v, n_terms) by vector-Jacobian products, against power_series_logdet."""
    from .logdet import draw_probe, power_series_logdet
    from .lipschitz import LipschitzLinear

    torch.manual_seed(5)
    branch = torch.nn.Sequential(LipschitzLinear(5, 8, coeff=0.8), torch.nn.ELU(),
                                 LipschitzLinear(8, 5, coeff=0.8)).double()
    branch.train()
    branch(torch.zeros(1, 5, dtype=torch.float64))
    for layer in (branch[0], branch[2]):
        layer.power_iteration(50)
    branch.eval()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for n_terms in (1, 4):
        v = draw_probe(x, "gaussian", torch.Generator().manual_seed(9))
        with torch.no_grad():
            expected = power_series_logdet(branch, x, n_terms=n_terms, generator=torch.Generator().manual_seed(9))
        result, failed = _call(series_logdet, branch, x.clone(), v, n_terms)
        if result is None:
            return failed
        if not _matches(result, expected):
            return verdict(False, "", f"with {n_terms} term(s) the package's estimate differs: term k is "
                                      "(-1)^(k+1) / k * v^T J^k v, where w <- w^T J is one vector-Jacobian product "
                                      "(torch.autograd.grad(g(x), x, w)); one value per sample.")
    return verdict(True, "your estimator agrees with power_series_logdet on the same probe.", "")


@answers("roulette_weights")
def check_roulette_weights(roulette_weights) -> Verdict:
    """Ex. 03.5: roulette_weights(n_exact, n_extra, p) -> the weight of every computed term; unbiased in the mean."""
    for n_exact, n_extra, p in ((2, 0, 0.5), (2, 3, 0.5), (1, 5, 0.25)):
        expected = [1.0] * n_exact + [1.0 / (1.0 - p) ** m for m in range(1, n_extra + 1)]
        result, failed = _call(roulette_weights, n_exact, n_extra, p)
        if result is None:
            return failed
        try:
            weights = [float(w) for w in result]
        except (TypeError, ValueError):
            return verdict(False, "", "return a list of numbers, one weight per computed term.")
        if len(weights) != len(expected) or not all(close_to(w, e, rtol=1e-9) for w, e in zip(weights, expected)):
            return verdict(False, "", f"for n_exact = {n_exact}, N = {n_extra}, p = {p} the weights should be "
                                      f"{[round(e, 4) for e in expected]}: term n_exact + m is divided by P(N >= m) = "
                                      "(1 - p)^m, the chance that it is computed at all.")
    # unbiased: the expectation over N ~ Geometric(p) of the reweighted series is the whole series
    L, p = 0.6, 0.5
    mean = sum(p * (1 - p) ** n * sum(w * (-1) ** (k + 1) * L ** k / k
                                      for k, w in enumerate(roulette_weights(1, n, p), start=1)) for n in range(200))
    return verdict(close_to(mean, math.log1p(L), rtol=1e-8),
                   f"the expected value over N is {mean:.8f} = ln(1 + {L}): unbiased.",
                   f"averaged over N the reweighted series gives {mean:.6f}, not ln(1 + {L}) = {math.log1p(L):.6f}.")


@answers("log_prob")
def check_flow_log_prob(log_prob) -> Verdict:
    """Ex. 04.4: log_prob(flow, x) by change of variables, against toyflows.exact_log_prob on the same flow."""
    from .toyflows import exact_log_prob, iresnet_flow

    torch.manual_seed(4)
    flow = iresnet_flow(n_blocks=2, hidden=8).double()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    flow.train()
    with torch.no_grad():
        flow(x)  # ActNorm's data-dependent initialisation
    flow.eval()
    with torch.no_grad():
        expected = exact_log_prob(flow, x)
    result, failed = _call(log_prob, flow, x.clone())
    if result is None:
        return failed
    return verdict(_matches(result, expected), "log p(x) = log N(z; 0, I) + the sum of the layers' log-determinants, as the package computes it.",
                   "go through flow.layers: an ActNorm layer returns (y, logdet) when called; a residual layer "
                   "gives g(x) and J_g(x) by toyflows.mlp_jacobian(layer.block.branch, x), and its log-det is "
                   "toyflows.log_det_identity_plus(J); add flow.base.log_prob(z) of the final z.")
