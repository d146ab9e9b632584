import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_arrays, write_idx_folder
from convnet import checkpoint
from convnet.calibrate import TEMPERATURES, temperature_for_confidence
from convnet.config import TrainConfig
from convnet.data import load_dataset, to_tensor
from convnet.errors import ConfigError, DataError
from convnet.evaluate import logits_of
from convnet.models import Ensemble, create_model
from convnet.train import fit, make_optimizer, new_run_dir, split_indices, train


@pytest.mark.parametrize("name", ["lesson", "fast", "accurate"])
def test_one_training_step_lowers_the_loss(tiny_dir, name):
    torch.manual_seed(0)
    data = load_dataset("mnist", tiny_dir)
    model = create_model(name)
    x, y = to_tensor(data.train_x[:64], 0.1, 0.3), torch.from_numpy(data.train_y[:64])
    opt = make_optimizer(model, TrainConfig(model=name, lr=1e-3).resolved())  # a small, safe step
    model.train()
    before = F.cross_entropy(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = F.cross_entropy(model(x), y)
    assert after.item() < before.item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_learns_the_tiny_set(tiny_dir, precision):
    data = load_dataset("mnist", tiny_dir)
    model = create_model("fast")
    history = fit(model, data, epochs=4, batch_size=32, lr=0.02, precision=precision, log=lambda m: None)
    assert len(history.epochs) == 4 and history.train_seconds > 0
    assert history.epochs[-1]["val_accuracy"] >= 0.9
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    assert model.mean == data.normalization()[0] and not model.training
    keras = history.history  # Keras' History.history: each measure's values, epoch by epoch
    assert keras["loss"] == [row["train_loss"] for row in history.epochs]
    assert set(keras) == {"loss", "accuracy", "val_loss", "val_accuracy"}  # measures only, not seconds or precision
    assert keras["val_accuracy"] == [row["val_accuracy"] for row in history.epochs]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast leaves the weights in fp32


def test_auto_precision_finishes_in_fp32_where_the_recipe_says(tiny_dir, monkeypatch):
    module = import_module("convnet.train")
    monkeypatch.setattr(module, "use_bf16", lambda precision, device: precision != "fp32")
    exact = []  # the epochs run with fp32 kept exact (no TF32 on a GPU)
    monkeypatch.setattr(module, "exact_fp32", lambda device: contextlib.nullcontext(exact.append(device.type)))
    data = load_dataset("mnist", tiny_dir)
    history = fit(create_model("accurate"), data, epochs=8, batch_size=32, log=lambda m: None)
    assert [row["precision"] for row in history.epochs] == ["bf16"] * 6 + ["fp32"] * 2  # fp32_finish = 0.25
    assert exact == ["cpu", "cpu"]
    forced = fit(create_model("accurate"), data, epochs=2, batch_size=32, precision="bf16", log=lambda m: None)
    assert [row["precision"] for row in forced.epochs] == ["bf16", "bf16"]


def test_fit_calibrates_on_the_held_out_split(tiny_dir):
    data = load_dataset("mnist", tiny_dir)
    torch.manual_seed(0)
    model = create_model("fast")
    # Half held out: the model still makes mistakes there, which is what the temperature is fitted on.
    history = fit(model, data, epochs=2, batch_size=32, lr=0.02, val_split=0.5, log=lambda m: None)
    assert history.calibration["temperature"] == model.temperature != 1.0
    assert {"val_ece_before", "val_ece_after"} <= history.calibration.keys()
    held_out = split_indices(len(data.train_y), 0.5, seed=0)[1]
    x, y = to_tensor(data.train_x[held_out], model.mean, model.std), torch.from_numpy(data.train_y[held_out])
    logits = logits_of(model, x)
    assert F.cross_entropy(logits / model.temperature, y) < F.cross_entropy(logits, y)
    unheld = create_model("fast")
    assert fit(unheld, data, epochs=1, batch_size=32, val_split=0.0, log=lambda m: None).calibration is None
    assert unheld.temperature == 1.0


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                        ("adamw", torch.optim.AdamW)])
def test_the_optimizer_asked_for_is_the_one_made(name, kind):
    cfg = TrainConfig(model="fast", optimizer=name, lr=0.03, weight_decay=1e-4).resolved()
    opt = make_optimizer(create_model("fast"), cfg)
    group = opt.param_groups[0]
    assert type(opt) is kind and (group["lr"], group["weight_decay"]) == (0.03, 1e-4)
    assert name != "sgd" or (group["momentum"], group["nesterov"]) == (0.9, True)


def test_the_one_cycle_schedule_warms_up_to_the_learning_rate_and_anneals_to_almost_nothing():
    from convnet.train import make_schedule

    cfg = TrainConfig(model="fast", schedule="onecycle", lr=0.04).resolved()
    opt = make_optimizer(create_model("fast"), cfg)
    sched, lrs = make_schedule(opt, cfg, total_steps=100), []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert lrs[0] < 0.04 / 10 and 20 <= peak <= 30 and lrs[peak] == pytest.approx(0.04) and lrs[-1] < 0.04 / 1000
    assert make_schedule(opt, dataclasses.replace(cfg, schedule="constant"), 100) is None


