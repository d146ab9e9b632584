"""Every CLI command, run as a user would, on tiny data; bad input gives a clear message and a non-zero exit."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import synthetic_arrays, write_idx_folder
from convnet.checkpoint import SHIPPED
from convnet.cli import _percent, fraction, main, report_errors
from convnet.errors import ConfigError
from convnet.models import get_spec, list_models


def run(*args):
    return subprocess.run([sys.executable, "-m", "convnet", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_models_list(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lesson" in out and "542,230" in out and "fast" in out and "accurate" in out


def test_models_summary_and_json(capsys):
    assert main(["models", "lesson", "--summary"]) == 0
    assert "Total params: 542,230" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"lesson", "fast", "accurate"} and all(r["macs"] > 0 for r in rows)
    assert {r["name"]: r["recipe"]["epochs"] for r in rows} == {n: get_spec(n).recipe.epochs for n in list_models()}


def test_models_summary_as_json_is_one_json_document(capsys):
    assert main(["models", "lesson", "--summary", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["layers"][0] == {"layer": "conv2d (Conv2d)", "output_shape": "(None, 32, 26, 26)", "parameters": 320}
    assert sum(layer["parameters"] for layer in row["layers"]) == row["parameters"] == 542_230


def test_models_name_shows_the_recipe(capsys):
    assert main(["models", "accurate"]) == 0
    recipe = capsys.readouterr().out.splitlines()[-1]
    assert recipe.startswith("recipe: 20 epochs, batch 128, adamw lr 0.005 (onecycle)") and "2% held out" in recipe
    assert main(["models", "fast"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("recipe: 1 epoch, batch")


def test_models_on_the_shipped_model_says_what_it_is(capsys):
    assert main(["models", "default"]) == 1  # it said only "unknown model 'default'"
    assert "'default' is a trained model shipped with convnet, not an architecture" in capsys.readouterr().err


def test_data_info_on_a_folder(capsys, tiny_dir):
    assert main(["data", "info", "--data-dir", str(tiny_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train"]["images"] == 600 and len(info["files_sha256"]) == 4


@pytest.mark.parametrize("command", [["data", "info"], ["evaluate", "default"], ["train"]])
def test_an_empty_data_dir_is_no_folder(command, capsys):
    """It was the current folder, and `data info` then named the cache as where the data came from."""
    with pytest.raises(SystemExit) as e:
        main([*command, "--data-dir", ""])
    assert e.value.code == 2 and "argument --data-dir: an empty path names no folder" in capsys.readouterr().err


def test_train_then_evaluate(tiny_dir, tmp_path):
    out = tmp_path / "run"
    done = run("train", "--model", "fast", "--data-dir", tiny_dir, "--epochs", "2", "--batch-size", "32",
               "--out", out)
    assert done.returncode == 0, done.stderr
    assert "test accuracy:" in done.stdout and (out / "model.safetensors").exists()
    assert "epoch 2/2" in done.stderr
    ev = run("evaluate", out, "--data-dir", tiny_dir, "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert len(result["confusion_matrix"]) == 10 and "precision" in result["per_class"]["3"]
    table = run("evaluate", out / "model.safetensors", "--data-dir", tiny_dir)
    assert table.returncode == 0 and "confusion matrix" in table.stdout
    assert "note:" not in ev.stderr + table.stderr  # evaluated on the data it was trained on
    other = run("evaluate", "default", "--data-dir", tiny_dir)  # trained on MNIST, evaluated on other images
    assert other.returncode == 0 and "convnet: note: default was trained on other data" in other.stderr
    test_only = shutil.copytree(tiny_dir, tmp_path / "test-only", ignore=shutil.ignore_patterns("train-*"))
    alone = run("evaluate", out, "--data-dir", test_only, "--json")  # evaluation needs the test files alone
    assert alone.returncode == 0 and json.loads(alone.stdout)["accuracy"] == result["accuracy"], alone.stderr
    records = run("evaluate", out / "metrics.json")  # the run's metrics, taken for a model file
    assert records.returncode == 1 and f"{out} holds a model: give that folder" in records.stderr
    hint = run("evaluate", "--model", out)
    assert hint.returncode == 2 and "(give the model as the first argument: convnet evaluate MODEL)" in hint.stderr

    second = tmp_path / "run2"
    assert run("train", "--data-dir", tiny_dir, "--epochs", "1", "--batch-size", "32", "--seed", "1",
               "--val-split", "20", "--out", second).returncode == 0  # 20: per cent, like the other shares
    assert json.loads((second / "model.json").read_text())["training"]["val_split"] == 0.2
    # Scored on other images of the same kind, first: the card recorded those as the data it was trained on, and
    # `evaluate` on the members' own data said it was trained on other data.
    other_data = write_idx_folder(tmp_path / "other-data", synthetic_arrays(seed=1))
    vote = run("ensemble", out, "run2", "--out", tmp_path / "vote", "--data-dir", other_data)  # run2 in tmp_path
    assert vote.returncode == 0, vote.stderr
    assert "ensemble of 2: test accuracy" in vote.stdout
    assert vote.stderr.count("was trained on other data") == 2  # each member, as `evaluate` says it
    card = json.loads((tmp_path / "vote" / "model.json").read_text())
    assert card["architecture"] == "ensemble" and len(card["metrics"]["member_test_accuracy"]) == 2
    assert card["metrics"]["test_mistakes_most_members_make"] == 0  # it makes none
    assert " of its " not in vote.stdout  # so nothing is said of them
    assert card["sources"] == [str(out.resolve()), str(second.resolve())]  # paths in full: read from elsewhere
    assert card["dataset"] == json.loads((out / "model.json").read_text())["dataset"]  # the members' data
    assert card["metrics"]["test_dataset"]["sha256"] != card["dataset"]["sha256"]
    ev = run("evaluate", tmp_path / "vote", "--data-dir", tiny_dir, "--json")
    assert ev.returncode == 0 and "note:" not in ev.stderr, ev.stderr
    assert "was trained on other data" in run("evaluate", tmp_path / "vote", "--data-dir", other_data).stderr
    scored = run("ensemble", out, second, "--out", tmp_path / "vote-test-only", "--data-dir", test_only)
    assert scored.returncode == 0 and "note:" not in scored.stderr, scored.stderr  # the test files are enough


def test_ensemble_says_how_many_of_its_mistakes_most_members_make(tiny_dir, tmp_path, capsys):
    """An ensemble led astray by one sure but wrong member: its mistakes are not the majority's. The count printed
    and recorded is the ensemble's mistakes that at least two of its three members make on their own."""
    from dataclasses import replace

    import numpy as np

    from convnet.checkpoint import load_model, save_model
    from convnet.data import read_idx_folder
    from convnet.models import create_model
    from convnet.train import fit

    data = read_idx_folder(tiny_dir)
    right = create_model("fast")
    fit(right, data, epochs=1, batch_size=32, log=None)
    for name, temperature in (("unsure1", 1000.0), ("unsure2", 900.0)):  # right as often, barely sure of it
        right.temperature = temperature
        save_model(right, tmp_path / name)
    for shift in (1, 2):  # taught that each digit is the one `shift` above it, and sure of it
        wrong = create_model("fast")
        fit(wrong, replace(data, train_y=(data.train_y + shift) % 10), epochs=1, batch_size=32, log=None)
        wrong.temperature = 0.001
        save_model(wrong, tmp_path / f"sure{shift}")

    def said(*names: str) -> tuple[int, int]:
        folders = [str(tmp_path / n) for n in names]
        out = tmp_path / "-".join(names)
        assert main(["ensemble", *folders, "--out", str(out), "--data-dir", str(tiny_dir)]) == 0
        missed = [load_model(f).predict(data.test_x).argmax(1) != data.test_y for f in folders]
        ensemble_missed = load_model(out).predict(data.test_x).argmax(1) != data.test_y
        shared = int((ensemble_missed & (np.sum(missed, axis=0) >= 2)).sum())
        assert json.loads((out / "model.json").read_text())["metrics"]["test_mistakes_most_members_make"] == shared
        printed = f"  {shared} of its {ensemble_missed.sum()} mistakes are made by most members on their own"
        assert printed in capsys.readouterr().out
        return shared, int(ensemble_missed.sum())

    shared, mistakes = said("sure1", "unsure1", "unsure2")  # the sure member's mistakes, which the others avoid
    assert shared < mistakes
    shared, mistakes = said("sure1", "sure2", "unsure1")  # two sure members out of three: the majority's own
    assert 0 < shared


