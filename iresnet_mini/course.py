"""Starting a lesson: one call does the set-up every notebook needs.

    device = course.setup()            # notebooks 05-08
    course.setup(threads=1)            # notebooks 01-04: tiny tensors

:func:`setup` sets the collection's plotting theme, seeds every random generator, sets the
number of CPU threads, optionally forces the mode (quick or full, see :mod:`iresnet_mini.config`)
and prints one line with the mode, the device and the versions, so that a learner who shares
a notebook's output also shares what it ran on.
"""
from __future__ import annotations

import torch

from . import data
from .config import describe, get_device, seed_everything, set_mode
from .lessons import figures

__all__ = ["setup"]


def setup(threads: int | None = None, seed: int = 0, mode: str | None = None, download: bool = True) -> torch.device:
    """Theme, seeds, CPU threads, mode and full float32 (no TF32) for a lesson; prints a summary, returns the device.

    ``threads=1`` suits lessons whose tensors are tiny (notebooks 01-04): several CPU threads then
    spend more time waiting for each other than computing, and far more so on a busy machine.
    ``None`` keeps PyTorch's default (all cores), right for the image models. ``mode`` ("quick" or
    "full") overrides ``$IRESNET_MINI_MODE`` and the hardware for this kernel. ``download`` lets the
    data loaders fetch a missing data set (md5-verified, into the data root, once; course mirrors
    first, see :func:`iresnet_mini.data.course_mirrors`); offline they stop with a message saying
    where to put the files.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None (PyTorch's default), got {threads!r}")
        torch.set_num_threads(threads)
    if mode is not None:
        set_mode(mode)
    data.allow_downloads(download)
    figures.set_theme()
    seed_everything(seed)
    # Every figure a lesson shows is computed in full float32: on recent GPUs convolutions (and, if
    # enabled, matrix products) would otherwise run in TF32 and give other digits than on a CPU.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = get_device()
    print(f"{describe()} seed={seed}")
    return device
