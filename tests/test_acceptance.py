"""The GPU acceptance run works end to end on a CPU at toy sizes (bench gpu --device cpu --smoke)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_acceptance_run_works_end_to_end_on_cpu_at_smoke_size(mnist_available, tmp_path):
    result = subprocess.run([sys.executable, "-m", "iresnet_mini.bench", "gpu", "--device", "cpu", "--smoke",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("1. host synchronisations", "2. training throughput", "3. MNIST classifier",
                    "4. MNIST density", "5. kill and resume"):
        assert heading in result.stdout
    report = json.loads((tmp_path / "acceptance.json").read_text())
    assert report["device"] == "cpu" and report["smoke"]
    assert all(row["syncs"] <= 1 for row in report["step_profile"])
    assert report["mnist"]["certificate"]["all_below_coeff"] and report["mnist"]["certificate"]["inverse_converged"]
    assert report["density"]["test_bits_per_dim"] > 0
    assert report["resume"]["ok"] and report["resume"]["epochs"] == [1, 2, 3]
