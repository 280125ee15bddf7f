"""Lipschitz-constrained layers: spectral normalisation with coefficient c (paper Sec. 2).

A residual branch g = W3 . phi . W2 . phi . W1 has Lip(g) <= prod_i ||W_i||_2 when every
activation phi is 1-Lipschitz. Each layer here rescales its weight by
1 / max(1, sigma_hat / c), where sigma_hat is a power-iteration estimate of the layer's
operator norm, so that (up to the estimate's accuracy) ||W||_2 <= c < 1.

For a convolution with a kernel larger than 1x1 the power iteration runs on the
convolution *operator* (conv2d forward, conv_transpose2d backward on a vector shaped like
the layer's input), not on the reshaped kernel matrix, whose norm is not the operator norm.
"""
from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LipschitzLinear", "LipschitzConv2d", "LipSwish", "get_activation", "ACTIVATIONS",
    "operator_norm", "reshaped_kernel_norm", "frozen_power_iteration", "lipschitz_layers",
    "certify", "check_coeff", "layer_input_shapes", "lipschitz_upper_bound",
]

_FROZEN = False
# When a convolution meets a new input size: power iteration to this relative tolerance.
SHAPE_CHANGE_TOL = 1e-4
SHAPE_CHANGE_MAX_ITER = 1000


@contextlib.contextmanager
def frozen_power_iteration():
    """Within this context no layer updates its power-iteration vectors (used by torch.func)."""
    global _FROZEN
    previous, _FROZEN = _FROZEN, True
    try:
        yield
    finally:
        _FROZEN = previous


def check_coeff(coeff: float | None) -> float | None:
    """Validate a Lipschitz coefficient: ``None`` (no constraint) or a number in (0, 1)."""
    if coeff is None:
        return None
    if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not math.isfinite(coeff):
        raise ValueError(f"coeff must be a number in (0, 1) or None, got {coeff!r}")
    if not 0.0 < coeff < 1.0:
        raise ValueError(
            f"coeff={coeff} is outside (0, 1): Thm. 1 needs Lip(g) < 1 for invertibility; "
            "use coeff=None for an unconstrained (vanilla) layer"
        )
    return float(coeff)


