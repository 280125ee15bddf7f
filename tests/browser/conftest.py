"""Fixtures for the browser test: one JupyterLab server per session, one Chromium page per test.

Missing Chromium or Playwright skips the browser tests, except under CI (``CI`` set to
anything but ``""``/``0``/``false``), where it fails them: CI must run them
(``scripts/install_browser_deps.sh`` installs both).
"""
from __future__ import annotations

import json
import os
import secrets
import statistics
from pathlib import Path

import nbformat
import pytest

from lab_driver import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DEMOS, NOTEBOOKS, REPO_ROOT, VIEWPORT,
                        LabPage, LabServer, copy_notebooks, demo_notebook, missing_prerequisites)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that fixtures can see whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def browser_prerequisites():
    """Skip (fail on CI) when Chromium, Playwright or JupyterLab is missing."""
    missing = missing_prerequisites()
    if missing:
        message = ("browser test needs " + ", ".join(missing)
                   + "; install with scripts/install_browser_deps.sh")
        if on_ci():
            pytest.fail(f"CI is set and the {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def lab_server(browser_prerequisites, tmp_path_factory):
    """JupyterLab in quick mode serving a scratch copy of ``notebooks/`` plus the demo notebooks."""
    scratch = tmp_path_factory.mktemp("jupyterlab")
    root = scratch / "notebooks"
    if NOTEBOOKS.is_dir():
        copy_notebooks(NOTEBOOKS, root)
    root.mkdir(exist_ok=True)
    for name, draw_uses_c in DEMOS.items():
        nbformat.write(demo_notebook(draw_uses_c), root / name)
    server = LabServer.start(root, scratch, REPO_ROOT, token=secrets.token_hex(16))
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def chromium(browser_prerequisites):
    """Debian's headless Chromium driven by Playwright (no Playwright browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Screenshots go to ``artifacts/browser/`` (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def open_notebook(request, lab_server, chromium, artifacts):
    """``open_notebook(name) -> LabPage``: the notebook loaded in a fresh browser context.

    On failure a full-page screenshot ``<test id>-failure-<i>.png`` is saved; the notebook's
    kernel is shut down after each test.
    """
    context = chromium.new_context(viewport=VIEWPORT)
    pages: list[LabPage] = []

    def open_(name: str) -> LabPage:
        lab_page = LabPage(context.new_page(), lab_server, name)
        pages.append(lab_page)
        lab_page.open(workspace=f"test-{len(pages)}-{secrets.token_hex(4)}")
        return lab_page

    yield open_
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in request.node.name)
        for i, lab_page in enumerate(pages):
            lab_page.page.screenshot(path=artifacts / f"{stem}-failure-{i}.png", full_page=True)
    context.close()
    lab_server.shut_down_kernels()


@pytest.fixture(scope="session")
def slider_latencies(request):
    """notebook -> seconds from each c-slider key press to the redrawn figure (quick mode).

    At the end of the session the figures go to ``artifacts/browser/slider-latency.json`` and a
    table (median and worst per notebook) to the terminal. They are measured, not asserted:
    the README reports them.
    """
    found: dict[str, list[float]] = {}
    yield found
    if not found:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rows = {name: {"median_s": round(statistics.median(times), 3), "worst_s": round(max(times), 3),
                   "moves": len(times), "latencies_s": [round(t, 3) for t in times]}
            for name, times in found.items() if times}
    (ARTIFACTS / "slider-latency.json").write_text(json.dumps(rows, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line("c slider: key press -> redrawn figure in JupyterLab (quick mode)")
        for name, row in rows.items():
            reporter.write_line(f"  {name:<40} median {row['median_s']:5.2f} s   worst {row['worst_s']:5.2f} s   "
                                f"({row['moves']} moves)")