def test_each_epoch_sees_the_images_in_a_new_order_with_the_recipe_s_smoothing_and_borders(tiny_dir, monkeypatch):
    """What each step trains on: every image of the shard once an epoch, in an order of its own each epoch (the same
    for the same seed), the labels smoothed as asked, and augmented borders filled with the normalised black."""
    train_module = import_module("convnet.train")
    steps, smoothing, backgrounds = [], [], []
    real_loss, real_augment = F.cross_entropy, train_module.augment_batch

    def loss(out, y, **kwargs):
        steps.append(y.tolist())
        smoothing.append(kwargs.get("label_smoothing"))
        return real_loss(out, y, **kwargs)

    def augment(x, background, **kwargs):
        backgrounds.append(background)
        return real_augment(x, background, **kwargs)

    monkeypatch.setattr(train_module.F, "cross_entropy", loss)
    monkeypatch.setattr(train_module, "augment_batch", augment)
    data = load_dataset("mnist", tiny_dir)
    orders = []
    for _ in range(2):
        steps.clear()
        model = create_model("fast")
        fit(model, data, epochs=2, batch_size=50, val_split=0.0, augment=True, label_smoothing=0.15, seed=3,
            log=lambda m: None)
        per_epoch = len(data.train_y) // 50
        orders.append([sum(steps[:per_epoch], []), sum(steps[per_epoch : 2 * per_epoch], [])])
    first, second = orders[0]
    assert sorted(first) == sorted(second) == sorted(data.train_y.tolist()) and first != second
    assert orders[0] == orders[1]  # the same seed, the same orders
    assert set(smoothing[: 2 * per_epoch]) == {0.15}
    assert backgrounds and all(b == pytest.approx(-model.mean / model.std) for b in backgrounds)


def test_training_on_the_cpu_keeps_freed_memory(tiny_dir, monkeypatch):
    """glibc would hand each step's freed batch back to the system and fault it in again (device.keep_freed_memory)."""
    kept = []
    monkeypatch.setattr(import_module("convnet.train"), "keep_freed_memory", lambda: kept.append(1))
    fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=1, batch_size=64, device="cpu", log=None)
    assert kept == [1]


def test_the_moving_average_of_the_weights_becomes_the_model(tiny_dir, monkeypatch):
    train_module = import_module("convnet.train")
    made = train_module.make_optimizer
    seen: dict[str, list[torch.Tensor]] = {}

    def watched(model, cfg):  # an average of our own, taken after every optimiser step
        opt = made(model, cfg)
        seen["average"] = [t.detach().clone() for t in model.state_dict().values()]  # from the initial weights

        def after_step(*_):
            seen["last"] = [t.detach().clone() for t in model.state_dict().values()]
            steps = len(seen.setdefault("steps", [])) + 1
            seen["steps"].append(steps)
            weight = 0.1 / (1 - 0.9**steps)  # bias-corrected: the first step's weights replace the initial ones
            seen["average"] = [a.lerp(b, weight) if a.is_floating_point() else b
                               for a, b in zip(seen["average"], seen["last"])]
        opt.register_step_post_hook(after_step)
        return opt

    monkeypatch.setattr(train_module, "make_optimizer", watched)
    data = load_dataset("mnist", tiny_dir)
    torch.manual_seed(0)
    model = create_model("fast")
    history = fit(model, data, epochs=2, batch_size=32, lr=0.02, ema=0.9, val_split=0.5, log=lambda m: None)
    # The weights and BatchNorm statistics; the typicality fitted afterwards is no part of the average.
    final = [t.detach() for name, t in model.state_dict().items() if not name.startswith("typical_")]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(final, seen["average"]))
    assert not all(torch.equal(a, b) for a, b in zip(final, seen["last"]))
    assert history.ema["decay"] == 0.9 and history.ema["steps"] == len(seen["steps"])
    assert 0 < history.ema["val_accuracy_average"] <= 1
    assert history.ema["val_accuracy_weights"] == history.epochs[-1]["val_accuracy"]
    # The temperature is fitted to the weights that are kept, and without --ema nothing is averaged.
    assert history.calibration is not None
    assert fit(create_model("fast"), data, epochs=1, batch_size=32, log=lambda m: None).ema is None


def test_a_flawless_hold_out_sets_the_confidence_it_supports():
    # With no mistake to learn from, the likelihood keeps rising as T shrinks: a fit would claim certainty. Instead
    # the mean confidence is (n + 1) / (n + 2), neither certainty nor the smoothed network's own ~90 %.
    calibrate = import_module("convnet.train")._calibrate
    model, messages = create_model("fast").eval(), []
    logits = torch.randn(40, 10, generator=torch.Generator().manual_seed(0)) + 4 * torch.eye(10)[torch.arange(40) % 10]
    record = calibrate(model, logits, logits.argmax(1), messages.append)
    confidence = torch.softmax(logits / model.temperature, 1).amax(1).mean()
    assert model.temperature == record["temperature"] < 1.0
    assert confidence == pytest.approx(41 / 42, abs=1e-6)
    assert "no mistakes" in record["fitted_on"] and "41/42" in messages[0] and "--val-split" in messages[0]
    wrong = logits.argmax(1)  # with mistakes, the likelihood fit: another temperature, and no word of the rule
    wrong[:3] = (wrong[:3] + 1) % 10
    flawless_t, record = model.temperature, calibrate(model, logits, wrong, messages.append)
    assert record["temperature"] == model.temperature != flawless_t
    assert record["fitted_on"] == "validation split (40 images)" and "fitted on" in messages[1]


@pytest.mark.parametrize("confidence, expected", [(0.9, TEMPERATURES[0]), (0.1001, TEMPERATURES[1])])
def test_a_confidence_out_of_reach_gives_the_nearest_bound(confidence, expected):
    logits = torch.tensor([[0.1] + [0.0] * 9])  # the top probability: 0.451 at T = 0.05, 0.10045 at T = 20
    assert temperature_for_confidence(logits, confidence) == expected


def test_target_accuracy_stops_early(tiny_dir):
    data = load_dataset("mnist", tiny_dir)
    history = fit(create_model("fast"), data, epochs=20, batch_size=32, lr=0.02, target_accuracy=0.5,
                  log=lambda m: None)
    assert history.target_reached and len(history.epochs) < 20
    assert history.epochs[-1]["test_accuracy"] >= 0.5


