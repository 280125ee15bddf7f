"""Shipped checkpoints: verified before unpickling, small, and their manifest figures reproduce exactly."""
import dataclasses
import io
import json
import shlex

import pytest
import torch

from iresnet_mini import cli, pretrained, train

ENTRIES = pretrained.manifest()
CLASSIFIERS = sorted(n for n, e in ENTRIES.items() if e.get("task") == "classify")
MNIST_ENTRIES = [n for n in CLASSIFIERS if ENTRIES[n]["dataset"] == "mnist"]
CIFAR_ENTRIES = [n for n in CLASSIFIERS if ENTRIES[n]["dataset"] == "cifar10"]
DENSITY_MODELS = sorted(n for n, e in ENTRIES.items() if e.get("task") == "density")


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one CPU thread (conftest.py)


def _tiny_config():
    return train.make_config("classify", "mnist", "tiny", model={"coeff": 0.9})


@pytest.fixture
def shipped_copy(tmp_path, tiny_classifier):
    """A directory holding one tiny checkpoint and its manifest entry."""
    payload, dtype = pretrained.checkpoint_bytes(tiny_classifier(), _tiny_config())
    pretrained.write_checkpoint("tiny", payload, tmp_path)
    pretrained.write_entry("tiny", {"file": "tiny.pt", "sha256": pretrained.sha256sum(payload),
                                    "bytes": len(payload), "dtype": dtype}, tmp_path)
    return tmp_path


# --- the shipped files --------------------------------------------------------------------

