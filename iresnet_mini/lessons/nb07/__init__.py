"""Lesson 07: density estimation on MNIST (Table 4) (notebooks/07_mnist_density.ipynb).

``density`` - the lesson's experiments; ``figures`` - its figures and widget panels; ``checks`` -
its exercises' checks.
"""
from . import checks, density, figures

__all__ = ["checks", "density", "figures"]
