"""Lesson 03: the log-determinant: power series, Hutchinson and Russian roulette
(notebooks/03_log_determinant.ipynb).

``logdet_study`` - the lesson's experiments; ``figures`` - its figures and widget panels; ``checks``
- its exercises' checks.
"""
from . import checks, figures, logdet_study

__all__ = ["checks", "figures", "logdet_study"]