@pytest.mark.parametrize(("said", "noted"), [("f" * 64, True), (None, False), (123, False), (["a"], False)])
def test_only_a_card_checksum_that_differs_says_other_data(said, noted, capsys):
    """A card edited by hand said "trained on other data (mnist) than it is evaluated on here (mnist)"."""
    from types import SimpleNamespace

    from convnet.cli import _note_other_data

    model = SimpleNamespace(card={"dataset": {"name": "mnist", "sha256": said, "source": "mnist"}})
    data = SimpleNamespace(train_x=[0], sha256="0" * 64, source="mnist", name="mnist")
    _note_other_data("m", model, data)
    assert ("m was trained on other data (mnist)" in capsys.readouterr().err) == noted


def test_out_never_replaces_a_model_unasked(tiny_dir, tmp_path):
    out = tmp_path / "run"
    train_args = ["train", "--data-dir", tiny_dir, "--epochs", "1", "--batch-size", "32", "--out", out]
    assert run(*train_args).returncode == 0
    weights = (out / "model.safetensors").read_bytes()
    again = run(*train_args, "--seed", "1")
    assert again.returncode == 1 and "already holds model.safetensors" in again.stderr and "--overwrite" in again.stderr
    others = [tmp_path / "other1", tmp_path / "other2"]
    for seed, other in enumerate(others, 1):
        assert run(*train_args[:-1], other, "--seed", seed).returncode == 0
    vote = run("ensemble", *others, "--out", out, "--data-dir", tiny_dir)
    assert vote.returncode == 1 and "already holds model.safetensors, model.json" in vote.stderr
    for overwrite in ([], ["--overwrite"]):
        vote = run("ensemble", others[0], out / "model.json", "--out", out, "--data-dir", tiny_dir, *overwrite)
        assert vote.returncode == 1 and "holds one of the members" in vote.stderr
    vote = tmp_path / "vote"
    assert run("ensemble", *others, "--out", vote, "--data-dir", tiny_dir).returncode == 0
    again = run("ensemble", *others, "--out", vote, "--data-dir", tiny_dir, "--overwrite")  # an ensemble replaced
    assert again.returncode == 0, again.stderr
    assert (out / "model.safetensors").read_bytes() == weights
    assert run(*train_args, "--seed", "1", "--overwrite").returncode == 0
    assert (out / "model.safetensors").read_bytes() != weights
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "config.json").write_text('{"mine": true}')
    done = run("train", "--data-dir", tiny_dir, "--epochs", "1", "--out", notes)
    assert done.returncode == 1 and "already holds config.json" in done.stderr
    assert (notes / "config.json").read_text() == '{"mine": true}'


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["ensemble", "default", "default"]])
def test_out_on_a_file_is_a_clear_error(command, tiny_dir, tmp_path):
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("keep me")
    done = run(*command, "--data-dir", tiny_dir, "--out", in_the_way)
    assert done.returncode == 1 and "is not a folder" in done.stderr and "Traceback" not in done.stderr
    assert in_the_way.read_text() == "keep me"


