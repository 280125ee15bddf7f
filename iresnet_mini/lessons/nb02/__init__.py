"""Lesson 02: making a ResNet invertible (notebooks/02_making_resnets_invertible.ipynb).

``invertibility`` - the lesson's experiments; ``figures`` - its figures and widget panels;
``checks`` - its exercises' checks.
"""
from . import checks, figures, invertibility

__all__ = ["checks", "figures", "invertibility"]
