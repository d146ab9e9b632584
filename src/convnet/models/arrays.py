"""`model.predict(images)`, Keras' predict: calibrated probabilities for images laid out as a data set's arrays are.

The network itself (`model(x)`) takes normalised tensors, `(pixel / 255 - model.mean) / model.std`, as `fit` makes
them: raw pixels in [0, 1] give confident nonsense (a `fast` model answered 8 for every one of MNIST's test images).
This applies the model's own normalisation and temperature, and nothing more: photos and scans go through
`Recognizer`, which prepares them the way MNIST's images were made, and answers through `calibrated_outputs` too.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from convnet.checkpoint import check_settings
from convnet.data import normalize_
from convnet.errors import ImageError, ModelError, whole_count
from convnet.evaluate import judged_outputs
from convnet.preprocess.load import tensor_to_numpy

OVERSHOOT = 1.5  # float pixels up to this are [0, 1] with resampling overshoot, clipped (as preprocess takes them)


def predict_arrays(model: nn.Module, images: object, batch_size: int = 256) -> np.ndarray:
    """(N, classes) float32 probabilities for N images: uint8 pixels 0..255 (or other integers in that range, or
    bools) or floats in [0, 1], shaped (N, H, W), (N, C, H, W), (N, H, W, C) or flattened (N, C*H*W); one image,
    (H, W), gives one row."""
    batch_size = whole_count("batch_size", batch_size)
    check_settings(model)  # set by hand, maybe: a temperature of 0 would answer NaN, a negative one the wrong class
    probs, _ = calibrated_outputs(model, _pixels(model, images), [], batch_size)
    if not np.isfinite(probs).all():
        raise ModelError("the model gave non-finite outputs (NaN or infinity): its weights are unusable (corrupt, or "
                         "from a training that diverged).")
    return probs


def calibrated_outputs(model: nn.Module, pixels: np.ndarray, judges: list[nn.Module],
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities for (N, C, H, W) pixels in [0, 1], and which images `judges` find unlike the training
    images (`calibrate.judges`; all False without any). The caller's array is left as it was."""
    device = next(model.parameters()).device
    x = normalize_(torch.tensor(pixels, dtype=torch.float32, device=device), model.mean, model.std)  # a copy
    if not len(x):
        return np.zeros((0, model.num_classes), np.float32), np.zeros(0, bool)
    out, unlike = judged_outputs(model, x, judges, batch_size)  # an ensemble's are log-probabilities, its T is 1
    far = np.zeros(len(out), bool) if unlike is None else unlike.cpu().numpy()
    return torch.softmax(out / float(model.temperature), 1).cpu().numpy(), far


def _pixels(model: nn.Module, images: object) -> np.ndarray:
    """`images` as (N, C, H, W) in [0, 1], or an ImageError that names the mistake."""
    if isinstance(images, torch.Tensor):  # on any device, bf16 too
        images = tensor_to_numpy(images)
    try:
        a = np.asarray(images)
    except ValueError as e:  # a ragged list
        raise ImageError(f"predict takes images of one size in one array: {e}") from None
    c, (h, w) = model.in_channels, model.input_size
    a = _batch_layout(a, c, h, w)
    if a.dtype.kind not in "biuf":
        raise ImageError(f"predict takes arrays of pixels (uint8 0..255 or float 0..1), not {a.dtype} values.")
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise ImageError("the images hold NaN or infinite values.")
    low, high = (a.min(), a.max()) if a.size else (0, 0)
    if a.dtype.kind in "iu" and not 0 <= low <= high <= 255:
        raise ImageError(f"integer pixels must be 0..255, not {low} to {high}.")
    if a.dtype.kind == "f" and not 0 <= low <= high <= OVERSHOOT:
        hint = ("divide them by 255" if 0 <= low and high <= 255 else
                "give the pixels themselves: predict applies the model's normalisation")
        raise ImageError(f"float pixels must be in [0, 1], not {low:g} to {high:g}: {hint} (or pass uint8 0..255).")
    return np.clip(a, 0, 1) if a.dtype.kind == "f" else a / np.float32(255 if a.dtype.kind in "iu" else 1)


def _batch_layout(a: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    """(N, C, H, W) from any of the layouts `predict_arrays` takes; an ImageError for any other shape."""
    if a.shape in ((h, w), (c, h, w), (h, w, c)) and (c == 1 or a.ndim == 3):
        a = a[None]  # one image
    if a.ndim == 2 and a.shape[1] == c * h * w:
        return a.reshape(len(a), c, h, w)
    if a.ndim == 3 and a.shape[1:] == (h, w) and c == 1:
        return a[:, None]
    if a.ndim == 4 and a.shape[1:] == (c, h, w):
        return a
    if a.ndim == 4 and a.shape[1:] == (h, w, c):
        return a.transpose(0, 3, 1, 2)
    batch = f"(N, {h}, {w}), " if c == 1 else ""
    raise ImageError(f"predict takes a batch of {h}x{w} images with {c} channel(s), shaped {batch}(N, {c}, {h}, {w}), "
                     f"(N, {h}, {w}, {c}) or (N, {c * h * w}), not {a.shape}; Recognizer.predict prepares photos and "
                     "scans of any size.")
