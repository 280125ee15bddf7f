"""Execute the course notebooks from a clean kernel (used by the tests and the render script)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .editions import NOTEBOOK_DIR, lessons as notebooks  # noqa: F401  (the runner's names for them)


def execute(path: Path, mode: str = "quick", timeout: int = 600, workdir: Path | None = None,
            before: str | None = None):
    """Run a notebook top to bottom in a fresh kernel; returns (executed notebook, seconds).

    The notebook runs in a copy of its folder (``workdir`` or a temporary one), so nothing it
    writes lands next to the committed notebooks. ``before`` is code run in the kernel first, in
    a cell of its own (e.g. a guard a test installs). Raises on the first cell error.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if before is not None:
        nb.cells.insert(0, nbformat.v4.new_code_cell(before))
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="iresnet-nb-")) if own_tmp else Path(workdir)
    try:
        with in_mode(mode):
            return _run(nb, path, workdir, timeout)
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def in_mode(mode: str):
    """Inside: ``$IRESNET_MINI_MODE`` is ``mode`` (so kernels started here, and ``config.size``, use it)."""
    previous = os.environ.get("IRESNET_MINI_MODE")
    os.environ["IRESNET_MINI_MODE"] = mode
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("IRESNET_MINI_MODE", None)
        else:
            os.environ["IRESNET_MINI_MODE"] = previous


def _run(nb, path: Path, workdir: Path, timeout: int):
    shutil.copytree(path.parent, workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start
