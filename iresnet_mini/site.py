"""The course website: the executed lessons as a static site that works without a kernel.

    python -m iresnet_mini.site build [--out _site] [--mode quick] [NOTEBOOK ...]

Each lesson is executed from a clean kernel (as the tests do), then turned into a page:
exercises and their solutions become exercise and solution blocks (``sphinx-exercise``, the
solutions collapsed), "notebook 0N" in the text links to that lesson, and an ipywidgets panel,
which needs a live kernel, is replaced by a note; for notebook 01 by a static c slider over
precomputed frames (plain HTML and JavaScript: :func:`slider_html`). Sphinx with MyST-NB and
the book theme builds the pages offline from installed packages alone; math is rendered by a
local copy of MathJax 3 (SVG output, from the ``django-static-mathjax`` wheel's files), so the
site needs no internet either.

Why Sphinx and not Jupyter Book 2: Jupyter Book 2 downloads its site theme at build time and so
cannot build on a machine without internet; the Sphinx stack (what Jupyter Book 1 wraps)
builds from packages alone. The site lands in ``OUT/html`` (open ``OUT/html/index.html``).
"""
from __future__ import annotations

import argparse
import copy
import html
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat

from . import editions
from .lessons.nb01.dynamics import GRID_C

__all__ = ["FRAME_CS", "FRAME_LAYERS", "site_notebook", "slider_frames", "slider_html", "write_sources",
           "build", "main"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
FRAME_CS = GRID_C  # the static slider's values of c (notebook 01): its widget's, whose models ship precomputed
FRAME_LAYERS = 2  # layers per branch of notebook 01's i-ResNet: Lip(g) <= c^2
STATIC_SLIDER_CLASS = "static-c-slider"
_LESSON_LINK = re.compile(r"\b([Nn]otebooks?) (0[1-8])\b")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")

CONF = '''\
# Written by python -m iresnet_mini.site build; edit iresnet_mini/site.py instead.
project = "iresnet-mini"
author = "the iresnet-mini authors"
copyright = "the iresnet-mini authors; code MIT, text and figures CC BY 4.0"
extensions = ["myst_nb", "sphinx_exercise", "sphinx_togglebutton", "sphinx_design"]
nb_execution_mode = "off"  # executed by iresnet_mini.site, from a clean kernel each
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
html_theme = "sphinx_book_theme"
html_title = "iresnet-mini"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False,
                      "navigation_with_keys": True}
html_last_updated_fmt = None
html_context = {"default_mode": "light"}
html_favicon = "_static/favicon.svg"
mathjax_path = "mathjax/tex-svg.js"  # a local MathJax 3 with SVG output: no internet, no web fonts
exclude_patterns = ["_build"]
'''

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           'fill="#1f6f8b"/><text x="16" y="24" font-size="22" text-anchor="middle" fill="white" '
           'font-family="serif">i</text></svg>')

CSS = '''\
.static-c-slider { border: 1px solid #ccd; border-radius: 6px; padding: 0.8em; margin: 1em 0; }
.static-c-slider input[type=range] { width: 22em; vertical-align: middle; }
.static-c-slider img { max-width: 100%; display: block; margin-top: 0.5em; }
.static-c-slider .readout { font-size: 0.9em; margin-top: 0.4em; }
'''


def _markdown(text: str) -> dict:
    return nbformat.v4.new_markdown_cell(text)


def _directive(name: str, argument: str = "", **options: str) -> dict:
    lines = [f"```{{{name}}}" + (f" {argument}" if argument else "")]
    lines += [f":{key}:" + (f" {value}" if value else "") for key, value in options.items()]
    return _markdown("\n".join(lines + ["```"]))


def _link_lessons(text: str, pages: dict[str, str]) -> str:
    """'notebook 02' -> a link to lesson 02's page (text in code spans is left alone)."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = _LESSON_LINK.sub(
            lambda m: f"[{m.group(1)} {m.group(2)}]({pages[m.group(2)]})" if m.group(2) in pages else m.group(0),
            parts[i])
    return "".join(parts)


def _split_prompt(cell: dict) -> tuple[str, str]:
    """A prompt cell's text up to and including its last heading (kept as a heading), and the text after it."""
    lines = cell["source"].splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if _HEADING.match(lines[i]):
            return "\n".join(lines[:i + 1]).strip(), "\n".join(lines[i + 1:]).strip()
    return "", cell["source"]


