"""The website's page transform (iresnet_mini.site), without a browser: exercises, links, widgets, the slider."""
from __future__ import annotations

import html
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from iresnet_mini import site
from iresnet_mini.site import WIDGET_MIME

PAGES = {"01": "01_resnet_dynamics.ipynb", "02": "02_making_resnets_invertible.ipynb"}


def lesson() -> dict:
    widget = new_code_cell("widgets.interactive_figure(draw, c=widgets.c_slider(layers=2))",
                           outputs=[new_output("display_data", data={WIDGET_MIME: {"model_id": "x"},
                                                                     "text/plain": "VBox(...)"})])
    return new_notebook(cells=[
        new_markdown_cell("# 02 · A lesson\n\nAs notebook 01 showed, and `notebook 01` in code stays."),
        widget,
        new_markdown_cell("## Exercises\n\n### Exercise 1: a question\nCompute it."),
        new_code_cell("answer = None\ncheck(answer)", metadata={"tags": ["exercise"]}),
        new_markdown_cell("**Solution.** Like this.", metadata={"tags": ["solution"]}),
        new_code_cell("answer = 1\ncheck(answer)", metadata={"tags": ["solution"]}),
        new_markdown_cell("The end."),
    ])


def sources(nb) -> list[str]:
    return [c["source"] for c in nb["cells"]]


def test_exercise_and_solution_become_gated_blocks_around_their_cells():
    page = site.site_notebook(lesson(), "02_lesson", PAGES)
    text = sources(page)
    start = text.index("```{exercise-start}\n:label: 02_lesson-exercise-1\n:nonumber:\n```")
    assert text[start - 1] == "## Exercises\n\n### Exercise 1: a question"  # the heading stays a heading
    assert text[start + 1] == "Compute it."
    assert text[start + 2] == "answer = None\ncheck(answer)"
    assert text[start + 3] == "```{exercise-end}\n```"
    assert text[start + 4] == "```{solution-start} 02_lesson-exercise-1\n:class: dropdown\n```"
    assert text[start + 5:start + 7] == ["**Solution.** Like this.", "answer = 1\ncheck(answer)"]
    assert text[start + 7] == "```{solution-end}\n```"
    assert text[-1] == "The end."


def test_lesson_mentions_link_to_the_lesson_pages_outside_code():
    first = sources(site.site_notebook(lesson(), "02_lesson", PAGES))[0]
    assert "As [notebook 01](01_resnet_dynamics.ipynb) showed" in first
    assert "`notebook 01` in code stays" in first


def test_widget_outputs_are_replaced_by_the_static_slider_then_by_a_note():
    nb = lesson()
    nb["cells"].insert(2, copy_of_widget_cell(nb))
    page = site.site_notebook(nb, "02_lesson", PAGES, static_slider="<div>SLIDER</div>")
    assert not any(WIDGET_MIME in o.get("data", {}) for c in page["cells"] for o in c.get("outputs", []))
    notes = [c["source"] for c in page["cells"] if c["source"].startswith("*This interactive panel")]
    assert len(notes) == 2
    assert "```{raw} html\n<div>SLIDER</div>\n```" in notes[0] and "SLIDER" not in notes[1]
    assert "open the notebook in Jupyter" in notes[1]


def copy_of_widget_cell(nb):
    return nbformat.from_dict(json.loads(json.dumps(nb["cells"][1])))


def test_a_solution_without_its_exercise_is_refused():
    nb = lesson()
    del nb["cells"][3]  # the exercise cell
    with pytest.raises(ValueError, match="does not follow an exercise"):
        site.site_notebook(nb, "02_lesson", PAGES)


def test_slider_html_carries_every_frame_and_starts_in_the_middle():
    frames = [{"c": c, "image": f"c_{c:.2f}.png", "readout": f"<b>c</b>: {c}"} for c in (0.5, 0.7, 0.9)]
    text = site.slider_html(frames, "_static/frames/x")
    data = json.loads(html.unescape(text.split('data-frames="')[1].split('"')[0]))
    assert [f["src"] for f in data] == [f"_static/frames/x/c_{c:.2f}.png" for c in (0.5, 0.7, 0.9)]
    assert 'max="2"' in text and 'value="1"' in text and 'src="_static/frames/x/c_0.70.png"' in text
    assert f'class="{site.STATIC_SLIDER_CLASS}"' in text and "Lip(g) ≤ c^2" in text
    with pytest.raises(ValueError, match="at least one frame"):
        site.slider_html([], "x")