@pytest.mark.parametrize("text, share", [("0.99", 0.99), ("99", 0.99), ("99%", 0.99), (" 50 % ", 0.5), ("1", 1.0),
                                         ("1%", 0.01), ("0.5%", 0.005), ("0", 0.0)])
def test_a_share_is_a_fraction_or_per_cent_with_or_without_its_sign(text, share):
    assert fraction(text) == pytest.approx(share)


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["trian"], 2, "did you mean 'train'"),
        (["train", "--epohcs", "1"], 2, "did you mean '--epochs'"),
        (["train", "--epoch", "1"], 2, "unrecognized arguments: --epoch 1 (did you mean '--epochs'?)"),  # no prefixes
        (["train", "--lesson"], 2, "unrecognized arguments: --lesson (did you mean '--model lesson'?)"),
        (["--vers"], 2, "the following arguments are required: COMMAND (did you mean '--version'?)"),
        (["predict", "--min", "0", "x.png"], 2, "unrecognized arguments: --min (did you mean '--min-confidence'?)"),
        (["models", "--model", "fast"], 2, "'--model' belongs to other commands"),
        (["data", "--force", "fetch"], 2, "convnet data fetch: error: unrecognized arguments: --force ('--force' "
                                          "goes after the command's name)"),
        (["data", "fetch", "--forse"], 2, "convnet data fetch: error: unrecognized arguments: --forse (did you mean "
                                          "'--force'?)"),
        (["--model", "fast", "train"], 2, "invalid choice: 'fast' (choose from 'data', 'models', 'train', 'evaluate', "
                                          "'ensemble', 'predict', 'read') (--model fast goes after the command's "
                                          "name)"),
        (["train", "--model", "fats"], 1, "Did you mean 'fast'"),
        (["train", "--optimizer", "adm"], 2, "invalid choice: 'adm' (choose from 'adam', 'adamw', 'sgd') (did you "
                                             "mean 'adam'?)"),
        (["train", "--val-split", "1"], 2, "--val-split: must be below 1 (100 %), got 1, which would hold out every "
                                           "training image; 1 % is 0.01"),
        (["train", "--val-split", "100"], 2, "must be below 1 (100 %), got 100"),
        (["predict", "--min-confidence", "101%", "x.png"], 2, "must be between 0 and 1 (or 0 and 100 %), got 101%"),
        (["train", "--epochs", "0"], 1, "epochs must be at least 1"),
        (["train", "--lr", "-1e-3"], 1, "learning rate must be a positive number"),  # not "expected one argument"
        (["train", "--data-dir", "/nonexistent"], 1, "not a folder"),
        (["evaluate", "nowhere"], 1, "not a run folder"),
        (["data", "info", "--data-dir", "/nonexistent"], 1, "not a folder"),
        (["data", "fetch", "imagenet"], 1, "unknown data set"),
        (["train", "--device", "tpu"], 1, "unknown device"),
        (["train", "--out", ""], 1, "--out is empty"),
        (["models", ""], 1, "unknown model ''"),
        (["evaluate", ""], 1, "the model's name is empty"),
    ],
)
def test_bad_input_gives_a_clear_error(args, code, words):
    done = run(*args)
    assert done.returncode == code
    assert words in done.stderr and "Traceback" not in done.stderr


