"""Widgets shared by the notebooks: the Lipschitz-coefficient slider and a figure panel.

Every interactive demo is ``interactive_figure(draw, c=c_slider(), ...)``: ``draw`` is a
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


def c_slider(value: float = 0.9, min: float = 0.1, max: float = 0.99, step: float = 0.01,
             description: str = "Lipschitz c") -> widgets.FloatSlider:
    """The Lipschitz coefficient c of spectral normalisation (paper Sec. 2)."""
    slider = widgets.FloatSlider(value=value, min=min, max=max, step=step,
                                 description=description, continuous_update=False,
                                 readout_format=".2f", style={"description_width": "initial"},
                                 layout=widgets.Layout(width="420px"))
    slider.add_class(C_SLIDER_CLASS)
    return slider


def c_choice(options, value=None, description: str = "Lipschitz c") -> widgets.SelectionSlider:
    """The coefficient c among trained models: ``options`` are labels or (label, value) pairs, no None values.

    E.g. ``c_choice([("0.5", "c=0.5"), ("0.9", "c=0.9"), ("vanilla", "vanilla")])``; starts at ``value``
    (default: the last option).
    """
    options = list(options)
    if not options:
        raise ValueError("c_choice needs at least one option (the trained models' coefficients)")
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if None in values:
        raise ValueError("c_choice values cannot be None (a selection widget reads None as 'nothing "
                         "selected'): use a label such as 'vanilla'")
    if value is not None and value not in values:
        raise ValueError(f"value {value!r} is not among the options {values}")
    slider = widgets.SelectionSlider(options=options, value=values[-1] if value is None else value,
                                     description=description, continuous_update=False,
                                     style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
    slider.add_class(C_SLIDER_CLASS)
    return slider


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
    where ``numbers`` is a dict shown in the readout (e.g. the fold count).
    """
    readout = widgets.HTML()
    readout.add_class(READOUT_CLASS)
    out = widgets.Output(layout=widgets.Layout(height=height, overflow="hidden"))
    out.add_class(FIGURE_CLASS)

    def refresh(**values):
        fig, numbers = draw(**values)
        readout.value = format_numbers(numbers)
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
