"""Shipped lesson results (data/pretrained/lessons): verified before reading, and every figure they claim reproduces.

Notebook 01's grid of toy ResNets / i-ResNets and notebook 04's 2D flows were trained ahead of
time (``python -m iresnet_mini.lessons.precompute NAME``) so that the widgets only redraw. Here
each shipped model is loaded with today's code and measured again: its figures must be the
recorded ones, and every i-ResNet must keep the promises of Thm. 1.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from iresnet_mini import lipschitz, pretrained
from iresnet_mini.lessons import shipped
from iresnet_mini.lessons.nb01 import dynamics
from iresnet_mini.lessons.nb04 import toyflows

pytestmark = pytest.mark.usefixtures("one_thread")

ENTRIES = pretrained.manifest(shipped.LESSONS_DIR)
NAMES = (dynamics.SHIPPED, toyflows.SHIPPED_FIG2, toyflows.SHIPPED_WIDGET)


def test_every_lesson_result_is_shipped_with_its_command():
    assert sorted(ENTRIES) == sorted(NAMES), "run python -m iresnet_mini.lessons.precompute for the missing names"
    for name in NAMES:
        assert ENTRIES[name]["command"].startswith(shipped.remake_command(name))
        assert ENTRIES[name]["classifier_step_seconds"] > 0 and ENTRIES[name]["wall_seconds"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_shipped_file_is_small_and_matches_its_sha256(name):
    entry = ENTRIES[name]
    payload = (shipped.LESSONS_DIR / entry["file"]).read_bytes()
    assert len(payload) == entry["bytes"] <= pretrained.MAX_BYTES
    assert pretrained.sha256sum(payload) == entry["sha256"]


def test_a_changed_file_is_refused_before_it_is_read(tmp_path):
    name = dynamics.SHIPPED
    shutil.copy(shipped.LESSONS_DIR / "manifest.json", tmp_path / "manifest.json")
    payload = bytearray((shipped.LESSONS_DIR / ENTRIES[name]["file"]).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (tmp_path / ENTRIES[name]["file"]).write_bytes(bytes(payload))
    with pytest.raises(pretrained.PretrainedError, match="sha256.*not loaded"):
        shipped.load(name, tmp_path)
    (tmp_path / ENTRIES[name]["file"]).unlink()
    with pytest.raises(pretrained.PretrainedError, match="missing.*lessons.precompute"):
        shipped.load(name, tmp_path)
    with pytest.raises(pretrained.PretrainedError, match="no shipped lesson results named 'nope'"):
        shipped.load("nope", tmp_path)


def test_save_then_load_round_trips_and_refuses_oversized_content(tmp_path):
    content = {"x": torch.arange(5.0), "nested": {"k": [1, 2]}}
    entry = shipped.save("demo", content, "cmd", {"figure": 1.0}, tmp_path, wall_seconds=1.0)
    loaded, found = shipped.load("demo", tmp_path)
    assert torch.equal(loaded["x"], content["x"]) and loaded["nested"] == {"k": [1, 2]}
    assert found == entry and found["metrics"] == {"figure": 1.0} and found["wall_seconds"] == 1.0
    with pytest.raises(pretrained.PretrainedError, match="more than"):
        shipped.save("big", {"x": torch.zeros(pretrained.MAX_BYTES // 4 + 1)}, "cmd", {}, tmp_path)
    assert not (tmp_path / "big.pt").exists() and "big" not in pretrained.manifest(tmp_path)


# --- notebook 01: the grid of toy models -------------------------------------------------------
def _nb01():
    content, entry = shipped.load(dynamics.SHIPPED)
    return content, entry


def test_nb01_grid_holds_every_widget_setting_with_the_recipe():
    content, _ = _nb01()
    assert content["recipe"] == dynamics.RECIPE
    assert sorted(content["models"]) == sorted(dynamics.setting_key(*s) for s in dynamics.grid_settings())
    assert len(content["models"]) == len(dynamics.TASKS) * len(dynamics.GRID_DEPTHS) * (len(dynamics.GRID_C) + 1)


@pytest.mark.parametrize("task", sorted(dynamics.TASKS))
def test_nb01_shipped_models_reproduce_their_figures_and_keep_thm1(task):
    content, entry = _nb01()
    dim = dynamics.task_dim(task)
    for (t, depth, coeff) in dynamics.grid_settings():
        if t != task:
            continue
        model = dynamics.stack_for(task, depth, coeff)
        assert model.source == "shipped" and "precomputed" in model.label
        recorded = content["models"][dynamics.setting_key(task, depth, coeff)]["figures"]
        measured = dynamics.measure(model.stack, task, content["measure_grid"])
        assert measured == pytest.approx(recorded, rel=1e-9, abs=1e-12), (task, depth, coeff)
        if coeff is not None:  # Thm. 1: no crossing, no fold, det(I + J_g) >= (1 - c^2)^d on every layer
            assert measured["fold fraction"] == 0 and measured.get("crossings", 0) == 0
            assert measured["min det"] >= (1 - coeff ** dynamics.BRANCH_LAYERS) ** dim * (1 - 1e-9)
            for block in model.stack:
                for layer in lipschitz.lipschitz_layers(block.branch):
                    assert lipschitz.operator_norm(layer, (layer.in_features,)) <= coeff * (1 + 1e-9)
    assert entry["metrics"][task]["i-ResNet max fold fraction"] == 0


def test_nb01_shipped_models_are_well_trained():
    content, _ = _nb01()
    figures = {key: m["figures"] for key, m in content["models"].items()}
    # the plain ResNet fits both folding tasks at every depth, and folds to do it
    for task in ("abs", "fold"):
        for depth in dynamics.GRID_DEPTHS:
            plain = figures[dynamics.setting_key(task, depth, None)]
            assert plain["mse"] < 0.05 and plain["fold fraction"] > 0, (task, depth)
    # the i-ResNet with c = 0.9 and six blocks comes close to the best increasing fit of |x| (0.229)
    assert 0.229 < figures["abs/T6/c0.9"]["mse"] < 0.26
    # a smaller c squeezes less: the fit gets worse as c falls (depth 6)
    mses = [figures[dynamics.setting_key("abs", 6, c)]["mse"] for c in dynamics.GRID_C]
    assert mses == sorted(mses, reverse=True)


def test_nb01_off_grid_settings_are_trained_now_and_say_so():
    model = dynamics.stack_for("abs", 2, 0.85, steps=30)
    assert model.source == "trained now" and model.label == "trained now (30 steps)"
    assert dynamics.stack_for("abs", 2, 0.85, steps=30) is model  # kept for the session


# --- notebook 04: the 2D flows ---------------------------------------------------------------
@pytest.mark.parametrize("name", [toyflows.SHIPPED_FIG2, toyflows.SHIPPED_WIDGET])
def test_nb04_shipped_flows_reproduce_their_test_nll_and_are_certified(name):
    content, entry = shipped.load(name)
    assert [s["key"] for s in content["settings"]] == [s["key"] for s in toyflows.shipped_settings(name)]
    for setting in toyflows.shipped_settings(name):
        flow, figures = toyflows.shipped_flow(name, setting["key"])
        nll = toyflows.evaluate_nll(flow, setting["dataset"], content["test_points"], content["seed"])
        assert nll == pytest.approx(figures["test_nll"], abs=1e-5), setting["key"]
        assert entry["metrics"][setting["key"]]["test_nll"] == pytest.approx(figures["test_nll"], abs=1e-4)
        if setting["model"] == "iresnet":
            c = setting["kwargs"]["coeff"]
            for layer in lipschitz.lipschitz_layers(flow):
                assert lipschitz.operator_norm(layer, (layer.in_features,)) <= c * (1 + 1e-5), setting["key"]


def test_nb04_fig2_flows_are_near_the_entropy_floor():
    _, entry = shipped.load(toyflows.SHIPPED_FIG2)
    nll = {key: m["test_nll"] for key, m in entry["metrics"].items() if key != "entropies"}
    floors = entry["metrics"]["entropies"]
    for dataset in toyflows.DATASETS:
        assert nll[f"{dataset}/iresnet"] < floors[dataset] + 0.11, dataset
        # Fig. 2's point: the free-form flow fits better than the coupling flow of the same size and training
        assert nll[f"{dataset}/iresnet"] < nll[f"{dataset}/coupling"], dataset


def test_nb04_widget_flows_get_better_as_c_grows():
    _, entry = shipped.load(toyflows.SHIPPED_WIDGET)
    for dataset in toyflows.DATASETS:
        nll = [entry["metrics"][toyflows.shipped_key(dataset, "iresnet", c)]["test_nll"] for c in toyflows.WIDGET_C]
        assert nll[0] > nll[-1] + 0.1, (dataset, nll)


def test_nb04_cache_serves_shipped_flows_and_trains_the_rest():
    cache = toyflows.ToyFlowCache(steps=3, shipped=toyflows.SHIPPED_WIDGET, batch_size=32, eval_points=100,
                                  grid=10, n_samples=20, entropy_points=500, n_blocks=1, hidden=8)
    shown = cache.get("moons", toyflows.WIDGET_C[0])
    assert shown.source == "shipped" and shown.label.startswith("precomputed")
    assert shown.log_p_grid.shape == (10, 10) and shown.samples.shape == (20, 2)
    trained = cache.get("moons", 0.33)
    assert trained.source == "trained now" and trained.label == "trained now (3 steps)"


def test_nb01_precompute_ships_the_recipes_models_with_the_figures_they_load_with():
    content, summary = dynamics.precompute(settings=[("abs", 2, 0.9), ("abs", 2, None)])
    assert content["recipe"] == dynamics.RECIPE and sorted(content["models"]) == ["abs/T2/c0.9", "abs/T2/plain"]
    dynamics.trained_stack.cache_clear()
    stack, _ = dynamics.trained_stack("abs", 2, 0.9)  # the same recipe trained again: the same weights
    assert torch.equal(content["models"]["abs/T2/c0.9"]["flat"], dynamics._flatten(stack)[0])
    assert content["models"]["abs/T2/c0.9"]["figures"] == dynamics.measure(stack, "abs", dynamics.MEASURE_GRID)
    assert summary["abs"]["i-ResNet max fold fraction"] == 0 and summary["reverse"]["ResNet max mse"] is None


def test_parallel_map_keeps_the_order_in_worker_processes():
    assert shipped.parallel_map(abs, [-1, 2, -3], workers=2) == shipped.parallel_map(abs, [-1, 2, -3]) == [1, 2, 3]