def test_a_tilde_after_an_equals_sign_is_the_home_folder(tiny_dir, tmp_path, monkeypatch):
    # The shell leaves `--out=~/x` as it is: a folder literally named `~` would be made in the current one.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    done = run("train", "--data-dir", tiny_dir, "--epochs", "1", "--out=~/run")
    assert done.returncode == 0, done.stderr
    assert (home / "run" / "model.safetensors").is_file() and not (tmp_path / "~").exists()


def test_an_unknown_option_is_reported_by_its_command():
    # The command's own usage line and options help; the top level's (COMMAND ...) would not.
    done = run("train", "--mdoel", "fast")
    assert done.returncode == 2 and done.stderr.startswith("usage: convnet train ") and "--epochs" in done.stderr
    assert "convnet train: error: unrecognized arguments: --mdoel fast (did you mean '--model'?)" in done.stderr
    done = run("data", "info", "--mdoel")  # no near option of its own: no guess, and never '--help'
    assert done.returncode == 2 and done.stderr.rstrip().endswith("unrecognized arguments: --mdoel")
    # An architecture named as an option is meant for train's --model; evaluate's --model names a trained model.
    done = run("evaluate", "default", "--lesson")
    assert done.returncode == 2 and "unrecognized arguments: --lesson" in done.stderr
    assert "--model lesson" not in done.stderr


