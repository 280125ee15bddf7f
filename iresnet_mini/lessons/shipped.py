"""Shipped lesson results: small precomputed models that let a slider show a well-trained model at once.

Some widgets would otherwise train a model on every move (notebook 01's toy ResNets,
notebook 04's 2D flows). Their models are trained once, ahead of time, by
``python -m iresnet_mini.lessons.precompute NAME`` and shipped in ``data/pretrained/lessons/``
beside a ``manifest.json`` that gives each file's sha256, the exact command that made it,
and its figures. A file is hashed and compared with the manifest before it is read, and
then read with ``torch.load(weights_only=True)`` (tensors and plain containers only)::

    content, entry = shipped.load("nb01-dynamics")

A widget says which it shows: a shipped model ("precomputed") or one trained now.
"""
from __future__ import annotations

import datetime
import functools
import io
import os
from pathlib import Path

import torch

from .. import pretrained
from ..pretrained import PretrainedError

__all__ = ["LESSONS_DIR", "FORMAT", "PretrainedError", "remake_command", "available", "load", "save", "entry",
           "parallel_map"]

LESSONS_DIR = pretrained.PRETRAINED_DIR / "lessons"
FORMAT = "iresnet-mini-lesson-results/1"


def parallel_map(fn, items, workers: int = 1, chunksize: int = 1) -> list:
    """[fn(item) for item in items], in ``workers`` spawned processes when more than one (``fn`` must be
    importable by name): how the precompute commands train their models side by side."""
    items = list(items)
    if workers <= 1:
        return [fn(item) for item in items]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, items, chunksize=chunksize)


def remake_command(name: str) -> str:
    """The command that (re)makes shipped lesson file ``name``."""
    return f"python -m iresnet_mini.lessons.precompute {name}"


def available(name: str, directory: str | os.PathLike | None = None) -> bool:
    """Whether the manifest in ``directory`` (default: the shipped one) lists ``name``."""
    return name in pretrained.manifest(directory or LESSONS_DIR)


def entry(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The manifest entry of ``name`` (command, figures, sha256), without reading the file."""
    entries = pretrained.manifest(directory or LESSONS_DIR)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise PretrainedError(f"no shipped lesson results named {name!r} in {directory or LESSONS_DIR}; shipped "
                              f"are: {known}. A missing file is restored from the repository, or remade with "
                              "python -m iresnet_mini.lessons.precompute NAME (python -m "
                              "iresnet_mini.lessons.precompute --help lists the names)")
    return entries[name]


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, directory: str, sha256: str) -> dict:
    payload, _ = pretrained.verified_file(name, directory, remake_command(name))
    content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise PretrainedError(f"{name}: not a lesson results file (format {found!r}, expected "
                              f"{FORMAT!r}); remake it: {remake_command(name)}")
    if content.get("name") != name:
        raise PretrainedError(f"{name}: the file holds the lesson results {content.get('name')!r}, not {name!r}; "
                              f"remake it: {remake_command(name)}")
    return content


def load(name: str, directory: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """(content, manifest entry) of shipped lesson results ``name``, verified by sha256 before reading.

    The content is read once per session and kept (treat it as read-only).
    """
    directory = str(Path(directory or LESSONS_DIR).resolve())
    found = entry(name, directory)
    return _load_cached(name, directory, found["sha256"]), found


def save(name: str, content: dict, command: str, metrics: dict,
         directory: str | os.PathLike | None = None, **fields) -> dict:
    """Write ``content`` (tensors and plain containers) as ``<directory>/<name>.pt`` and its manifest entry.

    Both are written atomically; ``fields`` (for instance the training time) go into the entry.
    Returns the entry.
    """
    directory = Path(directory or LESSONS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "name": name, **content}, buffer)
    payload = buffer.getvalue()
    if len(payload) > pretrained.MAX_BYTES:
        raise PretrainedError(f"{name}: {len(payload):,} bytes, more than the {pretrained.MAX_BYTES:,} "
                                         "a shipped file may have")
    record = {"file": f"{name}.pt", "sha256": pretrained.sha256sum(payload), "bytes": len(payload),
              "command": command, "metrics": metrics, **fields,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__}
    pretrained.write_checkpoint(name, payload, directory)
    pretrained.write_entry(name, record, directory)
    return record
