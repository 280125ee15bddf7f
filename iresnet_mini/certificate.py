"""The certificate of a trained model (paper Sec. 6: certify after training).

Spectral norms to tolerance against c, the true operator norms of a few layers on their real input
shapes, and the reconstruction error of the fixed-point inverse on test images (:func:`round_trip`,
which the lessons use too, and :func:`inverse_report` of the blocks' latest inverses).
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings

import torch

from . import lipschitz, models
from .blocks import InverseNotConvergedWarning, InvertibleResidualBlock
from .data import postprocess, preprocess
from .flows import using_estimator
from .recipes import TrainConfig

__all__ = ["certificate", "no_tf32", "reconstruction", "round_trip", "inverse_report", "quiet_inverse"]


@torch.no_grad()
def certificate(model, x: torch.Tensor, config: TrainConfig, n_true_norms: int = 3, max_iter: int = 200) -> dict:
    """Spectral norms to tolerance (<= c?), true operator norms of a few layers, inverse error on x.

    ``x`` is a batch of test inputs as the model sees them (normalised or dequantised images).
    The fixed-point inverse runs to 1e-5 or ``max_iter`` iterations per block. On a GPU, TF32
    is switched off meanwhile, so that the estimates are float32-accurate.
    """
    with no_tf32():
        return _certificate(model, x, config, n_true_norms, max_iter)


@contextlib.contextmanager
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _certificate(model, x, config, n_true_norms, max_iter) -> dict:
    model.eval()
    layers = lipschitz.certify(model)
    shapes = _conv_input_shapes(model, x[:1], config)
    names = list(shapes)
    picks = sorted({0, len(names) // 2, len(names) - 1})[:n_true_norms] if names else []
    modules = dict(model.named_modules())
    true_norms = [{"layer": names[i], "input_shape": list(shapes[names[i]]),
                   "operator_norm": lipschitz.operator_norm(modules[names[i]], shapes[names[i]], method="power",
                                                            n_iter=300)}
                  for i in picks]
    coeff = model.config.coeff
    result = {
        "coeff": coeff,
        "n_constrained_layers": len(layers),
        "max_sigma_hat": max((r["sigma_hat"] for r in layers), default=None),
        "max_effective_norm": max((r["effective_norm"] for r in layers), default=None),
        "all_below_coeff": (all(r["effective_norm"] <= coeff * (1 + 1e-5) for r in layers)
                            if coeff is not None else False),
        "true_norms": true_norms,
    }
    result.update(reconstruction(model, x, config, max_iter))
    return result


def _conv_input_shapes(model, x, config: TrainConfig) -> dict:
    """{name: (C, H, W)} of the input of every residual-branch convolution, from one forward pass.

    Only the Lipschitz layers (constrained, or the vanilla baseline's unconstrained ones): the
    other convolutions (a conditional prior's net, a coupling block's) have no bound to check.
    """
    convs = {m: name for name, m in model.named_modules() if isinstance(m, lipschitz.LipschitzConv2d)}
    y = x if config.task == "classify" else preprocess(x, config.logit_alpha)[0]
    shapes = lipschitz.layer_input_shapes(model, lambda: model(y), list(convs))
    return {convs[m]: shape for m, shape in shapes.items()}


@torch.no_grad()
def round_trip(model, x: torch.Tensor, logit_alpha: float | None = None, max_iter: int = 100,
               atol: float | None = None) -> dict:
    """x -> F(x) -> F^-1(F(x)) with the fixed-point inverse of every block (Alg. 1), and what it reports.

    For a classifier F is its invertible part (``model.features``; ``max_iter`` and ``atol`` per block),
    for a density model the whole flow from the preprocessed images to all its z_i (its blocks' own
    inverse settings; ``logit_alpha`` as in training). Returns ``x_rec``; ``errors``, max |x - x_rec| per
    image (inf where the inverse left the finite numbers); per block in forward order the ``iterations``
    and final ``residuals`` of its inverse; and whether every block ``converged``.
    """
    model.eval()
    if isinstance(model, models.IResNetClassifier):
        x_rec, infos = model.inverse(model.features(x), max_iter=max_iter, atol=atol, return_info=True)
        infos = infos[::-1]
        complete = len(infos) == len(model.steps)
    else:
        y, _ = preprocess(x, logit_alpha)
        with using_estimator(model, "series", n_terms=1):  # only z is needed: the cheapest log-det
            zs, _ = model(y)
        with quiet_inverse():
            x_rec = postprocess(model.inverse(zs), logit_alpha)
        infos = [m.last_inverse_info for m in model.modules() if isinstance(m, InvertibleResidualBlock)]
        complete = True
    errors = (x_rec - x).flatten(1).abs().amax(1)
    errors = torch.where(torch.isfinite(errors), errors, torch.full_like(errors, math.inf))
    report = inverse_report(infos)
    report["converged"] = complete and report["converged"] and bool(torch.isfinite(errors).all())
    return {"x_rec": x_rec, "errors": errors, **report}


def inverse_report(infos) -> dict:
    """The ``iterations``, final ``residuals`` and whether all ``converged``, of blocks' InverseInfos."""
    return {"iterations": [info.iterations for info in infos], "residuals": [info.residual for info in infos],
            "converged": all(info.converged for info in infos)}


@contextlib.contextmanager
def quiet_inverse():
    """Inside: a block's inverse that stops short is left to :func:`inverse_report`, not warned about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InverseNotConvergedWarning)
        yield


@torch.no_grad()
def reconstruction(model, x: torch.Tensor, config: TrainConfig, max_iter: int = 200) -> dict:
    """The certificate's part on the inverse: :func:`round_trip` on test inputs, summarised.

    Runs on a float64 copy of the model, so that the error and the convergence test (max
    |y - F(x_k)| <= 1e-6) measure the inverse itself, not float32 rounding of large features.
    """
    model, x = copy.deepcopy(model).double().eval(), x.double()
    result = round_trip(model, x, config.logit_alpha if config.task == "density" else None, max_iter)
    error = (result["x_rec"] - x).abs()
    finite = bool(torch.isfinite(error).all())
    return {"reconstruction_images": len(x),
            "reconstruction_max_abs_error": float(error.max()) if finite else None,
            "reconstruction_mean_abs_error": float(error.mean()) if finite else None,
            "inverse_converged": result["converged"], "inverse_max_iterations": max(result["iterations"], default=0)}