"""Model files: weights as safetensors plus a JSON card. Loading one never executes code from it.

A model can be named three ways everywhere convnet takes one: a run folder, a model file (`.safetensors` or its
`.json` card), or the name of a model shipped inside the package (`convnet/weights/<name>/`).
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from convnet import __version__
from convnet.data.cache import atomic_write
from convnet.device import resolve_device
from convnet.errors import ConfigError, ModelError
from convnet.models import Ensemble, Network, create_model

CARD_FORMAT = "convnet-model/1"
WEIGHTS, CARD = "model.safetensors", "model.json"
SHIPPED = Path(__file__).parent / "weights"


def versions() -> dict[str, str]:
    return {"convnet": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def make_card(model: Network | Ensemble, **extra) -> dict:
    """The JSON card: everything needed to rebuild the model and feed it correctly, plus where it came from."""
    return {
        "format": CARD_FORMAT,
        "architecture": model.arch,
        "num_classes": model.num_classes,
        "in_channels": model.in_channels,
        "input_size": list(model.input_size),
        "classes": list(model.classes),
        "preprocessing": {
            "scale": "pixel / 255",
            "mean": model.mean,
            "std": model.std,
            "layout": "white ink on black, digit centred by mass in a 20 px box (MNIST style)",
        },
        "temperature": model.temperature,
        **({"members": model.member_cards()} if isinstance(model, Ensemble) else {}),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def save_model(model: Network | Ensemble, folder: Path | str, **card_extra) -> Path:
    """Write `model.safetensors` and `model.json` into `folder` (atomically); returns the weights path."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    card = make_card(model, **card_extra)
    atomic_write(folder / WEIGHTS, lambda f: f.write(save(state, metadata={"format": CARD_FORMAT})))
    atomic_write(folder / CARD, lambda f: f.write(json.dumps(card, indent=2).encode()))
    return folder / WEIGHTS


def claim_folder(folder: Path | str, overwrite: bool = False, files: tuple[str, ...] = (WEIGHTS, CARD)) -> Path:
    """Create the folder a model will be written to, before the work that makes the model.

    A file in the way or a place that cannot be written is an error, and so is any of `files` already in the folder
    unless `overwrite`: a new run never silently replaces a trained model or another run's records. Nothing is
    deleted here: with `overwrite`, the files are replaced as the new ones are written.
    """
    if not str(folder):
        raise ConfigError("--out is empty; name a folder.")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder; choose another --out.")
    taken = [name for name in files if (folder / name).exists()]
    if taken and not overwrite:
        raise ConfigError(f"{folder} already holds {', '.join(taken)}; choose another --out, or pass --overwrite to "
                          "replace them.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{folder}: cannot create this folder ({e.strerror}).") from None
    return folder


def shipped_models() -> list[str]:
    return sorted(p.name for p in SHIPPED.glob("*") if (p / WEIGHTS).exists()) if SHIPPED.exists() else []


def resolve(ref: Path | str) -> tuple[Path, Path]:
    """(weights, card) paths for a run folder, a model file, or a shipped model's name."""
    path = Path(ref)
    if path.is_dir():
        weights, card = path / WEIGHTS, path / CARD
    elif path.suffix in (".safetensors", ".json") and path.exists():
        weights, card = path.with_suffix(".safetensors"), path.with_suffix(".json")
    elif (SHIPPED / str(ref) / WEIGHTS).exists():
        weights, card = SHIPPED / str(ref) / WEIGHTS, SHIPPED / str(ref) / CARD
    else:
        shipped = ", ".join(shipped_models()) or "none"
        raise ModelError(
            f"{ref}: not a run folder, a model file (.safetensors/.json) or a shipped model (shipped: {shipped})."
        )
    for p in (weights, card):
        if not p.is_file():
            raise ModelError(f"{ref}: missing {p.name} (a model is a .safetensors file with its .json card).")
    return weights, card


def read_card(path: Path) -> dict:
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"{path}: not a readable model card ({e}).") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a convnet model card (expected format {CARD_FORMAT!r}).")
    return card


def _build(spec: dict, card: dict) -> Network:
    """An untrained model with the card's architecture, classes and preprocessing, each value checked for sense."""
    num_classes, in_channels, input_size = spec["num_classes"], spec["in_channels"], spec["input_size"]
    classes, prep = card["classes"], card["preprocessing"]
    mean, std, temperature = float(prep["mean"]), float(prep["std"]), float(spec.get("temperature", 1.0))
    if not _whole(num_classes, 1, 100_000) or not _whole(in_channels, 1, 4):
        raise ValueError(f"num_classes {num_classes!r} or in_channels {in_channels!r} out of range")
    if not isinstance(input_size, list) or len(input_size) != 2 or not all(_whole(s, 1, 8192) for s in input_size):
        raise ValueError(f"input_size {input_size!r} is not two positive whole numbers")
    if not isinstance(classes, list) or len(classes) != num_classes:
        raise ValueError(f"classes must be a list of num_classes ({num_classes}) names")
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0 and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"mean {mean}, std {std} and temperature {temperature} must be finite, std and temperature > 0")
    model = create_model(spec["architecture"], num_classes, in_channels, tuple(input_size))
    model.classes = [str(c) for c in classes]
    model.mean, model.std, model.temperature = mean, std, temperature
    return model


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def load_model(ref: Path | str, device: torch.device | str = "cpu") -> Network | Ensemble:
    """Rebuild the architecture named in the card and load the safetensors weights into it (strictly)."""
    weights, card_path = resolve(ref)
    card = read_card(card_path)
    try:
        if card["architecture"] == Ensemble.arch:
            model = Ensemble([_build(member, card) for member in card["members"]])
        else:
            model = _build(card, card)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{card_path}: incomplete or invalid model card ({e}).") from None
    try:
        model.load_state_dict(load_file(str(weights)))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ModelError(
            f"{weights}: weights do not fit the {card['architecture']!r} architecture or are corrupt ({e})."
        ) from None
    model.card = card
    return model.to(resolve_device(device)).eval()


def build_ensemble(refs: list[Path | str], device: torch.device | str = "cpu") -> Ensemble:
    """An ensemble of saved models (each a run folder, model file or shipped name)."""
    if isinstance(refs, (str, Path)):
        raise ModelError("build_ensemble takes a list of models, not one.")
    members = [load_model(ref, device) for ref in refs]
    for ref, member in zip(refs, members):
        if isinstance(member, Ensemble):
            # An average of averages would weigh its members unevenly; name the ensemble's members instead.
            raise ModelError(f"{ref} is itself an ensemble; list its members instead (they are in its model.json).")
    return Ensemble(members)
