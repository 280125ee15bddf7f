"""Training: run files, exact resume, refusing to overwrite, stopping on NaN, schedules, the CLI."""
import json
import math
import subprocess
import sys

import pytest
import torch

from iresnet_mini import cli, data, throughput, train

FAST = dict(train_subset=256, test_subset=100, final_test_subset=100, batch_size=64, threads=1, init_batch=64)


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one CPU thread (conftest.py)


def _config(task="classify", **overrides):
    return train.make_config(task, "mnist", "tiny", **{**FAST, "epochs": 2, **overrides})


def _read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_timings(records):
    return [{k: v for k, v in r.items() if k not in ("epoch_s", "elapsed_s")} for r in records]


@pytest.mark.parametrize("task", ["classify", "density"])
def test_two_epoch_tiny_run_writes_every_file(mnist_available, tmp_path, task):
    run = tmp_path / "run"
    summary = train.train(_config(task), run, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl",
                                                    "summary.json"]
    metrics = _read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2]
    test_key = "test_accuracy" if task == "classify" else "test_bits_per_dim"
    for m in metrics:
        assert {"epoch", "train_loss", "elapsed_s", test_key} <= set(m) and math.isfinite(m[test_key])
    assert json.loads((run / "summary.json").read_text()) == summary
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == task and config["amp"] is False and config["model_config"]["coeff"] == 0.9
    cert = summary["certificate"]
    assert cert["all_below_coeff"] and cert["max_effective_norm"] <= 0.9 + 1e-6
    assert all(abs(t["operator_norm"] - 0.9) < 0.01 or t["operator_norm"] < 0.9 for t in cert["true_norms"])
    assert cert["inverse_converged"] and cert["reconstruction_max_abs_error"] < 1e-4


def test_checkpoint_loads_with_weights_only(mnist_available, tmp_path):
    train.train(_config(epochs=1), tmp_path / "run", progress=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "rng", "state", "config"} <= set(checkpoint)
    model, config, state = train.load_run(tmp_path / "run")
    assert config.epochs == 1 and state["epoch"] == 1 and state["finished"]
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)


class _Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


