"""Lesson 06: classifying CIFAR-10 (builds on lesson 05) (notebooks/06_cifar10_classification.ipynb).

``figures`` - its figures and widget panels; ``checks`` - its exercises' checks.
"""
from . import checks, figures

__all__ = ["checks", "figures"]
