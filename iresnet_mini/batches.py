"""Batches of images on the device: the loader, the augmentations, and what the models see.

A classifier sees normalised images (:class:`Normalize`, with each data set's :data:`STATS`); a
density model sees dequantised images (:func:`dequantize`), mapped to its input space by
:func:`preprocess` (the logit transform or x - 0.5, with its log-determinant). :class:`TensorLoader`
keeps a whole data set on the device and yields shuffled, augmented batches (a shard of them per
process under torchrun). ``iresnet_mini.data`` re-exports all of it.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

__all__ = ["STATS", "random_flip", "random_crop", "cifar_augment", "to_unit", "Normalize", "dequantize", "logit_transform", "logit_inverse", "Transform", "TensorLoader", "preprocess", "postprocess"]


# Per-channel mean and standard deviation of the training images in [0, 1] (for classifiers).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of a batch (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, generator: torch.Generator | None = None,
                padding: int = 4) -> torch.Tensor:
    """Zero-pad a batch (B, C, H, W) by ``padding`` and cut an H x W window at a random offset per image."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b, 1), generator=generator, device=x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def cifar_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The CIFAR-10 recipe of the paper's classifiers: 4-pixel zero-padded random crop, random flip."""
    return random_flip(random_crop(x, generator, padding=4), generator)


def to_unit(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images to float32 in [0, 1] (k / 255)."""
    return x.float() / 255


class Normalize:
    """uint8 images to float in [0, 1], then per-channel ``(x - mean) / std`` (for classifiers)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"need one positive std per mean, got mean={mean} std={std}")
        self.mean, self.std = tuple(mean), tuple(std)
        self._tensors: dict = {}  # (device, dtype) -> (mean, std): no host-to-device copy per batch

    @classmethod
    def for_dataset(cls, name: str) -> "Normalize":
        """The training-set statistics of ``"mnist"`` or ``"cifar10"`` (:data:`STATS`)."""
        if name not in STATS:
            raise ValueError(f"no statistics for {name!r}: known are {', '.join(STATS)}")
        return cls(*STATS[name])

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_unit(x)
        key = (x.device, x.dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(torch.tensor(v, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
                                       for v in (self.mean, self.std))
        mean, std = self._tensors[key]
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of 8-bit images: ``(k + u) / 256`` in [0, 1), u ~ U[0, 1) (paper Sec. 5).

    u takes 2**16 equally spaced values, so every result is exact in float32 and stays below 1
    (float32 has 24 bits: (k * 2**16 + j) / 2**24). The model's log-density of the dequantised
    image gives bits/dim = -log p(x) / (D ln 2) + 8.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"dequantize expects uint8 images (0..255), got {x.dtype}")
    noise = torch.randint(0, 1 << 16, x.shape, generator=generator, device=x.device, dtype=torch.int32)
    return (x.to(torch.int32) * (1 << 16) + noise).float() / (1 << 24)


def logit_transform(x: torch.Tensor, alpha: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = logit(alpha + (1 - 2 alpha) x)`` for x in [0, 1), and its exact log|det dy/dx| per sample.

    Used before a flow on images (Real NVP's preprocessing). With x = (k + u)/256 the bits/dim
    of the 8-bit data are ``-(log p(y) + logdet) / (D ln 2) + 8``, D = pixels x channels.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    logdet = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    return y, logdet


def logit_inverse(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Inverse of :func:`logit_transform`: back to [0, 1) image space (for samples)."""
    return (torch.sigmoid(y) - alpha) / (1 - 2 * alpha)


Transform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


class TensorLoader:
    """Mini-batches from a whole uint8 data set held on one device; seeded, resumable shuffling.

    Each ``iter()`` uses epoch ``self.epoch`` and then advances it; ``set_epoch(e)`` picks the
    epoch of the next pass. The order and the augmentation of epoch ``e`` depend only on
    ``(seed, e)`` (and the device), so a resumed run sees the same batches. Batches are
    ``(transform(augment(x)), y)``: ``augment`` works on uint8 (e.g. :func:`cifar_augment`),
    ``transform`` makes floats (:func:`to_unit`, :class:`Normalize`, :func:`dequantize`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0,
                 augment: Transform | None = None, transform: Transform = to_unit,
                 device: str | torch.device | None = None, shard: tuple[int, int] = (0, 1)):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        rank, world = shard
        if not (isinstance(world, int) and world >= 1 and isinstance(rank, int) and 0 <= rank < world):
            raise ValueError(f"shard must be (rank, world size) with 0 <= rank < world size, got {shard!r}")
        device = torch.device(device) if device is not None else images.device
        self.images, self.labels = images.to(device), labels.to(device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch = seed, 0
        self.augment, self.transform = augment, transform
        self.rank, self.world_size = rank, world

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _shard_size(self) -> int:
        """Images of this rank's shard: with drop_last every rank gets the same number (the rest is dropped)."""
        n = len(self.images)
        if self.drop_last:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (for resuming a run)."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def generator(self, epoch: int, rank: int | None = None) -> torch.Generator:
        """The random stream of one epoch, seeded from ``(seed, epoch)`` (and ``rank``, for per-rank noise)."""
        entropy = [self.seed, epoch] if rank is None else [self.seed, epoch, rank]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        return torch.Generator(device=self.device).manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self.generator(self.epoch)  # the permutation: the same on every rank
        noise = generator if self.world_size == 1 else self.generator(self.epoch, self.rank)
        self.epoch += 1
        n = len(self.images)
        order = (torch.randperm(n, generator=generator, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        # this rank's shard: every world_size-th image of the permutation, so that the ranks' batches
        # at one step together are the permutation's next world_size * batch_size images
        order = order[self.rank:self.world_size * self._shard_size() if self.drop_last else n:self.world_size]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.images[index]
            if self.augment is not None:
                x = self.augment(x, noise)
            yield self.transform(x, noise), self.labels[index]


def preprocess(x: torch.Tensor, logit_alpha: float | None):
    """Dequantised images in [0, 1) to the flow's input y, with log|det dy/dx| per sample."""
    if logit_alpha is None:
        return x - 0.5, x.new_zeros(x.shape[0])
    return logit_transform(x, logit_alpha)


def postprocess(y: torch.Tensor, logit_alpha: float | None) -> torch.Tensor:
    """The flow's space back to image space [0, 1) (inverse of :func:`preprocess`; clamp samples to show them)."""
    return y + 0.5 if logit_alpha is None else logit_inverse(y, logit_alpha)
