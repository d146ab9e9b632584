"""Tests for convnet.config: TrainConfig's defaults, the recipe filling in, and the checks on every option."""

import dataclasses
import json

import pytest
import torch

from convnet.config import TrainConfig
from convnet.errors import ConfigError, ModelError


@pytest.mark.parametrize(
    "options, words",
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"lr": -1.0}, "learning rate"),
        ({"lr": float("inf")}, "learning rate must be a positive number"),
        ({"lr": float("nan")}, "learning rate must be a positive number"),
        ({"lr": 1e39}, "at most float32's largest"),  # SGD overflowed with a traceback
        ({"weight_decay": 1e39}, "at most float32's largest"),
        ({"weight_decay": -0.1}, "weight decay"),
        ({"val_split": 1.5}, "val split"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"target_accuracy": 99.0}, "target accuracy"),
        ({"ema": 1.0}, "ema must be in"),
        ({"ema": -0.5}, "ema must be in"),
        ({"model": "fats"}, "Did you mean 'fast'"),
    ],
)
def test_bad_options_are_refused(options, words):
    with pytest.raises(ModelError if "model" in options else ConfigError, match=words):  # not just any error
        TrainConfig.from_dict(options).resolved()


def test_the_recipe_fills_what_the_user_left_out():
    accurate = TrainConfig(model="accurate").resolved()
    assert (accurate.epochs, accurate.val_split, accurate.augment) == (20, 0.02, True)
    assert TrainConfig(model="fast").resolved().val_split == 0.1
    mine = TrainConfig(model="accurate", val_split=0.1, epochs=3, augment=False).resolved()
    assert (mine.epochs, mine.val_split, mine.augment) == (3, 0.1, False)


@pytest.mark.parametrize("build", [lambda: TrainConfig.from_dict({"epoch": 3}), lambda: TrainConfig(epoch=3),
                                   lambda: dataclasses.replace(TrainConfig(), epoch=3)])
def test_unknown_option_suggests(build):
    """Built from a dict or by keyword (as a Keras user writes `fit(epochs=...)`), not Python's bare TypeError."""
    with pytest.raises(ConfigError, match="unknown option 'epoch'; did you mean 'epochs'"):
        build()


@pytest.mark.parametrize("options, words", [
    ({"seed": 2**32}, "seed must be 0 to 4,294,967,295, not 4294967296"),  # torch keeps 32 bits: it would be seed 0
    ({"seed": -1}, "seed must be 0 to 4,294,967,295, not -1"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"batch_size": "64"}, "batch size must be a whole number"),
])
def test_whole_number_options_are_checked(options, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig.from_dict(options).resolved()


@pytest.mark.parametrize("options, words", [
    ({"lr": "0.01"}, "lr must be a number, not '0.01'"),
    ({"lr": True}, "lr must be a number, not True"),
    ({"lr": 10**400}, r"lr is a whole number past the largest a float holds"),  # float() overflowed
    ({"val_split": -10**5000}, r"val split is a whole number past the largest a float holds"),
    ({"val_split": [0.1]}, "val split must be a number"),
    ({"augment": "no"}, "augment must be True or False, not 'no'"),
    ({"compile": 1}, "compile must be True or False"),
    ({"overwrite": "yes"}, "overwrite must be True or False"),
    ({"model": 5}, "model must be a string, not 5"),
    ({"model": None}, "model must be a string, not None"),
    ({"optimizer": 3}, "optimizer must be a string"),
    ({"out": 7}, "out must be a string"),
    ({"epochs": "1"}, "epochs must be a whole number"),
    ({"seed": None}, "seed must be a whole number"),
])
def test_option_types_are_checked(options, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig.from_dict(options).resolved()


def test_numbers_and_paths_of_other_types_are_taken(tmp_path):
    import numpy as np

    assert TrainConfig(epochs=np.int64(2), seed=np.uint8(3)).resolved().epochs == 2
    assert type(TrainConfig(seed=np.int32(3)).resolved().seed) is int  # config.json can hold it
    cfg = TrainConfig(lr=np.float32(0.5), weight_decay=0, out=tmp_path / "r", data_dir=tmp_path,
                      device=torch.device("cpu")).resolved()
    assert (cfg.lr, cfg.weight_decay, cfg.out, cfg.data_dir) == (0.5, 0.0, str(tmp_path / "r"), str(tmp_path))
    assert cfg.device == "cpu"
    assert type(cfg.lr) is float and json.dumps(dataclasses.asdict(cfg))  # config.json can be written


def test_every_refusal_is_caught_as_the_packages_own_error():
    import convnet

    with pytest.raises(convnet.ConvnetError, match="epochs must be at least 1"):
        convnet.TrainConfig(epochs=0).resolved()
    assert "ConvnetError" in convnet.__all__ and issubclass(ConfigError, convnet.ConvnetError)
