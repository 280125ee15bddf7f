"""The notebooks' Lipschitz-coefficient sliders work in a real JupyterLab (headless Chromium).

Each notebook that builds a ``c_slider`` is run through the Run menu in quick mode; then
every c slider that drives an ``interactive_figure`` is moved with the keyboard and must
redraw its figure and its readout. A demo notebook checks the harness itself, and a demo
whose figure ignores c checks that the harness notices a slider that changes nothing.
Screenshots of each panel before and after the move go to ``artifacts/browser/``, and the time
from each key press to the redrawn figure to ``artifacts/browser/slider-latency.json`` (and the
terminal): measured, not asserted.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lab_driver import (BROKEN_DEMO_NOTEBOOK, DEMO_NOTEBOOK, NOTEBOOKS, SLIDER_KEY_PRESSES,
                        notebooks_with_c_slider)

pytestmark = pytest.mark.browser

NOTEBOOKS_WITH_C_SLIDER = [DEMO_NOTEBOOK] + [p.name for p in notebooks_with_c_slider(NOTEBOOKS)]


def run_notebook(open_notebook, notebook: str):
    """Open the notebook, run all cells, and check that it ran cleanly and its widgets rendered."""
    lab = open_notebook(notebook)
    lab.run_all_cells()
    errors = lab.cell_errors()
    assert not errors, f"{notebook} raised in its cells:\n" + "\n".join(errors)
    placeholders = lab.widget_placeholders()
    assert not placeholders, (
        f"{notebook}: widgets did not render: {placeholders}\n{lab.diagnostics()}")
    sliders = lab.c_sliders()
    assert sliders.count() > 0, f"{notebook}: no element with the c slider's CSS class is shown"
    for i in range(sliders.count()):
        assert sliders.nth(i).is_visible(), f"{notebook}: c slider #{i} is not visible"
    return lab


@pytest.mark.parametrize("notebook", NOTEBOOKS_WITH_C_SLIDER)
def test_moving_the_c_slider_redraws_figure_and_readout(open_notebook, artifacts, slider_latencies, notebook):
    lab = run_notebook(open_notebook, notebook)
    panels = lab.slider_panels()
    assert panels, f"{notebook}: no c slider sits in an interactive_figure panel with a figure"
    for i, panel in enumerate(panels):
        effect = lab.move_c_slider(panel, artifacts, f"{Path(notebook).stem}-c{i}")
        slider_latencies.setdefault(notebook, []).extend(t for t in effect.latencies if t is not None)
        where = f"{notebook}, c slider panel #{i} (screenshots {effect.screenshots[0].name}, ...)"
        moved = f"after c {effect.value[0]} -> {effect.value[1]}"
        assert effect.value[0] != effect.value[1], f"{where}: the slider did not move"
        assert not effect.callback_errors, (
            f"{where}: the callback raised {moved}:\n" + "\n".join(effect.callback_errors))
        assert effect.image_changed, f"{where}: figure unchanged {moved}\n{lab.diagnostics()}"
        assert effect.readout[0] != effect.readout[1], (
            f"{where}: readout stayed {effect.readout[0]!r} {moved}\n{lab.diagnostics()}")
        if notebook == DEMO_NOTEBOOK:  # the harness times every press that redraws
            assert len(effect.latencies) == SLIDER_KEY_PRESSES and all(t is not None and t > 0 for t in effect.latencies)


def test_harness_notices_a_figure_that_ignores_the_slider(open_notebook, artifacts):
    lab = run_notebook(open_notebook, BROKEN_DEMO_NOTEBOOK)
    (panel,) = lab.slider_panels()
    effect = lab.move_c_slider(panel, artifacts, Path(BROKEN_DEMO_NOTEBOOK).stem)
    assert effect.value[0] != effect.value[1]
    assert not effect.callback_errors
    assert not effect.image_changed
    assert effect.readout[0] == effect.readout[1]
    assert effect.latencies == [None] * SLIDER_KEY_PRESSES  # no new figure, so no latency is recorded
