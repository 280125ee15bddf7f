"""The c controls say what c means: the bound Lip(g) <= c^m is on every slider label and in every readout."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from iresnet_mini.lessons import widgets


def draw(c=0.5, **_):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, c])
    return fig, {"drawn c": c}


def readout_of(panel) -> str:
    (readout,) = [w for w in panel.children if widgets.READOUT_CLASS in getattr(w, "_dom_classes", ())]
    return readout.value


def test_lipschitz_bound_is_c_to_the_number_of_layers():
    assert widgets.lipschitz_bound(0.9, 3) == pytest.approx(0.729)
    assert widgets.lipschitz_bound(0.9, 1) == pytest.approx(0.9)
    assert widgets.lipschitz_bound(None, 3) is None  # vanilla: no bound
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        widgets.lipschitz_bound(0.9, 0)


def test_c_slider_label_names_the_layers_and_the_bound():
    slider = widgets.c_slider(0.9, layers=4)
    assert "each of 4 layers" in slider.description and "Lip(g) ≤ c^4" in slider.description
    assert widgets.C_SLIDER_CLASS in slider._dom_classes
    with pytest.raises(TypeError):
        widgets.c_slider(0.9)  # the number of layers is not optional: c alone does not say what Lip(g) is


def test_readout_shows_the_bound_and_follows_the_slider():
    slider = widgets.c_slider(0.9, layers=2)
    panel = widgets.interactive_figure(draw, c=slider)
    text = readout_of(panel)
    assert "Lip(g) ≤ c^2" in text and "0.81" in text
    slider.value = 0.5
    text = readout_of(panel)
    assert "0.25" in text and "0.81" not in text
    assert text.index("Lip(g)") < text.index("drawn c")  # the bound comes first
    plt.close("all")


def test_c_choice_labels_each_model_with_its_bound_and_refuses_none():
    slider = widgets.c_choice([("0.9", "c=0.9"), ("0.5", "c=0.5"), ("vanilla", "vanilla")], value="c=0.9", layers=3)
    assert widgets.C_SLIDER_CLASS in slider._dom_classes and slider.value == "c=0.9"
    assert slider.options[slider.index][0] == "0.9 (Lip(g) ≤ 0.729)"
    assert [label for label, _ in slider.options][-1] == "vanilla"
    panel = widgets.interactive_figure(lambda c: draw(0.3), c=slider)
    assert "0.729" in readout_of(panel)
    slider.value = "vanilla"
    assert "none (no constraint)" in readout_of(panel)
    with pytest.raises(ValueError, match="cannot be None"):
        widgets.c_choice([("vanilla", None)], layers=3)
    plt.close("all")


def test_a_slider_over_a_norm_adds_no_bound():
    slider = widgets.lipschitz_slider(0.5, 0.1, 0.99)
    assert widgets.C_SLIDER_CLASS in slider._dom_classes
    panel = widgets.interactive_figure(lambda norm: draw(norm), norm=slider)
    assert "Lip(g) ≤" not in readout_of(panel)
    plt.close("all")