@pytest.mark.parametrize("task, ema", [("classify", None), ("density", None), ("density", 0.9)])
def test_resume_after_a_kill_gives_the_uninterrupted_result(mnist_available, tmp_path, monkeypatch, task, ema):
    config = _config(task, ema=ema)
    fresh = tmp_path / "fresh"
    train.train(config, fresh, progress=False)

    killed = tmp_path / "killed"
    save = train.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        train.train(config, killed, progress=False)
    monkeypatch.setattr(train, "save_checkpoint", save)
    assert len(_read_metrics(killed)) == 1
    train.train(config, killed, resume=True, progress=False)

    assert _without_timings(_read_metrics(killed)) == _without_timings(_read_metrics(fresh))
    a = train.load_checkpoint(fresh / "checkpoint.pt")
    b = train.load_checkpoint(killed / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    summary_a = json.loads((fresh / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    for key in ("test_accuracy", "test_bits_per_dim", "certificate"):
        assert summary_a.get(key) == summary_b.get(key)


def test_a_weight_average_is_the_model_that_is_evaluated_certified_and_kept(mnist_available, tmp_path):
    run = tmp_path / "ema"
    summary = train.train(_config("density", ema=0.9), run, progress=False)
    checkpoint = train.load_checkpoint(run / "checkpoint.pt")
    shadow = checkpoint["average"]["shadow"]
    assert summary["weights"] == "average (decay 0.9)" and checkpoint["average"]["decay"] == 0.9
    model, _, _ = train.load_run(run)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), shadow[name]), name
    cert = summary["certificate"]  # the average's own spectral norms, re-estimated: still below c
    assert cert["all_below_coeff"] and cert["inverse_converged"]
    last = train.train(_config("density"), tmp_path / "last", progress=False)
    assert last["weights"] == "last step" and last["test_bits_per_dim"] != summary["test_bits_per_dim"]
    with pytest.raises(ValueError, match="decay must be a number in"):
        _config(ema=1.0)


def test_refuses_to_write_into_a_non_empty_run_directory(mnist_available, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume"):
        train.train(_config(), run, progress=False)
    assert cli.main(["--preset", "tiny", "--epochs", "1", "--out", str(run)]) == 1
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="no run to resume"):
        train.train(_config(), run, resume=True, progress=False)
    assert (run / "notes.txt").read_text() == "mine" and sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(mnist_available, tmp_path, monkeypatch):
    compute = train.compute_loss
    calls = {"n": 0}
    steps_per_epoch = FAST["train_subset"] // FAST["batch_size"]

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss, correct = compute(*args, **kwargs)
        return (loss * math.nan if calls["n"] > steps_per_epoch + 1 else loss), correct

    monkeypatch.setattr(train, "compute_loss", nan_in_epoch_two)
    run = tmp_path / "run"
    with pytest.raises(train.NonFiniteLossError, match="last good checkpoint .epoch 1."):
        train.train(_config(epochs=3), run, progress=False)
    checkpoint = train.load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["state"]["epoch"] == 1 and not checkpoint["state"]["finished"]
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    assert len(_read_metrics(run)) == 1 and not (run / "summary.json").exists()


def test_time_budget_stops_training_and_records_a_partial_epoch(mnist_available, tmp_path):
    config = _config(epochs=None, time_budget_min=0.01, train_subset=2048)
    summary = train.train(config, tmp_path / "run", progress=False)
    metrics = _read_metrics(tmp_path / "run")
    assert metrics[-1].get("partial") and summary["train_minutes"] < 0.1
    assert metrics[-1]["lr"] < 0.2 * config.lr  # the schedule was planned for the budget


def test_lr_schedules_follow_progress():
    cosine = train.make_config("classify", "mnist", "cpu", warmup=0.1)
    assert train.lr_factor(0.0, cosine) == 0.0
    assert train.lr_factor(0.1, cosine) == pytest.approx(0.5 * (1 + math.cos(0.1 * math.pi)))
    assert train.lr_factor(1.0, cosine) == pytest.approx(0.0, abs=1e-12)
    step = train.make_config("classify", "cifar10", "paper")
    factors = [train.lr_factor(p, step) for p in (0.1, 0.35, 0.65, 0.9)]
    assert factors == pytest.approx([1.0, 0.2, 0.04, 0.008])
    assert train.lr_factor(0.025, step) == pytest.approx(0.5)  # half-way through the warm-up


def test_paper_recipes_are_the_presets():
    clf = train.make_config("classify", "cifar10", "paper")
    assert (clf.optimizer, clf.lr, clf.momentum, clf.nesterov, clf.weight_decay) == ("sgd", 0.1, 0.9, True, 5e-4)
    assert clf.epochs == 200 and clf.augment == "crop_flip"
    dens = train.make_config("density", "cifar10", "paper")
    assert (dens.optimizer, dens.lr, dens.logit_alpha) == ("adamax", 3e-3, None)  # official: x - 0.5


def test_command_line_options_build_the_config():
    args = cli.parser().parse_args(["--task", "density", "--preset", "cpu", "--time-budget", "3",
                                       "--out", "x", "--device", "cpu"])
    config = cli.config_from_args(args)
    assert (config.task, config.epochs, config.time_budget_min) == ("density", None, 3.0)
    vanilla = cli.config_from_args(cli.parser().parse_args(["--vanilla", "--out", "x", "--device", "cpu"]))
    assert vanilla.model == {"coeff": None}
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--vanilla", "--coeff", "0.5", "--out", "x"])
    with pytest.raises(ValueError, match="unknown preset"):
        train.make_config("classify", "mnist", "huge")
    wide = cli.config_from_args(cli.parser().parse_args(
        ["--dataset", "cifar10", "--preset", "cpu", "--model", "widths=64,128", "blocks=3,5", "--coeff", "0.8",
         "--out", "x", "--device", "cpu"]))
    assert wide.model == {"widths": (64, 128), "blocks": (3, 5), "coeff": 0.8}
    assert train.model_config(wide, (3, 32, 32)).widths == (64, 128)


def test_a_bad_model_option_fails_before_any_data_is_read(capsys):
    assert cli.main(["--model", "activation=swishy", "--out", "never-made", "--device", "cpu"]) == 1
    assert "unknown activation 'swishy'" in capsys.readouterr().err
    assert cli.main(["--model", "block=coupling", "--out", "never-made", "--device", "cpu"]) == 1
    assert "--vanilla" in capsys.readouterr().err


def test_command_line_trains_and_returns_zero(mnist_available, tmp_path):
    run = tmp_path / "cli"
    argv = ["--task", "classify", "--dataset", "mnist", "--preset", "tiny", "--epochs", "1", "--train-subset",
            "128", "--test-subset", "100", "--threads", "1", "--device", "cpu", "--vanilla", "--out", str(run),
            "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["certificate"]["coeff"] is None and summary["epochs"] == 1


@pytest.mark.parametrize("task", ["classify", "density"])
def test_bench_throughput_runs_tiny(task):
    result = throughput.bench_throughput(task, "mnist", "tiny", batch_size=8, steps=2, warmup_steps=1, device="cpu",
                                    threads=1)
    assert result["images_per_s"] > 0 and result["batch_size"] == 8 and result["params"] > 0


def test_evaluation_runs_with_tf32_off_and_restores_the_setting(monkeypatch):
    seen = []
    config, dev, model, _, _, x, y = throughput.synthetic_setup("classify", "mnist", "tiny", 8, "cpu")
    model(x)
    model.register_forward_hook(lambda *_: seen.append((torch.backends.cudnn.allow_tf32,
                                                        torch.backends.cuda.matmul.allow_tf32)))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    loader = data.TensorLoader((x * 0).to(torch.uint8), y, 4, shuffle=False, transform=lambda t, g=None: x[:len(t)])
    train.evaluate(model, loader, config, dev)
    assert seen and all(flags == (False, False) for flags in seen)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


_SUBNORMAL_AFTER = """
import torch
from iresnet_mini import distributed, throughput, train
config = train.make_config("classify", "mnist", "tiny", device="cpu", threads=1, train_subset=64, batch_size=32)
{setup}
print((torch.tensor([1e-39]) * 1.0).item())
"""


@pytest.mark.parametrize("setup", [
    "train._setup(config, distributed.SINGLE)",
    "throughput.synthetic_setup('classify', 'mnist', 'tiny', 8, 'cpu')",
])
def test_training_on_a_cpu_computes_subnormal_numbers_as_zero(mnist_available, setup):
    """Subnormal activations and gradients slowed a long CPU run 2.7x: training on a CPU flushes them to zero."""
    code = _SUBNORMAL_AFTER.format(setup=setup)
    before = subprocess.run([sys.executable, "-c", code.replace(setup, "")], capture_output=True, text=True,
                            check=True)
    after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(before.stdout) > 0 and float(after.stdout) == 0.0
