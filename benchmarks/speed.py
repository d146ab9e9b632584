"""Speed and accuracy of convnet's models on this machine, side by side, in one run.

    python benchmarks/speed.py                 # lesson recipe, fast to 99 %, inference throughput
    python benchmarks/speed.py --accurate      # also the `accurate` model (≈ 10–15 min on 2 CPU cores)
    python benchmarks/speed.py --keras         # also the lesson's own Keras code (needs the `bench` extra)

Time-to-99 % is the median of --repeats runs with different seeds; train seconds are the training loop's wall time
alone (no data loading, no evaluation), as recorded in each run's metrics.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from convnet.data import load_dataset, to_tensor
from convnet.evaluate import logits_of
from convnet.train import TrainConfig, train

KERAS_EPOCH_SECONDS = 49.6 / 10  # the lesson's Keras code measured on the 2-core development machine


def run(cfg: TrainConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg.out = str(Path(tmp) / "run")
        return train(cfg, log=lambda m: None).metrics


def bench_fast(repeats: int, device: str) -> dict:
    runs = [run(TrainConfig(model="fast", epochs=1, seed=s, device=device)) for s in range(repeats)]
    for r in runs:
        print(f"  fast seed run: {r['test_accuracy']:.2%} in {r['train_seconds']:.2f}s", file=sys.stderr)
    return {
        "name": f"fast, 1 epoch (median of {repeats})",
        "accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "train_seconds": statistics.median(r["train_seconds"] for r in runs),
        "reached_99": sum(r["test_accuracy"] >= 0.99 for r in runs),
        "runs": repeats,
    }


def bench_training(model: str, device: str) -> dict:
    r = run(TrainConfig(model=model, device=device))
    epochs = r["epochs"]
    return {"name": f"{model}, its recipe ({epochs} epochs)", "accuracy": r["test_accuracy"],
            "train_seconds": r["train_seconds"], "epoch_seconds": r["train_seconds"] / epochs}


def bench_inference(device: str, repeats: int = 3) -> dict:
    """Images per second of a trained `fast` model on batched, already normalised tensors."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train(TrainConfig(model="fast", epochs=1, device=device, out=tmp), log=lambda m: None)
    model, data = result.model, load_dataset("mnist")
    x = to_tensor(data.test_x, model.mean, model.std, next(model.parameters()).device)
    logits_of(model, x[:2000])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits_of(model, x)
        times.append(time.perf_counter() - start)
    return {"name": "fast inference, 10,000 test images", "images_per_second": len(x) / statistics.median(times)}


def bench_keras() -> dict | None:
    script = Path(__file__).with_name("keras_lesson.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  keras: skipped ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lesson = next((r for r in rows if r["name"].startswith("lesson")), None)
    keras = next((r for r in rows if r["name"].startswith("Keras")), None)
    reference = keras["epoch_seconds"] if keras else KERAS_EPOCH_SECONDS
    lines = ["| run | test accuracy | train seconds | s/epoch | speed vs Keras lesson (per epoch) | notes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "images_per_second" in r:
            lines.append(f"| {r['name']} | | | | | {r['images_per_second']:,.0f} images/s |")
            continue
        per_epoch = r.get("epoch_seconds")
        ratio = f"{reference / per_epoch:.2f}×" if per_epoch and r is not keras else ""
        notes = f"{r['reached_99']}/{r['runs']} runs ≥ 99 %" if "runs" in r else ""
        if r.get("train_seconds") and r["name"].startswith("fast"):
            notes += f"; {KERAS_EPOCH_SECONDS * 10 / r['train_seconds']:.0f}× less time than Keras' 10 epochs"
        lines.append(f"| {r['name']} | {r['accuracy']:.2%} | {r['train_seconds']:.2f} | "
                     f"{per_epoch:.2f} | {ratio} | {notes} |" if per_epoch else
                     f"| {r['name']} | {r['accuracy']:.2%} | {r['train_seconds']:.2f} | | | {notes} |")
    if lesson and keras:
        lines.append(f"\nlesson recipe in convnet: {keras['epoch_seconds'] / lesson['epoch_seconds']:.2f}× the speed "
                     "of the same network in Keras on this machine")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--accurate", action="store_true", help="also train `accurate` (long)")
    parser.add_argument("--keras", action="store_true", help="also run the lesson's Keras code (needs tensorflow)")
    parser.add_argument("--skip-lesson", action="store_true")
    args = parser.parse_args()
    load_dataset("mnist")  # fetch before timing anything
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}", file=sys.stderr)
    rows = [bench_fast(args.repeats, args.device)]
    if not args.skip_lesson:
        rows.append(bench_training("lesson", args.device))
    if args.accurate:
        rows.append(bench_training("accurate", args.device))
    rows.append(bench_inference(args.device))
    if args.keras and (keras := bench_keras()):
        rows.append(keras)
    print(table(rows))


if __name__ == "__main__":
    main()
