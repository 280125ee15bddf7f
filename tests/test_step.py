"""A training step that never waits on the host: synchronisations counted, compiled code that really runs."""
from __future__ import annotations

import pytest
import torch

from iresnet_mini import bench, blocks, logdet, throughput, train
from iresnet_mini.bench import DispatchCounter


def test_every_presets_training_step_reads_back_at_most_one_value():
    for task, dataset, preset in bench.STEP_PROFILE_PRESETS:
        result = bench.step_profile(task, dataset, preset, device="cpu")
        assert result["syncs"] <= 1, result  # the loop's finite-loss check, nothing else
        assert result["ops"] > 100


def test_the_step_profile_counts_a_planted_read_back(monkeypatch):
    compute = train.compute_loss

    def reading(*args, **kwargs):
        loss, correct = compute(*args, **kwargs)
        float(loss.detach())  # what a progress bar or a log line would do every step
        return loss, correct

    monkeypatch.setattr(train, "compute_loss", reading)
    assert bench.step_profile("classify", "mnist", "tiny", device="cpu")["syncs"] == 2


def test_the_unbiased_estimator_draws_its_count_without_reading_a_tensor():
    torch.manual_seed(0)
    branch = blocks.conv_branch(4, 8, coeff=0.9)
    x = torch.randn(2, 4, 6, 6)
    branch.train()
    branch(x)
    with DispatchCounter() as counter:
        logdet.unbiased_logdet(branch, x, n_exact_terms=2)
    assert counter.syncs == 0 and counter.ops > 0


def test_the_classifier_step_compiles_without_graph_breaks():
    config, dev, model, step_fn, optimizer, x, y = throughput.synthetic_setup("classify", "mnist", "tiny", 4, "cpu")
    train.train_step(step_fn, optimizer, x, y, config, dev, config.lr)  # ActNorm initialised, as in training
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_the_density_models_compiled_step_runs_compiled_code(monkeypatch):
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend=counter))
    config, dev, model, step_fn, optimizer, x, y = throughput.synthetic_setup("density", "mnist", "tiny", 4, "cpu",
                                                                        compile=True)
    loss, _ = train.train_step(step_fn, optimizer, x, y, config, dev, config.lr)
    assert counter.frame_count > 0 and counter.op_count > 0  # the flow's log_prob itself was compiled
    assert torch.isfinite(loss)


def test_the_step_profile_in_the_facts_is_what_the_profiler_counts_now():
    from iresnet_mini import facts

    for task, dataset, preset, _before, (ops, syncs) in facts.STEP_PROFILE:
        result = bench.step_profile(task, dataset, preset, device="cpu")
        assert result["syncs"] == syncs, (task, dataset, preset)
        assert result["ops"] == pytest.approx(ops, rel=0.1), (task, dataset, preset)  # torch versions differ a little
