"""The scripts in benchmarks/ answer --help and bad input with a clear message and a non-zero exit, no traceback.

Their measurements take minutes to hours and are run by hand (benchmarks/README.md); these checks stop before any.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convnet.data import load_dataset

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def script(name: str, *args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVNET_HOME": str(home)}  # an empty cache: nothing is fetched or trained
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("name", ["gpu.py", "keras_lesson.py", "speed.py"])
def test_help(name, tmp_path):
    done = script(name, "--help", home=tmp_path)
    assert done.returncode == 0 and "usage:" in done.stdout and not done.stderr


@pytest.mark.parametrize("name, args, words", [
    ("gpu.py", ["--repeats", "0"], "--repeats: must be at least 1"),
    ("gpu.py", ["--quick", "--repeats", "2"], "--quick runs each recipe once: leave out --repeats"),
    ("speed.py", ["--repeats", "-2"], "--repeats: must be at least 1"),
    ("speed.py", ["--first-seed", "-1", "--ensemble", "fast", "fast"], "--first-seed must be 0 to 4,294,967,294"),
    ("speed.py", ["--cuda-graphs", "--ensemble", "fast", "fast"], "--cuda-graphs records steps on a CUDA GPU; add "
                                                                   "--device cuda (the device is cpu)"),
    ("speed.py", ["--keep", "runs", "--first-seed", "3"], "--keep, --first-seed: for the models of --accurate or "
                                                            "--ensemble, and neither is given"),
    ("read_numbers.py", ["--count", "0"], "--count: must be at least 1"),
    ("read_numbers.py", ["--underline", "-1"], "--underline: must be between 0 and 1"),
    ("read_numbers.py", ["--seed", "-1"], "--seed must be 0 or more, not -1"),
    ("read_numbers.py", ["--gap", "0.3", "0.1"], "--gap needs -0.5 <= LOW <= HIGH <= 2, not 0.3 0.1"),
    ("recognition.py", ["nondigits", "--min-confidence", "300"], "--min-confidence: must be between 0 and 1"),
    ("recognition.py", ["realworld"], "needs the folder"),
    ("recognition.py", ["realworld", "somewhere", "--count", "5"], "--count is for nondigits and throughput"),
    ("recognition.py", ["throughput", "somewhere"], "throughput makes its own images"),
    ("make_realworld_digits.py", ["out", "--uci-share", "-1"], "--uci-share: must be between 0 and 1"),
    ("make_realworld_digits.py", ["out", "--seed", "-1"], "--seed must be 0 or more, not -1"),
])
def test_bad_arguments_are_usage_errors(name, args, words, tmp_path):
    done = script(name, *args, home=tmp_path)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    done = script("gpu.py", "--device", "cpu", "--quick", home=tmp_path)
    assert done.returncode == 1 and "convnet data fetch mnist" in done.stderr and "Traceback" not in done.stderr


def test_make_realworld_digits_writes_only_into_a_new_or_empty_folder(tmp_path):
    taken, a_file = tmp_path / "taken", tmp_path / "notes.txt"
    taken.mkdir()
    (taken / "7").mkdir()
    (taken / "7" / "old.png").write_bytes(b"an earlier set's")  # would be scored with the new set's manifest
    a_file.write_text("keep me")
    for out in (taken, a_file):
        done = script("make_realworld_digits.py", out, "--count", "1", home=tmp_path)
        assert done.returncode == 2 and "must be a new or empty folder" in done.stderr, done.stderr
    assert [p.name for p in taken.rglob("*")] == ["7", "old.png"] and a_file.read_text() == "keep me"
    done = script("make_realworld_digits.py", a_file / "sub", "--count", "1", home=tmp_path)  # a folder in a file
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name, args, words", [
    ("recognition.py", ["realworld", "no-such-folder"], "no such folder"),
    ("read_numbers.py", ["--model", "no-such-model"], "not a run folder"),
    ("gpu.py", ["--device", "cpu", "--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),  # once, before any run
    ("recognition.py", ["realworld", BENCHMARKS.parent / "examples" / "digits"],  # labels in names, not folders
     "-rgb.png: not in a folder named by its label (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
])
def test_bad_paths_are_clear_errors(name, args, words, tmp_path):
    done = script(name, *args, home=tmp_path)
    assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr


def test_a_kept_run_in_the_way_is_refused_before_any_work(tmp_path):
    (tmp_path / "kept" / "fast-seed4").mkdir(parents=True)
    (tmp_path / "kept" / "fast-seed4" / "metrics.json").write_text("{}")
    done = script("speed.py", "--first-seed", "3", "--keep", tmp_path / "kept", "--ensemble", "fast", "fast",
                  home=tmp_path / "home")  # no data: had the check come later, it would fail on the missing cache
    assert done.returncode == 2 and "fast-seed4 already holds a run" in done.stderr and "fast-seed3," not in done.stderr
    assert "add --resume to read back the finished ones" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_member_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "fast-seed1").write_text("notes")  # a file where the second member's folder goes
    (tmp_path / "a-file").write_text("notes")
    for keep, words in ((tmp_path / "kept", f"--keep: {tmp_path / 'kept' / 'fast-seed1'} is not a folder"),
                        (tmp_path / "a-file" / "runs", f"--keep: {tmp_path / 'a-file'} is not a folder")):
        done = script("speed.py", "--keep", keep, "--ensemble", "fast", "fast", home=tmp_path / "home")
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "kept" / "fast-seed1").read_text() == "notes" and not (tmp_path / "kept" / "fast-seed0").exists()


@pytest.mark.parametrize("files, words", [
    ({"metrics.json": "{}"}, "fast-seed4 holds an unfinished run; remove it to train that member again"),
    ({"config.json": "{}", "model.safetensors": ""}, "fast-seed4 holds an unfinished run"),  # killed mid-training
])
def test_resume_refuses_an_unfinished_run_before_any_work(files, words, tmp_path):
    for name, text in files.items():
        (tmp_path / "kept" / "fast-seed4").mkdir(parents=True, exist_ok=True)
        (tmp_path / "kept" / "fast-seed4" / name).write_text(text)
    done = script("speed.py", "--first-seed", "3", "--keep", tmp_path / "kept", "--resume", "--ensemble", "fast",
                  "fast", home=tmp_path / "home")
    assert done.returncode == 2 and f"--resume: {tmp_path / 'kept'}/{words}" in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_needs_keep(tmp_path):
    done = script("speed.py", "--resume", "--ensemble", "fast", "fast", home=tmp_path)
    assert done.returncode == 2 and "--resume reads finished runs from the folder of --keep" in done.stderr


def test_resume_reads_back_finished_members_and_refuses_other_options(monkeypatch, tiny_arrays, tmp_path):
    """Members trained by one run with --keep are read back by the next with --resume, untrained: the same figures,
    the same ensemble; a folder holding the member with other options is refused, not taken for it."""
    from convnet.data import mnist
    monkeypatch.setattr(mnist, "SHA256", mnist.checksums(tiny_arrays))  # the tiny set stands in for MNIST
    monkeypatch.setattr(mnist, "sources", lambda: [("tiny", lambda: tiny_arrays)])
    speed = load_script("speed.py")
    members, keep = [("fast", 1), ("fast", 1)], tmp_path / "kept"
    first = speed.bench_members(members, "cpu", first_seed=3, keep=keep)

    def no_training(*args):
        raise AssertionError("a kept member was trained again")
    monkeypatch.setattr(speed, "run", no_training)
    again = speed.bench_members(members, "cpu", first_seed=3, keep=keep, resume=True)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in first]  # the ensemble's row too
    assert [r["train_seconds"] for r in again] == [r["train_seconds"] for r in first]
    assert all("trained earlier, read from its folder" in r["name"] for r in again[:2])
    assert "read from" not in again[2]["name"]  # the ensemble's row
    assert again[2]["notes"].startswith("below 99.8%; ") and " mistakes made by most members" in again[2]["notes"]
    with pytest.raises(ValueError, match=r"fast-seed3 holds a run with other options \(epochs 1, not 2\)"):
        speed.bench_members([("fast", 2)], "cpu", first_seed=3, keep=keep, resume=True)


def test_a_keep_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = script("speed.py", "--keep", tmp_path / "notes.txt", "--ensemble", "fast", home=tmp_path / "home")
    assert done.returncode == 2 and "notes.txt is not a folder" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_fails_before_any_work(tmp_path):
    done = script("speed.py", "--device", "cuda", home=tmp_path)
    assert done.returncode == 1 and "no CUDA GPU" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed")
def test_keras_script_without_tensorflow_says_what_to_install(tmp_path):
    done = script("keras_lesson.py", home=tmp_path)
    assert done.returncode == 1 and "pip install '.[bench]'" in done.stderr and "Traceback" not in done.stderr


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_time_to_99_row_is_set_against_keras_whole_run():
    speed = load_script("speed.py")
    run = {"accuracy": 0.991, "train_seconds": 4.0, "epoch_seconds": 4.0}
    rows = [speed.median_row("fast, 1 epoch", [run], target=0.99) | {"time_to_99": True},
            speed.median_row("fast, seed 0 (its recipe, 1 epoch)", [run], target=0.997)]
    first, member = speed.table(rows, "fp32").splitlines()[2:4]
    ratio = speed.KERAS_EPOCH_SECONDS * 10 / 4
    assert first.endswith(f"1/1 runs ≥ 99.0%; {ratio:.0f}× less time than Keras' 10 epochs |")
    assert member.endswith("0/1 runs ≥ 99.7% |")


def test_only_the_lessons_own_rows_get_a_speed_ratio_against_keras(monkeypatch):
    speed = load_script("speed.py")  # an ensemble's lesson member holds images out, and is no such comparison
    monkeypatch.setattr(speed, "trained", lambda *args, **kwargs: {"accuracy": 0.986, "train_seconds": 40.0,
                                                                   "epoch_seconds": 4.0})
    member = speed.median_row("lesson, seed 0 (its recipe)", [{"accuracy": 0.986, "train_seconds": 40.0,
                                                                "epoch_seconds": 4.0}], target=0.997)
    own, other = speed.table([*speed.bench_lesson(1, "cpu")[:1], member], "fp32").splitlines()[2:4]
    ratio = f"| {speed.KERAS_EPOCH_SECONDS / 4:.2f}× |"
    assert own.startswith("| lesson, its recipe on all 60,000 images") and ratio in own
    assert other.startswith("| lesson, seed 0") and "×" not in other


@pytest.mark.parametrize("accuracies, claimed", [((0.991, 0.992, 0.985), True), ((0.989, 0.991, 0.988), False)])
def test_fast_is_set_against_keras_only_when_most_runs_reach_99_percent(monkeypatch, accuracies, claimed):
    speed = load_script("speed.py")
    runs = iter(accuracies)
    monkeypatch.setattr(speed, "trained", lambda *args, **kwargs: (
        {"accuracy": next(runs), "train_seconds": 4.0, "epoch_seconds": 4.0}))
    first = speed.table([speed.bench_fast(3, "cpu")], "fp32").splitlines()[2]
    assert ("less time than Keras' 10 epochs" in first) is claimed
    assert ("most runs did not reach it: no time to 99 %" in first) is not claimed


def test_gpu_times_only_the_runs_that_reach_the_target_and_fails_when_a_recipe_does(monkeypatch, capsys):
    """A run that misses the target trains its whole recipe: its time is no time to the target."""
    gpu = load_script("gpu.py")
    results = iter([(0.0, 0.99), (2.0, 0.991), (9.0, 0.98), (3.0, 0.992)] + [(0.0, 0.99)] + [(9.0, 0.98)] * 3)
    monkeypatch.setattr(gpu, "once", lambda *args, **kwargs: next(results))
    monkeypatch.setattr(gpu, "load_dataset", lambda *args, **kwargs: argparse.Namespace(train_y=np.zeros(60000)))
    monkeypatch.setattr(gpu, "CONFIGS", gpu.CONFIGS[:2])
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--device", "cpu"])
    assert gpu.main() == 0
    first, second = capsys.readouterr().out.splitlines()[2:4]
    assert "| 2.500 |" in first and first.endswith("| 2/3 |")  # the median of 2.0 and 3.0, not 3.0 of all three
    assert "| not reached |" in second and second.endswith("| 0/3 |")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu, "once", broken)
    assert gpu.main() == 1 and "failed: see the log" in capsys.readouterr().out


def test_keras_reports_its_whole_fit_and_its_median_epoch(monkeypatch, capsys, tiny_dir):
    """The first epoch traces the graph: the median epoch leaves it out of the per-epoch figure (TensorFlow is not
    installed here: a stand-in Keras whose epochs take 3, 1, 1, … seconds of a fake clock)."""
    import json
    import types

    keras_lesson = load_script("keras_lesson.py")
    now = [0.0]

    def tick() -> float:
        return now[0]

    class Model:
        def __init__(self, layers):
            pass

        def compile(self, **kwargs):
            pass

        def fit(self, x, y, epochs, batch_size, verbose, callbacks):
            for epoch in range(epochs):
                callbacks[0].on_epoch_begin(epoch, {})
                now[0] += 3.0 if epoch == 0 else 1.0
                callbacks[0].on_epoch_end(epoch, {})

        def evaluate(self, x, y, verbose):
            return 0.1, 0.987

    class LambdaCallback:
        def __init__(self, on_epoch_begin, on_epoch_end):
            self.on_epoch_begin, self.on_epoch_end = on_epoch_begin, on_epoch_end

    layer = types.SimpleNamespace(**{name: (lambda *a, **k: None) for name in
                                     ("Input", "Conv2D", "MaxPooling2D", "Flatten", "Dense")})
    keras = types.SimpleNamespace(Sequential=Model, layers=layer, callbacks=types.SimpleNamespace(
        LambdaCallback=LambdaCallback), utils=types.SimpleNamespace(to_categorical=lambda y, n: np.eye(n)[y]))
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(keras=keras))
    monkeypatch.setattr(keras_lesson.time, "perf_counter", tick)
    monkeypatch.setattr(keras_lesson, "load_dataset", lambda name: load_dataset("mnist", tiny_dir))
    monkeypatch.setattr(sys, "argv", ["keras_lesson.py"])
    keras_lesson.main()
    said = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (said["train_seconds"], said["epoch_seconds"], said["accuracy"]) == (12.0, 1.0, 0.987)


def test_a_rule_is_drawn_under_the_same_number():
    """`read_numbers.py --underline`: the number is the one drawn without the rule (the rule has its own random
    draws), and the rule runs under all of it."""
    read_numbers = load_script("read_numbers.py")
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 4:24, 12:16] = 255  # three 1s
    plain = np.asarray(read_numbers.compose(digits, np.random.default_rng(0))) < 128
    ruled = np.asarray(read_numbers.compose(digits, np.random.default_rng(0), np.random.default_rng(1))) < 128
    assert ruled.shape[1] == plain.shape[1] and ruled.shape[0] >= plain.shape[0]
    extra = ruled.copy()
    extra[: len(plain)] &= ~plain
    assert not (plain & ~ruled[: len(plain)]).any()  # every digit pixel is still there
    digit_rows, digit_columns = np.nonzero(plain.any(axis=1))[0], np.nonzero(plain.any(axis=0))[0]
    assert np.nonzero(extra.any(axis=1))[0].min() >= digit_rows[-1] - 0.1 * len(digit_rows)  # under the digits
    assert extra[:, digit_columns[0] : digit_columns[-1] + 1].any(axis=0).all()  # along the whole number


def test_a_shadow_darkens_part_of_the_picture_softly():
    """`make_realworld_digits.py --shadow`: the light is 1 on one side of the picture and 15-50 % less on the other,
    its edge blurred (no step between neighbours sharper than a soft edge over 1 % of the side allows)."""
    make = load_script("make_realworld_digits.py")
    ink = np.zeros((300, 400), np.float32)
    ink[100:200, 150:220] = 1
    for seed in range(20):
        light = make._shade(ink, np.random.default_rng(seed))
        assert light.shape == ink.shape and 0.5 <= light.min() and light.max() <= 1
        assert light.max() > 0.97 and light.min() < 1 - 0.15 * 0.9
        steepest = max(np.abs(np.diff(light, axis=0)).max(), np.abs(np.diff(light, axis=1)).max())
        assert steepest <= 0.5 / (4 * 0.01 * 300) * 1.01  # a logistic's slope: depth / (4 * softness)
