"""Project hygiene: the two install recipes agree, data stays out of git (lessons: tests/test_lessons.py)."""
from __future__ import annotations

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


PIP_ONLY = {"django-static-mathjax"}  # not packaged for conda: `pip install -e .[dev]` in environment.yml installs it


def test_environment_yml_lists_the_same_packages_and_ranges_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pypi = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    expected = {CONDA_NAME.get(name, name): spec for name, spec in map(_split, pypi) if name not in PIP_ONLY}
    conda_entries = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    conda = dict(map(_split, conda_entries))
    assert conda.pop("python") == project["requires-python"]
    assert conda.pop("pip") == ""
    assert conda == expected
    pip_section = [dep for dep in env["dependencies"] if isinstance(dep, dict)]
    assert pip_section == [{"pip": ["-e .[dev]"]}]
    assert env["channels"] == ["conda-forge"]


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


def test_binder_environment_has_the_runtime_packages_and_the_cpu_build_of_pytorch():
    """What can be checked here of the Binder configuration (Binder itself cannot be reached from CI)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / ".binder" / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    entries = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    torch_entry = next(dep for dep in entries if dep.startswith("pytorch["))
    torch_range = dict(_split(r) for r in project["dependencies"])["torch"]
    assert torch_entry == f"pytorch[version='{torch_range}', build='cpu*']"  # the CPU build, pyproject's range
    conda = dict(map(_split, [dep for dep in entries if dep is not torch_entry]))
    runtime = {name: spec for name, spec in map(_split, project["dependencies"]) if name != "torch"}
    dev = dict(map(_split, project["optional-dependencies"]["dev"]))
    assert {name: conda[name] for name in runtime} == runtime
    assert conda["jupyterlab"] == dev["jupyterlab"] and conda["jupytext"] == dev["jupytext"]
    post_build = REPO / ".binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    assert "pip install --no-deps -e ." in post_build.read_text()  # the package, not a second torch