def test_what_the_log_says_about_targets_and_temperatures(tiny_dir, monkeypatch):
    data, messages = load_dataset("mnist", tiny_dir), []
    model = create_model("fast")
    model.temperature = 0.4  # fitted to earlier weights: not kept for the new ones
    fit(model, data, epochs=2, batch_size=32, lr=1e-9, target_accuracy=0.99, val_split=0.0, label_smoothing=0.0,
        log=messages.append)
    assert any(m.startswith("target test accuracy 99.00% not reached in 2 epochs (best ") for m in messages)
    assert any("no images held out (--val-split): the temperature is not fitted" in m for m in messages)
    assert model.temperature == 1.0
    assert sum(m.startswith("epoch ") and "  loss " in m for m in messages) == 2  # no label smoothing here

    def interrupted(*args):  # Ctrl-C as the fit's calibration errors are measured: the fit is dropped
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(import_module("convnet.train"), "expected_calibration_error", interrupted)
        messages.clear()
        history = fit(create_model("fast"), data, epochs=1, batch_size=32, label_smoothing=0.1, val_split=0.5,
                      log=messages.append)
    assert history.interrupted and history.calibration is None
    assert not any("fitted on the validation split" in m for m in messages)  # never announced, as never kept
    assert messages[0].startswith("epoch 1/1  smoothed loss ")

    for fitted, bound in [(20.0, True), (0.05, True), (1.7, False)]:  # at the fit's bound: said, not just "fitted"
        monkeypatch.setattr(import_module("convnet.train"), "fit_temperature", lambda logits, y: fitted)
        messages.clear()
        fit(create_model("fast"), data, epochs=1, batch_size=32, val_split=0.5, log=messages.append)
        said = next(m for m in messages if m.startswith("temperature "))
        assert said.startswith(f"temperature {fitted:.3f} fitted") and ("at the bound of its fit" in said) == bound


@pytest.mark.parametrize("sign, bound", [(1, 0.05), (-1, 20.0)])
def test_a_temperature_fit_that_reaches_its_bound_returns_the_bound_itself(sign, bound):
    """float32's 0.05 came back, which is not 0.05: the log missed that the fit had stopped at its bound."""
    from convnet.calibrate import fit_temperature

    torch.manual_seed(0)
    y = torch.randint(0, 10, (200,))
    logits = torch.randn(200, 10) * 0.01
    logits[torch.arange(200), y] += 0.05  # right, but barely: the fit wants confidence (a small T); wrong: a big one
    assert fit_temperature(sign * logits, y) == bound


def test_the_run_folder_records_whether_the_target_was_reached(tiny_dir, tmp_path):
    def run(lr: float, out: str) -> dict:
        return train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=2, batch_size=32, lr=lr,
                                 target_accuracy=0.9, out=str(tmp_path / out)), log=lambda m: None).metrics

    assert run(0.02, "learns")["target_reached"] is True
    assert run(1e-9, "stalls")["target_reached"] is False
    no_target = train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=1, out=str(tmp_path / "none")),
                      log=lambda m: None).metrics
    assert "target_reached" not in no_target


@pytest.mark.parametrize("val_split, said", [(0.1, "(600 images, 10 % held out) for"),
                                              (0.0001, "(600 images, 0.01 % held out: no image of 600) for")])
def test_the_first_line_says_how_much_is_held_out(tiny_dir, tmp_path, val_split, said):
    """A share that rounds to no image was said as if some were held out."""
    lines: list[str] = []
    train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=1, val_split=val_split, out=str(tmp_path / "r")),
          log=lines.append)
    assert said in lines[0]


def test_a_run_folder_named_through_dot_dot_makes_only_that_folder(tiny_dir, tmp_path):
    train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=1, out=str(tmp_path / "new" / ".." / "r")),
          log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"] and (tmp_path / "r" / "model.safetensors").exists()


def test_run_folder_is_complete(tiny_dir, tmp_path):
    result = train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=2, batch_size=32, out=str(tmp_path / "r")),
                   log=lambda m: None)
    run = tmp_path / "r"
    assert {p.name for p in run.iterdir()} == {"model.safetensors", "model.json", "metrics.json", "history.csv",
                                               "config.json"}
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_seconds", "epochs", "model", "history"):
        assert key in metrics
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2 and metrics["model"] == "fast"
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(metrics["history"][0])
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss,train_accuracy")
    card = json.loads((run / "model.json").read_text())
    assert card["architecture"] == "fast" and card["dataset"]["sha256"] and card["seed"] == 0
    assert card["metrics"]["test_accuracy"] == metrics["test_accuracy"] == result.metrics["test_accuracy"]
    assert checkpoint.load_model(run).classes == [str(i) for i in range(10)]


def test_ctrl_c_keeps_the_last_checkpoint(tiny_dir, tmp_path, monkeypatch):
    loop = import_module("convnet.train")._Loop  # the package's `train` attribute is the function
    real = loop.epoch

    def interrupted_in_epoch_2(self, x, y, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, x, y, epoch)

    monkeypatch.setattr(loop, "epoch", interrupted_in_epoch_2)
    result = train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=3, batch_size=32, out=str(tmp_path / "r")),
                   log=lambda m: None)
    assert result.metrics["interrupted"] and result.metrics["epochs"] == 1
    card = json.loads((tmp_path / "r" / "model.json").read_text())
    assert card["metrics"]["epochs"] == 1
    checkpoint.load_model(tmp_path / "r")


def test_ctrl_c_in_the_first_epoch_writes_nothing(tiny_dir, tmp_path, monkeypatch):
    loop = import_module("convnet.train")._Loop

    def interrupted(self, x, y, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "epoch", interrupted)
    result = train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=3, out=str(tmp_path / "r")),
                   log=lambda m: None)
    assert result.metrics["interrupted"] and result.metrics["epochs"] == 0 and not (tmp_path / "r").exists()


