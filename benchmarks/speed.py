"""Speed and accuracy of convnet's models on this machine, side by side, in one run.

    python benchmarks/speed.py                  # lesson recipe, fast to 99 %, inference throughput
    python benchmarks/speed.py --keras          # also the lesson's own Keras code (needs the `bench` extra)
    python benchmarks/speed.py --accurate       # also `accurate` (2 CPU cores: ≈ 13 min in fp32)
    python benchmarks/speed.py --ensemble accurate accurate strided strided   # these four, and their average
    python benchmarks/speed.py --ensemble deskewed strided nopad:100   # nopad for 100 epochs, not its recipe's 30
    python benchmarks/speed.py --accurate --ensemble deskewed strided   # accurate alone, and an ensemble without it
    python benchmarks/speed.py --first-seed 10 --keep runs/ --ensemble accurate strided   # seeds 10, 10; runs kept
    python benchmarks/speed.py --first-seed 10 --keep runs/ --resume --ensemble accurate strided deskewed
                                # the same two read back from runs/ (trained earlier), deskewed trained beside them
    python benchmarks/speed.py --device cuda --cuda-graphs --ensemble accurate strided   # on a GPU, steps as graphs

Runs under a minute (fast, lesson, Keras) are repeated --repeats times with different seeds and the table gives
their median; train seconds are the training loop's wall time alone (no data loading, no evaluation), as recorded in
each run's metrics.json. Both lesson rows train on all 60,000 training images per epoch, as the lesson's Keras code
does. Precision is `auto`: bf16 autocast where it is faster than fp32 (see docs/training.md), fp32 elsewhere.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from convnet.cli import positive_int, report_errors
from convnet.config import TrainConfig
from convnet.data import load_dataset, to_tensor
from convnet.device import cpu_info, exact_fp32, resolve_device, use_bf16
from convnet.evaluate import evaluate, logits_of, shared_mistakes
from convnet.models import list_models
from convnet.models.ensemble import Ensemble
from convnet.checkpoint import RUN_FILES, load_model
from convnet.train import train

KERAS_EPOCH_SECONDS = 49.6 / 10  # the lesson's Keras code, as measured by its author, when TensorFlow is absent


def run(cfg: TrainConfig, keep: Path | None = None) -> tuple[dict, torch.nn.Module]:
    """Train `cfg` in a run folder that is deleted afterwards, or kept as `keep` when given."""
    if keep is not None:
        cfg.out = str(keep)
        result = train(cfg, log=lambda m: None)
        return result.metrics, result.model
    with tempfile.TemporaryDirectory() as tmp:
        return run(cfg, Path(tmp) / "run")


def median_row(name: str, runs: list[dict], target: float | None = None) -> dict:
    for r in runs:
        print(f"  {name}: {r['accuracy']:.2%} in {r['train_seconds']:.2f}s", file=sys.stderr)
    row = {"name": f"{name} (median of {len(runs)})" if len(runs) > 1 else name,
           "accuracy": statistics.median(r["accuracy"] for r in runs),
           "train_seconds": statistics.median(r["train_seconds"] for r in runs),
           "epoch_seconds": statistics.median(r["epoch_seconds"] for r in runs)}
    if target is not None:
        row["notes"] = f"{sum(r['accuracy'] >= target for r in runs)}/{len(runs)} runs ≥ {target:.1%}"
    return row


def trained(model: str, seed: int, device: str, **options) -> dict:
    """The figures of a run that is not kept."""
    return figures(run(TrainConfig(model=model, seed=seed, device=device, **options))[0])


def figures(metrics: dict) -> dict:
    """A row's figures from a run's metrics.json."""
    return {"accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
            "epoch_seconds": metrics["train_seconds"] / metrics["epochs"]}


def kept_run(cfg: TrainConfig, folder: Path) -> tuple[dict, torch.nn.Module] | None:
    """The metrics and model of a finished run of `cfg` in `folder` (trained by an earlier `--keep`), or None where
    the folder holds no run. A ValueError where it holds an unfinished run or one of other options: that run is the
    user's to look at or remove, never to be overwritten or taken for this one."""
    if not any((folder / name).exists() for name in RUN_FILES):
        return None
    try:
        options, metrics = (json.loads((folder / name).read_text(encoding="utf-8"))
                            for name in ("config.json", "metrics.json"))
    except (OSError, ValueError):  # killed while training (no metrics.json yet), or a file that is no JSON
        options = metrics = None
    finished = (isinstance(options, dict) and isinstance(metrics, dict) and metrics.get("interrupted") is False
                and all(isinstance(metrics.get(k), (int, float)) for k in ("test_accuracy", "train_seconds"))
                and isinstance(metrics.get("epochs"), int) and metrics["epochs"] >= 1)
    if not finished:
        raise ValueError(f"{folder} holds an unfinished run; remove it to train that member again")
    wanted = dataclasses.asdict(cfg.resolved())
    if other := [f"{k} {options.get(k)!r}, not {v!r}" for k, v in wanted.items() if k != "out" and options.get(k) != v]:
        raise ValueError(f"{folder} holds a run with other options ({'; '.join(other)}); choose another folder")
    return metrics, load_model(folder, cfg.device)  # beside the members trained now, on their device


