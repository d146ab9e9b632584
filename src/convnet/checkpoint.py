"""Model files: weights as safetensors plus a JSON card. Loading one never executes code from it.

A model can be named three ways everywhere convnet takes one: a run folder, a model file (`.safetensors` or its
`.json` card), or the name of a model shipped inside the package (`convnet/weights/<name>/`). A shipped model's name
means that model even where a folder of that name is in the current folder: `./default` names the folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save
from torch import nn

from convnet import __version__
from convnet.calibrate import attach_typicality, typical_shapes
from convnet.data import class_names_problem
from convnet.data.cache import atomic_write, sha256_bytes
from convnet.device import resolve_device
from convnet.errors import ConfigError, ModelError, is_number
from convnet.interrupt import deferred
from convnet.models import Ensemble, Network, create_model, list_models
from convnet.models.ensemble import disagreement
from convnet.models.registry import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE

CARD_FORMAT = "convnet-model/1"
WEIGHTS, CARD = "model.safetensors", "model.json"
RUN_RECORDS = ("config.json", "metrics.json", "history.csv")  # a training run's options, results and history
RUN_FILES = (WEIGHTS, CARD, *RUN_RECORDS)  # what a run writes into its folder
SHIPPED = Path(__file__).parent / "weights"
CARD_FIELDS = ("format", "architecture", "num_classes", "in_channels", "input_size", "classes", "preprocessing",
               "temperature", "typicality", "members", "versions", "created", "weights_sha256")
# safetensors' names; convnet saves F32, the others load as F32 too (from a card without weights_sha256, or one
# written with them)
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
MAX_CARD_BYTES = 16 << 20  # a card is a few kB (100,000 class names fit); parsed JSON takes many times its size
# Lists and dicts within each other: a card's own fields go 4 deep. copy.deepcopy of a loaded model (a caller's: the
# Recognizer's fold_batchnorm shares the card) recurses twice a level into its card, and fails a few hundred deep.
MAX_CARD_DEPTH = 100


def versions() -> dict[str, str]:
    return {"convnet": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def check_settings(model: Network | Ensemble) -> None:
    """A ConfigError, naming the attribute, unless what is set on the model by hand (classes, normalisation,
    temperature, typicality) is what load_model would take: a card that says otherwise could not be loaded, and an
    evaluation would fail deep inside or blame the weights."""
    classes = list(model.classes) if isinstance(model.classes, (list, tuple)) else model.classes
    try:
        check_classes(classes, model.num_classes)
    except ValueError as e:
        raise ConfigError(f"model.classes: {e}; set it to {model.num_classes} different names, e.g. "
                          f"{[str(i) for i in range(min(model.num_classes, 3))]} and so on.") from None
    try:
        check_scaling(model.mean, model.std, model.temperature)
    except ValueError as e:
        raise ConfigError(f"model.mean, model.std or model.temperature: {e}.") from None
    if isinstance(model, Ensemble) and model.temperature != 1.0:  # its answers ignore it: a card would mislead
        raise ConfigError("model.temperature: an ensemble's own is 1, as it averages its members' calibrated "
                          "probabilities; set each member's (model.members[i].temperature).")
    members = list(model.members) if isinstance(model, Ensemble) else []
    for i, member in enumerate(members):  # each is loaded as a network is, and refused alike
        try:
            check_scaling(member.mean, member.std, member.temperature)
        except ValueError as e:
            raise ConfigError(f"model.members[{i}]: {e}.") from None
    if members and (problem := disagreement(model, members)):  # changed by hand since the ensemble was made
        raise ConfigError(f"model.members: {problem}; make the ensemble anew from models that agree.")
    for name, network in [(f"model.members[{i}]", m) for i, m in enumerate(members)] or [("model", model)]:
        if network.typicality is not None and (problem := _typicality_problem(network, network.typicality)):
            raise ConfigError(f"{name}.typicality: {problem}; fit it with convnet.calibrate.fit_typicality.")


def make_card(model: Network | Ensemble, **extra) -> dict:
    """The JSON card: everything needed to rebuild the model and feed it correctly, plus where it came from.

    `extra` adds fields (metrics, dataset, …); it cannot replace the card's own, which must describe the model.
    """
    if taken := [key for key in extra if key in CARD_FIELDS]:
        raise ConfigError(f"{', '.join(taken)}: the model card's own field{'s' * (len(taken) > 1)}, taken from the "
                          "model; set it on the model (model.classes, model.temperature, …) or give the extra field "
                          "another name.")
    check_settings(model)
    return {
        "format": CARD_FORMAT,
        "architecture": model.arch,
        "num_classes": model.num_classes,
        "in_channels": model.in_channels,
        "input_size": list(model.input_size),
        "classes": list(model.classes),
        "preprocessing": {
            "scale": "pixel / 255",
            "mean": float(model.mean),  # numpy's float32 too, checked above
            "std": float(model.std),
            "layout": "white ink on black, digit centred by mass in a 20 px box (MNIST style)",
        },
        "temperature": float(model.temperature),
        **({"typicality": model.typicality} if getattr(model, "typicality", None) else {}),
        **({"members": model.member_cards()} if isinstance(model, Ensemble) else {}),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def save_model(model: Network | Ensemble, folder: Path | str, *, overwrite: bool = False, **card_extra) -> Path:
    """Write `model.safetensors` and `model.json` into `folder` (each atomically); returns the weights path.

    A folder that already holds a model or a training run's records is refused unless `overwrite`: a trained model is
    never replaced by mistake. With `overwrite`, the records of a run in the folder (config.json, metrics.json,
    history.csv) go with the model they describe. The card records the weights' SHA-256, so that `load_model`
    refuses a pair that a save cut short (or a copy) left mismatched.
    """
    if not isinstance(model, (Network, Ensemble)):
        swapped = " (the model comes first, then the folder)" if isinstance(folder, (Network, Ensemble)) else ""
        raise ModelError(f"save_model saves a model made by create_model, load_model or Ensemble, not "
                         f"{type(model).__name__}{swapped}.")
    payload = _payload(model, card_extra)
    folder = claim_folder(folder, overwrite, RUN_FILES, option="folder name", overwrite_option="overwrite=True")
    with deferred():  # no Ctrl-C between the new model and the old records, which describe another one
        _write(folder, *payload)
        for name in RUN_RECORDS:
            (folder / name).unlink(missing_ok=True)
    return folder / WEIGHTS


def write_model(model: Network | Ensemble, folder: Path, **card_extra) -> Path:
    """`save_model` into a folder already claimed (a run's own, each epoch), whose other files stay as they are."""
    return _write(folder, *_payload(model, card_extra))


def _payload(model: Network | Ensemble, card_extra: dict) -> tuple[bytes, bytes]:
    """The weights and the card as the bytes to write: before any file changes, so that a card JSON cannot hold is
    an error that leaves the folder as it was."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(state, metadata={"format": CARD_FORMAT})
    return weights, _card_json({**make_card(model, **card_extra), "weights_sha256": sha256_bytes(weights)})


def _write(folder: Path, weights: bytes, card: bytes) -> Path:
    def weights_then_card(f: BinaryIO) -> None:
        """The new weights wait, whole, in their temporary file until the card is written: only a failure in the
        last step, the rename of the weights, can part them (and the card's SHA-256 then tells)."""
        f.write(weights)
        f.flush()
        os.fsync(f.fileno())  # a full disk shows here, before the card is replaced
        atomic_write(folder / CARD, lambda g: g.write(card))

    with deferred():  # nor does Ctrl-C part them
        atomic_write(folder / WEIGHTS, weights_then_card)
    return folder / WEIGHTS


def _card_json(card: dict) -> bytes:
    """The card as JSON; a value JSON cannot hold (a tensor, a set) is a ConfigError that names its field."""
    try:
        text = json.dumps(card, indent=2, allow_nan=False).encode()  # NaN is no JSON: other tools refuse it
    except (TypeError, ValueError) as e:
        field, error = _unwritable(card, e)
        raise ConfigError(f"the model card's {field!r} cannot be written as JSON ({error}); pass finite numbers, "
                          "strings, lists and dicts, e.g. float(x) for a tensor.") from None
    except RecursionError:  # nested so deep that JSON's encoder ran out of stack: far deeper than the limit below
        text = None
    if text is None or _depth(card) > MAX_CARD_DEPTH:  # load_model would refuse the card, and the model with it
        raise ConfigError(f"the model card nests lists and dicts more than {MAX_CARD_DEPTH} deep; flatten the extra "
                          "fields.")
    return text


def _depth(value: object) -> int:
    """How deep lists and dicts nest in `value` (0 for a number or string; a tuple, which JSON writes as a list, counts
    as one): level by level, without recursion, and with no more memory than a list of the values on one level (a
    16 MiB card holds millions)."""
    depth, level = 0, [value]
    while level := [item for item in level if isinstance(item, (dict, list, tuple))]:
        depth += 1
        level = [v for item in level for v in (item.values() if isinstance(item, dict) else item)]
    return depth


def _unwritable(value, error: Exception, field: str = "", inside: tuple[int, ...] = ()) -> tuple[str, Exception]:
    """The deepest field of `value` (which fails with `error`) that JSON cannot hold, as "metrics.test_accuracy"."""
    if id(value) in inside:  # a value that holds itself: each level inside fails alike
        return field, error
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as e:
            return _unwritable(item, e, f"{field}.{key}" if field else str(key), (*inside, id(value)))
    return field, error  # this value itself, e.g. a dict with a tuple for a key


def real_path(folder: Path, follow: bool = False) -> Path:
    """Where `folder` is: its parent resolved (links followed, the "new/.." of "new/../run" taken back) and its own
    name kept, so that a link given as the folder is still seen as a link, unless `follow`. A loop of links is a
    clear error."""
    try:
        if follow or folder.name in ("", ".."):
            return folder.resolve()
        return folder.parent.resolve() / folder.name
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop of links, before Python 3.13
        raise ConfigError(f"{folder}: cannot use this folder ({e}).") from None


def folders_to_make(path: Path) -> list[Path]:
    """The folders that creating `path` makes, deepest first: what `remove_empty` may take back."""
    path = real_path(Path(path))  # as `claim_folder` makes it: "new/../run" makes no folder "new"
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def remove_empty(made: list[Path]) -> None:
    """Remove folders a command made, deepest first, while they are empty: work that failed early leaves no trace."""
    for folder in made:
        if not folder.is_dir() or any(folder.iterdir()):
            return
        folder.rmdir()


def claim_folder(folder: Path | str, overwrite: bool = False, files: tuple[str, ...] = (WEIGHTS, CARD), *,
                 option: str = "--out", overwrite_option: str = "--overwrite") -> Path:
    """Create the folder a model will be written to, before the work that makes the model; returns its path.

    A file in the way, a name that looks like a model file, or a place that cannot be written is an error, and so is
    any of `files` already in the folder unless `overwrite`: a new run never silently replaces a trained model or
    another run's records. Nothing is deleted here: with `overwrite`, the files are replaced as the new ones are
    written. The messages name the setting as `option` and `overwrite_option` (the CLI's, or the Python API's).
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise ConfigError(f"{option} must be a folder's path, not {folder!r}.")
    if not isinstance(overwrite, bool):  # "no" would mean yes
        raise ConfigError(f"{overwrite_option.split('=')[0]} must be True or False, not {overwrite!r}.")
    if not str(folder):
        raise ConfigError(f"{option} is empty; name a folder.")
    if "\0" in str(folder) or not _utf8(Path(folder)):  # a file no one could write, or safetensors read back
        raise ConfigError(f"{option} {str(folder)!r}: a folder's name must be valid UTF-8 text without NUL "
                          "characters; choose another.")
    folder = Path(folder)
    if folder.suffix in (".safetensors", ".json"):  # the user meant a file: it would become a folder of that name
        raise ConfigError(f"{folder}: a model is saved as a folder that holds {WEIGHTS} and {CARD}; choose a "
                          f"{option} without {folder.suffix}, e.g. {folder.with_suffix('')}.")
    # A link to nowhere, the folder's or one above it (a drive not mounted): mkdir would only say "File exists", or
    # make the folders it points to.
    for link in (folder, *folder.parents):
        if link.is_symlink() and _dangling(link):
            raise ConfigError(f"{link}: a link to {os.readlink(link)}, which does not exist; choose another {option}.")
    real = real_path(folder)  # checked and made as it is on disk: "new/../run" is "run", and makes no "new"
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder; choose another {option}.")
    taken = [name for name in files if (real / name).exists()]
    for name in taken:  # a folder where a file goes fails only when written, after all the work
        if not (real / name).is_file():
            raise ConfigError(f"{folder / name}: is not a file, and a file of that name is written there; remove it "
                              f"or choose another {option}.")
    if taken and not overwrite:
        raise ConfigError(f"{folder} already holds {', '.join(taken)}; choose another {option}, or pass "
                          f"{overwrite_option} to replace them.")
    try:
        real.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{folder}: cannot create this folder ({e.strerror}).") from None
    # Checked now, not when the model is saved after all the work that makes it.
    if not os.access(real, os.W_OK | os.X_OK):
        raise ConfigError(f"{folder}: cannot write into this folder (no permission, or a read-only file system); "
                          f"choose another {option}.")
    return folder if folder.is_dir() else real  # "new/../run" can only be written to as the folder it names


def _utf8(path: Path) -> bool:
    """Whether a path is text safetensors can open: names in another encoding come to Python as lone surrogates."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dangling(link: Path) -> bool:
    """Whether a link leads nowhere; a loop of links is `real_path`'s error to say."""
    try:
        link.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def shipped_models() -> list[str]:
    return sorted(p.name for p in SHIPPED.glob("*") if (p / WEIGHTS).exists()) if SHIPPED.exists() else []


def resolve(ref: Path | str) -> tuple[Path, Path]:
    """(weights, card) paths for a run folder, a model file, or a shipped model's name."""
    if not isinstance(ref, (str, os.PathLike)):
        made = "; it is a model already" if isinstance(ref, (Network, Ensemble)) else ""
        raise ModelError(f"a model is named by a run folder, a model file or a shipped model's name (a str or a "
                         f"Path), not {type(ref).__name__}{made}.")
    if not str(ref):  # Path("") is the current folder
        raise ModelError("the model's name is empty; name a run folder, a model file or a shipped model.")
    path = Path(ref)
    # A name as text is the shipped model, beside a folder of that name too: a folder in the current one is not
    # silently used instead (write ./default for it). A Path is a path first.
    if str(ref) in shipped_models() and (isinstance(ref, str) or not path.exists()):
        path = SHIPPED / str(ref)
    if path.is_dir():
        weights, card = path / WEIGHTS, path / CARD
    elif path.suffix in (".safetensors", ".json") and path.exists():
        weights, card = path.with_suffix(".safetensors"), path.with_suffix(".json")
    else:
        shipped = ", ".join(shipped_models()) or "none"
        untrained = (f"; {ref} is an architecture: `convnet train --model {ref}` trains one, create_model({ref!r}) "
                     "builds one untrained" if str(ref) in list_models() else "")
        raise ModelError(f"{ref}: not a run folder, a model file (.safetensors/.json) or a shipped model (shipped: "
                         f"{shipped}){untrained}.")
    for p in (weights, card):
        if p.exists() and not p.is_file():  # not "missing": it is there, and `ls` shows it
            raise ModelError(f"{ref}: {p.name} is a folder, a pipe or a device, not a file (a model is a .safetensors "
                             "file with its .json card).")
        if p.is_symlink() and not p.exists():
            raise ModelError(f"{ref}: {p.name} is a link to {os.readlink(p)}, {_nowhere(p)}.")
        if not p.is_file():
            # metrics.json or config.json of a run: the model is the folder's model.safetensors and model.json
            beside = f"; {path.parent} holds a model: give that folder" if (path.parent / WEIGHTS).is_file() else ""
            raise ModelError(f"{ref}: missing {p.name} (a model is a .safetensors file with its .json card){beside}.")
    return weights, card


def _nowhere(link: Path) -> str:
    """Why a link leads to no file: what it names does not exist, or it names itself through links (a loop, which
    `Path.exists` calls not existing too)."""
    try:
        link.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "which leads back to itself (a loop of links)"
    return "which does not exist"


def is_model(ref: Path | str) -> bool:
    """Whether `ref` names a model as `load_model` takes one: a run folder, a model file or a shipped model's name."""
    try:
        resolve(ref)
    except (ModelError, OSError, ValueError):  # ValueError: a path with a NUL byte, say
        return False
    return True


def read_card(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CARD_BYTES + 1)
        if len(text) > MAX_CARD_BYTES:
            raise ValueError(f"larger than {MAX_CARD_BYTES >> 20} MiB")
        card = json.loads(text)
        if _depth(card) > MAX_CARD_DEPTH:  # parsed, but copy.deepcopy of the model would overflow the stack
            raise ValueError(f"lists and dicts nested more than {MAX_CARD_DEPTH} deep")
    except (OSError, ValueError, RecursionError) as e:  # ValueError: also bad UTF-8 and bad JSON
        raise ModelError(f"{path}: not a readable model card ({e}).") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a convnet model card (expected format {CARD_FORMAT!r}).")
    return card


def _build(spec: dict, card: dict) -> Network:
    """An untrained model with the card's architecture, classes and preprocessing, each value checked for sense."""
    if spec["architecture"] == Ensemble.arch:
        raise ValueError("an ensemble's members cannot be ensembles themselves")
    num_classes, in_channels, input_size = spec["num_classes"], spec["in_channels"], spec["input_size"]
    classes, prep = card["classes"], card["preprocessing"]
    if not isinstance(prep, dict):
        raise ValueError(f"preprocessing must hold the mean and std, not {prep!r:.40}")
    mean, std, temperature = prep["mean"], prep["std"], spec.get("temperature", 1.0)
    if not _whole(num_classes, 1, MAX_CLASSES) or not _whole(in_channels, 1, MAX_CHANNELS):
        raise ValueError(f"num_classes {num_classes!r} or in_channels {in_channels!r} out of range")
    if not isinstance(input_size, list) or len(input_size) != 2 or not all(_whole(s, 1, MAX_SIDE) for s in input_size):
        raise ValueError(f"input_size {input_size!r} is not two positive whole numbers")
    check_classes(classes, num_classes)
    check_scaling(mean, std, temperature)
    model = create_model(spec["architecture"], num_classes, in_channels, tuple(input_size))
    model.classes = list(classes)
    model.mean, model.std, model.temperature = float(mean), float(std), float(temperature)
    if (typicality := spec.get("typicality")) is not None:
        _typicality_to_load(model, typicality)
    return model


def _typicality_to_load(model: Network, record: object) -> None:
    """Room for the typicality tensors a card says the weights hold, which the strict load then fills."""
    if problem := _typicality_problem(model, record, tensors=False):
        raise ValueError(problem)
    shapes = typical_shapes(model)
    attach_typicality(model, torch.zeros(shapes[0]), torch.zeros(shapes[1]),
                      {**record, "threshold": float(record["threshold"])})


def _typicality_problem(network: Network, record: object, tensors: bool = True) -> str | None:
    """What is wrong with a network's typicality record (and, with `tensors`, its tensors), or None."""
    threshold = record.get("threshold") if isinstance(record, dict) else None
    if not is_number(threshold) or not 0 < threshold < float("inf"):
        return f"typicality must hold a positive threshold, not {record!r:.60}"
    if (shapes := typical_shapes(network)) is None:
        return f"a {network.arch!r} network has no typicality"
    held = tuple(tuple(getattr(network, name, torch.empty(0)).shape) for name in ("typical_centres", "typical_whiten"))
    if tensors and held != shapes:
        return f"its tensors are missing, or not of the shapes {shapes[0]} and {shapes[1]}"
    return None


def check_scaling(mean: float, std: float, temperature: float) -> None:
    """A ValueError unless the input normalisation and the softmax temperature are numbers that make sense.

    Training writes a mean in [0, 1] and a std in [1e-4, 1] (pixels are scaled to [0, 1], both rounded to 4 places)
    and fits temperatures in [0.05, 20]. The bounds are generous around that, and keep normalised pixels and
    logits / temperature far from float32's overflow, where answers turn into NaN.
    """
    for name, value in (("mean", mean), ("std", std), ("temperature", temperature)):
        _number(value, name)
    if not (abs(mean) <= 10 and 1e-4 <= std <= 10 and 1e-3 <= temperature <= 1e3):  # NaN fails each comparison
        raise ValueError(f"mean {mean}, std {std} and temperature {temperature} must be finite, with |mean| <= 10, "
                         "std in [1e-4, 10] and temperature in [1e-3, 1e3]")


def check_classes(classes: list, num_classes: int) -> None:
    """A ValueError unless `classes` is a list of `num_classes` usable class names (see `class_names_problem`)."""
    if not isinstance(classes, list) or len(classes) != num_classes:
        raise ValueError(f"classes must be a list of num_classes ({num_classes}) names")
    if problem := class_names_problem(classes):
        raise ValueError(problem)


def _number(value, name: str) -> float:
    """A card's number as a float: JSON's true, "0.1" or null are none (float() would take the first two); numpy's
    numbers are."""
    if not is_number(value):
        raise ValueError(f"{name} must be a number, not {value!r:.40}")
    return float(value)


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def load_model(ref: Path | str, device: torch.device | str = "cpu") -> Network | Ensemble:
    """Rebuild the architecture named in the card and load the safetensors weights into it (strictly).

    The network is first built without memory (on the `meta` device) and checked against the names and shapes in
    the weights file's header: a card can describe a network far larger than its weights (a big `input_size`).
    """
    weights, card_path = resolve(ref)
    card = read_card(card_path)
    header = _header(weights)
    with _card_errors(card_path):
        ensemble = card["architecture"] == Ensemble.arch
        specs = card["members"] if ensemble else [card]
        if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
            raise TypeError("members must be a list of members' cards")
        if ensemble and _number(card.get("temperature", 1.0), "temperature") != 1.0:  # it would be ignored
            raise ValueError("an ensemble's own temperature is 1: it averages its members' calibrated probabilities; "
                             "set each member's, members[i].temperature")
        if ensemble and "typicality" in card:
            raise ValueError("an ensemble's typicality is its members', members[i].typicality")
        if not ensemble and "members" in card:  # a card edited by hand, whose members would be ignored
            raise ValueError(f"members belong to an ensemble's card, not to a {card['architecture']!r} network's")
    members = []
    for i, spec in enumerate(specs):  # member by member: a long list of members costs only with their weights
        with _card_errors(card_path), torch.device("meta"):
            shapes_only = _build(spec, card)
        _fit_header(shapes_only, header, weights, card, f"members.{i}." if ensemble else "")
        with _card_errors(card_path):
            members.append(_build(spec, card))  # in memory, now that it is known to be the size of its weights
    with _card_errors(card_path):
        model = Ensemble(members) if ensemble else members[0]
        if ensemble:  # the card's own description of the input must be its members'
            for field, value in (("num_classes", model.num_classes), ("in_channels", model.in_channels),
                                 ("input_size", list(model.input_size))):
                if card[field] != value or isinstance(card[field], bool):
                    raise ValueError(f"{field} is {card[field]!r:.40}, but its members' is {value}")
    _fit_header(model, header, weights, card)  # an ensemble's file may hold more than its members
    try:
        data = weights.read_bytes()  # once: the bytes checked against the card are the bytes loaded
    except OSError as e:
        raise ModelError(f"{weights}: cannot be read ({e.strerror}).") from None
    _check_pair(data, weights, card, card_path)
    try:
        with deferred():  # Ctrl-C inside safetensors would come out as a ValueError
            model.load_state_dict(load(data))
    except (SafetensorError, RuntimeError) as e:
        raise ModelError(f"{weights}: corrupt weights ({e}).") from None
    _check_values(model, weights)
    model.card = card
    return model.to(resolve_device(device)).eval()


@contextmanager
def _card_errors(card_path: Path) -> Iterator[None]:
    """Errors in what a card says, as ModelErrors that name the card."""
    try:
        yield
    except KeyError as e:
        raise ModelError(f"{card_path}: incomplete model card (it has no {e.args[0]!r} field).") from None
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: float() of a 400-digit number
        raise ModelError(f"{card_path}: incomplete or invalid model card ({e}).") from None
    except (ConfigError, ModelError) as e:  # an unknown architecture, images too small for it, a lone member, …
        raise ModelError(f"{card_path}: {e}") from None


def _header(weights: Path) -> dict[str, tuple[list[int], str]]:
    """Name → shape and data type ("F32", "I64", …) of each tensor in a safetensors file, from its header: no tensor
    is read."""
    # safetensors reports any failure to open as "No such file"; open() raises the real reason (permission denied…).
    open(weights, "rb").close()
    if not _utf8(weights):
        raise ModelError(f"{weights}: safetensors opens only paths that are valid UTF-8, which this one is not; rename "
                         "the folder or file.")
    try:
        with safe_open(str(weights), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            return {name: (s.get_shape(), s.get_dtype()) for name, s in slices.items()}
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{weights}: not a safetensors file, or corrupt ({e}).") from None


def _fit_header(model: nn.Module, header: dict[str, tuple[list[int], str]], weights: Path, card: dict,
                prefix: str = "") -> None:
    """The tensors in the file whose names start with `prefix` are exactly the model's, shape for shape, and
    floating point where the model's are."""
    want = {prefix + name: list(t.shape) for name, t in model.state_dict().items()}
    have = {name: shape for name, (shape, _) in header.items() if name.startswith(prefix)}
    problems = [f"{name} is missing" for name in sorted(want.keys() - have.keys())]
    problems += [f"{name} is not part of it" for name in sorted(have.keys() - want.keys())]
    problems += [f"{name} is {have[name]} in the file, {want[name]} in the network"
                 for name in sorted(want.keys() & have.keys()) if have[name] != want[name]]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelError(f"{weights}: weights do not fit the {card['architecture']!r} architecture its card describes "
                         f"({'; '.join(problems[:3])}{more}).")
    # Loading would cast them without a word: integers or booleans into a constant model, complex numbers with a
    # warning, float8's few values into coarse weights. Integer buffers (BatchNorm's batch count) may stay integers.
    for name, t in model.state_dict().items():
        dtype = header[prefix + name][1]
        if t.is_floating_point() and dtype not in FLOAT_DTYPES:
            raise ModelError(f"{weights}: {prefix + name} holds {dtype} values where a model's weights are "
                             f"{' or '.join(FLOAT_DTYPES)}; the weights are corrupt, or not a convnet model's.")
        if dtype.startswith("C"):  # an integer buffer of complex numbers: PyTorch's warning would print as it loads
            raise ModelError(f"{weights}: {prefix + name} holds complex numbers ({dtype}), which no convnet model "
                             "holds; the weights are corrupt, or not a convnet model's.")


def _check_pair(data: bytes, weights: Path, card: dict, card_path: Path) -> None:
    """The weights are the ones the card was written with, when the card says which (older cards do not): a save cut
    short, files copied from two models, or weights converted by hand would otherwise pass under a card not theirs."""
    if "weights_sha256" not in card:
        return
    expected = card["weights_sha256"]
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ModelError(f"{card_path}: incomplete or invalid model card (weights_sha256 {expected!r:.80} is not a "
                         "SHA-256 in hexadecimal).")
    if sha256_bytes(data) != expected:
        raise ModelError(f"{weights}: not the weights {card_path} was written with (their SHA-256 differs): a save "
                         "cut short, files copied from two models, or weights changed since; save the model again "
                         "with save_model.")


def non_finite(model: nn.Module) -> str | None:
    """The name of the first weight or statistic of `model` that holds NaN or infinity, if any."""
    return next((name for name, t in model.state_dict().items()
                 if t.is_floating_point() and not bool(t.isfinite().all())), None)


def _check_values(model: nn.Module, weights: Path) -> None:
    """Weights that can only give NaN answers: non-finite values, or a negative BatchNorm variance (square-rooted)."""
    if (name := non_finite(model)) is not None:
        raise ModelError(f"{weights}: {name} holds NaN or infinite values; the weights are corrupt.")
    for name, t in model.state_dict().items():
        if name.endswith("running_var") and bool((t < 0).any()):
            raise ModelError(f"{weights}: {name} holds negative variances; the weights are corrupt.")


def build_ensemble(refs: list[Path | str], device: torch.device | str = "cpu") -> Ensemble:
    """An ensemble of saved models (each a run folder, model file or shipped name)."""
    if isinstance(refs, (str, bytes, os.PathLike)) or not isinstance(refs, Iterable):
        raise ModelError(f"build_ensemble takes a list of models (run folders, model files or names), not "
                         f"{type(refs).__name__} ({refs!r:.60}).")
    refs = list(refs)
    members = [load_model(ref, device) for ref in refs]
    first: dict[str, Path | str] = {}
    for ref, member in zip(refs, members):
        if isinstance(member, Ensemble):
            # An average of averages would weigh its members unevenly; name the ensemble's members instead.
            raise ModelError(f"{ref} is itself an ensemble; list the models it was made from instead (`convnet "
                             "ensemble` names them under \"sources\" in its model.json).")
        # By content, not path: a copied run folder is the same model too. An average with itself is the model
        # again, and the member count would mislead.
        if (digest := _fingerprint(member)) in first:
            raise ModelError(f"{ref} and {first[digest]} are the same model; list each member once.")
        first[digest] = ref
    return Ensemble(members)


def _fingerprint(model: Network) -> str:
    """SHA-256 of what makes a model's answers: its architecture, classes, input, temperature and weights. Equal for
    the same model saved in two places or trained twice alike, with or without a typicality fitted to it; where and
    when it was made is no part of it."""
    behaviour = [model.arch, model.classes, model.in_channels, list(model.input_size), model.mean, model.std,
                 model.temperature]
    h = hashlib.sha256(json.dumps(behaviour).encode())
    for name, t in model.state_dict().items():
        if name.startswith("typical_"):  # fitted to the weights afterwards: the same network with or without it
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
