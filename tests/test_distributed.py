"""Training on two CPU processes with torchrun (gloo): the ranks agree, shard the data, and only rank 0 writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from iresnet_mini import data

WORKER = Path(__file__).with_name("ddp_worker.py")
TINY = ["--task", "classify", "--dataset", "mnist", "--preset", "tiny", "--train-subset", "512",
        "--test-subset", "200", "--final-test-subset", "100", "--threads", "1", "--no-progress"]


def _torchrun(nproc: int, args: list[str], dump: Path | None = None, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        env["DDP_TEST_DUMP"] = str(dump)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return command, env


def _run(nproc, args, dump=None, timeout=300):
    command, env = _torchrun(nproc, args, dump)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_ranks_shards_are_disjoint_parts_of_one_permutation():
    images, labels = torch.arange(103, dtype=torch.uint8).view(-1, 1, 1, 1), torch.arange(103)
    loaders = [data.TensorLoader(images, labels, 8, drop_last=True, seed=3, shard=(r, 2)) for r in range(2)]
    single = data.TensorLoader(images, labels, 16, drop_last=True, seed=3)
    batches = [[y.tolist() for _, y in loader] for loader in loaders]
    assert len(batches[0]) == len(batches[1]) == len(loaders[0]) == 6  # 103 // 2 = 51 each, 6 batches of 8
    seen = [set(sum(b, [])) for b in batches]
    assert not seen[0] & seen[1]
    for (a, b), whole in zip(zip(*batches), (y.tolist() for _, y in single)):
        assert sorted(a + b) == sorted(whole)  # one step of two ranks = one step of one process, twice the batch
    with pytest.raises(ValueError, match="shard"):
        data.TensorLoader(images, labels, 8, shard=(2, 2))


@pytest.mark.slow
def test_two_processes_train_one_model_and_only_rank_0_writes(mnist_available, tmp_path):
    run, dump = tmp_path / "run", tmp_path / "dump"
    _run(2, [str(WORKER), *TINY, "--epochs", "1", "--batch-size", "32", "--out", str(run)], dump)
    states = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), f"{key} differs between the ranks"
    assert any(key.endswith(".u") for key in states[0])  # the power iteration's vectors are compared too
    writes = [json.loads((dump / f"writes{r}.json").read_text()) for r in range(2)]
    assert writes[1] == [] and {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"} <= set(writes[0])
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 64 and config["batch_size"] == 32
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_images"] == 100  # the sharded evaluation covers the whole final test set


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_and_finishes(mnist_available, tmp_path):
    run = tmp_path / "run"
    args = ["-m", "iresnet_mini.train", *TINY, "--epochs", "6", "--batch-size", "32", "--out", str(run)]
    command, env = _torchrun(2, args)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text().strip():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: torchrun and both ranks
    process.wait()
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done < 6 and not (run / "summary.json").exists()
    _run(2, ["-m", "iresnet_mini.train", *TINY, "--epochs", "6", "--batch-size", "32", "--out", str(run),
             "--resume"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 6


@pytest.mark.slow
def test_two_processes_of_batch_b_train_like_one_process_of_batch_2b(mnist_available, tmp_path):
    losses = {}
    for nproc, batch in ((1, 64), (2, 32)):
        run = tmp_path / f"run{nproc}"
        _run(nproc, [str(WORKER), *TINY, "--epochs", "2", "--batch-size", str(batch), "--out", str(run)],
             tmp_path / f"dump{nproc}")
        losses[nproc] = [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    print(f"train loss per epoch, 1 process x 64: {losses[1]}; 2 processes x 32: {losses[2]}")
    # the same images per step; only the augmentation noise and the head's batch statistics differ per rank
    assert losses[2] == pytest.approx(losses[1], rel=0.01), losses
