"""Lesson 06's exercise checks (06_cifar10_classification): each rejects a planted wrong answer."""
from __future__ import annotations

import math

from ..checks import Verdict, answers, verdict

__all__ = ["check_feature_size", "check_confusion"]


@answers('n_features', 'n_zeros')
def check_feature_size(n_features, n_zeros, preset: str = "paper", in_shape=(3, 32, 32)) -> Verdict:
    """Ex. 06.1: numbers in one image's features, and how many of them are injective zero padding."""
    from ...models import IResNetClassifier, classifier_config

    config = classifier_config(preset, in_shape)
    features = math.prod(IResNetClassifier(config).feature_shape)
    zeros = features - math.prod(in_shape)
    ok = n_features == features and n_zeros == zeros
    return verdict(ok, f"{features} numbers, {zeros} of them padding: squeezes only reshape, so the features "
                       f"have exactly as many numbers as the padded input.",
                   f"pad the {in_shape[0]} input channels to {config.channels}; a squeeze turns (C, H, W) into "
                   "(4C, H/2, W/2) and keeps C*H*W.")


@answers('true_class', 'predicted_class')
def check_confusion(true_class, predicted_class, predictions, labels, classes) -> Verdict:
    """Ex. 06.2: the most frequent confusion (true class, predicted class) among the predictions."""
    import torch

    n = len(classes)
    counts = torch.bincount(labels.cpu() * n + predictions.cpu(), minlength=n * n).view(n, n)
    counts.fill_diagonal_(0)
    top = int(counts.max())
    pairs = {(classes[i], classes[j]) for i, j in (counts == top).nonzero().tolist()}
    ok = (true_class, predicted_class) in pairs
    return verdict(ok, f"{true_class!r} taken for {predicted_class!r} {top} times, the most frequent mistake.",
                   "count, for every pair (true label i, prediction j) with i != j, how often it occurs "
                   "(a confusion matrix), and take the largest; answer with class names.")
