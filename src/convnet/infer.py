"""Recognition of real images: `Recognizer.load().predict(x)` for single digits, `.read(image)` for whole numbers.

Inputs go through `convnet.preprocess` (the steps that made MNIST), then the model's own normalisation from its
card, then the model in batches. Probabilities are temperature-scaled (fitted on held-out data at training time), and
an answer below `min_confidence` becomes `label=None, reason="low confidence"` instead of a guess; one for an input
unlike the training images (the model's typicality, `convnet.calibrate`) `reason="unlike the training images"`, and
for a digit model, one for a solid blob of ink (a filled disc or square, a blurred dot: `preprocess.blobs`), which no
MNIST digit is once prepared, `reason=BLOB`, and one for an empty box (`preprocess.outlines`) `reason=OUTLINE`.
`predict` reads one digit: for an image of several side by side (`segment.digits_side_by_side`) any answer is
withheld, `reason=SEVERAL` with their count, which points to `read`.
"""
from __future__ import annotations

import copy
import fnmatch
import glob
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from convnet.calibrate import judges
from convnet.checkpoint import load_model
from convnet.components import connected_components
from convnet.device import resolve_device
from convnet.errors import ConfigError, is_number, whole_count
from convnet.models import Ensemble, Network
from convnet.models.arrays import calibrated_outputs
from convnet.preprocess import (SIZE, WORK_PIXELS, ImageError, NoInkError, Source, blobs, find_ink, load_gray,
                                 load_gray_sized, outlines, readings)
from convnet.preprocess.load import StandardInput, tensor_to_numpy
from convnet.segment import digits_side_by_side, only_lines, segment_digits

DEFAULT_MODEL = "default"
DEFAULT_MIN_CONFIDENCE = 0.5
FileItem = str | os.PathLike | tuple[str, str | None]  # a file's path, or a (path, error) pair from expand_paths
UNLIKE = "unlike the training images"  # the reason for an answer withheld: calibrate.fit_typicality
BLOB = "a solid blob of ink, not a digit's strokes"  # ...and for a filled shape: preprocess.blobs
OUTLINE = "an empty box, not a digit"  # ...and for a square outline: preprocess.outlines
LINES = "straight lines, not a digit"  # ...and for a dash or an "=": segment.only_lines
SEVERAL = "{} digits, not one: read numbers with `convnet read`"  # ...and for a number: segment.digits_side_by_side
DIGITS = [str(d) for d in range(10)]  # the classes of a digit model, which blobs and boxes are not
FLAT = SIZE * SIZE  # the length of a flattened MNIST image
FLAT_LIKENESS = 0.3  # how much more alike pixels a row apart are than half a row apart in flattened images
NON_FINITE = "the model gave non-finite probabilities (NaN or infinity): its weights are unusable"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pnm", ".ico", ".avif", ".jp2", ".j2k", ".jpf", ".jpx"}


@dataclass
class Prediction:
    """The answer for one input. `label` is None when there is no answer: then `reason` or `error` says why."""

    label: str | None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    reason: str | None = None  # "no ink found" | "low confidence" | UNLIKE | BLOB | OUTLINE | SEVERAL.format(n)
    error: str | None = None  # the input could not be read as an image
    path: str | None = None

    def to_dict(self, probabilities: bool = True) -> dict:
        d = asdict(self)
        d["top_k"] = _rounded(self.top_k)
        if not probabilities:
            d.pop("probabilities")
        return d


def _rounded(top_k: list) -> list[list]:
    """Top answers as JSON gives them: probabilities to 6 places, which is all they are good for."""
    return [[label, round(p, 6)] for label, p in top_k]


@dataclass
class Digit:
    label: str | None  # None: withheld, and `reason` says why, as a Prediction's
    confidence: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the input image
    top_k: list[tuple[str, float]]
    reason: str | None = None


@dataclass
class Reading:
    """A whole number read from one image: digits left to right; `number` is None if any digit is withheld, and
    `reason` is then the first one's."""

    number: str | None
    digits: list[Digit]
    confidence: float | None  # product of the digits' confidences; None without digits, as a Prediction's
    reason: str | None = None
    error: str | None = None
    path: str | None = None  # the file it was read from, as a Prediction's

    def to_dict(self) -> dict:
        d = asdict(self)
        for digit in d["digits"]:  # rounded as a Prediction's
            digit["top_k"] = _rounded(digit["top_k"])
        return d


