"""The facts module: the papers' numbers with their sources, the targets, and the README written from them."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iresnet_mini import facts

REPO = Path(__file__).resolve().parent.parent


def test_table2_numbers_by_coefficient():
    assert facts.paper_error("mnist", 0.9) == 0.40
    assert facts.paper_error("cifar10", None) == 6.69
    assert facts.paper_error("cifar10", 0.5) > facts.paper_error("cifar10", 0.9)
    assert facts.paper_error("mnist", None) == 0.38 and facts.TABLE2.rows["mnist"]["ResNet-164"] is None
    with pytest.raises(ValueError, match="no column 'c=0.3'"):
        facts.paper_error("mnist", 0.3)
    with pytest.raises(ValueError, match="no data set"):
        facts.paper_error("svhn", 0.9)


def test_table4_is_the_i_resnet_papers_and_residual_flows_are_credited_to_their_own_paper():
    assert facts.TABLE4.rows == {"mnist": {"Real NVP": 1.06, "Glow": 1.05, "FFJORD": 0.99, "i-ResNet": 1.06},
                                 "cifar10": {"Real NVP": 3.49, "Glow": 3.35, "FFJORD": 3.40, "i-ResNet": 3.45}}
    assert "Invertible Residual Networks" in facts.TABLE4.source
    assert facts.RESIDUAL_FLOWS_BITS.rows == {"mnist": {"Residual Flow": 0.97}, "cifar10": {"Residual Flow": 3.28}}
    assert "Residual Flows for Invertible Generative Modeling" in facts.RESIDUAL_FLOWS_BITS.source
    assert facts.paper_bits_per_dim("cifar10") == 3.45
    assert facts.paper_bits_per_dim("mnist", "Residual Flow") == 0.97
    assert facts.bits_per_dim_references("mnist")["Residual Flow (Chen et al. 2019)"] == 0.97
    with pytest.raises(ValueError, match="no bits/dim for data set"):
        facts.paper_bits_per_dim("svhn")
    with pytest.raises(ValueError, match="known are"):
        facts.paper_bits_per_dim("mnist", "PixelCNN")


def test_the_mnist_comparability_note_gives_the_official_models_dimensions():
    assert "3 x 32 x 32 = 3072" in facts.NOTES["mnist_density_dims"] and "784" in facts.NOTES["mnist_density_dims"]


def test_targets_know_which_way_is_better():
    assert facts.TARGETS["mnist_cpu_accuracy"].met_by(99.53)
    assert not facts.TARGETS["mnist_cpu_accuracy"].met_by(99.3)
    assert facts.TARGETS["mnist_cpu_bits_per_dim"].met_by(1.25)
    assert not facts.TARGETS["mnist_cpu_bits_per_dim"].met_by(1.361)
    assert facts.TARGETS["cifar10_cpu_accuracy"].met_by(75.0) and not facts.TARGETS["cifar10_cpu_accuracy"].met_by(74.9)
    assert not facts.TARGETS["mnist_cpu_bits_per_dim"].met_by(math.nan)
    assert facts.TARGETS["toy_8gaussians_nll"].text().startswith("<= 2.84 nats")
    assert all(r.target is None or r.target in facts.TARGETS for r in facts.RESULTS)
    with pytest.raises(ValueError, match="better"):
        facts.Target(1.0, "s", better="faster")


def test_the_readme_tables_are_written_from_the_facts():
    assert facts.update_readme(REPO / "README.md", check=True) == [], (
        "README.md differs from iresnet_mini.facts: run python -m iresnet_mini.facts readme")
    text = (REPO / "README.md").read_text()
    assert "| MNIST | - | 0.38 | 0.40 |" in text  # Table 2's MNIST row as the paper gives it


def test_a_hand_edited_readme_number_is_caught_and_rewritten(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    readme.write_text(readme.read_text().replace("| 0.38 |", "| 0.37 |", 1))
    assert facts.update_readme(readme, check=True) == ["table2"]
    assert facts.update_readme(readme) == ["table2"]
    assert readme.read_text() == (REPO / "README.md").read_text()


def test_a_readme_without_the_blocks_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no tables here\n")
    with pytest.raises(ValueError, match="should hold the blocks"):
        facts.update_readme(readme)


def test_the_readme_command_checks_without_writing():
    result = subprocess.run([sys.executable, "-m", "iresnet_mini.facts", "readme", "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_table1_places_the_i_resnet_and_credits_residual_flows_separately():
    i_resnet = facts.TABLE1.rows["i-ResNet"]
    assert i_resnet["free-form"] and i_resnet["analytic forward"] and not i_resnet["analytic inverse"]
    assert not i_resnet["exact likelihood"] and i_resnet["unbiased log-det estimator"] is False
    assert facts.TABLE1.rows["Real NVP / Glow"]["analytic inverse"] and not facts.TABLE1.rows["FFJORD"]["analytic forward"]
    name, row = facts.RESIDUAL_FLOWS_TABLE1_ROW
    assert "Chen et al." in name and row["unbiased log-det estimator"] and name not in facts.TABLE1.rows
    assert all(set(r) == set(facts.TABLE1_PROPERTIES) for r in [*facts.TABLE1.rows.values(), row])
