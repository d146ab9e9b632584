"""Training options: `TrainConfig` holds every one of them, with the model's recipe filling what the user left out.

One source of defaults; unknown options are refused with a close-match suggestion, values of the wrong type or out of
range with a message that names the option. The resolved config is what a run writes to its `config.json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import os
import typing
from dataclasses import dataclass

import torch

from convnet.errors import ConfigError
from convnet.models import get_spec

OPTIMIZERS = ("adam", "adamw", "sgd")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
SCHEDULES = ("onecycle", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
_TYPES = {str: (str, "a string"), int: (numbers.Integral, "a whole number"), float: (numbers.Real, "a number"),
          bool: (bool, "True or False")}  # TrainConfig's field types: what a value must be


def _refuse_unknown(cls: type) -> type:
    """Make a dataclass's constructor refuse unknown options as `from_dict` does: `TrainConfig(epoch=1)` says "did you
    mean 'epochs'?" where Python would say only "unexpected keyword argument"."""
    generated = cls.__init__

    @functools.wraps(generated)
    def __init__(self, *args, **values) -> None:
        _check_names(cls, values)
        generated(self, *args, **values)

    cls.__init__ = __init__
    return cls


def _check_names(cls: type, values: dict) -> None:
    """A ConfigError for the first key of `values` that names no field of `cls`, with a close-match suggestion."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1) if isinstance(key, str) else []
            raise ConfigError(f"unknown option {key!r}" + (f"; did you mean {close[0]!r}?" if close else "."))


@_refuse_unknown
@dataclass
class TrainConfig:
    """Every training option in one place. `None` means: take the model's own recipe (`convnet models NAME`)."""

    model: str = "fast"
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    schedule: str | None = None
    augment: bool | None = None  # the recipe's augmentation (or, for one without, augment.STANDARD) on or off
    ema: float | None = None  # decay of the moving average of the weights that becomes the model; 0: none
    seed: int = 0
    val_split: float | None = None
    target_accuracy: float | None = None  # stop once the test accuracy reaches it (speed-benchmark convention)
    out: str | None = None
    overwrite: bool = False  # replace the files of a run already in `out` (otherwise that is an error)
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast where it is faster, see device.native_bf16) | fp32 | bf16
    compile: bool = False  # torch.compile the model, with CUDA graphs on a GPU (pays off for longer runs)
    cuda_graphs: bool = False  # record each step's forward and backward pass as a CUDA graph (convnet.graphs)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from user values, rejecting unknown keys with a close-match suggestion."""
        if not isinstance(values, dict):
            raise ConfigError(f"training options come as a dict such as {{'epochs': 1}}, not {values!r}.")
        _check_names(cls, values)  # before cls(**values): a key that is no string would be Python's TypeError
        return cls(**values)

    def resolved(self) -> TrainConfig:
        """A copy with the model's recipe filled in where the user gave nothing, checked for sense."""
        cfg = dataclasses.replace(self)
        cfg._check_types()  # first: get_spec(5) or `"0.01" < 0` would fail deep inside with a TypeError
        recipe = get_spec(cfg.model).recipe
        for name in ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "label_smoothing", "schedule",
                     "val_split", "ema"):
            if getattr(cfg, name) is None:
                setattr(cfg, name, getattr(recipe, name))
        if cfg.augment is None:
            cfg.augment = bool(recipe.augment)
        cfg.check()
        return cfg

    def _check_types(self) -> None:
        """Each option has its field's type, or is None where the field allows it (the recipe's value, or none).

        A bool is no number here, and no string a flag: `augment="no"` would otherwise switch augmentation on.
        """
        for name, hint in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, name)
            kind, *rest = typing.get_args(hint) or (hint,)  # float | None: (float, NoneType)
            if value is None and rest == [type(None)]:
                continue
            if kind is str and isinstance(value, (os.PathLike, torch.device)):
                value = str(value)  # a Path for out or data_dir, a torch.device; config.json needs a string
            want, words = _TYPES[kind]
            if not isinstance(value, want) or (isinstance(value, bool) and kind is not bool):
                raise ConfigError(f"{name.replace('_', ' ')} must be {words}, not {value!r}.")
            if kind in (float, int):  # numpy's float32 and int64 are no JSON numbers
                try:
                    value = kind(value)
                except OverflowError:  # a Python int past float's range
                    raise ConfigError(f"{name.replace('_', ' ')} is a whole number past the largest a float holds "
                                      "(about 1.8e308).") from None
            setattr(self, name, value)

    def check(self) -> None:
        """The values of a resolved config (types checked by `resolved`) make sense together."""
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch size must be at least 1")
        if not 0 <= self.seed < 2**32:  # torch's generators keep 32 bits of it: 0 and 2**32 would be one seed
            problems.append(f"seed must be 0 to {2**32 - 1:,}, not {self.seed}")
        # The optimisers compute in float32: a larger value overflows inside them rather than diverging.
        if not 0 < self.lr <= FLOAT32_MAX:
            problems.append("learning rate must be a positive number (at most float32's largest, 3.4e38)")
        if not 0 <= self.weight_decay <= FLOAT32_MAX:
            problems.append("weight decay must be zero or a positive number (at most float32's largest, 3.4e38)")
        if not 0 <= self.val_split < 1:
            problems.append("val split must be in [0, 1), e.g. 0.1 to hold out 10 %")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label smoothing must be in [0, 1)")
        if not 0 <= self.ema < 1:
            problems.append("ema must be in [0, 1): the decay of the weights' moving average, e.g. 0.999 (0: none)")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            problems.append("target accuracy must be in (0, 1], e.g. 0.99")
        if problems:
            raise ConfigError("; ".join(problems) + ".")