def test_help_has_examples():
    done = run("--help")
    assert done.returncode == 0 and "convnet train --model fast --epochs 1" in done.stdout


@pytest.mark.parametrize("error, code, words", [
    (ConfigError("epochs must be at least 1."), 1, "tool: error: epochs must be at least 1."),
    (PermissionError(13, "Permission denied", "/data/cache"), 1, "tool: error: /data/cache: Permission denied"),
    (OSError(28, "No space left on device"), 1, "tool: error: No space left on device"),
    (KeyboardInterrupt(), 130, "tool: interrupted"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)"), 1,
     "tool: error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000000 "
     "bytes): free some memory, or ask for less (a smaller batch, model or images)."),
    (RuntimeError("HIP error: Out of memory. Tried to allocate 2 GiB"), 1,
     "tool: error: out of memory (HIP error: Out of memory): free some memory, or ask for less (a smaller batch, "
     "model or images)."),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB."), 1,
     "tool: error: out of memory (CUDA out of memory): free some memory, or ask for less (a smaller batch, model "
     "or images)."),
    (MemoryError(), 1, "tool: error: out of memory (no details): free some memory, or ask for less (a smaller "
                       "batch, model or images)."),
    (MemoryError("Unable to allocate 745. GiB for an array with shape (100000, 1000000) and data type float64"), 1,
     "tool: error: out of memory (Unable to allocate 745. GiB for an array with shape (100000, 1000000) and data "
     "type float64): free some memory, or ask for less (a smaller batch, model or images)."),
])
def test_report_errors_turns_failures_into_messages(error, code, words, capsys):
    def body():
        raise error

    assert report_errors(body, "tool") == code
    assert capsys.readouterr().err.strip() == words


