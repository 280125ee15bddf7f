"""Lesson 06's figures: lesson 05's, shown for the CIFAR-10 classifiers."""
from __future__ import annotations

from ..nb05.figures import draw_classifier, plot_layer_norms, plot_reconstructions, plot_table2, plot_training_curves

__all__ = ["draw_classifier", "plot_layer_norms", "plot_reconstructions", "plot_table2", "plot_training_curves"]