def bench_fast(repeats: int, device: str) -> dict:
    runs = [trained("fast", s, device) for s in range(repeats)]
    # Set against Keras' whole 10 epochs only when most runs reached 99 %: the time of a run that did not is no time
    # to 99 %.
    return median_row("fast, 1 epoch", runs, target=0.99) | {
        "time_to_99": 2 * sum(r["accuracy"] >= 0.99 for r in runs) > len(runs)}


def bench_lesson(repeats: int, device: str) -> list[dict]:
    """The lesson's recipe at the default precision and, where that is bf16, in fp32 as Keras computes; on all 60,000
    training images, as Keras trains, where the recipe holds 10 % out."""
    precisions = ["auto"] + (["fp32"] if use_bf16("auto", torch.device(device)) else [])
    return [median_row(f"lesson, its recipe on all 60,000 images (10 epochs, batch 32, {_precision(p, device)})",
                       [trained("lesson", s, device, val_split=0.0, precision=p) for s in range(repeats)])
            | {"vs_keras": True} for p in precisions]  # as Keras trains it: an ensemble's lesson member is not


def _precision(precision: str, device: str) -> str:
    return "bf16 autocast" if use_bf16(precision, torch.device(device)) else "fp32"


def parse_member(spec: str) -> tuple[str, int | None]:
    """'nopad:100' → ('nopad', 100): a model of the zoo, and optionally its epochs instead of its recipe's."""
    name, _, epochs = spec.partition(":")
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if epochs and not (epochs.isdigit() and int(epochs) >= 1):
        raise ValueError(f"{spec!r}: the epochs after ':' must be a whole number of at least 1")
    return name, int(epochs) if epochs else None


def plan(members: list[tuple[str, int | None]], first_seed: int,
         keep: Path | None) -> list[tuple[str, int | None, int, Path | None]]:
    """(model, epochs, seed, run folder to keep or None) for each member: seeds counted per architecture from
    `first_seed` (accurate, accurate, strided → seeds 0, 1, 0), folders named MODEL-seedS inside `keep`."""
    models = [m for m, _ in members]
    seeds = [first_seed + models[:i].count(m) for i, m in enumerate(models)]
    return [(m, epochs, s, keep / f"{m}-seed{s}" if keep else None) for (m, epochs), s in zip(members, seeds)]


def member_config(model: str, epochs: int | None, seed: int, device: str, cuda_graphs: bool) -> TrainConfig:
    return TrainConfig(model=model, epochs=epochs, seed=seed, device=device, cuda_graphs=cuda_graphs)  # None: recipe's


