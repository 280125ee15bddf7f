"""The exercise checks: an open exercise says "not answered yet" and never raises; a check needs an answer."""
from __future__ import annotations

import inspect

import pytest

from iresnet_mini import exercises

CHECKS = {name: fn for name, fn in vars(exercises).items() if name.startswith("check_") and callable(fn)}


def test_every_exercise_check_knows_its_answer_parameters():
    undecorated = [name for name, fn in CHECKS.items() if not hasattr(fn, "__wrapped__")]
    assert not undecorated, f"checks without @answers(...): {undecorated}"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_a_placeholder_answer_is_reported_as_not_answered(name, capsys):
    check = CHECKS[name]
    parameters = inspect.signature(check).parameters
    required = [p for p in parameters.values() if p.default is inspect.Parameter.empty]
    assert check(*[None] * len(required)) is False
    assert capsys.readouterr().out.startswith(exercises.NOT_ANSWERED)
    assert check(*[...] * len(required)) is False  # the other placeholder a stub may hold
    assert capsys.readouterr().out.startswith(exercises.NOT_ANSWERED)


def test_a_wrong_answer_is_not_yet_and_a_right_one_correct(capsys):
    assert exercises.check_min_slope(0.5) is False
    assert capsys.readouterr().out.startswith(exercises.NOT_YET)
    assert exercises.check_min_slope(0.5 ** 8) is True
    assert capsys.readouterr().out.startswith(exercises.CORRECT)


def test_answers_refuses_a_parameter_the_check_does_not_have():
    with pytest.raises(TypeError, match="no parameter"):
        @exercises.answers("answr")
        def check_typo(answer):
            return True