def test_every_recipe_is_shipped_and_every_checkpoint_has_a_recipe():
    assert sorted(ENTRIES) == sorted(pretrained.RECIPES), "run scripts/make_pretrained.py for the missing names"


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_shipped_file_is_small_and_matches_its_sha256(name):
    entry = ENTRIES[name]
    payload = pretrained.checkpoint_path(name).read_bytes()
    assert len(payload) == entry["bytes"] <= pretrained.MAX_BYTES
    assert pretrained.sha256sum(payload) == entry["sha256"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_manifest_command_is_the_recipe_of_its_model(name):
    entry, recipe = ENTRIES[name], pretrained.RECIPES[name]
    model, config, _ = pretrained.load_pretrained(name)
    argv = shlex.split(entry["command"])
    assert argv[:3] == ["python", "-m", "iresnet_mini.train"] and argv[-2:] == ["--out", "RUN_DIR"]
    run_config = cli.config_from_args(cli.parser().parse_args(argv[3:]))  # what the command trains
    for trained in (run_config, config):  # ... and what the checkpoint says it was trained with
        assert recipe.mismatches(dataclasses.asdict(trained)) == []
    assert config.task == entry["task"] == recipe.task and config.dataset == entry["dataset"] == recipe.dataset
    assert model.config.coeff == entry["coeff"] and (("--vanilla" in entry["command"]) == (entry["coeff"] is None))
    assert entry["metrics"]["test_images"] == 10_000
    assert entry["metrics"]["subset_images"] == pretrained.EVAL_SUBSET


def _reevaluate(name):
    model, config, entry = pretrained.load_pretrained(name)
    result = pretrained.evaluate_test(model, config, pretrained.EVAL_SUBSET)
    assert result["test_images"] == entry["metrics"]["subset_images"]
    assert result["test_accuracy"] == entry["metrics"]["subset_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("name", MNIST_ENTRIES)
def test_mnist_checkpoint_reproduces_its_manifest_accuracy(mnist_available, name):
    _reevaluate(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR_ENTRIES)
def test_cifar_checkpoint_reproduces_its_manifest_accuracy(cifar_available, name):
    _reevaluate(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", DENSITY_MODELS)
def test_density_checkpoint_reproduces_its_manifest_bits_per_dim(name, request):
    """Bits/dim of the first 1,000 test images, log-dets by the seeded unbiased estimator, as packaged.

    The same probes and roulette counts give the same figure up to rounding (another CPU may sum in
    another order); unseeded draws differ by about 1e-3 bits/dim, a wrong model or data path by far more.
    """
    request.getfixturevalue("mnist_available" if ENTRIES[name]["dataset"] == "mnist" else "cifar_available")
    model, config, entry = pretrained.load_pretrained(name)
    result = pretrained.evaluate_test(model, config, pretrained.EVAL_SUBSET)
    assert result["test_images"] == entry["metrics"]["subset_images"]
    assert result["test_bits_per_dim"] == pytest.approx(entry["metrics"]["subset_bits_per_dim"], abs=1e-4)
    again = pretrained.evaluate_test(model, config, 100)
    assert again == pretrained.evaluate_test(model, config, 100), "the test estimator's streams are not seeded"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if ENTRIES[n]["coeff"] is not None])
def test_shipped_i_resnets_are_certified_and_invertible(name, request):
    """Loads the model itself: every layer's true operator norm <= c, and the inverse returns real test images."""
    request.getfixturevalue("mnist_available" if ENTRIES[name]["dataset"] == "mnist" else "cifar_available")
    from iresnet_mini import lipschitz
    from iresnet_mini.lessons.nb05 import classification

    model, config, entry = pretrained.load_pretrained(name)
    x, _ = classification.test_batch(entry["dataset"], 8)
    convs = [(conv, shape) for _, _, conv, shape in classification._conv_inputs(model, x)]
    coeff = entry["coeff"]
    for conv, shape in convs[:: max(1, len(convs) // 4)]:  # a spread of layers, first to last
        assert lipschitz.operator_norm(conv, shape, method="power", n_iter=300) <= coeff * 1.001
    # In float32, the precision the lessons compute in, features of several thousand carry rounding of a few 1e-4:
    # the images must come back to a hundredth of a grey level. In float64 (the certificate's round trip) the
    # inverse itself is held to its stopping rule, amplified by at most a few blocks' inverse Lipschitz bounds.
    rec = classification.reconstruct(model, x, max_iter=200)
    assert rec["converged"] and float(classification.pixel_errors(entry["dataset"], x, rec["x_rec"]).max()) < 0.01
    rec64 = train.reconstruction(model, x, config)
    assert rec64["inverse_converged"] and rec64["reconstruction_max_abs_error"] < 1e-4


# --- verification before unpickling ---------------------------------------------------------

def test_verified_checkpoint_loads_to_the_same_model(shipped_copy, tiny_classifier):
    model, config, entry = pretrained.load_pretrained("tiny", directory=shipped_copy)
    reference = tiny_classifier()
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(model(x), reference(x), atol=1e-6)
    assert config.dataset == "mnist" and entry["dtype"] == "float32"


def test_tampered_checkpoint_is_rejected_before_unpickling(shipped_copy, monkeypatch):
    path = shipped_copy / "tiny.pt"
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))

    def must_not_unpickle(*args, **kwargs):
        raise AssertionError("torch.load was called on an unverified file")

    monkeypatch.setattr(torch, "load", must_not_unpickle)
    with pytest.raises(pretrained.PretrainedError, match="sha256"):
        pretrained.load_pretrained("tiny", directory=shipped_copy)


def test_unknown_name_lists_the_shipped_ones(shipped_copy):
    with pytest.raises(pretrained.PretrainedError, match="shipped are: tiny"):
        pretrained.load_pretrained("mnist-c0.1", directory=shipped_copy)


def test_missing_file_says_how_to_get_it_back(shipped_copy):
    (shipped_copy / "tiny.pt").unlink()
    with pytest.raises(pretrained.PretrainedError, match="missing.*make_pretrained.py tiny"):
        pretrained.load_pretrained("tiny", directory=shipped_copy)


def test_foreign_pickle_with_the_right_hash_is_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)
    pretrained.write_checkpoint("other", buffer.getvalue(), tmp_path)
    pretrained.write_entry("other", {"file": "other.pt", "sha256": pretrained.sha256sum(buffer.getvalue())}, tmp_path)
    with pytest.raises(pretrained.PretrainedError, match="not a pretrained checkpoint"):
        pretrained.load_pretrained("other", directory=tmp_path)


# --- writing checkpoints and the manifest ----------------------------------------------------

def test_weights_fall_back_to_float16_when_float32_is_too_big(monkeypatch, tiny_classifier):
    model = tiny_classifier()
    size32 = len(pretrained.checkpoint_bytes(model, _tiny_config())[0])
    monkeypatch.setattr(pretrained, "MAX_BYTES", size32 - 1)
    payload, dtype = pretrained.checkpoint_bytes(model, _tiny_config())
    assert dtype == "float16" and len(payload) < size32
    restored, _ = pretrained.model_from_bytes(payload)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(restored(x), model(x), atol=5e-2)