def bench_members(members: list[tuple[str, int | None]], device: str, first_seed: int = 0,
                  keep: Path | None = None, cuda_graphs: bool = False, resume: bool = False) -> list[dict]:
    """Each model with its recipe (its epochs replaced where given) and its seed from `plan`; with several, also the
    average of their probabilities (`convnet ensemble`). With `keep`, each run folder stays there; with `resume` too,
    a member whose folder there holds its finished run is read back, not trained again."""
    rows, runs, nets = [], [], []
    for m, epochs, s, folder in plan(members, first_seed, keep):  # each row is printed as its model ends: minutes each
        cfg = member_config(m, epochs, s, device, cuda_graphs)
        recipe = f"its recipe, {epochs} epoch{'s' * (epochs != 1)}" if epochs else "its recipe"
        if resume and (done := kept_run(cfg, folder)):
            r, net = figures(done[0]), done[1]
            recipe += "; trained earlier, read from its folder"
        else:
            metrics, net = run(cfg, folder)
            r = figures(metrics)
        rows.append(median_row(f"{m}, seed {s} ({recipe})", [r], target=0.997))
        runs.append(r)
        nets.append(net)
    if len(members) > 1:
        data = load_dataset("mnist")
        result = evaluate(Ensemble(nets), data)
        shared = shared_mistakes(result, [evaluate(net, data) for net in nets], data.test_y)
        said = f"; {shared} of its {result.mistakes} mistakes made by most members" if result.mistakes else ""
        rows.append({"name": f"ensemble of those {len(members)} (`convnet ensemble`)", "accuracy": result.accuracy,
                     "train_seconds": sum(r["train_seconds"] for r in runs),
                     "notes": f"{'≥' if result.accuracy >= 0.998 else 'below'} {0.998:.1%}{said}"})
    return rows


def bench_inference(device: str, repeats: int = 5) -> dict:
    """Images per second of a trained `fast` model (fp32, eval mode) on batched, already normalised tensors."""
    model = run(TrainConfig(model="fast", epochs=1, device=device))[1]
    x = to_tensor(load_dataset("mnist").test_x, model.mean, model.std, next(model.parameters()).device)
    times = []
    with exact_fp32(x.device):  # fp32 as the row says: not TF32, which a GPU's convolutions take by default
        logits_of(model, x[:2000]).cpu()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            logits_of(model, x).cpu()  # the answers in host memory: on a GPU the kernels would only be queued otherwise
            times.append(time.perf_counter() - start)
    rate = len(x) / statistics.median(times)
    return {"name": f"fast inference, 10,000 test images (fp32, median of {repeats})", "images_per_second": rate}


def bench_keras(repeats: int) -> dict | None:
    script = Path(__file__).with_name("keras_lesson.py")
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            print(f"  keras: skipped ({reason})", file=sys.stderr)
            return None
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return median_row("Keras lesson (10 epochs, batch 32, fp32)", runs)


