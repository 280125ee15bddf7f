"""Lesson 06: classifying CIFAR-10 (builds on lesson 05) (notebooks/06_cifar10_classification.ipynb).

``figures`` - its figures and widget panels; ``checks`` - its exercises' checks; ``table3`` - the coupling
classifier beside the i-ResNet (the paper's Table 3 at laptop scale).
"""
from . import checks, figures, table3

__all__ = ["checks", "figures", "table3"]
