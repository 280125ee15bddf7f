"""How the exercises' checks report: a verdict printed, a placeholder recognised, a learner's
function called safely. Each lesson's own checks are in ``lessons/nbNN/checks.py``.
"""
from __future__ import annotations

import functools
import inspect
import math

import torch

__all__ = ["CORRECT", "NOT_YET", "NOT_ANSWERED", "Verdict", "verdict", "not_answered", "answers", "close_to"]


CORRECT, NOT_YET, NOT_ANSWERED = "Correct: ", "Not yet: ", "Not answered yet: "


class Verdict:
    """A check's outcome, true when the answer is right.

    It behaves like the bool it holds (``if check(...)``, ``assert check(...)``, ``== True``) but
    shows nothing as a cell's last value: the check has already printed its verdict, and a
    notebook would otherwise add a bare ``True`` or ``False`` under it.
    """

    __slots__ = ("ok",)

    def __init__(self, ok: bool):
        self.ok = bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other) -> bool:
        return self.ok == bool(other) if isinstance(other, (bool, Verdict)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ok)

    def __repr__(self) -> str:
        return f"Verdict({self.ok})"

    def _ipython_display_(self) -> None:
        """Display nothing (IPython calls this instead of showing the repr)."""


def verdict(ok: bool, success: str, hint: str) -> Verdict:
    """Print a friendly verdict; returns whether ok, as a :class:`Verdict`."""
    print((CORRECT + success) if ok else (NOT_YET + hint))
    return Verdict(ok)


def not_answered(what: str = "replace the placeholder (None or ...) in the cell with your answer") -> Verdict:
    """Print that the exercise is still open; returns a false :class:`Verdict` (an open exercise is not an error)."""
    print(NOT_ANSWERED + what + ", then run the cell again.")
    return Verdict(False)


def _is_placeholder(value) -> bool:
    return value is None or value is Ellipsis


def answers(*names: str):
    """Decorator: the check reports 'not answered yet' while any of the named arguments is None or ``...``."""
    def decorate(check):
        signature = inspect.signature(check)
        missing = [name for name in names if name not in signature.parameters]
        if missing:
            raise TypeError(f"{check.__name__} has no parameter(s) {missing}")

        @functools.wraps(check)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            if any(_is_placeholder(bound.arguments.get(name)) for name in names):
                return not_answered(f"set {', '.join(names)} (still None)")
            return check(*args, **kwargs)
        return checked
    return decorate


def close_to(value, target: float, rtol: float = 1e-2, atol: float = 1e-8) -> bool:
    """True when value is a finite number within rtol/atol of target."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and math.isclose(value, target, rel_tol=rtol, abs_tol=atol)


def _call(fn, *args):
    """(result, None) or (None, a verdict already printed) for a learner's function."""
    try:
        result = fn(*args)
    except NotImplementedError:
        return None, not_answered(f"write the body of {getattr(fn, '__name__', 'your function')}")
    except Exception as error:  # the learner's code: report, do not crash the notebook
        return None, verdict(False, "", f"your function raised {type(error).__name__}: {error}")
    if _is_placeholder(result):
        return None, not_answered(f"write the body of {getattr(fn, '__name__', 'your function')} (it returns None)")
    return result, None


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def _matches(result, expected: torch.Tensor, rtol: float = 1e-8, atol: float = 1e-10) -> bool:
    """Is a learner's tensor (or numbers) the package's ``expected``, shape and values?"""
    try:
        result = torch.as_tensor(result.detach() if isinstance(result, torch.Tensor) else result,
                                 dtype=expected.dtype)
    except (TypeError, ValueError, RuntimeError):
        return False
    return result.shape == expected.shape and bool(torch.allclose(result, expected, rtol=rtol, atol=atol))