class Recognizer:
    """A trained model plus everything needed to use it on real images."""

    def __init__(self, model: Network | Ensemble, device: str | torch.device = "cpu", top_k: int = 3,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, batch_size: int = 512):
        # Checked here, not where used: a bad value would otherwise fail on the first batch, or come back as garbage.
        top_k, batch_size = whole_count("top_k", top_k), whole_count("batch_size", batch_size)
        if not is_number(min_confidence) or not 0 <= min_confidence <= 1:  # NaN fails the range check
            raise ConfigError(f"min_confidence must be a number between 0 and 1, got {min_confidence!r}.")
        if not isinstance(model, (Network, Ensemble)):  # a path or name has its own door: Recognizer.load
            raise ConfigError(f"Recognizer takes a model made by create_model, load_model or Ensemble, not "
                              f"{type(model).__name__}; Recognizer.load(path_or_name) loads one.")
        if (model.in_channels, *model.input_size) != (1, SIZE, SIZE):
            h, w = model.input_size
            raise ConfigError(f"recognition prepares each digit as a {SIZE}×{SIZE} gray image, as MNIST's; this model "
                              f"takes {h}×{w} images with {model.in_channels} channel(s).")
        self.device = resolve_device(device)
        self.model = fold_batchnorm(model).to(self.device).eval()
        self.top_k = min(top_k, model.num_classes)
        self.min_confidence = float(min_confidence)
        self.batch_size = batch_size
        self._judges = judges(self.model)

    @classmethod
    def load(cls, path_or_name: str | Path | Network | Ensemble | None = None, device: str = "cpu",
             **options) -> Recognizer:
        """A run folder, model file or shipped model name (or a model in memory); None = the model shipped with
        convnet."""
        if isinstance(path_or_name, (Network, Ensemble)):
            return cls(path_or_name, device, **options)
        return cls(load_model(DEFAULT_MODEL if path_or_name is None else path_or_name, device), device, **options)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) MNIST-style images in [0, 1] → (N, classes) calibrated probabilities.

        The images are taken as `preprocess` gives them (float, white ink on black); `predict` takes them as they
        come. Anything else is refused: uint8 pixels read as 0..1 would give confident nonsense."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) or images.dtype.kind != "f":
            wrong = f"{images.dtype} images of shape {images.shape}"
        elif images.size and not 0 <= images.min() <= images.max() <= 1:  # NaN fails here too
            wrong = f"values from {images.min():g} to {images.max():g}"
        else:
            wrong = ""
        if wrong:
            raise ConfigError(f"probabilities() takes (N, {SIZE}, {SIZE}) float images in [0, 1], as preprocess gives "
                              f"them, not {wrong}; predict() takes images as they come.")
        return self._outputs(images, judge=False)[0]

    @torch.inference_mode()
    def _outputs(self, images: np.ndarray, judge: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities, and whether each image is unlike the training images (its features far from
        theirs: `calibrate.fit_typicality`; always False for a model without one, or without `judge`)."""
        judged = self._judges if judge and self.min_confidence > 0 else []  # 0: every answer is wanted
        return calibrated_outputs(self.model, images[:, None], judged, self.batch_size)

    @property
    def _looks(self) -> bool:
        """Whether the image itself is looked at for what is no digit (a blob, a box, several digits): not at
        min_confidence 0, which asks for every answer, nor for a model of other classes than the ten digits, for
        which such a shape may be an answer."""
        return self.min_confidence > 0 and list(self.model.classes) == DIGITS

    @property
    def _one(self) -> int | None:
        """The class that is the digit 1, for `segment_digits`; None for a model without one."""
        classes = list(self.model.classes)
        return classes.index("1") if "1" in classes else None

    def _shapes(self, images: np.ndarray) -> list[str | None]:
        """For each image, BLOB if it is a solid blob (`preprocess.blobs`), OUTLINE if an empty box
        (`preprocess.outlines`), else None; all None unless `_looks`."""
        if self._looks:
            return [BLOB if blob else OUTLINE if box else None for blob, box in zip(blobs(images), outlines(images))]
        return [None] * len(images)

    def _answer(self, probs: np.ndarray, far: bool = False, shape: str | None = None, digits: int = 1) -> Prediction:
        """The answer for one image's probabilities; `far`: unlike the training images (`_outputs`), `shape`: a shape
        that is no digit, and the reason that says so (`_shapes`, `_Prepared`). Either withholds only a confident
        answer. `digits`: how many the image holds side by side (`_Prepared`); more than one withholds any answer,
        sure or not: one digit's answer for a number means nothing, and the reason says what to do instead."""
        if not np.isfinite(probs).all():  # NaN < min_confidence is False: a broken model would pass as sure
            return Prediction(None, error=NON_FINITE)
        order = np.argsort(-probs)[: self.top_k]
        classes = self.model.classes
        top = [(classes[i], float(probs[i])) for i in order]
        label, confidence = top[0]
        if digits > 1:
            return Prediction(None, confidence, top, probs.tolist(), reason=SEVERAL.format(digits))
        if confidence < self.min_confidence:
            return Prediction(None, confidence, top, probs.tolist(), reason="low confidence")
        if shape:
            return Prediction(None, confidence, top, probs.tolist(), reason=shape)
        if far:  # from the training images
            return Prediction(None, confidence, top, probs.tolist(), reason=UNLIKE)
        return Prediction(label, confidence, top, probs.tolist())

    def predict(self, x: Source | list[Source]) -> Prediction | list[Prediction]:
        """One input → one Prediction; a list → a list. Unreadable inputs get `error`, never an exception.

        An array or tensor is always one image: H x W, H x W x C, or (tensors, torch's convention) C x H x W, with
        C = 1..4 (gray, gray + alpha, RGB, RGBA). So a tensor of 2 to 4 stacked gray images reads as channels: give a
        stack of images as a list, `predict(list(stack))`; other stacked shapes get an `error` that says so.
        """
        if isinstance(x, (list, tuple)):
            return self.predict_many(x)
        return self.predict_many([x])[0]

    def predict_many(self, sources: list[Source]) -> list[Prediction]:
        # One thread: preprocessing is many small numpy calls, and a second thread only fights for the GIL
        # (measured: 1,280 files/s with one thread, 780 with two).
        return self._answers(sources, [_prepare(source, self._looks, listing=True) for source in sources])

    def _answers(self, sources: list[Source], prepared: list[_Prepared | ImageError]) -> list[Prediction]:
        """Each source's answer from its readings (`preprocess.readings`): the one the model is surest of."""
        ok = [i for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        answers = {}
        if ok:
            images = np.concatenate([prepared[i].readings for i in ok])
            probs, faraway = self._outputs(images)
            starts = np.cumsum([0] + [len(prepared[i].readings) for i in ok])
            # Each source's surest reading (NaN wins: _answer says so).
            picked = [a + int(np.argmax(probs[a:b].max(axis=1))) for a, b in zip(starts[:-1], starts[1:])]
            answers = {i: (probs[k], bool(faraway[k]), prepared[i].shape or shape, prepared[i].digits)
                       for i, k, shape in zip(ok, picked, self._shapes(images[picked]))}
        results: list[Prediction] = []
        for i, (source, item) in enumerate(zip(sources, prepared)):
            if i in answers:
                result = self._answer(*answers[i])
            elif isinstance(item, NoInkError):
                result = Prediction(None, reason=str(item))
            else:
                result = Prediction(None, error=str(item))
            result.path = str(source) if isinstance(source, (str, os.PathLike)) else None
            results.append(result)
        return results

    def predict_files(self, items: Iterable[FileItem], chunk: int = 256) -> Iterator[Prediction]:
        """Stream predictions over (path, error) pairs from `expand_paths` (or plain file paths), a chunk at a time:
        memory stays flat.

        The model works on one chunk in a second thread while this one decodes the next (torch releases the GIL):
        1,310 files/s instead of 915 on 2 cores.
        """
        with ThreadPoolExecutor(1) as model_thread:
            pending = None
            for batch in _chunks(_pairs(items, "predict_files"), chunk):
                paths = [path for path, _ in batch]
                prepared = [ImageError(error) if error else _prepare(path, self._looks) for path, error in batch]
                if pending is not None:
                    yield from pending.result()
                pending = model_thread.submit(self._answers, paths, prepared)
            if pending is not None:
                yield from pending.result()

    def read_files(self, items: Iterable[FileItem]) -> Iterator[Reading]:
        """Read a number in each file of (path, error) pairs from `expand_paths` (or plain file paths), one at a time:
        memory stays flat."""
        for path, error in _pairs(items, "read_files"):
            yield Reading(None, [], None, error=error, path=str(path)) if error else self.read(path)

    def read(self, image: Source) -> Reading:
        """Read a handwritten number: segment the digits, classify each, join them left to right."""
        reading = self._read(image)
        reading.path = str(image) if isinstance(image, (str, os.PathLike)) else None
        return reading

    def _read(self, image: Source) -> Reading:
        try:
            # At the size find_ink works at (a photo's JPEG decodes at that size directly), boxes in the image's pixels.
            gray, size = load_gray_sized(image, work_pixels=WORK_PIXELS)
            boxes = segment_digits(gray, score=self.probabilities, size=size, one=self._one)
        except NoInkError as e:
            return Reading(None, [], None, reason=str(e))
        except ImageError as e:
            return Reading(None, [], None, error=str(e))
        images = np.stack([b.image for b in boxes])
        probs, faraway = self._outputs(images)
        if not np.isfinite(probs).all():
            return Reading(None, [], None, error=NON_FINITE)
        answers = [self._answer(*judged) for judged in zip(probs, faraway, self._shapes(images))]
        digits = [Digit(a.label, float(a.confidence), (b.x0, b.y0, b.x1, b.y1), a.top_k, a.reason)
                  for a, b in zip(answers, boxes)]
        confidence = float(np.prod([d.confidence for d in digits]))
        if reasons := [d.reason for d in digits if d.label is None]:
            return Reading(None, digits, confidence, reason=reasons[0])
        return Reading("".join(d.label for d in digits), digits, confidence)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy for inference with each BatchNorm folded into the convolution (or linear layer) right before it: the
    same function in eval mode, one pass over the activations fewer per layer."""
    # The card (load_model's, up to 16 MiB of JSON and many times that parsed) is shared, not copied: it describes
    # the same weights, and a copy doubled the memory `convnet predict` took for a large one.
    cards = {id(m.card): m.card for m in model.modules() if getattr(m, "card", None) is not None}
    model = copy.deepcopy(model, memo=cards).eval()
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, bn = seq[i], seq[i + 1]
            if isinstance(layer, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(layer, bn)
            elif isinstance(layer, torch.nn.Linear) and isinstance(bn, torch.nn.BatchNorm1d):
                seq[i] = fuse_linear_bn_eval(layer, bn)
            else:
                continue
            seq[i + 1] = torch.nn.Identity()
    return model


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Prepared(NamedTuple):
    """One source made ready for the model: its readings (`preprocess.readings`), how many digits it holds side by
    side (`segment.digits_side_by_side`; 1 when not counted), and LINES where its ink is nothing but straight lines
    (`segment.only_lines`; None when not looked at)."""

    readings: np.ndarray
    digits: int
    shape: str | None = None


def _prepare(source: Source, look: bool, listing: bool = False) -> _Prepared | ImageError:
    """One source made ready, or its error; with `look` (`Recognizer._looks`), its digits side by side are counted and
    its lines looked at. With `listing`, a folder's or a pattern's error says how to read what it names (`predict`
    takes files, as `read` does; the command line's `predict` lists them first)."""
    try:
        _refuse_flattened(source)
        ink = find_ink(load_gray(source, work_pixels=WORK_PIXELS))
        components = connected_components(ink)  # labelled once for all
        digits = digits_side_by_side(ink, components) if look else 1
        return _Prepared(readings(ink, components), digits, LINES if look and only_lines(ink, components) else None)
    except ImageError as e:
        listed = isinstance(source, (str, os.PathLike)) and (
            os.path.isdir(source) or (glob.has_magic(os.fspath(source)) and not os.path.exists(source)))
        if listing and listed:
            return ImageError(f"{e}; predict_files(expand_paths([...])) reads the images of folders and patterns")
        return e


def _refuse_flattened(source: Source) -> None:
    """An ImageError for 28x28 images flattened into an array's rows, (N, 784), or columns, which would otherwise be
    read as one strip-shaped image and answered with confidence."""
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2 or FLAT not in shape:
        return
    if isinstance(source, torch.Tensor):
        source = tensor_to_numpy(source)
    if (source := np.asarray(source)).dtype.kind not in "biuf":  # not numbers: the loader says so
        return
    x = "x" if shape[1] == FLAT else "x.T"
    rows = source.reshape(shape) if x == "x" else source.reshape(shape).T
    if _flattened(rows[:64].astype(np.float64)):  # a few rows tell: 60,000 of them would take gigabytes here
        raise ImageError(f"an array of shape {shape} holds flattened 28x28 images, one per "
                         f"{'row' if x == 'x' else 'column'}, not one image: give them as a list, "
                         f"predict(list({x}.reshape(-1, 28, 28))), or use model.predict({x}) for MNIST's own layout")


def _flattened(rows: np.ndarray) -> bool:
    """Whether rows of 784 pixels are 28x28 images laid flat: then a pixel is far more like the one 28 along (the one
    below it in the image) than the one 14 along. Along a strip of a picture the nearer one is the more alike
    (MNIST's digits, one or many: at least 0.49 more alike; pictures 784 pixels wide: less; noise: at most 0.12)."""
    def alike(step: int) -> float:
        with np.errstate(invalid="ignore", divide="ignore"):  # a flat array: no likeness to measure
            return float(np.corrcoef(rows[:, :-step].ravel(), rows[:, step:].ravel())[0, 1])

    return alike(SIZE) > alike(SIZE // 2) + FLAT_LIKENESS


def expand_paths(patterns: str | os.PathLike | Iterable[str | os.PathLike],
                 skipped: list[str] | None = None) -> Iterator[tuple[str, str | None]]:
    """(path, error) pairs for files, folders (recursive, images only), globs and standard input (`StandardInput`), in
    a stable order, lazily. One path or pattern may come alone, not in a list.

    In folders, files not named as images and hidden files and folders (`.x`, such as macOS's `._photo.png`) are left
    out, and among a glob's matches those not named as images (hidden ones match only a pattern that names them); they
    are added to `skipped` when it is given (a folder's path ending in a separator). A file named on its own is always
    read."""
    # A string is iterable too: each of its characters would be taken for a path, and "/" walks the whole disk
    for pattern in [patterns] if isinstance(patterns, (str, os.PathLike)) else patterns:
        if isinstance(pattern, StandardInput):  # read from its descriptor: no file to look for
            yield pattern, None
            continue
        if not isinstance(pattern, (str, os.PathLike)) or isinstance(pattern := os.fspath(pattern), bytes):
            raise ConfigError("expand_paths takes paths or glob patterns (str or pathlib.Path), not "
                              f"{type(pattern).__name__}.")
        path = Path(pattern)
        if not pattern:
            yield pattern, "empty path"
            continue
        refused = None
        try:
            is_dir, exists = path.is_dir(), path.exists() or path.is_symlink()  # a broken link: opening it says so
        except OSError as e:  # pathlib hides only "not there": a name too long for the file system still raises
            is_dir, exists, refused = False, False, f"{pattern}: {e.strerror or e}"
        if is_dir:
            found = False
            for item in _folder_images(path, skipped):
                found = True
                yield item
            if not found:
                yield str(path), f"{path}: no images found in this folder"
        elif exists:
            yield str(path), None
        elif glob.has_magic(pattern):
            yield from _glob_images(pattern, skipped)
        else:
            yield pattern, refused or f"{pattern}: no such file or folder"


def _pairs(items: Iterable[FileItem], method: str) -> Iterator[tuple[str, str | None]]:
    """The (path, error) pairs of `items`, a plain path being one without an error. One path not in a list is refused:
    its characters would be taken for paths, and its folder's images are what expand_paths finds."""
    if isinstance(items, (str, os.PathLike)):
        raise ConfigError(f"{method} takes a list of files, not one path: "
                          f"{method}(expand_paths([{os.fspath(items)!r}])) reads a file, or the images of a folder or "
                          "pattern.")
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            yield item, None
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, os.PathLike))
              and isinstance(item[1], (str, type(None)))):
            yield item
        else:
            raise ConfigError(f"{method} takes file paths or the (path, error) pairs of expand_paths, not "
                              f"{type(item).__name__}.")


def _folder_images(folder: Path, skipped: list[str] | None) -> Iterator[tuple[str, str | None]]:
    """(path, None) for each image under a folder, and (folder, error) for each folder that cannot be listed, which
    os.walk alone would skip in silence."""
    refused: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(folder, onerror=lambda e: refused.append(_cannot_list(e))):
        yield from refused  # the subfolders refused since the last step, in walking order
        refused.clear()
        if skipped is not None:  # a hidden folder (.git, .ipynb_checkpoints) is said once, not file by file
            skipped.extend(os.path.join(root, d, "") for d in sorted(dirs) if d.startswith("."))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if walked_image(name):
                yield os.path.join(root, name), None
            elif skipped is not None:
                skipped.append(os.path.join(root, name))
    yield from refused


def _cannot_list(e: OSError) -> tuple[str, str]:
    return str(e.filename), f"{e.filename}: cannot list this folder ({e.strerror or e})"


def walked_image(name: str) -> bool:
    """Whether a folder walk reads a file of this name: named as an image, and not hidden."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def _glob_images(pattern: str, skipped: list[str] | None) -> Iterator[tuple[str, str | None]]:
    """The files a pattern matches, and the images in the folders it matches, each file once however many names
    reach it (`**` matches a folder and what is in it; links can lead to a file again); and, once each, the folders
    on the way that cannot be listed, as a folder's walk says them."""
    seen: set[str] = set()
    others: list[str] = []  # as in a folder: `dir/*` or `dir/**` reads the images, not the notes beside them
    refused: list[tuple[str, str]] = []  # filled by _glob as it goes
    for match in _glob(pattern, refused):
        # os.path.isdir, not Path.is_dir: a match too long to stat is not a folder; opening it as a file says why
        if os.path.isdir(match):
            found: Iterable[tuple[str, str | None]] = _folder_images(Path(match), skipped)
        elif Path(match).suffix.lower() in IMAGE_SUFFIXES:  # hidden too: only a pattern that names them matches them
            found = [(match, None)]
        else:
            others.append(match)
            found = []
        yield from _once(itertools.chain(_drain(refused), found), seen)
    yield from _once(_drain(refused), seen)
    if skipped is not None:
        skipped.extend(others)
    if not seen:
        yield pattern, f"{pattern}: " + (f"none of the {len(others)} files it matches is named as an image" if others
                                         else "no files match")


def _drain(items: list) -> list:
    """What the list holds, leaving it empty."""
    taken = items[:]
    items.clear()
    return taken


def _once(items: Iterable[tuple[str, str | None]], seen: set[str]) -> Iterator[tuple[str, str | None]]:
    """The items whose path (as a real path) is not in `seen`, which they are added to."""
    for path, error in items:
        if (real := os.path.realpath(path)) not in seen:
            seen.add(real)
            yield path, error


def _glob(pattern: str, refused: list[tuple[str, str]]) -> Iterator[str]:
    """What glob.iglob(pattern, recursive=True) matches, found lazily, each folder's matches sorted and before those
    of its subfolders. Unlike glob, `**` neither matches nor enters links to folders, as the folder walk does not
    follow them: over a loop of links glob's `**` never ends."""
    drive, rest = os.path.splitdrive(pattern)
    *folders, last = re.split(r"[\\/]" if os.altsep else "/", rest)
    base = drive + os.sep if folders and not folders[0] else drive  # "/x" splits into "" and "x"
    parts = [part for part in folders if part] + [last]  # "a//*" is "a/*", to glob too
    return (match for match in _match(base, parts, refused) if match)  # `**` at the start also matches "" itself


def _match(base: str, parts: list[str], refused: list[tuple[str, str]]) -> Iterator[str]:
    part, rest = parts[0], parts[1:]
    if part == "**":  # the folder itself, and what is below it
        here = [os.path.join(base, "")] if os.path.isdir(base or os.curdir) else []
        matches: Iterable[str] = itertools.chain(here, _under(base, bool(rest), refused))
    elif glob.has_magic(part):
        matches = (os.path.join(base, e.name) for e in _entries(base, refused) if fnmatch.fnmatch(e.name, part)
                   and (part.startswith(".") or not e.name.startswith(".")) and (not rest or _is_dir(e)))
    else:  # a name as it is: checked only at the end, as glob does; "" (a pattern ending in "/") asks for a folder
        path = os.path.join(base, part)
        matches = [path] if rest or (os.path.lexists(path) if part else os.path.isdir(path)) else []
    for path in matches:
        yield from _match(path, rest, refused) if rest else [path]


def _under(folder: str, dirs_only: bool, refused: list[tuple[str, str]]) -> Iterator[str]:
    """What `**` matches below a folder, depth first: hidden names and links to folders are left out."""
    for entry in _entries(folder, refused):
        if entry.name.startswith("."):
            continue
        path = os.path.join(folder, entry.name)
        if _is_dir(entry, follow=False):
            yield path
            yield from _under(path, dirs_only, refused)
        elif not dirs_only and not _is_dir(entry):
            yield path


def _entries(folder: str, refused: list[tuple[str, str]]) -> list[os.DirEntry]:
    """A folder's entries sorted by name; none if it is not there or cannot be listed, as glob has it, but a folder
    that is there and refuses to be listed is added to `refused`: its images would be missing without a word."""
    try:
        with os.scandir(folder or os.curdir) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL byte in the pattern
        return []
    except OSError as e:
        refused.append(_cannot_list(e))
        return []


def _is_dir(entry: os.DirEntry, follow: bool = True) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False
