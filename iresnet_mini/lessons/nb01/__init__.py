"""Lesson 01: ResNets as dynamics: folding vs bijective (notebooks/01_resnet_dynamics.ipynb).

``dynamics`` - the lesson's experiments; ``figures`` - its figures and widget panels; ``checks`` -
its exercises' checks.
"""
from . import checks, dynamics, figures

__all__ = ["checks", "dynamics", "figures"]
