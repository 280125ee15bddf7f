"""The GPU acceptance run: ``python -m iresnet_mini.bench gpu [--device cuda] [--smoke] [--out DIR]``.

On one GPU, in about ten minutes, it measures and prints what a learner who trains at paper
scale relies on:

1. host synchronisations and dispatcher operators per training step, per preset;
2. training images per second of the paper's CIFAR-10 classifier and of the paper's MNIST
   density model;
3. the MNIST classifier (``gpu`` preset): the time until the test accuracy reaches 99.5 %,
   and its certificate on the GPU (every layer's norm against c, the inverse's error);
4. the MNIST density model (``cpu`` preset) after a fixed number of minutes: test bits/dim;
5. kill and resume on the device: a run killed after its first epoch is resumed and finishes.

``--smoke`` runs the same steps at toy sizes (tiny presets, seconds each), so that the whole
script is tested on a CPU (``--device cpu --smoke``); the figures then mean nothing.
Everything is also written to ``DIR/acceptance.json``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import throughput, train
from .config import describe, get_device
from .files import write_atomically

__all__ = ["SIZES", "run", "main"]

# What each step trains: the real acceptance run, and its smoke version for a CPU.
SIZES = {
    False: {"throughput_batch": {"classify": 128, "density": 64}, "throughput_presets": "paper",
            "mnist_preset": "gpu", "mnist_minutes": 3.0, "mnist_target": 0.995,
            "density_preset": "cpu", "density_minutes": 2.0, "density_batch": 64,
            "resume_args": ["--preset", "cpu", "--epochs", "3", "--train-subset", "12800", "--test-subset", "1000",
                            "--final-test-subset", "1000", "--batch-size", "128"]},
    True: {"throughput_batch": {"classify": 4, "density": 2}, "throughput_presets": "tiny",
           "mnist_preset": "tiny", "mnist_minutes": 0.05, "mnist_target": 0.2,
           "density_preset": "tiny", "density_minutes": 0.03, "density_batch": 16,
           "resume_args": ["--preset", "tiny", "--epochs", "3", "--train-subset", "1024", "--test-subset", "100",
                           "--final-test-subset", "100", "--batch-size", "32"]},
}


def _say(text: str) -> None:
    print(text, flush=True)


def _step_profiles(device: str) -> list[dict]:
    from .bench import STEP_PROFILE_PRESETS, step_profile

    rows = [step_profile(task, dataset, preset, device=device) for task, dataset, preset in STEP_PROFILE_PRESETS]
    for r in rows:
        _say(f"  {r['task']:<9} {r['dataset']:<8} {r['preset']:<6} {r['ops']:>8,} ops, {r['syncs']} sync(s) per step")
    return rows


def _throughput(device: str, sizes: dict) -> dict:
    preset = sizes["throughput_presets"]
    results = {}
    for task, dataset in (("classify", "cifar10"), ("density", "mnist")):
        r = throughput.bench_throughput(task, dataset, preset, sizes["throughput_batch"][task], steps=5, device=device)
        results[f"{task}-{dataset}-{preset}"] = r
        _say(f"  {task} {dataset} {preset} preset, batch {r['batch_size']}: {r['seconds_per_step']:.3f} s per step, "
             f"{r['images_per_s']:,.0f} images/s ({r['params']:,} parameters)")
    return results


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _mnist_to_target(device: str, sizes: dict, work: Path) -> dict:
    run_dir = work / "mnist-classifier"
    config = train.make_config("classify", "mnist", sizes["mnist_preset"], device=device, epochs=None,
                               time_budget_min=sizes["mnist_minutes"], test_subset=None)
    summary = train.train(config, run_dir, progress=False)
    history = _history(run_dir)
    reached = next((r for r in history if r["test_accuracy"] >= sizes["mnist_target"]), None)
    cert = summary["certificate"]
    result = {"target": sizes["mnist_target"], "minutes_to_target": reached["elapsed_s"] / 60 if reached else None,
              "epochs": summary["epochs"], "final_test_accuracy": summary["test_accuracy"],
              "per_epoch": [(r["elapsed_s"], r["test_accuracy"]) for r in history], "certificate": cert}
    when = f"{result['minutes_to_target']:.2f} min" if reached else f"not within {sizes['mnist_minutes']:g} min"
    _say(f"  MNIST, {sizes['mnist_preset']} preset: {100 * sizes['mnist_target']:.1f} % test accuracy after {when}; "
         f"{100 * summary['test_accuracy']:.2f} % after {summary['epochs']} epochs")
    _say(f"  certificate on {device}: every layer <= c: {cert['all_below_coeff']} (largest {cert['max_effective_norm']:.4f}, "
         f"c = {cert['coeff']}), inverse error {cert['reconstruction_max_abs_error']:.1e}, converged: "
         f"{cert['inverse_converged']}")
    return result


def _density_after_minutes(device: str, sizes: dict, work: Path) -> dict:
    config = train.make_config("density", "mnist", sizes["density_preset"], device=device, epochs=None,
                               time_budget_min=sizes["density_minutes"], batch_size=sizes["density_batch"],
                               test_subset=1000, final_test_subset=None if not device.startswith("cpu") else 200)
    summary = train.train(config, work / "mnist-density", progress=False)
    _say(f"  MNIST density, {sizes['density_preset']} preset, {sizes['density_minutes']:g} min: "
         f"{summary['test_bits_per_dim']:.3f} bits/dim on {summary['test_images']:,} test images")
    return {"minutes": sizes["density_minutes"], "test_bits_per_dim": summary["test_bits_per_dim"],
            "test_images": summary["test_images"], "steps": summary["steps"]}


def _kill_and_resume(device: str, sizes: dict, work: Path) -> dict:
    run_dir = work / "resume"
    command = [sys.executable, "-m", "iresnet_mini.train", "--task", "classify", "--dataset", "mnist",
               *sizes["resume_args"], "--device", device, "--no-progress", "--out", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the run to be killed ended (or hung) before its first epoch")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = len(_history(run_dir))
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    if resumed.returncode != 0:
        raise RuntimeError(f"resuming failed:\n{resumed.stderr[-2000:]}")
    epochs = [r["epoch"] for r in _history(run_dir)]
    ok = epochs == list(range(1, len(epochs) + 1)) and (run_dir / "summary.json").is_file()
    _say(f"  killed after epoch {killed_after}, resumed on {device}: epochs {epochs}, finished: {ok}")
    return {"killed_after_epoch": killed_after, "epochs": epochs, "ok": ok}


def run(device: str | None = None, smoke: bool = False, out: str | os.PathLike | None = None) -> dict:
    """The acceptance run (see the module docstring); returns its figures."""
    device = str(get_device(device))
    sizes = SIZES[smoke]
    _say(describe() + (" (smoke run: toy sizes, the figures mean nothing)" if smoke else ""))
    with tempfile.TemporaryDirectory(prefix="iresnet-acceptance-") as tmp:
        work = Path(tmp)
        report = {"device": device, "smoke": smoke}
        steps = (("1. host synchronisations per training step", "step_profile", lambda: _step_profiles(device)),
                 ("2. training throughput", "throughput", lambda: _throughput(device, sizes)),
                 ("3. MNIST classifier: time to the target, and the certificate", "mnist",
                  lambda: _mnist_to_target(device, sizes, work)),
                 ("4. MNIST density model after a fixed time", "density",
                  lambda: _density_after_minutes(device, sizes, work)),
                 ("5. kill and resume", "resume", lambda: _kill_and_resume(device, sizes, work)))
        for title, key, step in steps:
            start = time.perf_counter()
            _say(title)
            report[key] = step()
            report[f"{key}_seconds"] = time.perf_counter() - start
    if out is not None:
        write_atomically(Path(out) / "acceptance.json", json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(args) -> None:
    run(args.device, args.smoke, args.out)
