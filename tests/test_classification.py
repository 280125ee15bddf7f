"""Examining classifiers (notebooks 05-06): inverse, layer norms vs c, Table 2 rows, figures, exercises."""
import math

import matplotlib.pyplot as plt
import pytest
import torch

from iresnet_mini import models
from iresnet_mini.lessons import nb05, nb06
from iresnet_mini.lessons.nb05 import classification
from iresnet_mini.lessons.nb06 import table3

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one CPU thread (conftest.py)


X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
Y = torch.arange(6) % 10


@pytest.fixture(scope="module")
def results(tiny_classifier):
    return {r["label"]: r for r in (
        classification.examine(tiny_classifier(0.9), "mnist", X, Y, n_show=4, norm_iterations=20),
        classification.examine(tiny_classifier(None, scale=4.0), "mnist", X, Y, n_show=4,
                               norm_iterations=20))}


def test_inverse_recovers_the_input_of_an_i_resnet(tiny_classifier):
    rec = classification.reconstruct(tiny_classifier(0.9), X)
    assert rec["converged"] and float(rec["errors"].max()) < 1e-4
    assert all(1 <= it < 100 for it in rec["iterations"])


def test_inverse_of_an_expanding_vanilla_network_fails_and_says_so(tiny_classifier):
    rec = classification.reconstruct(tiny_classifier(None, scale=4.0), X, max_iter=50)
    assert not rec["converged"]
    assert float(rec["errors"].max()) > 1e-2  # inf where the iteration left the finite numbers


def test_constrained_layer_norms_are_at_most_c_and_bound_each_branch(tiny_classifier):
    norms = classification.layer_norms(tiny_classifier(0.7), X)
    assert len(norms) == 3 * 2 and all(n["method"] == "certified" for n in norms)
    assert all(n["norm"] <= 0.7 * (1 + 1e-5) for n in norms)
    bounds = classification.branch_bounds(norms)
    assert bounds == pytest.approx([math.prod(n["norm"] for n in norms if n["block"] == b) for b in (0, 1)])
    assert max(bounds) <= 0.7 ** 3 * (1 + 1e-4)


def test_vanilla_layer_norm_is_a_lower_bound_of_the_true_norm(tiny_classifier):
    model = tiny_classifier(None, scale=4.0)
    (row, *_), = [classification.layer_norms(model, X, n_iter=30)]
    from iresnet_mini.lipschitz import operator_norm
    conv = model.steps[0].block.branch[0]
    true = operator_norm(conv, (16, 14, 14), method="power", n_iter=2000)
    assert row["norm"] <= true * (1 + 1e-6) and row["norm"] > 1


def test_examine_reports_accuracy_on_the_given_labels(results, tiny_classifier):
    r = results["c=0.9"]
    model = tiny_classifier(0.9)
    classification.layer_norms(model, X)  # examine certifies first, and reports the certified model
    correct = int((classification.predict(model, X) == Y).sum())
    assert r["n_test"] == len(Y) and r["accuracy"] == correct / len(Y)
    assert r["images"].shape == r["reconstructions"].shape == (4, 1, 28, 28)
    assert r["converged"] and r["max_pixel_error"] < 1e-4
    assert not results["vanilla"]["converged"]


def test_table2_rows_put_the_paper_beside_ours(results):
    rows = classification.table2_rows(list(results.values()), {"c=0.9": {"test_error_percent": 1.5}})
    assert [r["model"] for r in rows] == ["c=0.9", "vanilla"]
    assert rows[0]["paper error %"] == 0.40 and rows[1]["paper error %"] == 0.38
    assert rows[0]["our error % (full test set)"] == 1.5 and rows[1]["our error % (full test set)"] is None
    table = classification.markdown_table(rows)
    assert table.count("\n") == 3 and "| c=0.9 | 0.4 | 1.5 |" in table


