"""Shared by the notebook generators: build a clean notebook from (kind, source) cells, write it atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def build(cells, prefix: str) -> nbformat.NotebookNode:
    """The notebook from ("md" | "code", source) cells: Python 3 kernel, stable cell ids, no outputs."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell.id = f"{prefix}-{i:02d}"  # stable ids: regenerating gives the same file
        nb.cells.append(cell)
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