def site_notebook(nb: dict, stem: str, pages: dict[str, str], static_slider: str | None = None) -> dict:
    """An executed lesson as a page: exercise and solution blocks, lesson links, widgets replaced.

    ``pages`` maps a lesson number ("02") to its page (the .ipynb name); ``static_slider`` is
    HTML put in place of the first widget panel (the others get a note).
    """
    nb = copy.deepcopy(nb)
    cells = nb["cells"]
    groups = editions.exercises_and_solutions(nb)
    starts = {exercise: solution for exercise, solution in groups}
    out: list[dict] = []
    i = 0
    number = 0
    while i < len(cells):
        cell = cells[i]
        if i in starts:
            number += 1
            label = f"{stem}-exercise-{number}"
            prompt = out.pop() if out and out[-1]["cell_type"] == "markdown" else None
            before, after = _split_prompt(prompt) if prompt is not None else ("", "")
            if before:
                out.append(_markdown(before))
            out.append(_directive("exercise-start", label=label, nonumber=""))
            if after:
                out.append(_markdown(after))
            out.append(cell)
            out.append(_directive("exercise-end"))
            out.append(_directive("solution-start", label, **{"class": "dropdown"}))
            out.extend(cells[j] for j in starts[i])
            out.append(_directive("solution-end"))
            i = starts[i][-1] + 1
            continue
        out.append(cell)
        i += 1
    slider = static_slider
    pages_cells: list[dict] = []
    for cell in out:
        pages_cells.append(cell)
        if cell["cell_type"] == "markdown":
            cell["source"] = _link_lessons(cell["source"], pages)
        elif cell["cell_type"] == "code":
            outputs = cell.get("outputs", [])
            if any(WIDGET_MIME in o.get("data", {}) for o in outputs):
                cell["outputs"] = [o for o in outputs if WIDGET_MIME not in o.get("data", {})]
                if slider is not None:
                    note = ("*This interactive panel needs a live Python kernel. Here is the same figure, "
                            "precomputed for a few values of $c$: move the slider.*\n\n```{raw} html\n"
                            + slider + "\n```")
                    slider = None
                else:
                    note = "*This interactive panel needs a live Python kernel: open the notebook in Jupyter to use it.*"
                pages_cells.append(_markdown(note))
    out = pages_cells
    nb["cells"] = out
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def slider_frames(folder: Path, cs=FRAME_CS) -> list[dict]:
    """Notebook 01's widget figure for each c in ``cs``: PNGs in ``folder`` and their readouts."""
    import matplotlib.pyplot as plt

    from .lessons import widgets
    from .lessons.nb01 import figures

    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for c in cs:
        fig, numbers = figures.draw_dynamics(c, False, depth=6, task="abs")
        name = f"c_{c:.2f}.png"
        fig.savefig(folder / name, dpi=90, bbox_inches="tight")
        plt.close(fig)
        bound = {f"Lip(g) ≤ c^{FRAME_LAYERS}": widgets.lipschitz_bound(c, FRAME_LAYERS)}
        frames.append({"c": c, "image": name, "readout": widgets.format_numbers({**bound, **numbers})})
    return frames


def slider_html(frames: list[dict], image_root: str, start: int | None = None) -> str:
    """A c slider over precomputed frames, in plain HTML and JavaScript (no kernel, no library)."""
    if not frames:
        raise ValueError("slider_html needs at least one frame")
    start = len(frames) // 2 if start is None else start
    data = html.escape(json.dumps([{"c": f["c"], "src": f"{image_root}/{f['image']}", "readout": f["readout"]}
                                   for f in frames]), quote=True)
    first = frames[start]
    return (
        f'<div class="{STATIC_SLIDER_CLASS}" data-frames="{data}">\n'
        f'<label>c, each of {FRAME_LAYERS} layers (Lip(g) ≤ c^{FRAME_LAYERS}): '
        f'<input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
        f'aria-label="Lipschitz coefficient c"> <b class="value">{first["c"]:.2f}</b></label>\n'
        f'<div class="readout">{first["readout"]}</div>\n'
        f'<img src="{image_root}/{first["image"]}" alt="ResNet dynamics at c = {first["c"]:.2f}">\n'
        '<script>\n'
        '(function () {\n'
        '  for (const box of document.querySelectorAll(".' + STATIC_SLIDER_CLASS + '")) {\n'
        '    const frames = JSON.parse(box.dataset.frames);\n'
        '    const input = box.querySelector("input"), img = box.querySelector("img");\n'
        '    const value = box.querySelector(".value"), readout = box.querySelector(".readout");\n'
        '    input.addEventListener("input", function () {\n'
        '      const f = frames[Number(input.value)];\n'
        '      img.src = f.src; img.alt = "ResNet dynamics at c = " + f.c.toFixed(2);\n'
        '      value.textContent = f.c.toFixed(2); readout.innerHTML = f.readout;\n'
        '    });\n'
        '  }\n'
        '})();\n'
        '</script>\n'
        '</div>')


