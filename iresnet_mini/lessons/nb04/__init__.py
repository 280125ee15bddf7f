"""Lesson 04: i-ResNet flows on 2D densities (Fig. 2) (notebooks/04_2d_densities.ipynb).

``toyflows`` - the lesson's experiments; ``figures`` - its figures and widget panels; ``checks`` -
its exercises' checks.
"""
from . import checks, figures, toyflows

__all__ = ["checks", "figures", "toyflows"]
