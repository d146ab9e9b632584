"""Data sets as verified uint8 arrays in memory, and the normalised tensors the models train on.

`load_dataset("mnist")` reads the verified cache (fetching it on first use); `load_dataset("mnist", data_dir=DIR)`
reads the four standard IDX files from a folder instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convnet.data import mnist
from convnet.data.cache import atomic_write, atomic_write_json, convnet_home, held_alone, sha256_bytes
from convnet.data.idx import read_idx
from convnet.errors import DataError

DATASETS = {"mnist": mnist}
DIGITS = [str(d) for d in range(10)]
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # controls, line breaks, lone surrogates


@dataclass
class Dataset:
    """A labelled image data set: images (N, H, W) uint8, labels (N,) int64, with its train/test split.

    Arrays that cannot be one raise DataError here; whole-number labels of any integer type become int64."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str] = field(default_factory=lambda: list(DIGITS))
    source: str = ""
    files_sha256: dict[str, str] = field(default_factory=dict)  # SHA-256 of each part as an IDX file

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise DataError unless the arrays make a data set; labels become int64. Run when it is made, and again by
        `fit` and `evaluate`, as its arrays may have been replaced since."""
        # Checked where the user's own arrays come in: float pixels would otherwise be divided by 255 a second time
        # without a word, and other labels fail deep inside torch. An empty split is fine until it is used.
        if not isinstance(self.name, str) or not self.name.strip() or not isinstance(self.source, str):
            # the name goes into messages, run folders and model cards as text
            raise DataError(f"a data set's name must be a non-empty string and its source a string, not "
                            f"{self.name!r:.40} and {self.source!r:.40}.")
        names = self.classes
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, str) for c in names):
            raise DataError(f"data set {self.name!r}: classes must be a non-empty list of class names.")
        if problem := class_names_problem(names) or _split_problem(vars(self), len(names), allow_empty=True):
            raise DataError(f"data set {self.name!r}: {problem}.")
        # The loss takes int64 targets; contiguous and native-endian so that torch.from_numpy takes them as they are
        self.train_y, self.test_y = (np.ascontiguousarray(y, dtype=np.int64) for y in (self.train_y, self.test_y))

    @property
    def sha256(self) -> str:
        """One fingerprint of the whole data set: the SHA-256 of the four IDX checksums in order (for arrays made in
        memory, of the four arrays' shapes, types and bytes)."""
        if self.files_sha256:
            return sha256_bytes("".join(self.files_sha256[part] for part in mnist.PARTS).encode())
        digest = hashlib.sha256()
        for part in mnist.PARTS:
            array = np.ascontiguousarray(getattr(self, part))
            digest.update(f"{part} {array.dtype.str} {array.shape}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, *self.train_x.shape[1:])

    def __repr__(self) -> str:  # a line, not the dataclass's pages of pixels, in a notebook or a message
        try:
            (n, h, w), (m, _, _) = np.shape(self.train_x), np.shape(self.test_x)
            source = f", from {self.source}" if self.source else ""
            return (f"Dataset({self.name!r}: {n:,} training and {m:,} test images of {h}x{w} pixels, "
                    f"{len(self.classes)} classes{source})")
        except (TypeError, ValueError):  # set since to what no data set holds: validate() says what
            return f"Dataset({self.name!r}: not a valid data set)"

    def normalization(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels in [0, 1] (MNIST: 0.1307, 0.3081)."""
        if not len(self.train_x):  # before numpy's warnings about the mean of nothing
            raise DataError(f"the train split of {self.name} holds no images: nothing to train on.")
        # From the count of each of the 256 shades, a few thousand images at a time: 60,000 images as float64 would
        # take 376 MB, and their deviations from the mean as much again.
        x = self.train_x
        counts = sum(np.bincount(x[i : i + 4096].ravel(), minlength=256) for i in range(0, len(x), 4096))
        shade, share = np.arange(256) / 255.0, counts / counts.sum()
        mean = float(share @ shade)
        std = round(float(np.sqrt(share @ (shade - mean) ** 2)), 4)
        return round(mean, 4), std or 1.0  # images all of one shade: nothing to scale, and no 0 to divide by


def class_names_problem(names: list[str]) -> str | None:
    """What makes these unusable as class names, if anything: answers are told apart, and printed one a line, by
    their names, so each is a different, non-blank string without line breaks or control characters."""
    for name in names:
        if not isinstance(name, str):
            return f"class names must be strings, not {type(name).__name__} ({name!r:.40})"
        if not name.strip() or UNPRINTABLE.search(name):
            return f"class name {name[:40]!r} is blank or holds a line break or control character"
    if len(set(names)) != len(names):
        return f"class name {next(name for name, n in Counter(names).items() if n > 1)[:40]!r} is given more than once"
    return None


def to_tensor(images: np.ndarray, mean: float, std: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W) uint8 → normalised float (N, 1, H, W), channels-last: made once, so training does no per-batch work."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).unsqueeze(1).float()  # a new tensor: in place is safe
    return normalize_(x.div_(255.0), mean, std)


def normalize_(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Pixels in [0, 1], (N, 1, H, W), as the network takes them, in place: (x - mean) / std, channels-last. The one
    normalisation, for training and inference alike."""
    return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)


def cache_path(name: str) -> Path:
    return convnet_home() / "datasets" / f"{name}.npz"


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise DataError(f"a data set is named by a string such as 'mnist', not {type(name).__name__} ({name!r:.40}).")
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")


def fetch(name: str = "mnist", force: bool = False, log=print) -> Path:
    """Put the verified data set in the cache, trying each source in turn; returns the cache file.

    A cache already there is checked first and kept if sound; one that fails its check is fetched again. Processes
    sharing the cache fetch one at a time (a lock beside it; see `held_alone`): the others wait, then take the cache
    the first one wrote, even with `force`, rather than each fetching it again and saying so. Reading a sound cache
    takes no lock."""
    _check_name(name)
    path = cache_path(name)
    for target in (path, path.with_suffix(".json")):  # before any download: no file can be renamed over a folder
        if target.is_dir():
            raise DataError(f"{target} is a folder, not a file; remove it so that the {name} cache can go there.")
    if not force and _sound(name, path):
        return path
    try:  # before any download: an unwritable cache should fail in a second, not after the transfer
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the cache folder {path.parent} ({e.strerror}); set CONVNET_HOME to a "
                        "writable folder.") from None
    try:  # a folder that exists may still be read-only (its mode, a read-only mount): a trial file tells
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise DataError(f"cannot write to the cache folder {path.parent} ({e.strerror}); set CONVNET_HOME to a "
                        "writable folder.") from None
    note = f"waiting for another process's fetch of {name} into {path.parent} …"
    with held_alone(path.with_name(f".{name}.lock"), lambda: log(note)) as waited:
        if not force or waited:  # another process may have fetched it meanwhile: the one waited for, or one before
            if _sound(name, path):
                return path
            if path.exists():
                log(f"{path} fails its check: fetching {name} again")
        failures = []
        for label, get in DATASETS[name].sources():
            log(f"fetching {name} from {label} …")
            try:
                arrays = get()
            except DataError as e:
                failures.append(f"  {label}: {e}")
                continue
            _write_cache(path, arrays, label)
            return path
    raise DataError(f"could not fetch {name} from any source:\n" + "\n".join(failures))


def _sound(name: str, path: Path) -> bool:
    """Whether the cache is there and passes its check."""
    try:
        _read_cache(name, path)
    except DataError:
        return False
    return True


def _write_cache(path: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))
    meta = {"source": source, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(path.with_suffix(".json"), meta)


def _read_cache(name: str, path: Path) -> Dataset:
    try:
        if not path.is_file():  # a pipe would block the read forever
            raise OSError("not a regular file")
        with np.load(path, allow_pickle=False) as z:
            arrays = {part: z[part] for part in mnist.PARTS}
    except PermissionError as e:  # fetching would replace a file that may be shared on purpose: say so first
        raise DataError(f"{path}: unreadable cache ({e.strerror}); make it readable, or run `convnet data fetch "
                        f"{name}` to replace it.") from None
    except OSError as e:  # a folder there
        problem = e.strerror or str(e)
    except (ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):  # empty (a crash, a full disk), or no
        problem = "not an archive of the four arrays"  # .npz at all: np.load gives a .npy's array, without `with`
    else:  # the checksums below need arrays that IDX can store, as the cache does: uint8
        problem = "arrays that are not uint8" if any(a.dtype != np.uint8 for a in arrays.values()) else None
        problem = problem or _split_problem(arrays)
    if problem:
        raise DataError(f"{path}: unreadable cache ({problem}); run `convnet data fetch {name}` to replace it.")
    try:
        sums = DATASETS[name].verify(arrays, str(path))
    except DataError as e:
        raise DataError(f"{e} Run `convnet data fetch {name}` to replace it.") from None
    return _dataset(name, arrays, _cached_source(path.with_suffix(".json")) or str(path), sums)


def _cached_source(meta_path: Path) -> str:
    """Where the cache came from, for `data info`; a missing or damaged note is no reason to refuse the data."""
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None  # a pipe there would block
    except (OSError, ValueError, RecursionError):
        return ""
    return str(meta.get("source", "")) if isinstance(meta, dict) else ""


def _dataset(name: str, arrays: dict[str, np.ndarray], source: str, sums: dict[str, str]) -> Dataset:
    return Dataset(name, **arrays, source=source, files_sha256=sums)  # labels become int64 there


def read_idx_folder(folder: Path, name: str = "mnist", test_only: bool = False) -> Dataset:
    """The four standard IDX files (gzipped or not) from a local folder. With `test_only` (evaluation reads no more),
    the two training files may be missing: the train split is then empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; --data-dir expects a folder holding the four IDX files.")
    arrays = {}
    for part, stem in mnist.FILES.items():
        found = [folder / f"{stem}{ext}" for ext in (".gz", "") if (folder / f"{stem}{ext}").exists()]
        if not found and test_only and part.startswith("train"):
            continue
        if not found:
            needed = [stem for part, stem in mnist.FILES.items() if not (test_only and part.startswith("train"))]
            raise DataError(f"{folder}: missing {stem}[.gz] (need {', '.join(needed)}; IDX files, not images).")
        arrays[part] = read_idx(found[0])
        # Both (`gunzip -k` keeps the .gz): the same data is fine; two different sets would be a silent choice.
        if len(found) == 2 and not np.array_equal(arrays[part], read_idx(found[1])):
            raise DataError(f"{folder}: {found[0].name} and {found[1].name} hold different data; remove the one "
                            "that is not meant.")
    if test_only and not {"train_x", "train_y"} <= arrays.keys():
        # Of the test images' size; test images of the wrong shape are then the ones the check below names.
        shape = arrays["test_x"].shape
        side = shape[1:] if len(shape) == 3 and 0 not in shape[1:] else (1, 1)
        arrays["train_x"] = np.zeros((0, *side), np.uint8)
        arrays["train_y"] = np.zeros(0, np.uint8)
    if problem := _split_problem(arrays, allow_empty=test_only):
        raise DataError(f"{folder}: {problem}.")
    # By its full path: the source goes into model cards, which are read from elsewhere.
    return _dataset(name, arrays, str(folder.resolve()), mnist.checksums(arrays))


def _split_problem(arrays: dict[str, np.ndarray], num_classes: int = len(DIGITS), allow_empty: bool = False
                   ) -> str | None:
    """Why the four arrays cannot be a data set of labelled images, or None when they can."""
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            given = type(y if isinstance(x, np.ndarray) else x).__name__
            return (f"{split} images and labels must be numpy arrays, not {given}: pass np.asarray(…) or a tensor's "
                    ".numpy()")
        if x.dtype != np.uint8:  # to_tensor and normalization divide by 255: pixels in [0, 1] would end up near black
            return (f"{split} images must be uint8 pixels 0–255, not {x.dtype}; convert images scaled to [0, 1] with "
                    "(x * 255).round().astype(np.uint8)")
        if x.ndim != 3 or 0 in x.shape[1:]:
            fix = {2: "; shape flat rows with x.reshape(len(x), height, width)",
                   4: "; drop a channel axis with x.reshape(len(x), height, width)"}.get(x.ndim, "")
            return (f"{split} images must be one-channel, shaped (N, height, width), at least 1×1 pixel, not "
                    f"{x.shape}{fix}")
        if y.ndim != 1 or len(x) != len(y):
            return f"{split} images {x.shape} and labels {y.shape} do not match: one label per image"
        if not len(y) and not allow_empty:
            return f"the {split} split holds no images"
        if y.dtype.kind not in "iu":
            return (f"{split} labels must be whole numbers, not {y.dtype}; convert class indices with "
                    "y.astype(np.int64)")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            return f"{split} labels must be 0–{num_classes - 1} (found {int(y.min())}–{int(y.max())})"
    train, test = arrays["train_x"].shape[1:], arrays["test_x"].shape[1:]
    if train != test:
        return f"train images are {'×'.join(map(str, train))} pixels but test images {'×'.join(map(str, test))}"
    return None


def load_dataset(name: str = "mnist", data_dir: Path | str | None = None, fetch_missing: bool = True,
                 test_only: bool = False) -> Dataset:
    """The data set as verified arrays: from `data_dir` if given, else from the cache (fetched when missing).
    `test_only`: a `data_dir` may lack the training files (see `read_idx_folder`)."""
    _check_name(name)
    for flag, value in (("fetch_missing", fetch_missing), ("test_only", test_only)):
        if not isinstance(value, bool):  # "no" would mean yes
            raise DataError(f"{flag} must be True or False, not {value!r:.40}.")
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise DataError(f"data_dir is a folder's path, not {type(data_dir).__name__} ({data_dir!r:.40}).")
        if not str(data_dir):  # not quietly the current folder
            raise DataError("data_dir is empty; name a folder of IDX files, or leave it out for the cache.")
        return read_idx_folder(Path(data_dir), name, test_only)
    path = cache_path(name)
    if not path.exists():
        if not fetch_missing:
            raise DataError(f"{name} is not in the cache ({path}); run `convnet data fetch {name}`.")
        fetch(name)
    return _read_cache(name, path)


def describe(ds: Dataset) -> dict:
    """What `convnet data info` prints: location, sizes, class counts, checksums."""
    def counts(y: np.ndarray) -> dict[str, int]:
        return {ds.classes[i]: int(n) for i, n in enumerate(np.bincount(y, minlength=len(ds.classes)))}

    return {
        "name": ds.name,
        "source": ds.source,
        "train": {"images": len(ds.train_x), "shape": list(ds.train_x.shape[1:]), "class_counts": counts(ds.train_y)},
        "test": {"images": len(ds.test_x), "shape": list(ds.test_x.shape[1:]), "class_counts": counts(ds.test_y)},
        "sha256": ds.sha256,
        "files_sha256": ds.files_sha256,
    }