def test_same_seed_same_split_and_weights(tiny_dir):
    a, b = split_indices(100, 0.2, 7), split_indices(100, 0.2, 7)
    assert torch.equal(a[0], b[0]) and len(a[1]) == 20 and not set(a[0].tolist()) & set(a[1].tolist())
    data = load_dataset("mnist", tiny_dir)
    m1, m2 = (torch.manual_seed(5), create_model("fast"))[1], (torch.manual_seed(5), create_model("fast"))[1]
    fit(m1, data, epochs=1, batch_size=50, seed=3, log=lambda m: None)
    fit(m2, data, epochs=1, batch_size=50, seed=3, log=lambda m: None)
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_another_seed_gives_another_split_batch_order_and_start(tiny_dir):
    assert not torch.equal(split_indices(100, 0.2, 7)[1], split_indices(100, 0.2, 8)[1])
    data = load_dataset("mnist", tiny_dir)
    trained = []
    for seed in (3, 4):  # the same initial weights: the seed orders the training images and the batches
        torch.manual_seed(5)
        trained.append(create_model("fast"))
        fit(trained[-1], data, epochs=1, batch_size=50, val_split=0.0, augment=False, seed=seed, log=lambda m: None)
    assert not torch.equal(trained[0][0].weight, trained[1][0].weight)
    set_up = import_module("convnet.train")._set_up
    start = [set_up(TrainConfig(model="fast", data_dir=str(tiny_dir), seed=seed), claim=False)[1] for seed in (0, 0, 1)]
    assert torch.equal(start[0][0].weight, start[1][0].weight)
    assert not torch.equal(start[0][0].weight, start[2][0].weight)


@pytest.mark.parametrize("augment", [None, True, False])
def test_augment_on_a_recipe_without_augmentation_takes_the_standard_one(tiny_dir, monkeypatch, augment):
    from convnet.augment import STANDARD

    trainer = import_module("convnet.train")
    seen = []
    monkeypatch.setattr(trainer, "augment_batch", lambda x, background, **kw: seen.append(kw) or x)
    fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=1, batch_size=64, augment=augment,
        log=lambda m: None)
    assert seen == ([STANDARD] * len(seen) if augment else []) and (seen or not augment)


def test_divergence_stops_with_a_clear_error_and_keeps_the_sound_checkpoint(tiny_dir, tmp_path, monkeypatch):
    loop = import_module("convnet.train")._Loop
    real = loop.epoch

    def blows_up_in_epoch_2(self, x, y, epoch):
        row = real(self, x, y, epoch)
        return {**row, "train_loss": float("nan")} if epoch == 2 else row

    monkeypatch.setattr(loop, "epoch", blows_up_in_epoch_2)
    with pytest.raises(ConfigError, match="diverged in epoch 2 .*lower the learning rate"):
        train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=3, batch_size=32, out=str(tmp_path / "r")),
              log=lambda m: None)
    assert json.loads((tmp_path / "r" / "model.json").read_text())["metrics"]["epochs"] == 1


def test_weights_broken_by_an_epoch_s_last_step_are_divergence_too(tiny_dir, tmp_path, monkeypatch):
    # The loss is measured before each step, so it stays finite: the checkpoint must not take the broken weights.
    loop = import_module("convnet.train")._Loop
    real = loop.epoch

    def breaks_the_weights_in_epoch_2(self, x, y, epoch):
        row = real(self, x, y, epoch)
        if epoch == 2:
            with torch.no_grad():
                next(self.net.parameters()).fill_(float("inf"))
        return row

    monkeypatch.setattr(loop, "epoch", breaks_the_weights_in_epoch_2)
    with pytest.raises(ConfigError, match=r"diverged in epoch 2 \(the weights became infinite or NaN\)"):
        train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=3, batch_size=32, val_split=0.0,
                          out=str(tmp_path / "r")), log=lambda m: None)
    assert json.loads((tmp_path / "r" / "model.json").read_text())["metrics"]["epochs"] == 1


def test_fit_names_what_it_takes(tiny_dir):
    data, model = load_dataset("mnist", tiny_dir), create_model("fast")
    vote = Ensemble([create_model("fast"), create_model("fast")])
    with pytest.raises(ConfigError, match="the model must be one made by create_model, or a network from load_model, "
                                          "not an Ensemble"):
        fit(vote, data, log=None)
    with pytest.raises(ConfigError, match=re.escape("not 'mnist'; load it with load_dataset('mnist')")):
        fit(model, "mnist", log=None)
    # Keras' fit(model, x, y): the data is what is wrong, not the options the labels land in.
    with pytest.raises(ConfigError, match=re.escape("wrap arrays as convnet.Dataset(name, train_x, train_y")):
        fit(model, data.train_x, data.train_y)


def test_a_huge_learning_rate_is_reported_as_divergence(tiny_dir):
    with pytest.raises(ConfigError, match="diverged in epoch 1"):
        fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=2, batch_size=32, lr=1e30,
            log=lambda m: None)


def test_batch_larger_than_data(tiny_dir):
    with pytest.raises(ConfigError, match="540 training image.s. left after holding out 10 %: fewer than one batch"):
        fit(create_model("fast"), load_dataset("mnist", tiny_dir), batch_size=10_000, log=lambda m: None)


