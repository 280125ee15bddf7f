"""The package's layering is a checked contract (pyproject.toml's [tool.importlinter]), not a hope.

The core a paper reader imports (Lipschitz layers, blocks, log-dets, flows, models, data,
training) uses nothing from the lessons' companions (``iresnet_mini.lessons``), a lesson's
companion builds on earlier lessons only, and the mathematics imports no plotting, widgets,
data or training. A copy of the package with one forbidden import planted shows that
the check notices.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(REPO / "iresnet_mini", root / "iresnet_mini", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    path = root / "iresnet_mini" / f"{module}.py"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return root


def test_the_layering_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("train", "from .lessons import figures  # noqa", "uses nothing from the lessons"),
    ("logdet", "import matplotlib.pyplot  # noqa", "imports no plotting"),
    ("lessons/nb02/invertibility", "from ..nb03 import logdet_study  # noqa", "builds on earlier lessons only"),
])
def test_a_planted_forbidden_import_breaks_a_contract(tmp_path, module, line, broken):
    result = lint(planted_copy(tmp_path, module, line))
    assert result.returncode != 0
    assert broken in result.stdout and "BROKEN" in result.stdout, result.stdout
