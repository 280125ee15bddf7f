"""Data sets: verified files, parsing, atomic downloads, batched augmentation, density preprocessing."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from iresnet_mini import data

MNIST_TEST = data.MNIST_FILES["test"]
CIFAR_TEST = data.CIFAR10_FILES["test"][0]


@pytest.fixture(scope="module")
def mnist_train(mnist_available):
    return data.load_mnist("train")


@pytest.fixture(scope="module")
def cifar_test(cifar_available):
    return data.load_cifar10("test")


def _link(root: Path, tmp: Path, rels) -> None:
    """Make ``tmp`` a data root whose files ``rels`` are links to the real ones."""
    for rel in rels:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).symlink_to(root / rel)


def _file_url(folder: Path) -> str:
    return folder.resolve().as_uri() + "/"


# ---------------------------------------------------------------------------------------
# Loading the real files
# ---------------------------------------------------------------------------------------

def test_mnist_train_has_60000_uint8_images_with_official_label_counts(mnist_train):
    images, labels = mnist_train
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert int(images.max()) == 255 and int(images.min()) == 0
    counts = torch.bincount(labels, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_test_split_has_10000_images(mnist_available):
    images, labels = data.load_mnist("test")
    assert images.shape == (10000, 1, 28, 28)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_cifar_test_records_parse_to_images_and_labels(cifar_test):
    images, labels = cifar_test
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert data.CIFAR10_CLASSES[int(labels[0])] == "cat" and int(labels[0]) == 3
    assert torch.bincount(labels).tolist() == [1000] * 10
    # the first record's first bytes are its red plane: row-major 32x32, channel first
    raw = np.fromfile(data.data_root() / CIFAR_TEST, dtype=np.uint8, count=data.CIFAR10_RECORD)
    assert images[0, 0, 0, :].tolist() == raw[1:33].tolist()
    assert images[0, 2, 31, 31] == raw[-1]


def test_class_names_match_the_shipped_meta_file(cifar_available):
    meta = cifar_available / data.CIFAR10_DIR / "batches.meta.txt"
    if not meta.is_file():
        pytest.skip(f"{meta} not present")
    assert tuple(meta.read_text().split()) == data.CIFAR10_CLASSES


def test_cifar_train_with_missing_batches_explains_partial_use(cifar_available):
    root = cifar_available
    if all((root / rel).is_file() for rel in data.CIFAR10_FILES["train"]):
        pytest.skip("all five CIFAR-10 training batches are present")
    with pytest.raises(data.MissingDataError, match="allow_partial=True"):
        data.load_cifar10("train")
    with pytest.warns(data.PartialDataWarning, match=r"of 5 batches"):
        images, labels = data.load_cifar10("train", allow_partial=True)
    present = sum((root / rel).is_file() for rel in data.CIFAR10_FILES["train"])
    assert images.shape == (10000 * present, 3, 32, 32) and len(labels) == len(images)


def test_normalisation_statistics_match_the_training_images(mnist_train, cifar_available):
    mnist = mnist_train[0].float() / 255
    assert mnist.mean().item() == pytest.approx(data.STATS["mnist"][0][0], abs=1e-3)
    assert mnist.std().item() == pytest.approx(data.STATS["mnist"][1][0], abs=1e-3)
    # the first training batch is a fifth of the set: its statistics agree to about 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.PartialDataWarning)
        cifar = data.load_cifar10("train", allow_partial=True)[0].float() / 255
    mean, std = data.STATS["cifar10"]
    assert torch.allclose(cifar.mean((0, 2, 3)), torch.tensor(mean), atol=0.01)
    assert torch.allclose(cifar.std((0, 2, 3)), torch.tensor(std), atol=0.01)


def test_unknown_split_or_dataset_is_rejected():
    with pytest.raises(ValueError, match="'train' and 'test'"):
        data.load_mnist("validation")
    with pytest.raises(ValueError, match="'mnist' and 'cifar10'"):
        data.load_dataset("svhn")


# ---------------------------------------------------------------------------------------
# Where the files are; missing and corrupt files
# ---------------------------------------------------------------------------------------

def test_data_root_prefers_argument_then_environment_then_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.data_root() == tmp_path / "env"
    monkeypatch.delenv(data.ENV_VAR)
    checkout = Path(data.__file__).resolve().parent.parent
    expected = checkout / "data" if (checkout / "pyproject.toml").is_file() else \
        Path.home() / ".cache" / "iresnet-mini"
    assert data.data_root() == expected


def test_missing_file_error_says_which_file_goes_where_and_its_url(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist("test", root=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, data.MissingDataError)
    assert str(tmp_path / MNIST_TEST[0]) in message
    assert data.MNIST_MIRRORS[0] + Path(MNIST_TEST[0]).name in message
    assert "download=True" in message and data.ENV_VAR in message
    with pytest.raises(data.MissingDataError, match="cifar-10-binary.tar.gz"):
        data.load_cifar10("test", root=tmp_path)


def test_modified_copy_fails_its_checksum_with_a_clear_message(mnist_available, tmp_path):
    _link(mnist_available, tmp_path, [MNIST_TEST[0]])
    bad = tmp_path / MNIST_TEST[1]
    payload = bytearray((mnist_available / MNIST_TEST[1]).read_bytes())
    payload[100] ^= 0xFF
    bad.write_bytes(bytes(payload))
    with pytest.raises(data.ChecksumError) as info:
        data.load_mnist("test", root=tmp_path)
    message = str(info.value)
    assert str(bad) in message and data.MD5[MNIST_TEST[1]] in message
    assert hashlib.md5(payload).hexdigest() in message and "download=True" in message
    assert bad.read_bytes() == payload  # never deleted or changed without download=True


def test_corrupt_file_is_moved_aside_and_downloaded_again(mnist_available, tmp_path, monkeypatch):
    root = tmp_path / "root"
    _link(mnist_available, root, [MNIST_TEST[0]])
    bad = root / MNIST_TEST[1]
    bad.write_bytes(b"not the labels")
    monkeypatch.setattr(data, "MNIST_MIRRORS", (_file_url(mnist_available / "mnist"),))
    with pytest.warns(UserWarning, match="moved it to"):
        images, labels = data.load_mnist("test", root=root, download=True)
    assert len(labels) == 10000 and len(images) == 10000
    assert bad.with_name(bad.name + ".corrupt").read_bytes() == b"not the labels"
    assert data.md5sum(bad) == data.MD5[MNIST_TEST[1]]


def test_download_true_fetches_missing_files_from_a_mirror(mnist_available, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_MIRRORS",
                        (_file_url(tmp_path / "offline"), _file_url(mnist_available / "mnist")))
    images, labels = data.load_mnist("test", root=tmp_path / "root", download=True)
    assert images.shape == (10000, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == \
        sorted(Path(rel).name for rel in MNIST_TEST)


# ---------------------------------------------------------------------------------------
# The downloader: verified before it gets its final name
# ---------------------------------------------------------------------------------------

class FakeResponse(io.BytesIO):
    """Serves ``payload`` while announcing ``length`` bytes, like an HTTP response."""

    def __init__(self, payload: bytes, length: int | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}


def _opener(payload: bytes, length: int | None = None):
    return lambda url: FakeResponse(payload, length)


GOOD = b"0123456789" * 1000
GOOD_MD5 = hashlib.md5(GOOD).hexdigest()


def test_download_writes_verified_bytes_under_the_final_name(tmp_path):
    dest = data.download_file(["https://example.invalid/f"], tmp_path / "f.gz", GOOD_MD5,
                              opener=_opener(GOOD), progress=False)
    assert dest.read_bytes() == GOOD
    assert os.listdir(tmp_path) == ["f.gz"]


@pytest.mark.parametrize("payload, length, reason", [
    (GOOD[:-1] + b"X", None, "md5"),          # corrupt payload
    (GOOD[:5000], len(GOOD), "truncated"),    # connection dropped half-way
])
def test_failed_download_leaves_nothing_under_the_final_name(tmp_path, payload, length, reason):
    with pytest.raises(data.DataError, match=reason):
        data.download_file(["https://example.invalid/f"], tmp_path / "f.gz", GOOD_MD5,
                           opener=_opener(payload, length), progress=False)
    assert os.listdir(tmp_path) == []  # no final file and no temporary left behind


def test_download_falls_back_to_the_next_url(tmp_path):
    def opener(url):
        if "first" in url:
            raise urllib.error.URLError("host unreachable")
        return FakeResponse(GOOD)

    data.download_file(["https://first.invalid/f", "https://second.invalid/f"],
                       tmp_path / "f", GOOD_MD5, opener=opener, progress=False)
    assert (tmp_path / "f").read_bytes() == GOOD


def test_download_error_lists_every_url_and_where_to_put_the_file(tmp_path):
    with pytest.raises(data.DataError) as info:
        data.download_file(["https://a.invalid/f", "https://b.invalid/f"], tmp_path / "f",
                           GOOD_MD5, opener=_opener(b"junk"), progress=False)
    message = str(info.value)
    assert "https://a.invalid/f" in message and "https://b.invalid/f" in message
    assert str(tmp_path / "f") in message


def test_cifar_tarball_extracts_only_expected_members_each_verified(cifar_available, tmp_path,
                                                                    monkeypatch):
    tarball = tmp_path / data.CIFAR10_TARBALL
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz", compresslevel=1, dereference=True) as archive:
        archive.add(cifar_available / CIFAR_TEST, arcname="cifar-10-batches-bin/test_batch.bin")
        for name, payload in [("../../evil.bin", b"evil"),
                              ("cifar-10-batches-bin/data_batch_2.bin", b"corrupt batch")]:
            member = tarfile.TarInfo(name)
            member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload))
    monkeypatch.setitem(data.MD5, data.CIFAR10_TARBALL, data.md5sum(tarball))
    images, labels = data.load_cifar10("test", root=tmp_path)
    assert images.shape == (10000, 3, 32, 32) and int(labels[0]) == 3
    with pytest.raises(data.ChecksumError, match="md5"):
        data.load_cifar10("train", root=tmp_path)
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {data.CIFAR10_TARBALL, CIFAR_TEST}
    assert not (tmp_path.parent / "evil.bin").exists()


def test_malformed_files_are_rejected(tmp_path):
    idx = tmp_path / "bad.gz"
    with gzip.open(idx, "wb") as handle:
        handle.write((1234).to_bytes(4, "big"))
    with pytest.raises(data.DataError, match="magic number 1234"):
        data.read_idx(idx)
    batch = tmp_path / "bad.bin"
    batch.write_bytes(bytes(3000))
    with pytest.raises(data.DataError, match="3073-byte"):
        data.read_cifar_batch(batch)


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------

def _images(n=64, c=3, size=8, seed=0):
    """Images with no zero pixels, so zero fill from padding is visible."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def test_random_flip_mirrors_about_half_of_the_images():
    x = _images()
    out = data.random_flip(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all()
    assert 10 < int(flipped.sum()) < 54


def test_random_crop_is_a_shift_with_zero_fill():
    x, pad = _images(), 2
    out = data.random_crop(x, torch.Generator().manual_seed(2), padding=pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    size, offsets = x.shape[-1], []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + size, dx:dx + size])]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 10  # many different shifts in one batch