def test_a_model_too_big_even_in_float16_is_refused(monkeypatch, tiny_classifier):
    monkeypatch.setattr(pretrained, "MAX_BYTES", 1000)
    with pytest.raises(pretrained.PretrainedError, match="even in float16"):
        pretrained.checkpoint_bytes(tiny_classifier(), _tiny_config())


def test_write_entry_keeps_the_other_entries(tmp_path):
    pretrained.write_entry("a", {"file": "a.pt"}, tmp_path)
    pretrained.write_entry("b", {"file": "b.pt"}, tmp_path)
    pretrained.write_entry("a", {"file": "a2.pt"}, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"a": {"file": "a2.pt"}, "b": {"file": "b.pt"}}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary files left


# --- recipes and load_or_train ---------------------------------------------------------------

def test_recipe_command_is_what_the_cli_parses():
    recipe = pretrained.Recipe("mnist", 0.7, epochs=2, train_subset=512, batch_size=32, threads=1,
                               model=("widths=8,16", "activation=lipswish"), lr=0.01, ema=0.99, test_subset=100)
    args = cli.parser().parse_args(recipe.argv() + ["--out", "x"])
    config = cli.config_from_args(args)
    assert recipe.mismatches(json.loads(json.dumps(dataclasses.asdict(config)))) == []
    assert recipe.command("runs/x").endswith("--out runs/x")
    assert (config.lr, config.ema, config.test_subset, config.model["widths"]) == (0.01, 0.99, 100, (8, 16))
    other = dataclasses.replace(recipe, model=("widths=8,32", "activation=lipswish"))
    assert other.mismatches(json.loads(json.dumps(dataclasses.asdict(config)))) == [
        "model options: run has {'widths': (8, 16), 'activation': 'lipswish'}, recipe wants "
        "{'widths': (8, 32), 'activation': 'lipswish'}"]


def test_recipe_mismatch_names_the_differing_settings():
    config = {"task": "classify", "dataset": "mnist", "preset": "cpu", "seed": 0, "model": {"coeff": 0.9},
              "train_subset": None, "epochs": 1, "time_budget_min": None}
    assert pretrained.Recipe("mnist", None, train_subset=None).mismatches(config) == [
        "coeff: run has 0.9, recipe wants None"]


def test_without_train_now_nothing_trains_and_the_shipped_file_says_what_it_is(monkeypatch, shipped_copy, tmp_path):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", shipped_copy)
    monkeypatch.setitem(pretrained.RECIPES, "tiny", pretrained.Recipe("mnist", 0.9, preset="tiny"))

    def no_training(argv):
        raise AssertionError(f"load_or_train started a training: {argv}")

    monkeypatch.setattr(pretrained.cli, "main", no_training)
    _, _, info = pretrained.load_or_train("tiny", run_dir=tmp_path / "run")
    assert info["source"] == "shipped" and "not_trained" not in info  # the shipped file is this recipe's
    _, _, info = pretrained.load_or_train("tiny", run_dir=tmp_path / "run", epochs=200, preset="paper")
    assert info["source"] == "shipped" and "--epochs 200" in info["not_trained"]


@pytest.mark.slow
def test_load_or_train_trains_resumes_and_protects_other_runs(mnist_available, tmp_path):
    run = tmp_path / "run"
    recipe = dict(preset="tiny", epochs=1, train_subset=256, batch_size=64, threads=1)
    model, config, info = pretrained.load_or_train("mnist-c0.9", train_now=True, run_dir=run, **recipe)
    assert info["source"] == "trained" and len(info["history"]) == 1 and config.preset == "tiny"
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    pretrained.load_or_train("mnist-c0.9", train_now=True, run_dir=run, **recipe)  # finished: just loaded
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before
    _, _, again = pretrained.load_or_train("mnist-c0.9", run_dir=run, **recipe)  # a finished run wins over shipped
    assert again["source"] == "run" and again["metrics"] == info["metrics"]
    with pytest.raises(FileExistsError, match="coeff"):
        pretrained.load_or_train("mnist-vanilla", train_now=True, run_dir=run, **recipe)
