"""MNIST and CIFAR-10: where they live, verified downloads, reading them (batches: ``iresnet_mini.batches``).

Where the files live (the *data root*), in order of priority:

1. the ``root`` argument of a loader;
2. the environment variable ``IRESNET_MINI_DATA``;
3. ``<checkout>/data`` when the package runs from a source checkout (a ``pyproject.toml`` next
   to the ``iresnet_mini`` folder), else ``~/.cache/iresnet-mini``.

Layout under the root, exactly as the official downloads unpack::

    mnist/train-images-idx3-ubyte.gz   mnist/train-labels-idx1-ubyte.gz
    mnist/t10k-images-idx3-ubyte.gz    mnist/t10k-labels-idx1-ubyte.gz
    cifar10/cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin

Every file is checked against its md5 (:data:`MD5`) before it is used; a download is written
to a temporary file and gets its final name only once it is verified. Only the binary
CIFAR-10 version is read (plain bytes, no unpickling).
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import tarfile
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .batches import *  # noqa: F401,F403  (batches, augmentations and transforms: data.X as before)
from .files import atomic_open

ENV_VAR = "IRESNET_MINI_DATA"
# Course-local mirrors, tried before the official sources: base URLs of folders laid out like the
# data root (mnist/..., cifar10/cifar-10-batches-bin/...), separated by spaces or commas.
MIRRORS_ENV_VAR = "IRESNET_MINI_MIRRORS"

# One place for every checksum: path relative to the data root -> md5 of the official file.
MD5: dict[str, str] = {
    "mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "cifar10/cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
    "cifar10/cifar-10-batches-bin/data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "cifar10/cifar-10-batches-bin/data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "cifar10/cifar-10-batches-bin/data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "cifar10/cifar-10-batches-bin/data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "cifar10/cifar-10-batches-bin/data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "cifar10/cifar-10-batches-bin/test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)
CIFAR10_TARBALL = "cifar10/cifar-10-binary.tar.gz"
CIFAR10_DIR = "cifar10/cifar-10-batches-bin"
CIFAR10_FILES = {
    "train": tuple(f"{CIFAR10_DIR}/data_batch_{i}.bin" for i in range(1, 6)),
    "test": (f"{CIFAR10_DIR}/test_batch.bin",),
}
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 red, 1024 green, 1024 blue bytes
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CLASSES = {"mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}

SPLITS = ("train", "test")


class DataError(Exception):
    """A data set file is missing, corrupt or could not be downloaded."""


class MissingDataError(DataError, FileNotFoundError):
    """A data set file is not on disk and downloading was not asked for."""


class ChecksumError(DataError):
    """A file's md5 differs from the official one (corrupt or incomplete)."""


class PartialDataWarning(UserWarning):
    """Only some of the CIFAR-10 training batches are present and are used."""


# ----------------------------------------------------------------------------------------
# Where the files are, and are they the right ones
# ----------------------------------------------------------------------------------------

def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$IRESNET_MINI_DATA``, else ``<checkout>/data`` or ``~/.cache/iresnet-mini``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / "data"
    return Path.home() / ".cache" / "iresnet-mini"


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# (resolved path, size, mtime_ns) -> md5: each file is hashed once per process while unchanged.
_md5_seen: dict[tuple[str, int, int], str] = {}