CIFAR10_TABLE2 = {"c=0.5": "cifar10-c0.5", "c=0.9": "cifar10-c0.9", "vanilla": "cifar10-vanilla"}


def test_checkpoints_are_listed_by_increasing_c_with_vanilla_last():
    assert list(classification.checkpoints_for("mnist")) == ["c=0.5", "c=0.6", "c=0.7", "c=0.8", "c=0.9", "vanilla"]
    assert list(classification.checkpoints_for("cifar10").items()) == list(CIFAR10_TABLE2.items())


def test_the_coupling_baseline_is_not_a_row_of_table_2():
    assert "block=coupling" in classification.RECIPES["cifar10-coupling"].model
    assert classification.RECIPES["cifar10-coupling"].coeff is None  # like the vanilla network: no constraint
    assert classification.checkpoints_for("cifar10") == CIFAR10_TABLE2


def _coupling_classifier():
    torch.manual_seed(0)
    model = models.IResNetClassifier(models.classifier_config("tiny", (1, 28, 28), coeff=None, block="coupling"))
    with torch.no_grad():
        model.train()  # ActNorm's data-dependent initialisation
        model(torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    return model.eval()


def _run_info(test_error, train_accuracy, minutes):
    return {"metrics": {"test_error_percent": test_error, "train_seconds": 60.0 * minutes},
            "history": [{"epoch": 1, "train_accuracy": 0.1}, {"epoch": 2, "train_accuracy": train_accuracy}]}


def test_table3_rows_set_a_coupling_classifier_beside_an_i_resnet(tiny_classifier):
    loaded = {"c=0.9": (tiny_classifier(0.9), None, _run_info(30.0, 0.75, 50.0)),
              "coupling": (_coupling_classifier(), None, _run_info(40.0, 0.5, 45.0))}
    rows = table3.rows(loaded, "mnist", X, Y, n_show=4)
    assert [r["model"] for r in rows] == ["c=0.9", "coupling"]
    for row, (model, _, _) in zip(rows, loaded.values()):
        correct = int((classification.predict(model, X) == Y).sum())
        assert row[f"test error % (first {len(Y)})"] == pytest.approx(100 * (1 - correct / len(Y)))
        assert row["parameters"] == models.count_parameters(model) and row["blocks"] == len(model.steps)
        assert row["reconstruction error (max, pixels)"] < 1e-4 and row["the same in float64"] < 1e-4
    assert [r["test error % (full test set)"] for r in rows] == [30.0, 40.0]
    assert [r["error % on training batches (last epoch)"] for r in rows] == pytest.approx([25.0, 50.0])
    assert [r["minutes of training"] for r in rows] == [50.0, 45.0]
    assert rows[0]["inverse"].startswith("fixed point, at most") and rows[1]["inverse"] == "closed form"
    assert rows[1]["the same in float64"] < 1e-12  # closed form: exact up to float64 rounding
    assert "c = 0.9" in rows[0]["invertible steps"] and "coupling" in rows[1]["invertible steps"]
    (vanilla,) = table3.rows({"vanilla": (tiny_classifier(None, scale=4.0), None, _run_info(35.0, 0.9, 40.0))},
                             "mnist", X, Y, n_show=4)
    assert vanilla["reconstruction error (max, pixels)"] == math.inf and vanilla["the same in float64"] > 1
    fig = nb06.figures.plot_table3(rows)
    assert _figure_problems(fig) == []
    plt.close(fig)


def test_curve_colours_tell_every_classifier_apart():
    colors = nb05.figures.curve_colors(["c=0.5", "c=0.9", "vanilla", "coupling", "c=0.7"])
    assert len(set(colors.values())) == 5
    assert colors["c=0.9"] == nb05.figures.COLORS["iresnet"] and colors["vanilla"] == nb05.figures.COLORS["resnet"]
    lightness = {label: sum(plt.matplotlib.colors.to_rgb(colors[label])) for label in ("c=0.9", "c=0.7", "c=0.5")}
    assert lightness["c=0.9"] < lightness["c=0.7"] < lightness["c=0.5"]  # the largest c darkest


def test_draw_classifier_readout_follows_the_choice(results):
    fig, numbers = nb05.figures.draw_classifier("vanilla", results, n=4)
    assert numbers["model"] == "vanilla" and numbers["inverse converged"] is False
    assert numbers["largest layer norm"] == max(n["norm"] for n in results["vanilla"]["norms"])
    assert fig.get_axes()
    plt.close(fig)
    with pytest.raises(ValueError, match="available are c=0.9, vanilla"):
        nb05.figures.draw_classifier("c=0.3", results)


def test_classifier_figures_have_titles_and_labels(results):
    rows = classification.table2_rows(list(results.values()))
    history = [{"epoch": 1, "test_accuracy": 0.5, "train_loss": 1.0}, {"epoch": 2, "test_accuracy": 0.7, "train_loss": 0.6}]
    figures = {"table 2": nb05.figures.plot_table2(rows, "mnist"),
               "reconstructions": nb05.figures.plot_reconstructions(list(results.values()), n=4),
               "layer norms": nb05.figures.plot_layer_norms(results["c=0.9"]),
               "training curves": nb05.figures.plot_training_curves({"c=0.9": history})}
    for name, fig in figures.items():
        assert _figure_problems(fig) == [], name
        plt.close(fig)


def _figure_problems(fig) -> list[str]:
    """What a reader would miss: a title for the figure, and axis labels on every plot that is not an image."""
    problems = []
    if not (fig._suptitle is not None and fig._suptitle.get_text()) and not any(ax.get_title() for ax in fig.axes):
        problems.append("no title")
    for i, ax in enumerate(fig.axes):
        if ax.images or not ax.axison or not (ax.lines or ax.patches or ax.collections):
            continue  # image panels and empty (legend or spacer) axes need no axis labels
        named_ticks = any(not _is_number(t.get_text()) for t in ax.get_xticklabels())  # categories: their names
        if not ax.get_xlabel() and not named_ticks:
            problems.append(f"axes {i}: no x label")
        if not ax.get_ylabel():
            problems.append(f"axes {i}: no y label")
    return problems


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-"))
        return True
    except ValueError:
        return not text  # an empty label names nothing


def test_the_figure_check_notices_a_missing_title_and_label():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert _figure_problems(fig) == ["no title", "axes 0: no x label", "axes 0: no y label"]
    ax.set(title="t", xlabel="x", ylabel="y")
    assert _figure_problems(fig) == []
    plt.close(fig)


def test_exercise_checks_accept_the_solutions_and_reject_wrong_answers(capsys):
    assert nb05.checks.check_branch_bound(0.9 ** 3, 1 / (1 - 0.9 ** 3))
    assert not nb05.checks.check_branch_bound(0.9, 10.0)
    assert nb06.checks.check_feature_size(16 * 32 * 32, 16 * 32 * 32 - 3 * 32 * 32)
    assert not nb06.checks.check_feature_size(3 * 32 * 32, 0)
    labels, predictions = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([1, 1, 1, 0, 1])
    assert nb06.checks.check_confusion("a", "b", predictions, labels, ("a", "b"))
    assert not nb06.checks.check_confusion("b", "a", predictions, labels, ("a", "b"))
    assert "Not yet" in capsys.readouterr().out


def test_block_inverse_check_accepts_a_fixed_point(tiny_classifier):
    model = tiny_classifier(0.9)
    block = model.steps[-1].block
    with torch.no_grad():
        x = torch.randn(2, *model.feature_shape)
        y = block(x)
        answer = y.clone()
        for _ in range(60):
            answer = y - block.branch(answer)
    assert nb05.checks.check_block_inverse(block, y, answer)
    assert not nb05.checks.check_block_inverse(block, y, y)
    assert not nb05.checks.check_block_inverse(block, y, None)