def test_a_fit_refused_before_its_first_step_leaves_the_model_as_it_was(tiny_dir, monkeypatch):
    """It had already taken the other data's scaling and dropped its temperature and typicality."""
    data = load_dataset("mnist", tiny_dir)
    model = create_model("fast")
    fit(model, data, epochs=1, batch_size=32, log=None)
    assert model.typicality is not None and model.temperature != 1.0
    kept = (model.mean, model.std, model.temperature, list(model.classes), model.typicality)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    inverted = dataclasses.replace(data, train_x=255 - data.train_x, classes=[f"c{i}" for i in range(10)])
    with pytest.raises(ConfigError, match="fewer than one batch"):
        fit(model, inverted, epochs=1, batch_size=10_000, log=None)
    assert (model.mean, model.std, model.temperature, model.classes, model.typicality) == kept
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)

    # Refused in the first step, before the weights changed (--compile without a compiler, a CUDA graph that cannot
    # be recorded): as it was too. After a step, the old calibration belongs to other weights: it stays dropped.
    train_module = import_module("convnet.train")
    real_epoch = train_module._Loop.epoch
    for after_steps in (False, True):
        def failing(loop, x, y, epoch):
            if after_steps:
                real_epoch(loop, x, y, epoch)
            raise ConfigError("--cuda-graphs could not record a training step")

        with monkeypatch.context() as patched:
            patched.setattr(train_module._Loop, "epoch", failing)
            with pytest.raises(ConfigError, match="could not record"):
                fit(model, inverted, epochs=1, batch_size=32, log=None)
        calibration = (model.mean, model.std, model.temperature, model.classes, model.typicality)
        assert (calibration == kept) != after_steps


def test_a_target_accuracy_needs_test_images(tiny_dir):
    data = load_dataset("mnist", tiny_dir)
    data = dataclasses.replace(data, test_x=data.test_x[:0], test_y=data.test_y[:0])
    with pytest.raises(DataError, match="test split of mnist holds no images: no test accuracy to stop at"):
        fit(create_model("fast"), data, target_accuracy=0.5, log=None)


def test_images_wider_than_any_network_are_the_datas_fault(tmp_path):
    """The message was about an input_size, which no one gave."""
    arrays = synthetic_arrays(n_train=20, n_test=10)
    for part in ("train_x", "test_x"):
        arrays[part] = arrays[part].reshape(len(arrays[part]), -1)[:, :1].repeat(9000, axis=1).reshape(-1, 1, 9000)
    folder = write_idx_folder(tmp_path / "wide", arrays)
    with pytest.raises(DataError, match=r"wide has 1×9000 images; a network takes at most 8,192 pixels a side"):
        train(TrainConfig(model="fast", data_dir=str(folder), out=str(tmp_path / "run")), log=None)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fast_reaches_99_percent_on_real_mnist(real_mnist_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVNET_HOME", str(real_mnist_cache.parent.parent))
    result = train(TrainConfig(model="fast", epochs=1, out=str(tmp_path / "r")), log=lambda m: None)
    assert result.metrics["test_accuracy"] >= 0.99


def test_a_run_of_four_steps_trains(tiny_dir):
    # PyTorch's one-cycle schedule divides by zero for four steps; so short a run keeps its learning rate.
    history = fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=1, batch_size=135, log=lambda m: None)
    assert len(history.epochs) == 1


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_any_32_bit_seed_trains(tiny_dir, seed):
    history = fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=1, batch_size=64, seed=seed,
                  log=lambda m: None)
    assert len(history.epochs) == 1


def test_compile_without_a_compiler_is_a_clear_error(tiny_dir, tmp_path):
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler")}  # inductor's CPU kernels need a C++ compiler
    done = subprocess.run([sys.executable, "-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir,
                           "--epochs", "1", "--out", tmp_path / "run", "--device", "cpu", "--compile"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1 and "convnet: error: --compile failed (" in done.stderr, done.stderr[-2000:]
    assert "train without --compile" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def _quick(tmp_path, **options) -> TrainConfig:
    return TrainConfig(model="fast", data_dir=str(options.pop("data_dir")), batch_size=32, out=str(tmp_path / "r"),
                       **options)


@pytest.mark.parametrize("where", ["evaluate", "_calibrate"])
def test_ctrl_c_after_the_last_epoch_leaves_a_consistent_folder(tiny_dir, tmp_path, monkeypatch, where):
    # The test evaluation and the temperature fit come after the last checkpoint: Ctrl-C there is still a clean stop.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(import_module("convnet.train"), where, interrupted)
    messages = []
    result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=2, val_split=0.5), log=messages.append)
    assert result.metrics["interrupted"] and result.metrics["epochs"] == 2 and "test_accuracy" not in result.metrics
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert len((run / "history.csv").read_text().splitlines()) == 3
    loaded = checkpoint.load_model(run)
    assert loaded.card["metrics"]["epochs"] == 2 and "test_accuracy" not in loaded.card["metrics"]
    assert loaded.temperature == result.model.temperature  # the model returned is the one saved
    if where == "_calibrate":  # nothing half fitted
        assert result.model.temperature == 1.0 and "calibration" not in loaded.card
    assert any(m.startswith("interrupted") for m in messages)


@pytest.mark.parametrize("where", ["scoring the average", "logging", "_calibrate"])
def test_ctrl_c_once_the_average_is_in_keeps_the_last_weights(tiny_dir, tmp_path, monkeypatch, where):
    trainer = import_module("convnet.train")
    real_use, real_logits, real_calibrate = trainer.WeightAverage.use, trainer.logits_of, trainer._calibrate
    used = []

    def use(average):
        real_use(average)
        used.append(True)

    def logits_of(*args, **kwargs):
        if used and where == "scoring the average":
            raise KeyboardInterrupt
        return real_logits(*args, **kwargs)

    def calibrate(*args, **kwargs):
        real_calibrate(*args, **kwargs)  # the temperature is fitted, then Ctrl-C
        raise KeyboardInterrupt

    def log(message):
        if message.startswith("moving average") and where == "logging":
            raise KeyboardInterrupt
        messages.append(message)

    monkeypatch.setattr(trainer.WeightAverage, "use", use)
    monkeypatch.setattr(trainer, "logits_of", logits_of)
    if where == "_calibrate":
        monkeypatch.setattr(trainer, "_calibrate", calibrate)
    messages = []
    result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=2, val_split=0.5, ema=0.9), log=log)
    assert used and result.metrics["interrupted"] and "ema" not in result.metrics
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["interrupted"] is True
    loaded = checkpoint.load_model(tmp_path / "r")  # the last epoch's checkpoint: the weights, not their average
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), result.model.state_dict().values()))
    assert loaded.temperature == result.model.temperature == 1.0 and "ema" not in loaded.card
    assert any(m.startswith("interrupted while the weights were averaged") for m in messages)