def _cached_md5(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _md5_seen:
        _md5_seen[key] = md5sum(path)
    return _md5_seen[key]


def verify(path: Path, expected_md5: str) -> None:
    """Raise :class:`ChecksumError` (saying what to do) unless ``path`` has the expected md5."""
    actual = _cached_md5(path)
    if actual != expected_md5:
        raise ChecksumError(
            f"{path} is corrupt or incomplete: its md5 is {actual}, expected {expected_md5}. "
            f"Replace it by the official file, or load again with download=True, which moves "
            f"it to {path.name}.corrupt and fetches a fresh copy."
        )


def _missing_message(rel: str, root: Path) -> str:
    """Which file to put where, and where it comes from."""
    if rel.startswith("mnist/"):
        source = " or ".join(mirror + Path(rel).name for mirror in MNIST_MIRRORS)
        where = f"put the official file at {root / rel} (from {source})"
    else:
        where = (f"put the official file at {root / rel}, or just the archive at "
                 f"{root / CIFAR10_TARBALL} (unpacked on first use), from {CIFAR10_URLS[0]}")
    return (f"missing data file {rel}: {where}; or pass download=True to fetch it; or set "
            f"{ENV_VAR} to a folder that holds mnist/ and cifar10/ (data root now: {root}).")


def _move_aside(path: Path) -> Path:
    """Rename a corrupt file to ``<name>.corrupt`` (numbered if taken), never deleting it."""
    target, n = path.with_name(path.name + ".corrupt"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.corrupt.{n}"), n + 1
    os.replace(path, target)
    warnings.warn(f"{path} failed its md5 check; moved it to {target} and downloading again")
    return target


# ----------------------------------------------------------------------------------------
# Downloading (atomic, verified before use)
# ----------------------------------------------------------------------------------------

_download_default = False


def allow_downloads(allowed: bool = True) -> None:
    """Make loaders called without ``download=`` fetch missing files (lessons do: ``course.setup``)."""
    global _download_default
    _download_default = bool(allowed)


def _download(download: bool | None) -> bool:
    return _download_default if download is None else bool(download)


def course_mirrors() -> list[str]:
    """The mirrors of ``$IRESNET_MINI_MIRRORS``, each ending in "/" (tried before the official sources)."""
    text = os.environ.get(MIRRORS_ENV_VAR, "")
    return [url if url.endswith("/") else url + "/" for url in text.replace(",", " ").split()]


def _open_url(url: str):
    return urllib.request.urlopen(url, timeout=60)


def download_file(urls: Sequence[str], dest: str | os.PathLike, md5: str,
                  opener: Callable = _open_url, progress: bool = True) -> Path:
    """Fetch the first URL that works into ``dest``; it gets its final name only once its md5 is right."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, md5, opener, progress)
            return dest
        except (OSError, DataError, http.client.HTTPException) as error:  # URLError, HTTPError: OSErrors
            failures.append(f"  {url}: {type(error).__name__}: {error}")
    raise DataError(f"could not download {dest.name}:\n" + "\n".join(failures)
                    + f"\nDownload it by hand and put it at {dest}.")


def _fetch(source: str, dest: Path, md5: str, opener: Callable, progress: bool) -> None:
    """Copy ``opener(source)`` to ``dest`` through a temporary file, renamed only once the md5 is right."""
    digest, written = hashlib.md5(), 0
    with atomic_open(dest) as out, opener(source) as response:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        # still inside atomic_open: an error here deletes the temporary file, dest stays as it was
        if total is not None and written != total:
            raise DataError(f"truncated download: got {written} of {total} bytes")
        if digest.hexdigest() != md5:
            raise ChecksumError(f"{source} gave bytes with md5 {digest.hexdigest()}, expected {md5}")


def _extract_cifar(tarball: Path, root: Path, wanted: Sequence[str]) -> None:
    """Copy the wanted ``.bin`` members out of the tarball, each verified, nothing else written."""
    names = {rel[len("cifar10/"):]: rel for rel in wanted}  # member name -> path under root
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            rel = names.get(member.name)
            if rel is None or not member.isfile():
                continue
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fetch(f"{tarball}:{member.name}", dest, MD5[rel],
                   lambda _: archive.extractfile(member), progress=False)
    missing = [rel for rel in wanted if not (root / rel).is_file()]
    if missing:
        raise DataError(f"{tarball} does not contain {', '.join(missing)}; is it the official "
                        f"cifar-10-binary.tar.gz?")


def _usable(rel: str, root: Path, download: bool) -> bool:
    """Is ``root/rel`` present and verified? A corrupt file raises, or is moved aside to re-download."""
    path = root / rel
    if not path.is_file():
        return False
    try:
        verify(path, MD5[rel])
        return True
    except ChecksumError:
        if not download:
            raise
        _move_aside(path)
        return False


def _ensure(rels: Sequence[str], root: Path, download: bool) -> None:
    """Make sure every file in ``rels`` is under ``root`` and verified; fetch what is missing if allowed.

    A file is fetched from the course mirrors first (``$IRESNET_MINI_MIRRORS``, by its path under
    the data root), then from the official sources: MNIST's mirrors, or the CIFAR-10 archive,
    which is unpacked. Every file is md5-verified before it gets its name.
    """
    missing = [rel for rel in rels if not _usable(rel, root, download)]
    from_tarball = [rel for rel in missing if rel.startswith("cifar10/")]
    if from_tarball and (root / CIFAR10_TARBALL).is_file() and _usable(CIFAR10_TARBALL, root, download):
        _extract_cifar(root / CIFAR10_TARBALL, root, from_tarball)
        missing = [rel for rel in missing if rel not in from_tarball]
    if missing and not download:
        raise MissingDataError(_missing_message(missing[0], root))
    mirrors = course_mirrors()
    cifar = []
    for rel in missing:
        in_archive = rel.startswith("cifar10/")  # officially only inside cifar-10-binary.tar.gz
        if in_archive and not mirrors:
            cifar.append(rel)
            continue
        official = [] if in_archive else [mirror + Path(rel).name for mirror in MNIST_MIRRORS]
        try:
            download_file([mirror + rel for mirror in mirrors] + official, root / rel, MD5[rel])
        except DataError:
            if not in_archive:
                raise
            cifar.append(rel)  # not on the course mirrors: from the official archive
    if cifar:
        if not _usable(CIFAR10_TARBALL, root, True):
            download_file([mirror + CIFAR10_TARBALL for mirror in mirrors] + list(CIFAR10_URLS),
                          root / CIFAR10_TARBALL, MD5[CIFAR10_TARBALL])
        _extract_cifar(root / CIFAR10_TARBALL, root, cifar)


# ----------------------------------------------------------------------------------------
# Parsing (numpy, no pickle)
# ----------------------------------------------------------------------------------------

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """A gzip-compressed IDX file (MNIST) as a uint8 array: magic 2051 images, 2049 labels."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (2049, 2051):
        raise DataError(f"{path} is not an IDX file of uint8 labels (2049) or images (2051): "
                        f"magic number {magic}")
    ndim = magic - 2048
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise DataError(f"{path} holds {data.size} bytes of data, its header says {shape}")
    return data.reshape(shape)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 binary batch: images (N, 3, 32, 32) uint8 and labels (N,) from 3073-byte records."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % CIFAR10_RECORD:
        raise DataError(f"{path} has {raw.size} bytes, not a whole number of "
                        f"{CIFAR10_RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    if labels.max(initial=0) >= len(CIFAR10_CLASSES):
        raise DataError(f"{path} has label {labels.max()}; CIFAR-10 labels are 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: allowed are 'train' and 'test'")


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.require(images, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def load_mnist(split: str = "train", root: str | os.PathLike | None = None,
               download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as images (N, 1, 28, 28) uint8 and labels (N,) int64.

    ``download=None`` follows :func:`allow_downloads` (off, unless a lesson turned it on).
    """
    _check_split(split)
    download = _download(download)
    root = data_root(root)
    rels = MNIST_FILES[split]
    _ensure(rels, root, download)
    images, labels = (read_idx(root / rel) for rel in rels)
    if len(images) != len(labels):
        raise DataError(f"{rels[0]} has {len(images)} images but {rels[1]} {len(labels)} labels")
    return _as_tensors(images[:, None], labels)


def load_cifar10(split: str = "train", root: str | os.PathLike | None = None,
                 download: bool | None = None, allow_partial: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as images (N, 3, 32, 32) uint8 and labels (N,) int64.

    ``allow_partial=True`` trains on whichever of the five training batches are present
    (with a :class:`PartialDataWarning` saying how many images that is), downloading only
    when none is.
    """
    _check_split(split)
    download = _download(download)
    root = data_root(root)
    rels = list(CIFAR10_FILES[split])
    if split == "train" and (allow_partial or not download) and not (root / CIFAR10_TARBALL).is_file():
        rels = _partial_train_batches(rels, root, allow_partial)  # allow_partial: what is there, no download
    _ensure(rels, root, download)
    parts = [read_cifar_batch(root / rel) for rel in rels]
    return _as_tensors(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _partial_train_batches(rels: list[str], root: Path, allow_partial: bool) -> list[str]:
    """The training batches to read when some (not all) are on disk: an error, or a warning."""
    present = [rel for rel in rels if (root / rel).is_file()]
    if not present or len(present) == len(rels):
        return rels
    if not allow_partial:
        missing = [Path(rel).name for rel in rels if rel not in present]
        raise MissingDataError(
            f"CIFAR-10 train needs all five batches, but {', '.join(missing)} are missing under "
            f"{root / CIFAR10_DIR} (found {len(present) * 10_000:,} of 50,000 images). Pass "
            f"allow_partial=True to use only the batches present, download=True to fetch the "
            f"rest, or put the official files there (from {CIFAR10_URLS[0]})."
        )
    warnings.warn(
        f"CIFAR-10 train: using {len(present)} of {len(rels)} batches "
        f"({len(present) * 10_000:,} of {len(rels) * 10_000:,} images): "
        f"{', '.join(Path(rel).name for rel in present)}", PartialDataWarning, stacklevel=3)
    return present


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 download: bool | None = None, allow_partial: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``load_mnist`` or ``load_cifar10`` by name (``"mnist"`` or ``"cifar10"``)."""
    if name == "mnist":
        return load_mnist(split, root, download)
    if name == "cifar10":
        return load_cifar10(split, root, download, allow_partial)
    raise ValueError(f"unknown data set {name!r}: allowed are 'mnist' and 'cifar10'")


# ----------------------------------------------------------------------------------------
# Batched augmentation and preprocessing (tensor ops on the data's device)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Batches from tensors held on the device
# ----------------------------------------------------------------------------------------


# --- the density models' input: dequantised images to the flow's space and back ----------


