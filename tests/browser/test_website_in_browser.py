"""The course website works in a real browser (headless Chromium), from a local server, offline.

The site is built once per session (``python -m iresnet_mini.site build``, every lesson executed
in quick mode), or taken from ``IRESNET_MINI_SITE`` (a folder built before, holding ``html/``).
Every page loads without console errors and every image loads; math is typeset; each lesson
shows its exercises, with their solutions collapsed; notebook 01's static c slider changes the
figure and the readout. Screenshots of three pages go to ``artifacts/site/``.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import nbformat
import pytest

from iresnet_mini import editions, site

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_site(browser_prerequisites, tmp_path_factory) -> Path:
    given = os.environ.get("IRESNET_MINI_SITE")
    if given:
        html = Path(given) / "html"
        assert (html / "index.html").is_file(), f"IRESNET_MINI_SITE={given} holds no built site (html/index.html)"
        return html
    out = tmp_path_factory.mktemp("site")
    return site.build(out).parent


@pytest.fixture(scope="session")
def site_url(built_site):
    handler = functools.partial(QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test log for failures
        pass


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: page.problems.append(f"request failed: {r.url}"))
    yield page
    context.close()


@pytest.fixture
def shots() -> Path:
    folder = REPO / "artifacts" / "site"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


LESSONS = [p.stem for p in editions.lessons()]


def open_page(page, url: str):
    response = page.goto(url)
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => document.querySelectorAll('span.math, div.math').length === 0"
                           " || document.querySelectorAll('mjx-container').length > 0")  # MathJax has typeset


def broken_images(page) -> list[str]:
    return page.evaluate("() => Array.from(document.images)"
                         ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")


@pytest.mark.parametrize("name", ["index"] + LESSONS)
def test_every_page_loads_cleanly_with_its_figures_and_math(page, site_url, name):
    open_page(page, f"{site_url}/{name}.html")
    assert not page.problems, f"{name}.html: " + "\n".join(page.problems)
    assert not broken_images(page), f"{name}.html: images that did not load: {broken_images(page)}"
    if name != "index":
        figures = page.locator("div.cell_output img").count()
        assert figures > 0, f"{name}.html shows no figure"
        assert page.locator("mjx-container").count() > 0, f"{name}.html: no typeset math"
        assert page.locator("a.reference.internal[href='index.html']").count() + page.locator(
            "a[href='index.html']").count() > 0, f"{name}.html has no link back to the lessons' index"


@pytest.mark.parametrize("name", LESSONS)
def test_exercises_render_as_blocks_with_collapsed_solutions(page, site_url, name):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    n_exercises = len(editions.exercises_and_solutions(nb))
    open_page(page, f"{site_url}/{name}.html")
    assert page.locator("div.exercise").count() == n_exercises
    solutions = page.locator("div.solution")
    assert solutions.count() == n_exercises
    for i in range(n_exercises):
        solution = solutions.nth(i)
        body = solution.locator("section").first
        assert not body.is_visible(), f"{name}: solution {i + 1} is not collapsed"
    if n_exercises:
        solutions.first.locator(".admonition-title").click()
        solutions.first.locator("section").first.wait_for(state="visible")


def test_static_slider_changes_the_figure_and_the_readout(page, site_url, shots):
    open_page(page, f"{site_url}/{LESSONS[0]}.html")
    box = page.locator(f"div.{site.STATIC_SLIDER_CLASS}")
    assert box.count() == 1
    frames = json.loads(box.get_attribute("data-frames"))
    assert [f["c"] for f in frames] == list(site.FRAME_CS)
    image, readout, slider = box.locator("img"), box.locator(".readout"), box.locator("input")
    before = (image.get_attribute("src"), readout.inner_text(), image.screenshot())
    box.scroll_into_view_if_needed()
    page.screenshot(path=shots / "01-static-slider-before.png")
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    after = (image.get_attribute("src"), readout.inner_text(), image.screenshot())
    page.screenshot(path=shots / "01-static-slider-after.png")
    assert after[0] != before[0], "the image source did not change"
    assert after[1] != before[1] and "Lip(g) ≤ c^2" in after[1], "the readout did not change"
    assert after[2] != before[2], "the figure looks the same"
    assert not page.problems, "\n".join(page.problems)


def test_screenshots_of_three_pages(page, site_url, shots):
    for name in ("index", LESSONS[2], LESSONS[5]):
        open_page(page, f"{site_url}/{name}.html")
        if name != "index":
            page.locator("div.exercise").first.scroll_into_view_if_needed()
        page.screenshot(path=shots / f"{name}.png")
        assert (shots / f"{name}.png").stat().st_size > 10_000
