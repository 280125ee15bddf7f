"""Lesson 08: CIFAR-10 density and the log-det on a trained block (Figs. 4-5)
(notebooks/08_cifar10_density.ipynb).

``figures`` - its figures and widget panels; ``checks`` - its exercises' checks.
"""
from . import checks, figures

__all__ = ["checks", "figures"]
