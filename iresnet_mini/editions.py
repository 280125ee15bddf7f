"""The course's two editions: the instructor's (the lessons as committed) and the student's.

    python -m iresnet_mini.editions student OUT_DIR [NOTEBOOK ...]
    python -m iresnet_mini.editions check [NOTEBOOK ...]


Every exercise is a code cell tagged ``exercise`` (the prompt is the markdown cell above it;
the cell holds a placeholder and the self-check). Its worked solution follows in cells tagged
``solution``: a markdown cell with the reasoning and a code cell that sets the answer and runs
the same check. The student edition is each lesson with its solution cells removed and
everything else, byte for byte, as it is: the exercise cells then report "Not answered yet".

Writing never replaces a student's work: a file in OUT_DIR that differs from the edition about
to be written is left alone unless ``--overwrite`` is given (it is then kept as ``NAME.bak``).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from pathlib import Path

from .files import write_atomically

__all__ = ["SOLUTION_TAG", "EXERCISE_TAG", "NOTEBOOK_DIR", "CONTROL_CHARACTERS", "lessons", "read", "dumps",
           "cell_tags", "is_solution", "exercises_and_solutions", "pair_differences", "lesson_problems",
           "student_notebook", "write_student_edition", "main"]

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def lessons(directory: str | os.PathLike = NOTEBOOK_DIR) -> list[Path]:
    """The numbered lesson notebooks (``NN_name.ipynb``) of a folder, in order."""
    return sorted(Path(directory).glob("[0-9][0-9]_*.ipynb"))


def read(path: str | os.PathLike) -> dict:
    """A notebook file as plain JSON (no validation, nothing changed)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dumps(nb: dict) -> str:
    """A notebook as nbformat writes it (indent 1, sorted keys, UTF-8 text, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def cell_tags(cell: dict) -> list[str]:
    """The tags of a notebook cell (empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell: dict) -> bool:
    return SOLUTION_TAG in cell_tags(cell)


def exercises_and_solutions(nb: dict) -> list[tuple[int, list[int]]]:
    """(index of each exercise cell, indices of the solution cells right after it), in order.

    Raises ValueError when the lesson breaks the layout: a solution cell that does not follow an
    exercise (or its other solution cells), an exercise without a solution, a solution without
    a code cell, or a cell tagged both.
    """
    cells = nb["cells"]
    groups: list[tuple[int, list[int]]] = []
    current: list[int] | None = None
    for i, cell in enumerate(cells):
        tags = cell_tags(cell)
        if EXERCISE_TAG in tags and SOLUTION_TAG in tags:
            raise ValueError(f"cell {i} is tagged both {EXERCISE_TAG!r} and {SOLUTION_TAG!r}")
        if EXERCISE_TAG in tags:
            if cell["cell_type"] != "code":
                raise ValueError(f"exercise cell {i} must be a code cell (the prompt goes in the markdown above it)")
            current = []
            groups.append((i, current))
        elif SOLUTION_TAG in tags:
            if current is None:
                raise ValueError(f"solution cell {i} does not follow an exercise cell (tag {EXERCISE_TAG!r})")
            current.append(i)
        else:
            current = None
    for exercise, solution in groups:
        if not solution:
            raise ValueError(f"exercise cell {exercise} has no solution cell after it")
        if not any(cells[j]["cell_type"] == "code" for j in solution):
            raise ValueError(f"the solution of exercise cell {exercise} has no code cell that runs its check")
    return groups


# C0 control characters other than tab, newline and carriage return, and DEL: in lesson text they are
# always a slip (a backslash lost in a string turns "\\approx" into BEL + "pprox").
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def pair_differences(ipynb: str | os.PathLike, py: str | os.PathLike | None = None) -> list[str]:
    """Where a lesson's ``.ipynb`` and its jupytext ``.py`` source disagree (cell kinds, sources, tags)."""
    import jupytext  # a development dependency: only instructors and the tests need it

    ipynb = Path(ipynb)
    py = Path(py) if py is not None else ipynb.with_suffix(".py")
    if not py.is_file():
        return [f"{ipynb.name}: no paired source {py.name} (pair it: jupytext --sync {ipynb})"]
    left = [(c["cell_type"], _source(c), cell_tags(c)) for c in read(ipynb)["cells"]]
    right = [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in jupytext.read(py).cells]
    problems = []
    for i, (a, b) in enumerate(zip(left, right)):
        if a != b:
            what = "kind" if a[0] != b[0] else "tags" if a[1] == b[1] else "source"
            problems.append(f"{ipynb.name} cell {i}: the {what} differs from {py.name} "
                            f"({a[1][:40]!r} vs {b[1][:40]!r})")
    if len(left) != len(right):
        problems.append(f"{ipynb.name} has {len(left)} cells, {py.name} {len(right)}")
    if problems:
        problems.append(f"sync them: jupytext --sync {py} (the newer file wins)")
    return problems


