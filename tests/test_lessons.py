"""Lesson sources: jupytext pairs in sync, committed clean, no control characters; the student edition."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iresnet_mini import editions

REPO = Path(__file__).resolve().parent.parent
LESSONS = editions.lessons()


def test_the_course_has_eight_lessons_each_a_jupytext_pair():
    assert [p.name[:2] for p in LESSONS] == [f"{n:02d}" for n in range(1, 9)]
    assert all(p.with_suffix(".py").is_file() for p in LESSONS)
    assert "py:percent" in (REPO / "jupytext.toml").read_text()
    assert not list((REPO / "scripts").glob("make_notebook_*.py")), "the lessons' sources are notebooks/*.py"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_clean_in_sync_and_laid_out_for_the_student_edition(path):
    assert editions.lesson_problems(path) == []


@pytest.fixture
def pair(tmp_path):
    """A copy of lesson 01 and its .py source in a folder of its own."""
    for suffix in (".ipynb", ".py"):
        shutil.copy(LESSONS[0].with_suffix(suffix), tmp_path)
    return tmp_path / LESSONS[0].name


def _edit_py(ipynb: Path, old: str, new: str) -> None:
    py = ipynb.with_suffix(".py")
    text = py.read_text(encoding="utf-8")
    assert old in text
    py.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_an_edit_in_the_py_source_alone_is_caught(pair):
    _edit_py(pair, "can those trajectories", "can these trajectories")
    assert any("source differs" in p for p in editions.pair_differences(pair))


def test_a_tag_lost_in_the_py_source_is_caught(pair):
    _edit_py(pair, '# %% tags=["solution"]', "# %%")
    assert any("tags differ" in p for p in editions.pair_differences(pair))


def test_a_missing_py_source_is_caught(pair):
    pair.with_suffix(".py").unlink()
    assert any("no paired source" in p for p in editions.pair_differences(pair))


def _edit_ipynb(path: Path, change) -> None:
    nb = editions.read(path)
    change(nb)
    path.write_text(editions.dumps(nb), encoding="utf-8")


def test_outputs_execution_counts_widget_state_and_control_characters_are_caught(pair):
    def dirty(nb):
        code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
        code["execution_count"] = 3
        markdown = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
        markdown["source"] = ["$t \x07pprox 0.83$"]  # what a lost backslash does to \approx
        nb["metadata"]["widgets"] = {}
    _edit_ipynb(pair, dirty)
    problems = "\n".join(editions.lesson_problems(pair))
    for what in ("has outputs", "execution count 3", "control character '\\x07'", "saved widget state"):
        assert what in problems


def test_a_solution_without_an_exercise_before_it_is_refused():
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "text"},
                    {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "answer = 1"}]}
    with pytest.raises(ValueError, match="does not follow an exercise"):
        editions.student_notebook(nb)
    nb["cells"][1]["metadata"]["tags"] = ["exercise"]
    with pytest.raises(ValueError, match="has no solution"):
        editions.student_notebook(nb)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_student_edition_is_the_lesson_without_its_solution_cells(path):
    nb = editions.read(path)
    student = editions.student_notebook(nb)
    kept = [c for c in nb["cells"] if editions.SOLUTION_TAG not in editions.cell_tags(c)]
    assert student["cells"] == kept and student["metadata"] == nb["metadata"]
    assert not any(editions.is_solution(c) for c in student["cells"])
    n_exercises = sum(editions.EXERCISE_TAG in editions.cell_tags(c) for c in student["cells"])
    assert n_exercises == len(editions.exercises_and_solutions(nb)) >= 2


def test_the_student_edition_command_writes_every_lesson_and_keeps_a_students_work(tmp_path):
    out = tmp_path / "student"
    command = [sys.executable, "-m", "iresnet_mini.editions", "student", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in LESSONS]
    first = out / LESSONS[0].name
    written = first.read_text(encoding="utf-8")
    assert json.loads(written)["cells"] == editions.student_notebook(editions.read(LESSONS[0]))["cells"]
    subprocess.run(command, check=True, capture_output=True)  # the same edition again: nothing to protect

    first.write_text(written.replace("answer = None", "answer = 0.0039"), encoding="utf-8")  # a student's answer
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "differ from the student edition" in again.stderr
    assert "0.0039" in first.read_text(encoding="utf-8")
    subprocess.run(command + ["--overwrite"], check=True, capture_output=True)
    assert first.read_text(encoding="utf-8") == written
    assert "0.0039" in first.with_name(first.name + ".bak").read_text(encoding="utf-8")


def test_the_student_edition_refuses_to_replace_the_lessons_themselves():
    with pytest.raises(ValueError, match="lessons' own folder"):
        editions.write_student_edition(editions.NOTEBOOK_DIR)
