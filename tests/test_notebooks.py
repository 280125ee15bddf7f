"""Both editions of every lesson execute top to bottom in quick mode from a clean kernel.

The instructor's edition (the committed notebook) runs every solution, and each must pass its
own check; the student edition (solution cells removed) runs with every exercise still open,
each check saying "not answered yet" without raising.
"""
import pytest

from iresnet_mini import editions
from iresnet_mini.lessons import checks as lesson_checks
from iresnet_mini.notebook_runner import execute, notebooks

NOTEBOOKS = notebooks()


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _errors(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def _verdicts(cell) -> list[str]:
    """The check verdicts a cell printed (lines starting with Correct / Not yet / Not answered yet)."""
    prefixes = (lesson_checks.CORRECT, lesson_checks.NOT_YET, lesson_checks.NOT_ANSWERED)
    return [line for line in _stdout(cell).splitlines() if line.startswith(prefixes)]


def test_the_course_has_its_notebooks():
    assert len(NOTEBOOKS) >= 1, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean_in_quick_mode_and_every_solution_passes_its_check(path, tmp_path):
    nb, seconds = execute(path, mode="quick", workdir=tmp_path)
    print(f"{path.name}: {seconds:.1f} s in quick mode (instructor's edition)")
    assert not _errors(nb)
    groups = editions.exercises_and_solutions(nb)
    assert groups
    for exercise, solution in groups:
        code = [j for j in solution if nb.cells[j].cell_type == "code"]
        verdicts = [v for j in code for v in _verdicts(nb.cells[j])]
        assert verdicts and all(v.startswith(lesson_checks.CORRECT) for v in verdicts), (
            f"the solution after cell {exercise} does not pass its check: {verdicts or 'it ran no check'}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_runs_clean_with_every_exercise_open(path, tmp_path):
    (student,) = editions.write_student_edition(tmp_path / "student", [path])
    nb, seconds = execute(student, mode="quick", workdir=tmp_path / "run")
    print(f"{path.name}: {seconds:.1f} s in quick mode (student edition)")
    assert not _errors(nb)
    open_exercises = [c for c in nb.cells if editions.EXERCISE_TAG in editions.cell_tags(c)]
    assert open_exercises
    for cell in open_exercises:
        assert [v[:len(lesson_checks.NOT_ANSWERED)] for v in _verdicts(cell)] == [lesson_checks.NOT_ANSWERED], (
            f"an open exercise should say 'not answered yet' once: {_stdout(cell)!r}")


# Installed in the kernel before a full-mode run: any training bigger than the tiny preset is an error.
_NO_LONG_TRAINING = """
import iresnet_mini.train as _train
_real_train = _train.train
def _guarded_train(config, *args, **kwargs):
    if config.preset != "tiny":
        raise AssertionError(f"a cell started a {config.preset}-preset training without TRAIN_HERE")
    return _real_train(config, *args, **kwargs)
_train.train = _guarded_train
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_full_mode_with_the_train_flags_off_starts_no_long_training(path, tmp_path, monkeypatch):
    """Every notebook in full mode, every size at its quick value except the recipes (the paper-scale ones stay)."""
    import json

    from iresnet_mini import config

    sizes = {name: s.quick for name, s in config.SIZES.items() if not name.endswith(".recipe")}
    (tmp_path / "sizes.json").write_text(json.dumps(sizes))
    monkeypatch.setenv(config.SIZES_ENV_VAR, str(tmp_path / "sizes.json"))
    nb, seconds = execute(path, mode="full", workdir=tmp_path / "run", before=_NO_LONG_TRAINING)
    print(f"{path.name}: {seconds:.1f} s in full mode with quick sizes and the train flags off")
    assert not _errors(nb)
    text = "\n".join(_stdout(c) for c in nb.cells if c.cell_type == "code")
    assert "mode=full" in text
    if path.name[:2] in ("05", "06", "07", "08"):  # the image lessons: the full recipe was named, not trained
        assert "not the recipe asked for" in text
