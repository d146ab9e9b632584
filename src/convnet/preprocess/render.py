"""MNIST's layout: the ink cropped, its stroke width brought into MNIST's range, scaled into 20 px, centred by mass."""

from __future__ import annotations

import numpy as np
from PIL import Image

from convnet.errors import NoInkError
from convnet.preprocess.ink import dot
from convnet.preprocess.load import resized
from convnet.preprocess.morphology import crop_to_ink, morph, stroke_width

SIZE, BOX = 28, 20  # MNIST field size and the box the digit is scaled into
STROKE_RANGE = (1.6, 3.0)  # stroke widths kept (px at 28x28): MNIST 5th-75th percentile


def render_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST layout of isolated white-on-black ink: crop, fix stroke, scale to 20 px, centre. A dot (`dot`) has no
    stroke to fix: it is scaled as it is, into the solid blob it is."""
    crop = crop_to_ink(ink)
    if not dot(crop):
        crop = crop_to_ink(_fix_stroke(crop, BOX / max(crop.shape)))  # the stroke fix moves the outline
    zoom = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * zoom)), max(1, round(crop.shape[0] * zoom)))
    return _centre(np.clip(resized(crop, size, Image.LANCZOS), 0, 1))


def _fix_stroke(crop: np.ndarray, zoom: float) -> np.ndarray:
    """Bring the stroke width into MNIST's range before resampling.

    A 3 px pen on a 4000 px page would shrink to a few hundredths of a pixel
    and vanish, a marker would fill the digit's holes: dilate or (gently)
    erode at the crop's resolution, where the correction is still exact.
    """
    width = stroke_width(crop) * zoom
    radius = (np.clip(width, *STROKE_RANGE) - width) / zoom / 2
    if radius == 0:
        return crop
    if radius < 0:  # never erode more than a quarter of the stroke: thin parts would break
        return morph(crop, max(radius, -width / zoom / 4), np.minimum)
    return morph(np.pad(crop, int(radius) + 1), radius, np.maximum)  # room to grow


def _centre(digit: np.ndarray) -> np.ndarray:
    """Paste into 28x28 with the centre of mass on pixel (14, 14), as MNIST did."""
    mass = digit.sum()
    if mass <= 0:
        raise NoInkError("no ink found")
    cy = (digit.sum(axis=1) @ np.arange(digit.shape[0])) / mass
    cx = (digit.sum(axis=0) @ np.arange(digit.shape[1])) / mass
    top, left = round(SIZE / 2 - cy), round(SIZE / 2 - cx)
    field = np.zeros((SIZE, SIZE), np.float32)
    ys, xs = slice(max(top, 0), min(top + digit.shape[0], SIZE)), slice(max(left, 0), min(left + digit.shape[1], SIZE))
    field[ys, xs] = digit[ys.start - top : ys.stop - top, xs.start - left : xs.stop - left]
    return field
