"""iresnet-mini: Invertible Residual Networks (Behrmann et al., ICML 2019) and Residual Flows, for teaching.

Modules, named after the paper's ideas (imports point downwards only):

1. ``config`` (quick/full mode, seeds, device), ``lipschitz`` (spectral normalisation), ``toy`` (2D data);
2. ``blocks`` (the invertible residual block and its inverse), ``logdet`` (the estimators);
3. ``flows`` (ActNorm, Squeeze, sequential flows, bits/dim), ``models``;
4. ``data``, ``train``;
5. ``plots``, ``widgets``, ``bench``, ``exercises``.
"""
from . import blocks, config, flows, lipschitz, logdet, toy
from .config import get_device, get_mode, seed_everything, set_mode, size

__version__ = "0.1.0"
__all__ = ["blocks", "config", "flows", "lipschitz", "logdet", "toy",
           "get_device", "get_mode", "seed_everything", "set_mode", "size"]
