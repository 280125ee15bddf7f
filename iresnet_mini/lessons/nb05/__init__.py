"""Lesson 05: classifying MNIST with an i-ResNet (Table 2, Fig. 3)
(notebooks/05_mnist_classification.ipynb).

``classification`` - the lesson's experiments; ``figures`` - its figures and widget panels;
``checks`` - its exercises' checks.
"""
from . import checks, classification, figures

__all__ = ["checks", "classification", "figures"]
