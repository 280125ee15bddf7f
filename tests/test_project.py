"""Project hygiene: the two install recipes agree, notebooks are committed clean, data stays out of git."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"torch": "pytorch", "playwright": "playwright-python"}


def _split(requirement: str) -> tuple[str, str]:
    """``"torch>=2.2,<3"`` -> ``("torch", ">=2.2,<3")``, the name normalised."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", requirement)
    assert match, f"cannot read requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1).lower()), match.group(2).replace(" ", "")


def test_environment_yml_lists_the_same_packages_and_ranges_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pypi = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    expected = {CONDA_NAME.get(name, name): spec for name, spec in map(_split, pypi)}
    conda_entries = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    conda = dict(map(_split, conda_entries))
    assert conda.pop("python") == project["requires-python"]
    assert conda.pop("pip") == ""
    assert conda == expected
    pip_section = [dep for dep in env["dependencies"] if isinstance(dep, dict)]
    assert pip_section == [{"pip": ["-e .[dev]"]}]
    assert env["channels"] == ["conda-forge"]


def notebook_problems(path: Path) -> list[str]:
    """What keeps a notebook from being committed clean: outputs, counts, saved widget state."""
    notebook = json.loads(path.read_text())
    problems = []
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{path.name} cell {number}: has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"{path.name} cell {number}: execution count {cell['execution_count']}")
    if "widgets" in notebook.get("metadata", {}):
        problems.append(f"{path.name}: saved widget state in metadata")
    return problems


def test_notebook_check_catches_outputs_and_execution_counts(tmp_path):
    dirty = {"cells": [{"cell_type": "code", "execution_count": 3, "metadata": {}, "source": "1",
                        "outputs": [{"output_type": "execute_result", "data": {"text/plain": "1"},
                                     "metadata": {}, "execution_count": 3}]}],
             "metadata": {"widgets": {}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(dirty))
    assert len(notebook_problems(path)) == 3
    dirty["cells"][0].update(outputs=[], execution_count=None)
    dirty["metadata"] = {}
    path.write_text(json.dumps(dirty))
    assert notebook_problems(path) == []


def test_notebooks_are_committed_without_outputs():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks in notebooks/ yet")
    problems = [problem for path in notebooks for problem in notebook_problems(path)]
    assert not problems, ("clear outputs before committing (jupyter nbconvert --clear-output "
                          "--inplace notebooks/*.ipynb):\n" + "\n".join(problems))


@pytest.mark.parametrize("path, ignored", [
    ("data/mnist/train-images-idx3-ubyte.gz", True),
    ("data/cifar10/cifar-10-binary.tar.gz", True),
    ("data/README.md", False),
    ("data/pretrained/model.pt", False),
    ("runs/model/checkpoint.pt", True),
])
def test_gitignore_keeps_data_sets_out_and_shipped_files_in(path, ignored):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    assert result.returncode == (0 if ignored else 1)
