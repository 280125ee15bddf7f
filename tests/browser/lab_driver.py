"""Drive the notebooks' widgets in a real JupyterLab with headless Chromium (Playwright).

``LabServer`` runs ``jupyter lab`` on a free loopback port in a scratch folder, with the
quick mode switched on and every network feature (news, update checks, extension
manager) switched off. ``LabPage`` opens one notebook in a Playwright page, runs all its
cells through the Run menu, reads errors and widget placeholders from the notebook model
and the DOM, and moves the Lipschitz-coefficient sliders of ``iresnet_mini.lessons.widgets``.
Nothing here imports Playwright, so the test suite still collects without it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from iresnet_mini.lessons.widgets import C_SLIDER_CLASS, FIGURE_CLASS, READOUT_CLASS

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
# Written next to the copied notebooks: the harness's self-test (name -> draw uses c).
DEMO_NOTEBOOK = "browser_demo_c_slider.ipynb"
BROKEN_DEMO_NOTEBOOK = "browser_demo_ignores_c.ipynb"
DEMOS = {DEMO_NOTEBOOK: True, BROKEN_DEMO_NOTEBOOK: False}

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 1000}

SERVER_START_TIMEOUT_S = 60
NOTEBOOK_OPEN_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 900          # the notebook's own run time in quick mode, on a busy CPU
WIDGET_RENDER_TIMEOUT_S = 30
SLIDER_CALLBACK_TIMEOUT_S = 120  # a few redraws of one figure
KERNEL_QUIET_MS = 1000           # idle this long after a slider move = all callbacks done
SLIDER_KEY_PRESSES = 3           # each PageUp/PageDown moves a noUiSlider handle by 5 steps

# JupyterLab user settings for the test server: no news / update requests, every cell in
# the DOM (so the DOM checks see all outputs), the notebook's kernel started without a dialog.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
        {"windowingMode": "none", "autoStartDefaultKernel": True},
}
LAB_OPTIONS = ["--no-browser", "--ip=127.0.0.1", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               "--LabApp.expose_app_in_browser=True",       # window.jupyterapp, for model checks
               "--LanguageServerManager.autodetect=False"]

# What JupyterLab's widget manager shows in an output instead of a widget view: a placeholder
# text ("Error displaying widget: model not found", ...) or an error view (failed to render).
WIDGET_PLACEHOLDERS = ("Loading widget...", "Error displaying widget")
WIDGET_ERROR_VIEW_CLASS = "jupyter-widgets-error-widget"


def missing_prerequisites() -> list[str]:
    """What the browser test needs and this machine lacks (empty when all is there)."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (Debian package 'chromium')")
    for module in ("playwright", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package '{module}'")
    return missing


def notebooks_with_c_slider(folder: Path) -> list[Path]:
    """The notebooks in ``folder`` that build a Lipschitz control (a c slider or choice, or a norm as in notebook 08)."""
    return sorted(p for p in folder.glob("*.ipynb")
                  if any(name in p.read_text(encoding="utf-8") for name in ("c_slider(", "c_choice(", "lipschitz_slider(")))


def demo_notebook(draw_uses_c: bool = True) -> nbformat.NotebookNode:
    """A two-cell notebook with one ``interactive_figure`` on a Lipschitz slider (no bound in its readout).

    With ``draw_uses_c=False`` the draw function ignores the slider (a broken wiring the
    test must notice).
    """
    c_used = "c" if draw_uses_c else "0.5"
    draw = (
        "def draw(c):\n"
        f"    c_drawn = {c_used}\n"
        "    x = np.linspace(-3, 3, 200)\n"
        "    fig, ax = plt.subplots(figsize=(5, 3))\n"
        "    ax.plot(x, x + c_drawn * np.sin(x), label='x + g(x)')\n"
        "    ax.plot(x, c_drawn * np.sin(x), label='g(x) = c sin(x)')\n"
        "    ax.set_title(f'residual map, Lip(g) = {c_drawn:.2f}')\n"
        "    ax.legend(loc='upper left')\n"
        "    return fig, {'Lip(g)': c_drawn, 'Lip(F^-1) <=': 1 / (1 - c_drawn)}\n"
        "\n"
        "interactive_figure(draw, c=lipschitz_slider(0.9, 0.1, 0.99, description='Lip(g)'))"
    )
    return new_notebook(
        cells=[new_markdown_cell("# Browser test: one Lipschitz-coefficient slider"),
               new_code_cell("import matplotlib.pyplot as plt\nimport numpy as np\n"
                             "from iresnet_mini.lessons.widgets import interactive_figure, lipschitz_slider"),
               new_code_cell(draw)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}})


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(repo_root: Path, scratch: Path) -> dict[str, str]:
    """The server's (and so the kernels') environment: quick mode, the working tree first
    on the path, the inline matplotlib backend, JupyterLab state kept in ``scratch``."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env["IRESNET_MINI_MODE"] = "quick"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo_root), env.get("PYTHONPATH")]))
    for var, sub in (("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                     ("JUPYTER_RUNTIME_DIR", "runtime")):
        env[var] = str(scratch / sub)
    return env


def write_lab_settings(settings_dir: Path) -> None:
    """Write :data:`LAB_SETTINGS` as JupyterLab user settings."""
    for name, values in LAB_SETTINGS.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@dataclass
class LabServer:
    """A running ``jupyter lab`` at ``url`` (token-protected), logging to ``log_path``."""

    process: subprocess.Popen
    url: str
    token: str
    log_path: Path

    @classmethod
    def start(cls, root: Path, scratch: Path, repo_root: Path, token: str) -> "LabServer":
        """Start the server in ``root`` and wait until its REST API answers."""
        write_lab_settings(scratch / "settings")
        port = free_loopback_port()
        command = [sys.executable, "-m", "jupyter", "lab", f"--port={port}",
                   f"--IdentityProvider.token={token}", *LAB_OPTIONS]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        log_path = scratch / "jupyter-lab.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=root, env=server_env(repo_root, scratch),
                                       stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, f"http://127.0.0.1:{port}", token, log_path)
        try:
            server.wait_until_ready()
        except BaseException:
            server.shutdown()
            raise
        return server

    def api(self, method: str, path: str, timeout: float = 10):
        """Call the server's REST API; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                           f"{self.log_tail()}")

    def lab_url(self, notebook: str, workspace: str) -> str:
        """The address that opens ``notebook`` alone in a fresh named workspace."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?token={self.token}"

    def shut_down_kernels(self) -> None:
        """Close every session (and its kernel) so that the next notebook starts clean."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def shutdown(self) -> None:
        """Ask the server to stop (it shuts its kernels down); kill it if it does not."""
        if self.process.poll() is None:
            try:
                self.api("POST", "/api/shutdown")
                self.process.wait(timeout=20)
            except (urllib.error.URLError, ConnectionError, TimeoutError,
                    subprocess.TimeoutExpired):
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def copy_notebooks(source: Path, destination: Path) -> None:
    """Copy the notebook folder (not its checkpoints) to the server's scratch root."""
    shutil.copytree(source, destination,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


# ---------------------------------------------------------------------------------------
# In the page. `window.jupyterapp` is exposed by --LabApp.expose_app_in_browser.

_JS_PANEL = """(path) => {
    // While the page is still loading, the app (or its shell) does not exist yet: not found.
    const app = window.jupyterapp;
    if (!app || !app.shell) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.context && w.context.path === path && w.content && w.content.model) return w;
    }
    return null;
}"""

_JS_READY = f"""(path) => {{
    const panel = ({_JS_PANEL})(path);
    if (!panel || !panel.context.isReady || !panel.sessionContext.isReady) return false;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""

# Kernel status changes, and tracebacks raised while the kernel handled a widget message
# (a slider callback): those never reach a cell, so the model checks cannot see them.
_JS_RECORD_KERNEL_ACTIVITY = f"""(path) => {{
    const context = ({_JS_PANEL})(path).sessionContext;
    window.__kernelStatus = [[Date.now(), context.kernelDisplayStatus]];
    window.__callbackErrors = [];
    context.statusChanged.connect((_, status) => window.__kernelStatus.push([Date.now(), status]));
    context.iopubMessage.connect((_, msg) => {{
        if (!msg.parent_header || msg.parent_header.msg_type !== 'comm_msg') return;
        const type = msg.header.msg_type, content = msg.content;
        if (type === 'error')
            window.__callbackErrors.push(`${{content.ename}}: ${{content.evalue}}`);
        if (type === 'stream' && content.name === 'stderr' && content.text.includes('Traceback'))
            window.__callbackErrors.push(content.text);
    }});
}}"""

_JS_CODE_CELLS = f"""(path) => {{
    const cells = ({_JS_PANEL})(path).content.model.cells;
    const found = [];
    for (let i = 0; i < cells.length; i++) {{
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        const outputs = [];
        for (let j = 0; j < cell.outputs.length; j++) outputs.push(cell.outputs.get(j).toJSON());
        found.push({{index: i, source: cell.sharedModel.getSource(), count: cell.executionCount,
                     running: cell.executionState === 'running', outputs: outputs}});
    }}
    return found;
}}"""

_JS_RUN_ALL_DONE = f"""(path) => {{
    const panel = ({_JS_PANEL})(path);
    const indicator = panel.node.querySelector('.jp-Notebook-ExecutionIndicator');
    if (!indicator || indicator.dataset.status !== 'idle') return false;
    const cells = ({_JS_CODE_CELLS})(path).filter(c => c.source.trim() !== '');
    if (cells.some(c => c.running)) return false;
    const failed = cells.some(c => c.outputs.some(o => o.output_type === 'error'));
    return failed || cells.every(c => c.count !== null);
}}"""

_JS_KERNEL_QUIET_SINCE = """([start, quietMs]) => {
    const events = window.__kernelStatus;
    if (!events.slice(start).some(e => e[1] === 'busy')) return false;
    const last = events[events.length - 1];
    return last[1] === 'idle' && Date.now() - last[0] >= quietMs;
}"""

_PANEL_OF_SLIDER = (f"xpath=ancestor::div[contains(@class,'widget-vbox')]"
                    f"[.//div[contains(concat(' ', @class, ' '), ' {FIGURE_CLASS} ')]][1]")


# A new figure in the panel ("changed"), or the kernel done with the move without one ("quiet").
_JS_FIGURE_CHANGED_OR_QUIET = f"""([panel, src, start, quietMs]) => {{
    const img = panel.querySelector('.{FIGURE_CLASS} img');
    if (img && img.getAttribute('src') !== src) return 'changed';
    return ({_JS_KERNEL_QUIET_SINCE})([start, quietMs]) ? 'quiet' : false;
}}"""


@dataclass
class SliderEffect:
    """What one slider move did to its panel (before -> after).

    ``latencies``: for each key press, the seconds from the press until the panel showed a
    new figure (None where that press left the figure as it was, e.g. at the slider's end).
    """

    value: tuple[str, str]
    readout: tuple[str, str]
    image_changed: bool
    callback_errors: list[str]
    screenshots: tuple[Path, Path]
    latencies: list = field(default_factory=list)


class LabPage:
    """One notebook opened in JupyterLab in a Playwright page."""

    def __init__(self, page, server: LabServer, notebook: str):
        self.page = page
        self.server = server
        self.notebook = notebook
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def open(self, workspace: str) -> None:
        """Load JupyterLab with the notebook and wait for its kernel to be idle."""
        self.page.goto(self.server.lab_url(self.notebook, workspace))
        self.page.wait_for_function(_JS_READY, arg=self.notebook,
                                    timeout=NOTEBOOK_OPEN_TIMEOUT_S * 1000, polling=200)
        self.page.evaluate(_JS_RECORD_KERNEL_ACTIVITY, self.notebook)

    def run_all_cells(self) -> None:
        """Run > Run All Cells; wait until the cells ran (or one failed) and the kernel is idle."""
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        self.page.wait_for_function(_JS_RUN_ALL_DONE, arg=self.notebook,
                                    timeout=RUN_ALL_TIMEOUT_S * 1000, polling=250)

    def cell_errors(self) -> list[str]:
        """``cell i: Ename: message`` for every error output (traceback) in the notebook."""
        return [f"cell {cell['index']}: {out['ename']}: {out['evalue']}"
                for cell in self.page.evaluate(_JS_CODE_CELLS, self.notebook)
                for out in cell["outputs"] if out["output_type"] == "error"]

    def diagnostics(self) -> str:
        """Page errors and the tail of the server's log, for failure messages."""
        errors = "\n".join(self.page_errors) or "(none)"
        return f"page errors:\n{errors}\njupyter lab log (tail):\n{self.server.log_tail()}"

    def widget_placeholders(self) -> list[str]:
        """Outputs still showing a widget placeholder or error view after a grace period."""
        outputs = self.page.locator(".jp-OutputArea-output")

        def placeholders() -> list[str]:
            texts = outputs.evaluate_all(
                f"nodes => nodes.map(n => n.querySelector('.{WIDGET_ERROR_VIEW_CLASS}')"
                " ? 'widget view error: ' + n.textContent : n.textContent.trim())")
            return [t for t in texts if t.startswith(("widget view error", *WIDGET_PLACEHOLDERS))]

        deadline = time.monotonic() + WIDGET_RENDER_TIMEOUT_S
        while (found := placeholders()) and time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
        return found

    def c_sliders(self):
        """Every Lipschitz-coefficient slider on the page."""
        return self.page.locator(f".{C_SLIDER_CLASS}")

    def slider_panels(self) -> list:
        """For each c slider that drives a figure: the ``interactive_figure`` box around it."""
        panels = []
        for i in range(self.c_sliders().count()):
            panel = self.c_sliders().nth(i).locator(_PANEL_OF_SLIDER)
            if panel.count():
                panels.append(panel)
        return panels

    def press_and_wait_for_kernel(self, handle, key: str, panel=None) -> float | None:
        """Press ``key`` on a slider handle, then wait until the kernel ran the callback
        (it went busy, is idle again, and stayed idle for ``KERNEL_QUIET_MS``).

        With ``panel``, returns the seconds from the press until the panel's figure changed
        (None if it did not change).
        """
        start = self.page.evaluate("() => window.__kernelStatus.length")
        panel_node = panel.element_handle() if panel is not None else None
        src = panel.locator(f".{FIGURE_CLASS} img").get_attribute("src") if panel is not None else None
        pressed = time.perf_counter()
        handle.press(key)
        latency = None
        if panel_node is not None:
            outcome = self.page.wait_for_function(_JS_FIGURE_CHANGED_OR_QUIET,
                                                  arg=[panel_node, src, start, KERNEL_QUIET_MS],
                                                  timeout=SLIDER_CALLBACK_TIMEOUT_S * 1000, polling="raf")
            if outcome.json_value() == "changed":
                latency = time.perf_counter() - pressed
        self.page.wait_for_function(_JS_KERNEL_QUIET_SINCE, arg=[start, KERNEL_QUIET_MS],
                                    timeout=SLIDER_CALLBACK_TIMEOUT_S * 1000, polling=100)
        return latency

    def move_c_slider(self, panel, shots: Path, name: str) -> SliderEffect:
        """Move the panel's c slider by keyboard towards its farther end, one redraw per
        key press (at most ``SLIDER_KEY_PRESSES``); screenshot the panel before and after and compare."""
        slider = panel.locator(f".{C_SLIDER_CLASS}")
        handle, value = slider.locator(".noUi-handle"), slider.locator(".widget-readout")
        image = panel.locator(f".{FIGURE_CLASS} img")
        readout = panel.locator(f".{READOUT_CLASS}")
        image.wait_for(state="visible")
        shots.mkdir(parents=True, exist_ok=True)
        before_png, after_png = shots / f"{name}-before.png", shots / f"{name}-after.png"

        value_before, readout_before = value.inner_text(), readout.inner_text()
        src_before = image.get_attribute("src")
        panel.screenshot(path=before_png)

        errors_start = self.page.evaluate("() => window.__callbackErrors.length")
        low, now, high = (float(handle.get_attribute(f"aria-value{end}"))
                          for end in ("min", "now", "max"))
        down = now - low >= high - now
        # A choice among a few values (c_choice: positions 0..n-1) moves one position per arrow key;
        # a float slider moves five steps per PageUp/PageDown. Never press past the end: a press that
        # changes nothing never reaches the kernel.
        few = low == int(low) and high == int(high) and high - low <= 12
        key = ("ArrowLeft" if down else "ArrowRight") if few else ("PageDown" if down else "PageUp")
        presses = min(SLIDER_KEY_PRESSES, int(now - low if down else high - now)) if few else SLIDER_KEY_PRESSES
        handle.focus()
        latencies = [self.press_and_wait_for_kernel(handle, key, panel) for _ in range(presses)]
        image.wait_for(state="visible")
        panel.screenshot(path=after_png)
        self.page.screenshot(path=shots / f"{name}-page.png")  # the panel in its notebook
        return SliderEffect(value=(value_before, value.inner_text()),
                            readout=(readout_before, readout.inner_text()),
                            image_changed=image.get_attribute("src") != src_before,
                            callback_errors=self.page.evaluate(
                                "(start) => window.__callbackErrors.slice(start)", errors_start),
                            screenshots=(before_png, after_png), latencies=latencies)