def _check_iterations(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n_power_iterations must be an integer >= 0, got {n!r}")
    return n


def _normalize(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm().clamp_min(1e-12)


class _SpectralNormMixin:
    """Shared machinery: buffers u, v, power iteration and the rescaled weight."""

    coeff: float | None
    n_power_iterations: int

    def _init_spectral(self, coeff, n_power_iterations):
        self.coeff = check_coeff(coeff)
        self.n_power_iterations = _check_iterations(n_power_iterations)
        # u: shape of one output, v: shape of one input (learned on the first call for convs).
        self.register_buffer("u", torch.empty(0))
        self.register_buffer("v", torch.empty(0))
        # The latest estimate sigma_hat (for inspection; recomputed in every forward).
        self.register_buffer("sigma", torch.ones(()))

    # --- subclasses define the linear operator A (= the layer without bias) and its adjoint.
    def _apply_A(self, v, weight):  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply_At(self, u, weight):  # pragma: no cover - abstract
        raise NotImplementedError

    def _input_shape_for(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_vectors(self, x: torch.Tensor) -> None:
        shape = self._input_shape_for(x)
        g = torch.Generator(device="cpu").manual_seed(0)
        v = _normalize(torch.randn(shape, generator=g, dtype=torch.float64)).to(self.weight)
        with torch.no_grad():
            u = _normalize(self._apply_A(v, self.weight))
        self.v = v
        self.u = u

    @torch.no_grad()
    def power_iteration(self, n: int) -> torch.Tensor:
        """Run n power-iteration steps on the operator, updating u and v in place; returns sigma_hat.

        In place, not by rebinding the buffers: replicas (DataParallel) and compiled graphs then
        update the very tensors the module holds.
        """
        w = self.weight.detach()
        for _ in range(n):
            self.v.copy_(_normalize(self._apply_At(self.u, w)))
            self.u.copy_(_normalize(self._apply_A(self.v, w)))
        return (self.u * self._apply_A(self.v, w)).sum()

    @torch.no_grad()
    def power_iteration_to_tolerance(self, tol: float = 1e-6, max_iter: int = 10_000) -> tuple[float, int]:
        """Iterate until the estimate's relative change is below tol; returns (sigma_hat, iterations)."""
        if self.v.numel() == 0:
            raise RuntimeError("this layer has not seen an input yet: call it once on a batch first")
        previous = float(self.power_iteration(0))
        for it in range(1, max_iter + 1):
            current = float(self.power_iteration(1))
            if abs(current - previous) <= tol * max(abs(current), 1e-12):
                self.sigma.fill_(current)
                return current, it
            previous = current
        self.sigma.fill_(current)
        return current, max_iter

    def normalized_weight(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """W / max(1, sigma_hat / c); runs the power iteration in training mode (always in full precision)."""
        if self.coeff is None:
            return self.weight
        with torch.autocast(self.weight.device.type, enabled=False):  # no bf16/fp16 in the estimate
            if self.v.numel() == 0:
                if x is None:
                    raise RuntimeError("this layer has not seen an input yet: call it once on a batch first")
                self._init_vectors(x)
            if self.training and not _FROZEN and self.n_power_iterations > 0:
                self.power_iteration(self.n_power_iterations)
            # sigma = u^T A v, differentiable in W (u, v held fixed), as in spectral_norm. Copies of u and v
            # go into the graph, so that the next in-place power iteration cannot change what backward needs.
            u, v = self.u.clone(), self.v.clone()
            sigma = (u * self._apply_A(v, self.weight)).sum()
            if not _FROZEN:
                self.sigma.copy_(sigma.detach())
            factor = torch.clamp(sigma / self.coeff, min=1.0)
            return self.weight / factor

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # u and v get their shape from the first input: adopt the stored shapes, on this layer's device and
        # in its dtype (a checkpoint's tensors may sit elsewhere, e.g. loaded to the CPU for a GPU model).
        for name in ("u", "v"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty(state_dict[key].shape, dtype=self.weight.dtype,
                                                device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", coeff={self.coeff}, n_power_iterations={self.n_power_iterations}"


class LipschitzLinear(_SpectralNormMixin, nn.Linear):
    """Dense layer with ||W||_2 <= c by spectral normalisation (paper Sec. 2); coeff=None: plain."""

    def __init__(self, in_features: int, out_features: int, coeff: float | None = 0.9,
                 n_power_iterations: int = 1, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._init_spectral(coeff, n_power_iterations)

    def _input_shape_for(self, x):
        return (self.in_features,)

    def _apply_A(self, v, weight):
        return F.linear(v, weight)

    def _apply_At(self, u, weight):
        return F.linear(u, weight.t())

    @torch.no_grad()
    def exact_singular_pair(self) -> float:
        """Set u, v to the top singular pair of the weight matrix (an SVD in float64); returns sigma = ||W||_2."""
        if self.v.numel() == 0:
            raise RuntimeError("this layer has not seen an input yet: call it once on a batch first")
        left, values, right = torch.linalg.svd(self.weight.detach().double(), full_matrices=False)
        self.u.copy_(left[:, 0].to(self.u))
        self.v.copy_(right[0].to(self.v))
        sigma = float((self.u * self._apply_A(self.v, self.weight.detach())).sum())
        self.sigma.fill_(sigma)
        return sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}")
        return F.linear(x, self.normalized_weight(x), self.bias)


class LipschitzConv2d(_SpectralNormMixin, nn.Conv2d):
    """Conv layer whose operator norm (for the input size seen) is <= c; coeff=None: plain.

    The power iteration runs on the convolution operator for inputs of shape (C, H, W) learned
    from the first call; a later input of another spatial size re-learns the shape and runs the
    power iteration to tolerance for it (in eval mode too), so the constraint holds on every size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, coeff: float | None = 0.9,
                 n_power_iterations: int = 1, stride: int = 1, padding: int | None = None, bias: bool = True):
        if padding is None:
            padding = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self._init_spectral(coeff, n_power_iterations)

    def _input_shape_for(self, x):
        return (1, *x.shape[1:])

    def _apply_A(self, v, weight):
        return F.conv2d(v, weight, None, self.stride, self.padding)

    def _apply_At(self, u, weight):
        h, w = self.v.shape[-2:]
        out_pad = []
        for size, s_out, k, s, p in zip((h, w), u.shape[-2:], self.kernel_size, self.stride, self.padding):
            out_pad.append(size - ((s_out - 1) * s - 2 * p + k))
        return F.conv_transpose2d(u, weight, None, self.stride, self.padding, tuple(out_pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if self.coeff is not None and self.v.numel() and self.v.shape[1:] != x.shape[1:]:
            # A new spatial size is a new operator with its own norm. A fresh start of the power
            # iteration is well below that norm, so iterate it up before using it (also in eval
            # mode, where no iteration would otherwise run and the constraint would be weaker).
            self._init_vectors(x)
            if not _FROZEN:
                self.power_iteration_to_tolerance(tol=SHAPE_CHANGE_TOL, max_iter=SHAPE_CHANGE_MAX_ITER)
        return F.conv2d(x, self.normalized_weight(x), self.bias, self.stride, self.padding)


def lipschitz_layers(module: nn.Module) -> list[nn.Module]:
    """All constrained layers (coeff not None) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, _SpectralNormMixin) and m.coeff is not None]


@torch.no_grad()
def certify(module: nn.Module, tol: float = 1e-6, max_iter: int = 10_000) -> list[dict]:
    """Make every constrained layer's estimate sigma_hat its true norm; report sigma_hat vs c.

    Call before evaluation or to certify a trained model (paper Sec. 6 pitfall: a lagging
    estimate lets the true norm exceed c). A dense layer's u, v become the top singular pair of
    its weight matrix (an SVD: exact); a conv layer's power iteration runs to tolerance. (A
    power iteration can creep so slowly towards the top singular value when the top two are
    close that the change per step falls below any tolerance while the estimate is still a
    few per cent low.) Returns one dict per layer.
    """
    report = []
    for name, m in module.named_modules():
        if isinstance(m, _SpectralNormMixin) and m.coeff is not None:
            if m.v.numel() == 0:
                continue
            if isinstance(m, LipschitzLinear):
                sigma, iters = m.exact_singular_pair(), 0
            else:
                sigma, iters = m.power_iteration_to_tolerance(tol, max_iter)
            report.append({"layer": name, "sigma_hat": sigma, "coeff": m.coeff,
                           "effective_norm": sigma / max(1.0, sigma / m.coeff), "iterations": iters})
    return report


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, _SpectralNormMixin):
        was_training = layer.training
        layer.eval()
        try:
            with torch.no_grad():
                return layer.normalized_weight().detach()
        finally:
            layer.train(was_training)
    return layer.weight.detach()


def _linear_map(layer: nn.Module, input_shape):
    weight = _effective_weight(layer).double()
    if isinstance(layer, nn.Conv2d):
        def apply(v):
            return F.conv2d(v.reshape(-1, *input_shape), weight, None, layer.stride, layer.padding)
    elif isinstance(layer, nn.Linear):
        def apply(v):
            return F.linear(v.reshape(-1, *input_shape), weight)
    else:
        raise TypeError(f"operator_norm supports Linear and Conv2d layers, got {type(layer).__name__}")
    return apply


def operator_norm(layer: nn.Module, input_shape, method: str = "auto", n_iter: int = 2000) -> float:
    """The true operator norm ||A||_2 of a layer's linear map (bias ignored) on inputs of ``input_shape``.

    ``input_shape`` excludes the batch: (features,) or (C, H, W). ``method="exact"`` builds the
    explicit matrix (small shapes); ``"power"`` runs ``n_iter`` float64 power iterations from a
    random start; ``"auto"`` is exact up to 4096 input dimensions.
    """
    input_shape = tuple(input_shape)
    apply = _linear_map(layer, input_shape)
    d = math.prod(input_shape)
    if method == "auto":
        method = "exact" if d <= 4096 else "power"
    if method == "exact":
        eye = torch.eye(d, dtype=torch.float64, device=layer.weight.device)
        matrix = apply(eye).reshape(d, -1).T  # (out, in)
        return float(torch.linalg.matrix_norm(matrix, ord=2))
    if method != "power":
        raise ValueError(f"unknown method {method!r}: use 'auto', 'exact' or 'power'")
    g = torch.Generator(device="cpu").manual_seed(1234)
    v = _normalize(torch.randn((1, *input_shape), generator=g, dtype=torch.float64)).to(layer.weight.device)
    v.requires_grad_(True)
    sigma = 0.0
    for _ in range(n_iter):
        with torch.enable_grad():
            u = apply(v)
            (grad,) = torch.autograd.grad(u, v, u)  # A^T A v
        sigma = float(u.detach().norm())
        v = _normalize(grad.detach()).requires_grad_(True)
    return sigma


def reshaped_kernel_norm(layer: nn.Module) -> float:
    """Spectral norm of the kernel reshaped to (out, in*k*k), what torch's spectral_norm bounds.

    For 1x1 convs and dense layers it equals the operator norm; for k > 1 it does not.
    """
    weight = _effective_weight(layer).double()
    return float(torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2))


@torch.no_grad()
def layer_input_shapes(module: nn.Module, run, layers=None) -> dict[nn.Module, tuple]:
    """One sample's input shape for each of ``layers`` (default: every Linear and Conv2d of ``module``).

    ``run()`` makes one forward pass that goes through the layers (e.g. ``lambda: module(x)``); a
    convolution's operator norm depends on the size of the images it sees, so it is measured on
    these shapes. The first shape a layer sees counts; the hooks are removed afterwards.
    """
    if layers is None:
        layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    shapes: dict[nn.Module, tuple] = {}

    def record(layer, inputs, _output):
        shapes.setdefault(layer, tuple(inputs[0].shape[1:]))

    hooks = [layer.register_forward_hook(record) for layer in layers]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


@torch.no_grad()
def lipschitz_upper_bound(branch: nn.Module, input_shape) -> float:
    """Lip(g) <= prod_i ||W_i||_2 (true operator norms, 1-Lipschitz activations; paper Sec. 2).

    ``input_shape`` is one sample's shape, e.g. (d,) or (C, H, W); each layer's input shape is
    found by running a copy of the branch once in eval mode (a conv layer that sees a new input
    size re-learns its power-iteration vectors; the copy keeps the caller's branch untouched).
    """
    branch = copy.deepcopy(branch).eval()
    layers = [m for m in branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("the branch has no Linear or Conv2d layer to bound")
    param = next(branch.parameters())
    shapes = layer_input_shapes(
        branch, lambda: branch(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device)), layers)
    return math.prod(operator_norm(m, shapes[m]) for m in layers)


# --- activations (each 1-Lipschitz) ---------------------------------------------------------
class LipSwish(nn.Module):
    """x * sigmoid(beta x) / 1.1 with learnable beta > 0: 1-Lipschitz (Residual Flows)."""

    def __init__(self):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5413))  # softplus(0.5413) = 1.0

    def forward(self, x):
        beta = F.softplus(self.raw_beta)
        return x * torch.sigmoid(beta * x) / 1.1


ACTIVATIONS = {
    "elu": nn.ELU,          # paper (i-ResNet)
    "lipswish": LipSwish,   # Residual Flows
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "leakyrelu": nn.LeakyReLU,
    "tanh": nn.Tanh,
}


def get_activation(activation: str | nn.Module) -> nn.Module:
    """An activation by name (see ACTIVATIONS) or a module passed through as is."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]()
    raise ValueError(f"unknown activation {activation!r}: use one of {sorted(ACTIVATIONS)} or an nn.Module")