def test_ctrl_c_as_fit_returns_keeps_the_trained_model_and_writes_the_metrics(tiny_dir, tmp_path, monkeypatch):
    # A real SIGINT the moment fit has returned, while the run's metrics are put together: not a lost metrics.json.
    import signal

    trainer = import_module("convnet.train")
    real_fit = trainer.fit

    class JustReturned:  # the history fit returned, which sends SIGINT when it is first read for the card
        def __init__(self, history):
            self.history, self.sent = history, False

        def __getattr__(self, name):
            if name == "calibration" and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
            return getattr(self.history, name)

    monkeypatch.setattr(trainer, "fit", lambda *args, **kwargs: JustReturned(real_fit(*args, **kwargs)))
    messages = []
    result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=1, val_split=0.5), log=messages.append)
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] is True and "test_accuracy" not in metrics and metrics == result.metrics
    loaded = checkpoint.load_model(run)  # trained to the end: saved with its fitted temperature
    assert loaded.temperature == result.model.temperature != 1.0 and "calibration" in loaded.card
    assert any(m.startswith("interrupted before or during the test evaluation") for m in messages)


@pytest.mark.parametrize("when", ["as the hold begins", "while held"])
def test_ctrl_c_as_fit_frees_its_tensors_is_too_late_to_stop_a_whole_run(tiny_dir, tmp_path, monkeypatch, when):
    # A Ctrl-C as the fits' and the training's tensors are freed (a 15-30 ms window on MNIST, hit 3 times in 3 by a
    # SIGTERM sent on the typicality's line) escaped from fit, and train lost the fitted temperature. Python raises
    # it as the next function starts: here the hold that fit begins then, or within the hold.
    import contextlib
    import signal

    trainer = import_module("convnet.train")
    real_finish, real_hold, armed = trainer._finish, trainer.ctrl_c_held, []

    def finish(*args):
        real_finish(*args)
        armed.append(True)

    @contextlib.contextmanager
    def hold():
        send = armed and len(armed) == 1
        if send and when == "as the hold begins":
            armed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        with real_hold() as pressed:
            if send and when == "while held":
                armed.append(True)
                os.kill(os.getpid(), signal.SIGINT)
            yield pressed

    monkeypatch.setattr(trainer, "_finish", finish)
    monkeypatch.setattr(trainer, "ctrl_c_held", hold)
    messages = []
    try:
        result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=1, val_split=0.5), log=messages.append)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped from train")
    assert len(armed) == 2 and "Ctrl-C came as the training ended: too late to stop it" in messages
    assert not result.metrics["interrupted"] and "test_accuracy" in result.metrics
    loaded = checkpoint.load_model(tmp_path / "r")
    assert loaded.temperature == result.model.temperature != 1.0 and "calibration" in loaded.card


def test_ctrl_c_between_an_epoch_and_its_checkpoint_still_saves_it(tiny_dir, tmp_path, monkeypatch):
    trainer = import_module("convnet.train")
    real = trainer._epoch_line  # logged after the epoch is recorded, before its checkpoint is written

    def interrupted_after_epoch_2(row, cfg):
        if row["epoch"] == 2:
            raise KeyboardInterrupt
        return real(row, cfg)

    monkeypatch.setattr(trainer, "_epoch_line", interrupted_after_epoch_2)
    result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=3), log=lambda m: None)
    run = tmp_path / "r"
    assert result.metrics["interrupted"] and result.metrics["epochs"] == 2
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert checkpoint.load_model(run).card["metrics"]["epochs"] == 2  # epoch 2's model, not epoch 1's
    assert len((run / "history.csv").read_text().splitlines()) == 3


def test_the_cli_says_where_the_checkpoint_is_after_a_late_ctrl_c(tiny_dir, tmp_path, monkeypatch, capsys):
    from convnet.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(import_module("convnet.train"), "evaluate", interrupted)
    code = main(["train", "--data-dir", str(tiny_dir), "--epochs", "1", "--batch-size", "32", "--out",
                 str(tmp_path / "r")])
    assert code == 130
    assert f"interrupted after 1 epoch(s); the last one's checkpoint is in {tmp_path / 'r'}" in capsys.readouterr().out


@pytest.mark.parametrize("final", [False, True])
def test_ctrl_c_while_the_files_are_written_waits_for_them(tiny_dir, tmp_path, monkeypatch, final):
    # A real SIGINT in the middle of a save: the model, card and records written must still belong together.
    import signal

    trainer = import_module("convnet.train")
    real = trainer.write_model

    def save_then_interrupt(model, folder, **kwargs):
        if ("test_accuracy" in kwargs["metrics"]) == final:
            os.kill(os.getpid(), signal.SIGINT)
        return real(model, folder, **kwargs)

    monkeypatch.setattr(trainer, "write_model", save_then_interrupt)
    messages = []
    result = train(_quick(tmp_path, data_dir=tiny_dir, epochs=2), log=messages.append)
    run = tmp_path / "r"
    metrics, card = json.loads((run / "metrics.json").read_text()), json.loads((run / "model.json").read_text())
    history_rows = len((run / "history.csv").read_text().splitlines()) - 1
    if final:  # the run had ended: it is complete
        assert not metrics["interrupted"] and card["metrics"]["test_accuracy"] == result.metrics["test_accuracy"]
        assert "it was finished first" in messages[-1]
    else:  # pressed while epoch 1 was saved: stops after epoch 1, with epoch 1's files
        assert metrics["interrupted"] and metrics["epochs"] == card["metrics"]["epochs"] == history_rows == 1
    assert metrics["epochs"] == history_rows and metrics == result.metrics