def lesson_problems(ipynb: str | os.PathLike) -> list[str]:
    """Everything that keeps a lesson from being committed: outputs, execution counts, saved widget state,
    control characters in its text, a broken exercise/solution layout, or a .py source out of sync."""
    ipynb = Path(ipynb)
    nb = read(ipynb)
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"{ipynb.name} cell {i}: has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"{ipynb.name} cell {i}: execution count {cell['execution_count']}")
        bad = CONTROL_CHARACTERS.search(_source(cell))
        if bad:
            problems.append(f"{ipynb.name} cell {i}: control character {bad.group()!r} in its text "
                            f"(...{_source(cell)[max(bad.start() - 20, 0):bad.start()]!r})")
    if "widgets" in nb.get("metadata", {}):
        problems.append(f"{ipynb.name}: saved widget state in its metadata")
    try:
        exercises_and_solutions(nb)
    except ValueError as error:
        problems.append(f"{ipynb.name}: {error}")
    return problems + pair_differences(ipynb)


def student_notebook(nb: dict) -> dict:
    """The student edition of a lesson: the same notebook without its solution cells."""
    exercises_and_solutions(nb)  # refuse a lesson whose solutions cannot be told apart
    student = copy.deepcopy(nb)
    student["cells"] = [cell for cell in student["cells"] if not is_solution(cell)]
    return student


def write_student_edition(out_dir: str | os.PathLike, notebooks=None, overwrite: bool = False) -> list[Path]:
    """Write the student edition of ``notebooks`` (default: every lesson) into ``out_dir``; returns the paths.

    A file already in ``out_dir`` with other contents (a student's answers) is never replaced
    silently: without ``overwrite`` nothing is written and FileExistsError names the files;
    with it, each is first renamed to ``NAME.bak``.
    """
    out_dir = Path(out_dir)
    sources = [Path(p) for p in (notebooks if notebooks is not None else lessons())]
    if not sources:
        raise ValueError(f"no lessons to write: {NOTEBOOK_DIR} holds no NN_name.ipynb notebooks")
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"no notebook {source}")
        if out_dir.resolve() == source.parent.resolve():
            raise ValueError(f"{out_dir} is the lessons' own folder: the student edition would replace them; "
                             "choose another folder")
    editions = {out_dir / source.name: dumps(student_notebook(read(source))) for source in sources}
    changed = [path for path, text in editions.items()
               if path.exists() and path.read_text(encoding="utf-8") != text]
    if changed and not overwrite:
        raise FileExistsError(
            "these files exist and differ from the student edition (perhaps a student's answers); nothing was "
            "written. Choose another folder, or pass --overwrite to keep each as NAME.bak and write anew:\n  "
            + "\n  ".join(map(str, changed)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in editions.items():
        if path in changed:
            backup = path.with_name(path.name + ".bak")
            if backup.exists():
                raise FileExistsError(f"{backup} exists too: move it away first, nothing of it is replaced")
            os.replace(path, backup)
        write_atomically(path, text)
    return list(editions)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m iresnet_mini.editions``."""
    parser = argparse.ArgumentParser(prog="python -m iresnet_mini.editions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="edition", required=True)
    student = sub.add_parser("student", help="the lessons without their solution cells")
    student.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    student.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK",
                         help="lessons to write (default: all of notebooks/)")
    student.add_argument("--overwrite", action="store_true",
                         help="replace differing files in OUT_DIR, keeping each old one as NAME.bak")
    check = sub.add_parser("check", help="are the lessons clean, in sync with their .py sources, well laid out?")
    check.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK", help="default: all of notebooks/")
    args = parser.parse_args(argv)
    if args.edition == "check":
        problems = [problem for path in (args.notebooks or lessons()) for problem in lesson_problems(path)]
        print("\n".join(problems) if problems else "every lesson is clean and in sync with its .py source")
        return 1 if problems else 0
    try:
        written = write_student_edition(args.out_dir, args.notebooks or None, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