def _index(pages: list[Path]) -> str:
    titles = []
    for page in pages:
        nb = nbformat.read(page, as_version=4)
        first = next((c["source"] for c in nb.cells if c["cell_type"] == "markdown"), page.stem)
        titles.append(first.splitlines()[0].lstrip("# ").strip())
    lines = ["# iresnet-mini: Invertible Residual Networks, in eight lessons", "",
             "Teaching notebooks and a small, readable PyTorch package on **Invertible Residual Networks** "
             "(Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen; ICML 2019) and the parts of **Residual Flows** "
             "(Chen et al.; NeurIPS 2019) that fix their weaknesses.", "",
             "These pages are the lessons executed in quick mode (small models, a laptop CPU), with every figure. "
             "The interactive panels need a live kernel: run the notebooks in Jupyter to use them; notebook 01's "
             "Lipschitz slider also works here, over precomputed frames. Solutions are folded away under each "
             "exercise.", "", "## The lessons", ""]
    lines += [f"{i + 1}. [{title}]({page.name})" for i, (page, title) in enumerate(zip(pages, titles))]
    lines += ["", "```{toctree}", ":hidden:", ":maxdepth: 1", ""] + [page.name for page in pages] + ["```", ""]
    return "\n".join(lines)


def _mathjax_folder() -> Path:
    """MathJax 3's browser build, as the ``django-static-mathjax`` wheel ships it (files only, never imported)."""
    spec = importlib.util.find_spec("mathjax")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5" if spec else None
    if folder is None or not (folder / "tex-svg.js").is_file():
        raise SystemExit("building the site needs MathJax: pip install -e '.[site]' (django-static-mathjax)")
    return folder


def write_sources(src: Path, notebooks=None, mode: str = "quick") -> list[Path]:
    """Execute the lessons and write the Sphinx sources (pages, conf.py, index, static files) to ``src``."""
    from .notebook_runner import execute, in_mode

    notebooks = [Path(p) for p in (notebooks or editions.lessons())]
    src.mkdir(parents=True, exist_ok=True)
    static = src / "_static"
    static.mkdir(exist_ok=True)
    (static / "course.css").write_text(CSS, encoding="utf-8")
    (static / "favicon.svg").write_text(FAVICON, encoding="utf-8")
    if not (static / "mathjax").exists():
        shutil.copytree(_mathjax_folder(), static / "mathjax",  # the SVG build and what it loads on demand
                        ignore=shutil.ignore_patterns("sre", "*chtml*", "mml-*", "tex-mml-*", "*-full.js", "node-main.js"))
    pages = {p.name[:2]: p.name for p in notebooks}
    written = []
    for path in notebooks:
        nb, seconds = execute(path, mode=mode)
        slider = None
        if path.name.startswith("01"):
            with in_mode(mode):
                frames = slider_frames(static / "frames" / path.stem)
            slider = slider_html(frames, f"_static/frames/{path.stem}")
        page = src / path.name
        nbformat.write(nbformat.from_dict(site_notebook(nb, path.stem, pages, slider)), page)
        print(f"{path.name}: executed in {seconds:.1f} s -> {page}", flush=True)
        written.append(page)
    (src / "index.md").write_text(_index(written), encoding="utf-8")
    (src / "conf.py").write_text(CONF, encoding="utf-8")
    return written


def build(out: Path, notebooks=None, mode: str = "quick") -> Path:
    """Write the sources to ``out/src`` and build the HTML into ``out/html``; returns its index.html."""
    from sphinx.cmd.build import build_main

    out = Path(out)
    src, html_dir = out / "src", out / "html"
    write_sources(src, notebooks, mode)
    status = build_main(["-b", "html", "-q", "--keep-going", "-W", str(src), str(html_dir)])
    if status != 0:
        raise SystemExit(f"sphinx-build failed (exit {status}); its warnings are above")
    index = html_dir / "index.html"
    print(f"site: {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="execute the lessons and build the static site")
    p.add_argument("notebooks", nargs="*", type=Path, help="default: all eight lessons")
    p.add_argument("--out", type=Path, default=Path("_site"), help="default: _site (pages in _site/html)")
    p.add_argument("--mode", choices=["quick", "full"], default="quick")
    args = parser.parse_args(argv)
    build(args.out, args.notebooks or None, args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