@pytest.mark.parametrize("config, options, words", [
    (None, {"lr": "0.01"}, "lr must be a number"),
    (None, {"augment": "no"}, "augment must be True or False"),
    (None, {"out": "runs/x"}, r"fit\(\) writes no files, so it takes no out: use train"),
    (None, {"overwrite": True}, "takes no overwrite"),
    ({"out": "runs/x"}, {}, "takes no out"),
    (None, {"data_dir": "/nonexistent"}, "trains on the Dataset it is given, so it takes no data_dir"),
    ({"dataset": "cifar"}, {}, "takes no dataset"),
    ({"model": "lesson"}, {}, r"trains the network it is given, a 'fast' one, not model='lesson'"),
    (None, {"model": "lesson"}, r"trains the network it is given, a 'fast' one, not model='lesson'"),
    (TrainConfig(model="lesson"), {}, "not model='lesson'"),
    ("fast", {}, r"TrainConfig\(...\) or a dict of options, not 'fast'"),
    (None, {"log": 5}, "log must be a function"),
    (None, {"on_epoch_end": "save"}, "on_epoch_end must be a function"),
])
def test_fit_refuses_bad_arguments_before_training(tiny_dir, tmp_path, config, options, words):
    with pytest.raises(ConfigError, match=words):
        fit(create_model("fast"), load_dataset("mnist", tiny_dir), config, **{"log": lambda m: None, **options})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config", [TrainConfig(epochs=1), {"epochs": 1}, None])
def test_fit_takes_the_recipe_of_the_network_it_is_given(config, tiny_dir, monkeypatch):
    # A TrainConfig names "fast" by default: fit() must not put fast's recipe on the lesson's network.
    seen = {}

    def stop(model, cfg):  # the options are settled once the optimizer is made: no need to train
        seen["cfg"] = cfg
        raise KeyError("stop")

    monkeypatch.setattr(import_module("convnet.train"), "make_optimizer", stop)
    with pytest.raises(KeyError, match="stop"):
        fit(create_model("lesson"), load_dataset("mnist", tiny_dir), config, log=None,
            **({} if config else {"epochs": 1}))
    lesson = TrainConfig(model="lesson", epochs=1).resolved()
    got = seen["cfg"]
    assert (got.model, got.optimizer, got.lr, got.batch_size) == ("lesson", lesson.optimizer, lesson.lr,
                                                                  lesson.batch_size)


def test_fit_takes_a_dict_and_log_none(tiny_dir, capfd):
    data = load_dataset("mnist", tiny_dir)
    history = fit(create_model("lesson"), data, {"epochs": 1, "batch_size": 64}, log=None)
    assert len(history.epochs) == 1
    assert "epoch 1/1" not in capfd.readouterr().err  # log=None: no epoch line


def test_train_takes_a_dict_and_refuses_other_things(tiny_dir, tmp_path):
    result = train({"data_dir": str(tiny_dir), "epochs": 1, "batch_size": 64, "out": str(tmp_path / "r")}, log=None)
    assert result.metrics["epochs"] == 1 and (tmp_path / "r" / "metrics.json").exists()
    for bad in ("fast", None, 5):
        with pytest.raises(ConfigError, match=r"TrainConfig\("):
            train(bad)
    with pytest.raises(ConfigError, match="log must be a function"):
        train(TrainConfig(data_dir=str(tiny_dir), out=str(tmp_path / "s")), log="quiet")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", [None, 5, ["fast"]])
def test_a_model_name_that_is_no_string_is_a_clear_error(name):
    from convnet.errors import ModelError

    with pytest.raises(ModelError, match="a model is named by a string"):
        create_model(name)


