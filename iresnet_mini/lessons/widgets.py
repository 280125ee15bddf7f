"""Widgets shared by the notebooks: the Lipschitz-coefficient slider and a figure panel.

Every interactive demo is ``interactive_figure(draw, c=c_slider(layers=m), ...)``: ``draw`` is a
plain package function ``draw(**values) -> (figure, numbers)`` with its own unit tests; the
widget layer only wires controls to it. The slider and the readout carry fixed CSS classes
(``iresnet-c-slider``, ``iresnet-readout``, ``iresnet-figure``) so that the browser test can
find them.
"""
from __future__ import annotations

from typing import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

C_SLIDER_CLASS = "iresnet-c-slider"
READOUT_CLASS = "iresnet-readout"
FIGURE_CLASS = "iresnet-figure"


def lipschitz_bound(c: float | None, layers: int) -> float | None:
    """The bound on Lip(g) of a branch of ``layers`` layers, each with spectral norm <= c: c**layers.

    ``None`` (no constraint, a vanilla network) has no bound. With 1-Lipschitz activations
    Lip(g) <= prod_i ||W_i||_2 <= c**m (notebook 02, section 2).
    """
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be a positive integer (the branch's number of layers), got {layers!r}")
    return None if c is None else float(c) ** layers


def _bound_label(layers: int) -> str:
    return f"Lip(g) ≤ c^{layers}" if layers > 1 else "Lip(g) ≤ c"


def c_slider(value: float = 0.9, min: float = 0.1, max: float = 0.99, step: float = 0.01, *,
             layers: int, description: str | None = None) -> widgets.FloatSlider:
    """The Lipschitz coefficient c: the bound on each layer's spectral norm (paper Sec. 2).

    ``layers`` is the number m of spectrally normalised layers in one residual branch: the
    slider's label says it, and :func:`interactive_figure` shows the implied bound
    Lip(g) <= c^m in the readout on every move.
    """
    lipschitz_bound(value, layers)  # checks layers
    if description is None:
        description = "c, each layer" if layers == 1 else f"c, each of {layers} layers"
    slider = widgets.FloatSlider(value=value, min=min, max=max, step=step,
                                 description=f"{description} ({_bound_label(layers)})", continuous_update=False,
                                 readout_format=".2f", style={"description_width": "initial"},
                                 layout=widgets.Layout(width="480px"))
    slider.add_class(C_SLIDER_CLASS)
    slider.branch_layers = layers
    return slider


def lipschitz_slider(value: float, min: float, max: float, step: float = 0.01,
                     description: str = "||J_g(x)||_2") -> widgets.FloatSlider:
    """A slider over a Lipschitz quantity other than c (e.g. the norm of a Jacobian a panel rescales).

    It carries the c slider's CSS class, so the browser test moves it like the c sliders.
    """
    slider = widgets.FloatSlider(value=value, min=min, max=max, step=step, description=description,
                                 continuous_update=False, readout_format=".2f",
                                 style={"description_width": "initial"}, layout=widgets.Layout(width="480px"))
    slider.add_class(C_SLIDER_CLASS)
    return slider


def c_choice(options, value=None, description: str = "c", *, layers: int) -> widgets.SelectionSlider:
    """The coefficient c among trained models: ``options`` are labels or (label, value) pairs, no None values.

    E.g. ``c_choice([("0.5", "c=0.5"), ("0.9", "c=0.9"), ("vanilla", "vanilla")], layers=3)``;
    starts at ``value`` (default: the last option). A label that is a number is that model's c;
    its slider label shows the bound Lip(g) <= c^layers (``layers`` per branch), and so does the
    readout of :func:`interactive_figure`.
    """
    lipschitz_bound(None, layers)  # checks layers
    options = list(options)
    if not options:
        raise ValueError("c_choice needs at least one option (the trained models' coefficients)")
    pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    values = [v for _, v in pairs]
    if None in values:
        raise ValueError("c_choice values cannot be None (a selection widget reads None as 'nothing "
                         "selected'): use a label such as 'vanilla'")
    if value is not None and value not in values:
        raise ValueError(f"value {value!r} is not among the options {values}")
    coefficients = {}
    labelled = []
    for label, v in pairs:
        coefficients[v] = _coefficient_of(label)
        bound = lipschitz_bound(coefficients[v], layers)
        labelled.append((label if bound is None else f"{label} (Lip(g) ≤ {bound:.3g})", v))
    slider = widgets.SelectionSlider(options=labelled, value=values[-1] if value is None else value,
                                     description=f"{description}, each of {layers} layers", continuous_update=False,
                                     style={"description_width": "initial"}, layout=widgets.Layout(width="480px"))
    slider.add_class(C_SLIDER_CLASS)
    slider.branch_layers = layers
    slider.coefficients = coefficients
    return slider


def _coefficient_of(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None  # "vanilla": no constraint


def bound_readout(control) -> dict[str, object]:
    """The readout entry a c control implies: {"Lip(g) ≤ c^m": value} (or "none" without a constraint)."""
    layers = getattr(control, "branch_layers", None)
    if layers is None:
        return {}
    coefficients = getattr(control, "coefficients", None)
    c = coefficients[control.value] if coefficients is not None else float(control.value)
    bound = lipschitz_bound(c, layers)
    return {_bound_label(layers): "none (no constraint)" if bound is None else bound}


def int_slider(value: int, min: int, max: int, step: int = 1, description: str = "") -> widgets.IntSlider:
    """An integer control (depth, iterations, terms...) that updates on release."""
    return widgets.IntSlider(value=value, min=min, max=max, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"},
                             layout=widgets.Layout(width="420px"))


def format_numbers(numbers: Mapping[str, object]) -> str:
    """HTML for a readout: ``name: value`` pairs, floats in a compact scientific format."""
    parts = []
    for name, value in numbers.items():
        if isinstance(value, float):
            text = f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
        else:
            text = str(value)
        parts.append(f"<b>{name}</b>: <span class='value'>{text}</span>")
    return " &nbsp;|&nbsp; ".join(parts)


def interactive_figure(draw: Callable[..., tuple], height: str = "460px", **controls) -> widgets.VBox:
    """Controls on top, a readout line, and a fixed-height figure that ``draw`` redraws.

    ``draw(**values)`` gets the controls' current values and returns ``(figure, numbers)``
    where ``numbers`` is a dict shown in the readout (e.g. the fold count). A c control
    (:func:`c_slider`, :func:`c_choice`) adds the bound Lip(g) <= c^m it implies at the front.
    """
    readout = widgets.HTML()
    readout.add_class(READOUT_CLASS)
    out = widgets.Output(layout=widgets.Layout(height=height, overflow="hidden"))
    out.add_class(FIGURE_CLASS)

    def refresh(**values):
        fig, numbers = draw(**values)
        bounds = {}
        for control in controls.values():
            bounds.update(bound_readout(control))
        readout.value = format_numbers({**bounds, **numbers})
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    for control in controls.values():
        control.observe(lambda _change: refresh(**{k: w.value for k, w in controls.items()}),
                        names="value")
    refresh(**{k: w.value for k, w in controls.items()})
    box = widgets.VBox([widgets.HBox(list(controls.values()),
                                     layout=widgets.Layout(flex_flow="row wrap")), readout, out])
    return box
