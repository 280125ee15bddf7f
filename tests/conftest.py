"""Test-wide settings: real data if it is beside the checkout, quick mode, headless plots."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Read the real data sets from a sibling shared/data folder unless a data root is chosen.
if not os.environ.get("IRESNET_MINI_DATA") and SHARED_DATA.is_dir():
    os.environ["IRESNET_MINI_DATA"] = str(SHARED_DATA)
# Tests (and notebooks they execute) run at CPU size unless a mode is chosen explicitly.
os.environ.setdefault("IRESNET_MINI_MODE", "quick")
# OpenMP threads that spin while waiting make small ops many times slower on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
matplotlib.use("Agg")

import torch  # noqa: E402

from iresnet_mini import data, models  # noqa: E402  (after the environment is set)


def _require(rels: list[str], what: str) -> Path:
    root = data.data_root()
    missing = [rel for rel in rels if not (root / rel).is_file()]
    if missing:
        pytest.skip(f"{what} not found under the data root {root} (missing {', '.join(missing)}); "
                    f"see data/README.md, or set IRESNET_MINI_DATA")
    return root


@pytest.fixture(scope="session")
def mnist_available() -> Path:
    """The data root, when all four MNIST files are there; otherwise the test is skipped."""
    return _require([*data.MNIST_FILES["train"], *data.MNIST_FILES["test"]], "MNIST")


@pytest.fixture(scope="session")
def cifar_available() -> Path:
    """The data root, when the CIFAR-10 test batch and at least data_batch_1 are there; else skip."""
    return _require([*data.CIFAR10_FILES["test"], data.CIFAR10_FILES["train"][0]], "CIFAR-10")


@pytest.fixture(scope="session")
def tiny_classifier():
    """Factory: a tiny i-ResNet classifier, ActNorm initialised on random images, in eval mode.

    ``scale`` multiplies every convolution's weight (a vanilla network with scale > 1 expands).
    """
    def make(coeff=0.9, in_shape=(1, 28, 28), scale=1.0):
        torch.manual_seed(0)
        model = models.IResNetClassifier(models.classifier_config("tiny", in_shape, coeff=coeff))
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 4:
                    p.mul_(scale)
            model.train()  # ActNorm's data-dependent initialisation, first power-iteration vectors
            model(torch.randn(16, *in_shape, generator=torch.Generator().manual_seed(0)))
        return model.eval()
    return make


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: small models gain nothing from more, and on a busy CPU two
    threads stall each other. Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