def test_a_full_disk_at_the_first_save_leaves_the_run_it_would_overwrite_whole(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(TrainConfig(model="fast", epochs=1, data_dir=str(tiny_dir), out=str(out)), log=None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(import_module("convnet.train"), "write_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(TrainConfig(model="fast", epochs=1, seed=1, data_dir=str(tiny_dir), out=str(out), overwrite=True),
              log=None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_full_disk_at_the_first_records_leaves_nothing_half_made(tiny_dir, tmp_path, monkeypatch):
    """The model was saved, its history not: the folder kept a model with no options or history, no whole epoch,
    and the error ("No space left on device") named no file."""
    train_module = import_module("convnet.train")
    real_write = train_module.atomic_write

    def full(f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "atomic_write", lambda path, write: real_write(path, full))
    out = tmp_path / "new" / "run"
    with pytest.raises(OSError, match="No space left") as e:
        train(TrainConfig(model="fast", epochs=2, data_dir=str(tiny_dir), out=str(out)), log=None)
    assert e.value.filename == str(out / "history.csv")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("epochs, fails, kept", [
    (3, lambda metrics: metrics["epochs"] == 2, 1),  # at an epoch's checkpoint
    (2, lambda metrics: "test_accuracy" in metrics, 2),  # at the final save, once tested: the figures are said
])
def test_a_run_an_error_stops_after_an_epoch_keeps_it_and_says_why(tiny_dir, tmp_path, monkeypatch, epochs, fails,
                                                                    kept):
    train_module = import_module("convnet.train")
    real_save, said = train_module.write_model, []

    def disk_full(model, folder, **card):
        if fails(card["metrics"]):
            raise OSError(28, "No space left on device")
        return real_save(model, folder, **card)

    monkeypatch.setattr(train_module, "write_model", disk_full)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        train(TrainConfig(model="fast", epochs=epochs, data_dir=str(tiny_dir), out=str(out)), log=said.append)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == len(metrics["history"]) == kept and metrics["interrupted"]
    assert metrics["error"] == "OSError: [Errno 28] No space left on device"
    assert json.loads((out / "model.json").read_text())["metrics"]["epochs"] == kept
    assert said[-1] == f"stopped after epoch {kept}: {out} keeps its checkpoint"
    tested = re.fullmatch(r"test accuracy \d+\.\d\d% of the trained model, which could not be saved", said[-2])
    assert bool(tested) == (kept == epochs)


def test_a_log_that_fails_at_once_leaves_no_folder(tiny_dir, tmp_path):
    def stderr_full(message):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        train(TrainConfig(model="fast", epochs=1, data_dir=str(tiny_dir), out=str(tmp_path / "new" / "run")),
              log=stderr_full)
    assert not (tmp_path / "new").exists()


def test_a_second_run_into_the_same_out_stops_instead_of_replacing_the_first(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    loop = import_module("convnet.train")._Loop
    real_epoch = loop.epoch

    def another_run_saves_meanwhile(self, x, y, number):
        row = real_epoch(self, x, y, number)
        (out / "model.safetensors").write_bytes(b"the other run's")  # started into the same --out, saved first
        return row

    monkeypatch.setattr(loop, "epoch", another_run_saves_meanwhile)
    with pytest.raises(ConfigError, match="from another run since this one began"):
        train(TrainConfig(model="fast", epochs=1, data_dir=str(tiny_dir), out=str(out)), log=None)
    assert (out / "model.safetensors").read_bytes() == b"the other run's"


def test_a_batch_of_one_is_refused_where_batchnorm_needs_two(tiny_dir):
    with pytest.raises(ConfigError, match="--batch-size 1: the 'nopad' network normalises its features"):
        fit(create_model("nopad"), load_dataset("mnist", tiny_dir), epochs=1, batch_size=1, log=None)
    # A BatchNorm2d over a 1×1 map: `fast` on 4×4 images raised BatchNorm's own ValueError in the first step.
    data = load_dataset("mnist", tiny_dir)
    small = dataclasses.replace(data, train_x=data.train_x[:, ::7, ::7].copy(), test_x=data.test_x[:, ::7, ::7].copy())
    with pytest.raises(ConfigError, match="'fast' network normalises .* one value a channel of a 4×4 image"):
        fit(create_model("fast", input_size=(4, 4)), small, epochs=1, batch_size=1, log=None)
    history = fit(create_model("fast"), data, epochs=1, batch_size=1, lr=1e-3, log=None)  # 28×28: trains
    assert len(history.epochs) == 1


def test_a_model_given_by_name_gets_the_function_that_makes_it(tiny_dir):
    from convnet import evaluate

    data = load_dataset("mnist", tiny_dir)
    with pytest.raises(ConfigError, match=r"make it with create_model\('lesson'\)"):  # an architecture, to train
        fit("lesson", data, epochs=1)
    with pytest.raises(ConfigError, match=r"load it with load_model\('runs/x'\)"):  # a trained model, to evaluate
        evaluate("runs/x", data)


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(import_module("convnet.train").time, "strftime", lambda fmt: "20261206-120000")
    first, made = new_run_dir("fast", None)
    second, _ = new_run_dir("fast", None)
    assert (first, second) == (Path("runs/fast-20261206-120000"), Path("runs/fast-20261206-120000-2"))
    assert first.is_dir() and second.is_dir() and made == [tmp_path / first, tmp_path / "runs"]


@pytest.mark.parametrize("runs", ["broken link", "file"])
def test_a_runs_folder_that_cannot_be_one_is_said_not_looped_over(tmp_path, monkeypatch, runs):
    """`runs` a link to an unmounted drive: mkdir said the name was taken, and the next names forever after."""
    monkeypatch.chdir(tmp_path)
    if runs == "file":
        Path("runs").write_text("notes")
    else:
        Path("runs").symlink_to(tmp_path / "unmounted")
    def looping(*_):
        raise AssertionError("new_run_dir still looks for a name after 10 s")

    before = signal.signal(signal.SIGALRM, looping)
    signal.alarm(10)
    try:
        path, _ = new_run_dir("fast", None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert path.parent == Path("runs")
    words = "a link to .*unmounted, which does not exist" if runs != "file" else "cannot create this folder"
    with pytest.raises(ConfigError, match=words):
        checkpoint.claim_folder(path, False, checkpoint.RUN_FILES)


@pytest.mark.parametrize("epochs_done", [0, 1])
def test_a_second_ctrl_c_as_the_run_stops_still_leaves_its_folder_tidy(tiny_dir, tmp_path, monkeypatch, epochs_done):
    """Pressed twice, the second Ctrl-C came between the training's end and the hold on Ctrl-C after it: an empty
    folder stayed when no epoch had ended, and a folder without its metrics.json when one had."""
    train_module = import_module("convnet.train")
    real_metrics, calls = train_module._metrics, []

    def pressed_again(*args):  # the first thing done in the hold; a KeyboardInterrupt there is the one that slipped by
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_metrics(*args)

    monkeypatch.setattr(train_module, "_metrics", pressed_again)
    if not epochs_done:
        monkeypatch.setattr(train_module, "fit", lambda *args, **kwargs: train_module.History(interrupted=True))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(model="fast", data_dir=str(tiny_dir), epochs=1, out=str(out)), log=None)
    if not epochs_done:
        assert not out.exists()
    else:
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["interrupted"] is True and metrics["epochs"] == 1 and "error" not in metrics