def test_a_script_s_report_survives_a_narrow_output_encoding(tmp_path):
    """A Windows program's output redirected to a file is cp1252, which has no ≥: benchmarks/speed.py printed its
    table, with "2/3 runs ≥ 99.0 %", only after the whole benchmark, and lost it to a UnicodeEncodeError."""
    body = ("import sys; from convnet.cli import report_errors; "
            "sys.exit(report_errors(lambda: print('runs ≥ 99 %'), 'x'))")
    done = subprocess.run([sys.executable, "-c", body], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert done.returncode == 0 and done.stdout.strip() == rb"runs \u2265 99 %", done.stderr.decode()[-2000:]


def test_report_errors_lets_bugs_through():
    with pytest.raises(ZeroDivisionError):
        report_errors(lambda: 1 // 0, "tool")

    def shapes_disagree():
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        report_errors(shapes_disagree, "tool")


def test_overwrite_keeps_the_old_run_until_the_new_one_has_an_epoch(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--data-dir", tiny_dir, "--epochs", "2", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for bad in (["--lr", "1e30"], ["--batch-size", "100000"]):
        failed = run("train", "--data-dir", tiny_dir, "--epochs", "1", *bad, "--out", out, "--overwrite")
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # refused or failed early: nothing touched
    small = write_idx_folder(tmp_path / "small", {k: v[:, :20, :20] if v.ndim == 3 else v
                                                  for k, v in synthetic_arrays().items()})
    other, vote_out = tmp_path / "other", tmp_path / "vote"
    assert run("train", "--data-dir", tiny_dir, "--epochs", "1", "--seed", "2", "--out", other).returncode == 0
    shutil.copytree(out, vote_out)
    vote = run("ensemble", out, other, "--data-dir", small, "--out", vote_out, "--overwrite")
    assert vote.returncode == 1 and "takes 28×28 images, but mnist has 20×20" in vote.stderr
    assert (vote_out / "model.safetensors").read_bytes() == before["model.safetensors"]
    (vote_out / "model.safetensors").unlink()  # a run's records alone are still a run's: not replaced unasked
    refused = run("ensemble", out, other, "--data-dir", tiny_dir, "--out", vote_out)
    assert refused.returncode == 1 and "--overwrite" in refused.stderr
    vote = run("ensemble", out, other, "--data-dir", tiny_dir, "--out", vote_out, "--overwrite")
    assert vote.returncode == 0, vote.stderr
    assert sorted(p.name for p in vote_out.iterdir()) == ["model.json", "model.safetensors"]  # no stale records
    retrain = run("train", "--data-dir", tiny_dir, "--epochs", "1", "--seed", "1", "--out", out, "--overwrite")
    assert retrain.returncode == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
    fresh = run("train", "--data-dir", tiny_dir, "--epochs", "1", "--lr", "1e30", "--out", tmp_path / "new" / "run")
    assert fresh.returncode == 1 and not (tmp_path / "new").exists()  # no empty folders left behind
    (tmp_path / "mine").mkdir()
    assert run("train", "--data-dir", tiny_dir, "--epochs", "1", "--lr", "1e30", "--out", tmp_path / "mine").returncode
    assert (tmp_path / "mine").is_dir()  # a folder the user made stays


def test_a_failed_ensemble_leaves_no_folder_behind(tiny_dir, tmp_path):
    same = SHIPPED / "default" / "model.json"  # the shipped model by its file: the same model twice
    done = run("ensemble", "default", same, "--data-dir", tiny_dir, "--out", tmp_path / "new" / "vote")
    assert done.returncode == 1 and "are the same model; list each member once" in done.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("below", [False, True])
def test_out_on_a_broken_link_says_so(tiny_dir, tmp_path, below):
    """A link to nowhere above --out too (a drive not mounted): the folders it points to were made."""
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "runs")
    done = run("train", "--data-dir", tiny_dir, "--epochs", "1", "--out", tmp_path / "link" / ("run" if below else ""))
    assert done.returncode == 1 and f"a link to {tmp_path / 'gone' / 'runs'}, which does not exist" in done.stderr
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("command", ["train", "ensemble"])
def test_out_in_a_loop_of_links_says_so(command, tiny_dir, tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    models = ["default", "default"] if command == "ensemble" else []
    done = run(command, *models, "--data-dir", tiny_dir, "--out", tmp_path / "loop" / "run")
    assert done.returncode == 1 and "cannot use this folder" in done.stderr and "Traceback" not in done.stderr


def test_ensemble_out_must_not_be_empty(tiny_dir):
    done = run("ensemble", "default", "default", "--data-dir", tiny_dir, "--out", "")
    assert done.returncode == 1 and "--out is empty" in done.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    done = subprocess.Popen([sys.executable, "-m", "convnet", "models", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    done.stdout.close()  # before the command (still importing torch) has printed: its first write finds no reader
    assert done.wait(timeout=300) == 141
    assert done.stderr.read() == b""


def test_ctrl_c_while_the_command_line_is_parsed_is_a_clean_stop(monkeypatch, capsys):
    import convnet.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(convnet.cli, "build_parser", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "convnet: interrupted\n"


def test_a_closed_standard_output_is_an_error_not_a_silent_success(monkeypatch, capsys):
    import io

    shell = subprocess.run(["sh", "-c", 'exec "$0" -m convnet models >&-', sys.executable], stderr=subprocess.PIPE,
                           text=True)  # no stdout at all: sys.stdout is None
    assert shell.returncode == 1 and "standard output is closed" in shell.stderr
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)  # closed from Python
    assert main(["models"]) == 1 and "standard output is closed" in capsys.readouterr().err

    class Writer:  # a stream with no more than write and flush is an open one
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Writer())
    assert main(["models"]) == 0 and "lesson" in sys.stdout.text


_INTERRUPTED_IMPORT = """
import builtins, os, signal, sys
real = builtins.__import__
sent = []

def interrupting(name, *args, **kwargs):  # Ctrl-C as convnet/__init__ imports convnet.train, with PyTorch half loaded
    if name == "convnet.train" and not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)

builtins.__import__ = interrupting
"""


def test_ctrl_c_while_the_package_loads_waits_for_the_imports_then_says_one_line():
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_IMPORT + "import convnet\nprint('not reached')"],
                          capture_output=True, text=True)
    assert done.stdout == "" and done.stderr == "convnet: interrupted\n"
    assert done.returncode in (-2, 130)  # killed by SIGINT, as Python ends on an uncaught KeyboardInterrupt


def test_after_a_caught_ctrl_c_the_package_imports_afresh_and_ctrl_c_is_python_s_again():
    script = _INTERRUPTED_IMPORT + (
        "try:\n"
        "    import convnet\n"
        "except KeyboardInterrupt:\n"
        "    print('caught', flush=True)\n"
        "import convnet.checkpoint\n"
        "print(convnet.checkpoint.load_model.__name__, convnet.fit.__name__, flush=True)\n"
        "raise KeyboardInterrupt  # a later Ctrl-C of the user's program: not convnet's to report\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout == "caught\nload_model fit\n"
    assert "Traceback" in done.stderr and "convnet: interrupted" not in done.stderr


_HELD_IN_THE_FIRST_EPOCH = """
import sys, time
from convnet.cli import main

def held(*args, **kwargs):  # the first epoch's held-out score: the signal surely comes before the epoch ends
    print("first epoch ending", file=sys.stderr, flush=True)
    time.sleep(120)

sys.modules["convnet.train"].evaluate_tensors = held  # the module: convnet.train is also its train()
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_in_the_first_epoch_stops_as_ctrl_c_does_and_leaves_no_folder(tiny_dir, tmp_path):
    import signal

    out = tmp_path / "new" / "run"
    train = subprocess.Popen([sys.executable, "-c", _HELD_IN_THE_FIRST_EPOCH, "train", "--model", "fast", "--data-dir",
                              str(tiny_dir), "--epochs", "1", "--device", "cpu", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = next((line for line in iter(train.stderr.readline, "") if "first epoch ending" in line), None)
        train.send_signal(signal.SIGTERM)  # as `timeout` sends it; before, the process died with an empty --out
        stdout, stderr = train.communicate(timeout=60)
    finally:
        train.kill()
    assert said and train.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted during the first epoch: nothing was saved" in stdout
    assert not (tmp_path / "new").exists()


def test_a_model_given_where_an_image_goes_gets_the_fix(tmp_path, capsys):
    """`evaluate` takes the model first; `predict runs/x digit.png` is the natural slip, and the error says the fix."""
    image = tmp_path / "blank.png"
    image.write_bytes(b"not a png")
    folder, card = SHIPPED / "default", SHIPPED / "default" / "model.json"
    assert main(["predict", str(folder), str(card), "default", str(image)]) == 1
    lines = capsys.readouterr().out.splitlines()
    for path, line in zip([folder, card, "default"], lines):
        assert line.startswith(f"{path}: error: ") and line.endswith(f"give it as --model {path}")
    assert "error: not an image file" in lines[3] and "--model" not in lines[3]  # a plain bad image: no such advice
    assert main(["read", str(folder)]) == 1  # a folder of images to read, as predict's: it holds none
    assert f"{folder}: no images found in this folder; that is a model: to recognise images with it, give it as " \
        f"--model {folder}" in capsys.readouterr().err


def test_evaluate_checks_the_device_before_the_data(monkeypatch, capsys):
    import convnet.data

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the data were fetched for a device that is not there")

    monkeypatch.setattr(convnet.data, "fetch", must_not_run)
    assert main(["evaluate", "default", "--device", "mps"]) == 1
    assert "--device mps: Apple's MPS is not available here." in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a device that is always full")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models"]])
def test_standard_output_that_cannot_be_written_is_named(args):
    """--help to a full disk exited 0 with nothing written; a run saved whole, then "No space left on device",
    read as a run that failed."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "convnet", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip() == (
        "convnet: error: cannot write to standard output (No space left on device)")


def test_a_leftover_torchrun_rank_silences_only_train(tmp_path):
    """WORLD_SIZE=2 RANK=1 in a shell made every command's --help and usage errors print nothing."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    ask = [sys.executable, "-m", "convnet"]
    helped = subprocess.run([*ask, "predict", "--help"], capture_output=True, text=True, timeout=300, env=env)
    assert helped.returncode == 0 and "usage: convnet predict" in helped.stdout
    typo = subprocess.run([*ask, "predict", "--bogus", "x"], capture_output=True, text=True, timeout=300, env=env)
    assert typo.returncode == 2 and "unrecognized arguments: --bogus" in typo.stderr
    rank1 = subprocess.run([*ask, "train", "--help"], capture_output=True, text=True, timeout=300, env=env)
    assert rank1.returncode == 0 and rank1.stdout == ""  # torchrun's other ranks: rank 0 says it once


def test_closed_standard_error_keeps_messages_off_standard_output(tiny_dir, tmp_path):
    """`2>&-`: print(file=None) wrote every message to stdout, and the progress bar crashed on sys.stderr.isatty."""
    done = subprocess.run(f"{sys.executable} -m convnet train --epochs 1 --data-dir {tiny_dir} --out {tmp_path / 'r'}"
                          " 2>&-", shell=True, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("test accuracy:") and done.stdout.count("\n") == 1
    assert (tmp_path / "r" / "metrics.json").exists()


def test_the_program_ignores_signals_once_its_command_has_ended(monkeypatch):
    """A Ctrl-C landing as the command's handlers were put back, or while the interpreter shut down, printed a
    traceback; a SIGTERM once SIGTERM's own handler was back ended the program with 143 after its result."""
    import signal

    from convnet import cli

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    seen, real_report = {}, cli.report_errors

    def command(args):
        seen["during"] = [signal.getsignal(s) for s in before]
        return 7

    def report(run, prog):
        code = real_report(run, prog)
        seen["ended"] = [signal.getsignal(s) for s in before]  # before any handler is put back
        return code

    monkeypatch.setitem(cli.COMMANDS, "models", command)
    monkeypatch.setattr(cli, "report_errors", report)
    try:
        assert cli.main(["models"]) == 7 and seen["ended"] == seen["during"]  # in-process: handlers as they were
        monkeypatch.setattr(sys, "argv", ["convnet", "models"])
        assert cli.console() == 7
        assert seen["during"] == [before[signal.SIGINT], signal.default_int_handler]  # the command stops as ever
        assert seen["ended"] == [signal.SIG_IGN] * 2
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in before)  # and stays deaf to the end
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_a_probability_short_of_certainty_is_never_printed_as_certain_nor_as_none():
    """Rounded to one decimal, 0.9998 printed as 100.0 % and 3e-5 as 0.0 %: neither is what the model said."""
    assert [_percent(q) for q in (1.0, 0.99984, 0.9994, 0.738, 3e-5, 0.0)] == \
        ["100.0%", ">99.9%", "99.9%", "73.8%", "<0.1%", "0.0%"]