def test_cifar_augment_keeps_shape_and_is_reproducible_from_the_generator():
    x = _images(size=32)
    a = data.cifar_augment(x, torch.Generator().manual_seed(3))
    b = data.cifar_augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)


# ---------------------------------------------------------------------------------------
# TensorLoader
# ---------------------------------------------------------------------------------------

def _loader(n=103, batch_size=10, **kwargs):
    images = _images(n=n, size=32)
    return data.TensorLoader(images, torch.arange(n), batch_size, **kwargs)


def test_loader_yields_every_sample_exactly_once_per_epoch():
    loader = _loader()
    for _ in range(2):
        seen = torch.cat([y for _, y in loader])
        assert sorted(seen.tolist()) == list(range(103))
    assert len(loader) == 11 and len(list(loader)) == 11


def test_loader_drop_last_yields_only_full_batches():
    loader = _loader(drop_last=True)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == 10 and sizes == [10] * 10


def test_loader_order_and_augmentation_depend_only_on_seed_and_epoch():
    def epochs(loader, count):
        return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(count)]

    first = epochs(_loader(seed=7, augment=data.cifar_augment), 3)
    resumed = _loader(seed=7, augment=data.cifar_augment)
    resumed.load_state_dict({"seed": 7, "epoch": 2})
    again = epochs(resumed, 1)[0]
    for (xa, ya), (xb, yb) in zip(first[2], again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order = [torch.cat([y for _, y in epoch]) for epoch in first]
    assert not torch.equal(order[0], order[1])
    other_seed = torch.cat([y for _, y in _loader(seed=8)])
    assert not torch.equal(order[0], other_seed)


def test_loader_without_shuffle_keeps_the_order_and_converts_to_unit_floats():
    loader = _loader(shuffle=False)
    x, y = next(iter(loader))
    assert y.tolist() == list(range(10))
    assert x.dtype == torch.float32 and 0 < x.min() and x.max() <= 1
    assert torch.allclose(x * 255, loader.images[:10].float())


def test_normalize_standardises_each_channel():
    images = _images(n=512, size=8)
    unit = images.float() / 255
    mean, std = unit.mean((0, 2, 3)).tolist(), unit.std((0, 2, 3)).tolist()
    out = data.Normalize(mean, std)(images)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match="positive std"):
        data.Normalize((0.5,), (0.0,))


