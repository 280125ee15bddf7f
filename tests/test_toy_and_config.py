"""Toy data sets and the quick/full switch."""
import math

import numpy as np
import pytest
import torch

from iresnet_mini import config, toy


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_toy_sets_are_seeded_and_shaped(name):
    a, b = toy.sample(name, 501, seed=3), toy.sample(name, 501, seed=3)
    assert a.shape == (501, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, toy.sample(name, 501, seed=4))
    assert torch.isfinite(a).all() and a.abs().max() < 10


def test_checkerboard_is_uniform_on_eight_squares_of_side_2():
    x = toy.sample("checkerboard", 80_000, seed=0)
    assert torch.isfinite(toy.log_density("checkerboard", x)).all()
    cells = (torch.floor(x / 2) + 2).long()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    occupied = counts[counts > 0]
    assert len(occupied) == 8
    assert (occupied.float() / len(x) - 1 / 8).abs().max() < 0.01


def test_eight_gaussians_geometry_and_entropy():
    x = toy.sample("8gaussians", 40_000, seed=0)
    radius = x.norm(dim=1)
    assert radius.mean().item() == pytest.approx(2.83, abs=0.03)
    # well-separated components: H = ln 8 + ln(2 pi e sigma^2), minus a little for overlap
    separated = math.log(8) + math.log(2 * math.pi * math.e * (0.5 / 1.414) ** 2)
    assert toy.entropy("8gaussians") == pytest.approx(separated, abs=0.015)
    assert toy.entropy("checkerboard") == pytest.approx(math.log(32))


def test_unknown_toy_names_and_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="8gaussians"):
        toy.sample("9gaussians", 10)
    with pytest.raises(ValueError, match="positive integer"):
        toy.sample("moons", 0)
    with pytest.raises(ValueError, match="no closed-form density"):
        toy.log_density("pinwheel", torch.zeros(1, 2))


def test_numpy_generator_is_accepted():
    assert toy.sample("moons", 10, seed=np.random.default_rng(0)).shape == (10, 2)


def test_mode_priority_code_then_environment_then_hardware(monkeypatch):
    monkeypatch.setattr(config, "_override", None)
    monkeypatch.setenv(config.ENV_VAR, "full")
    assert config.get_mode() == "full"
    config.set_mode("quick")
    try:
        assert config.get_mode() == "quick" and config.is_quick()
    finally:
        config.set_mode(None)
    monkeypatch.delenv(config.ENV_VAR)
    assert config.get_mode() == ("full" if torch.cuda.is_available() else "quick")


def test_sizes_follow_the_mode(monkeypatch):
    monkeypatch.setitem(config.SIZES, "test.steps", config.Size(3, 300))
    monkeypatch.setenv(config.ENV_VAR, "quick")
    assert config.size("test.steps") == 3
    monkeypatch.setenv(config.ENV_VAR, "full")
    assert config.size("test.steps") == 300
    with pytest.raises(KeyError, match="unknown size"):
        config.size("no.such.size")


def test_bad_mode_values_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match="quick"):
        config.set_mode("fast")
    monkeypatch.setenv(config.ENV_VAR, "turbo")
    with pytest.raises(ValueError, match="IRESNET_MINI_MODE"):
        config.get_mode()


def test_seed_and_device_helpers():
    config.seed_everything(7)
    a = torch.rand(3)
    config.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    assert config.get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            config.get_device("cuda")


def test_a_sizes_file_overrides_both_modes_and_refuses_unknown_names(tmp_path, monkeypatch):
    import json

    from iresnet_mini import config

    path = tmp_path / "sizes.json"
    path.write_text(json.dumps({"nb01.grid": 11, "nb02.conv_sizes": [4, 8]}))
    monkeypatch.setenv(config.SIZES_ENV_VAR, str(path))
    for mode in config.MODES:
        config.set_mode(mode)
        assert config.size("nb01.grid") == 11 and config.size("nb02.conv_sizes") == (4, 8)
    config.set_mode("full")
    assert config.size("nb04.test_points") == config.SIZES["nb04.test_points"].full  # not overridden
    config.set_mode(None)
    path.write_text(json.dumps({"nb01.gird": 11}))
    with pytest.raises(ValueError, match="nb01.gird"):
        config.size("nb01.grid")
    monkeypatch.setenv(config.SIZES_ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="cannot read"):
        config.size("nb01.grid")


def test_course_setup_prepares_a_lesson_in_one_call(capsys, monkeypatch):
    from iresnet_mini import config, course, data

    threads = torch.get_num_threads()
    try:
        device = course.setup(threads=1, mode="full", download=False)
        assert device.type in ("cpu", "cuda") and torch.get_num_threads() == 1
        assert config.get_mode() == "full" and not data._download(None)
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert "mode=full" in capsys.readouterr().out
        course.setup(download=True)
        assert data._download(None) and not data._download(False)
        with pytest.raises(ValueError, match="threads"):
            course.setup(threads=0)
    finally:
        config.set_mode(None)
        data.allow_downloads(False)
        torch.set_num_threads(threads)
