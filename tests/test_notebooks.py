"""Every notebook executes top to bottom in quick mode from a clean kernel."""
import pytest

from iresnet_mini.notebook_runner import execute, notebooks

NOTEBOOKS = notebooks()


def test_the_course_has_its_notebooks():
    assert len(NOTEBOOKS) >= 1, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean_in_quick_mode(path, tmp_path):
    nb, seconds = execute(path, mode="quick", workdir=tmp_path)
    print(f"{path.name}: {seconds:.1f} s in quick mode")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