def table(rows: list[dict], precision: str) -> str:
    keras = next((r for r in rows if r["name"].startswith("Keras")), None)
    reference = keras["epoch_seconds"] if keras else KERAS_EPOCH_SECONDS
    lines = ["| run | test accuracy | train seconds | s/epoch | speed per epoch vs Keras lesson | notes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "images_per_second" in r:
            lines.append(f"| {r['name']} | | | | | {r['images_per_second']:,.0f} images/s |")
            continue
        per_epoch = r.get("epoch_seconds")
        ratio = f"{reference / per_epoch:.2f}×" if r.get("vs_keras") else ""  # the same network and data
        notes = r.get("notes", "")
        if r.get("time_to_99"):
            notes += f"; {reference * 10 / r['train_seconds']:.0f}× less time than Keras' 10 epochs"
        elif "time_to_99" in r:
            notes += "; most runs did not reach it: no time to 99 %"
        epoch = f"{per_epoch:.2f}" if per_epoch else ""
        lines.append(f"| {r['name']} | {r['accuracy']:.2%} | {r['train_seconds']:.2f} | {epoch} | {ratio} | {notes} |")
    lines.append(f"\nTraining precision where no other is named: {precision} (`--precision auto`).")
    if not keras:
        lines.append(f"Keras not run: ratios use the lesson's {KERAS_EPOCH_SECONDS:.2f} s/epoch.")
    return "\n".join(lines)


def unwritable(folder: Path) -> str | None:
    """Why a run folder could not be made or written at `folder`, or None: the nearest part of it that exists must be
    a folder this process may write into."""
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        return f"{there} is not a folder"
    if not os.access(there, os.W_OK | os.X_OK):
        return f"{there}: cannot write into this folder"
    return None


def check_kept(parser: argparse.ArgumentParser, args: argparse.Namespace,
               planned: list[tuple[str, int | None, int, Path]]) -> None:
    """Refuse the run folders in the way, before any work: every one without --resume; with it, those that hold no
    finished run of their member."""
    for *_, folder in planned:  # a file in the way, or a place that cannot be written: found now, not after hours
        if problem := unwritable(folder):
            parser.error(f"--keep: {problem}")
    if not args.resume:
        if taken := [str(f) for *_, f in planned if any((f / name).exists() for name in RUN_FILES)]:
            held = "holds" if len(taken) == 1 else "hold"
            parser.error(f"--keep: {', '.join(taken)} already {held} a run; choose another folder, or add --resume "
                         "to read back the finished ones")
        return
    for m, epochs, s, folder in planned:
        try:
            kept_run(member_config(m, epochs, s, args.device, args.cuda_graphs), folder)
        except ValueError as error:
            parser.error(f"--resume: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="runs of each short benchmark (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | mps | auto")
    parser.add_argument("--accurate", action="store_true",
                        help="also train `accurate` alone (long; skipped when --ensemble already names it)")
    parser.add_argument("--ensemble", nargs="+", metavar="MODEL[:EPOCHS]",
                        help="train these models (long) and report their ensemble too, e.g. accurate accurate strided "
                             "nopad:100 (EPOCHS instead of the recipe's)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seed of the first model of each architecture in --accurate and --ensemble (default 0)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the run folders of --accurate and --ensemble in DIR (default: deleted)")
    parser.add_argument("--resume", action="store_true",
                        help="with --keep: read back the members whose folders there hold their finished runs (an "
                             "earlier run cut short, or members trained a few at a time) instead of training them")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="train --accurate and --ensemble models with their steps replayed as CUDA graphs")
    parser.add_argument("--keras", action="store_true", help="also run the lesson's Keras code (needs tensorflow)")
    parser.add_argument("--skip-lesson", action="store_true")
    args = parser.parse_args()
    try:
        members = [parse_member(spec) for spec in args.ensemble or []]
    except ValueError as error:
        parser.error(str(error))
    # Seeds are 32 bits, counted from --first-seed for each kind of member: refused now, not after hours.
    highest = 2**32 - max(Counter(m for m, _ in members).values(), default=1)
    if not 0 <= args.first_seed <= highest:
        parser.error(f"--first-seed must be 0 to {highest:,}, not {args.first_seed}")
    alone = [("accurate", None)] if args.accurate and "accurate" not in (m for m, _ in members) else []
    given = [o for o, v in (("--keep", args.keep), ("--resume", args.resume), ("--first-seed", args.first_seed)) if v]
    if given and not (args.accurate or members):  # they would be taken and do nothing
        parser.error(f"{', '.join(given)}: for the models of --accurate or --ensemble, and neither is given")
    if args.resume and not args.keep:
        parser.error("--resume reads finished runs from the folder of --keep; add --keep DIR")
    args.device = str(resolve_device(args.device))  # auto → what it picks; a missing GPU fails here, before any work
    if args.cuda_graphs and not args.device.startswith("cuda"):  # refused by the first member's training otherwise
        parser.error(f"--cuda-graphs records steps on a CUDA GPU; add --device cuda (the device is {args.device})")
    if args.keep:  # a run folder in the way would stop the benchmark after hours of training: refuse it now
        check_kept(parser, args, [*plan(alone, args.first_seed, args.keep), *plan(members, args.first_seed, args.keep)])
    load_dataset("mnist")  # fetch before timing anything
    print(f"machine: {cpu_info('model name') or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}, precision auto = {_precision('auto', args.device)}",
          file=sys.stderr)
    rows = [bench_fast(args.repeats, args.device)]
    if not args.skip_lesson:
        rows += bench_lesson(args.repeats, args.device)
    if args.keras and (keras := bench_keras(args.repeats)):
        rows.append(keras)
    if alone:
        rows += bench_members(alone, args.device, args.first_seed, args.keep, args.cuda_graphs, args.resume)
    if members:
        rows += bench_members(members, args.device, args.first_seed, args.keep, args.cuda_graphs, args.resume)
    rows.append(bench_inference(args.device))
    print(table(rows, _precision("auto", args.device)))


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