def test_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="labels"):
        data.TensorLoader(torch.zeros(4, 1, 2, 2), torch.zeros(3), 2)
    with pytest.raises(ValueError, match="batch_size"):
        data.TensorLoader(torch.zeros(4, 1, 2, 2), torch.zeros(4), 0)


# ---------------------------------------------------------------------------------------
# Density preprocessing
# ---------------------------------------------------------------------------------------

def test_dequantize_stays_in_the_bin_of_each_pixel_value():
    k = torch.arange(256, dtype=torch.uint8).repeat(200)
    x = data.dequantize(k, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() < 1
    assert torch.equal(torch.floor(x * 256).long(), k.long())
    noise = x * 256 - k.float()
    assert noise.mean().item() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(TypeError, match="uint8"):
        data.dequantize(k.float())


def test_logit_transform_logdet_is_the_exact_jacobian_and_inverts():
    x = data.dequantize(_images(n=4, size=4), torch.Generator().manual_seed(0)).double()
    x.requires_grad_(True)
    y, logdet = data.logit_transform(x, alpha=0.05)
    (slope,) = torch.autograd.grad(y.sum(), x)  # elementwise map: Jacobian is diagonal
    assert torch.allclose(logdet, slope.log().flatten(1).sum(1))
    assert torch.allclose(data.logit_inverse(y.detach(), alpha=0.05), x.detach())
    with pytest.raises(ValueError, match="alpha"):
        data.logit_transform(x, alpha=0.5)
