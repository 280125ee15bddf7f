"""Run under torchrun by tests/test_distributed.py: trains with iresnet_mini.cli.main, then saves what each rank holds.

Environment: DDP_TEST_DUMP, a folder for rank<R>.pt (the rank's model state) and writes<R>.json (the files the
rank wrote through the trainer).
"""
import json
import os
import sys
from pathlib import Path

import torch

from iresnet_mini import checkpoints, cli, train

dump, rank = Path(os.environ["DDP_TEST_DUMP"]), os.environ.get("RANK", "0")
writes, models = [], []
real_atomic_open, real_write, real_setup = checkpoints.atomic_open, checkpoints.write_atomically, train._setup


def atomic_open(path, *args, **kwargs):
    writes.append(Path(path).name)
    return real_atomic_open(path, *args, **kwargs)


def write_atomically(path, payload):
    writes.append(Path(path).name)
    return real_write(path, payload)


def setup(*args, **kwargs):
    result = real_setup(*args, **kwargs)
    models.append(result[5])
    return result


checkpoints.atomic_open, checkpoints.write_atomically = atomic_open, write_atomically  # every file of a run
train._setup = setup
status = cli.main(sys.argv[1:])
torch.save(models[-1].state_dict(), dump / f"rank{rank}.pt")
(dump / f"writes{rank}.json").write_text(json.dumps(writes))
sys.exit(status)
