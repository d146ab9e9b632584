"""Turn any real image of a digit into an MNIST-style 28x28 input.

MNIST digits were made by scanning dark ink on paper, keeping white ink on a
black background, scaling each digit (anti-aliased) so that its longer side is
20 px, and pasting it into a 28x28 field so that its centre of mass sits at the
centre.  A network trained on MNIST only works on other images if they go
through the same steps, so this package reproduces them for photos, scans and
drawings: decide the polarity, remove uneven lighting and noise, erase the
lines of ruled or squared paper, crop the ink, bring the stroke width into
MNIST's range, resample and centre.

Only numpy and pillow are used, with no per-pixel Python loops.

The steps live in one module each: `load` (any source to gray), `ink` (paper, polarity, noise, specks), `rulings`
(notebook lines and underlines), `render` (crop, stroke width, scale, centre) and `morphology` (the running filters
they share).
"""

from __future__ import annotations

import numpy as np

from convnet.errors import ImageError, NoInkError
from convnet.preprocess.ink import digit_ink, find_ink
from convnet.preprocess.load import MAX_PIXELS, WORK_PIXELS, Source, load_gray, load_gray_sized
from convnet.preprocess.render import BOX, SIZE, render_digit
from convnet.preprocess.rulings import LINE_ASPECT, find_underlines, remove_rulings

__all__ = [
    "BOX", "LINE_ASPECT", "MAX_PIXELS", "SIZE", "WORK_PIXELS", "ImageError", "NoInkError", "Source",
    "find_ink", "find_underlines", "load_gray", "load_gray_sized", "preprocess", "remove_rulings", "render_digit",
    "to_mnist",
]


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """28x28 float32 in [0, 1], white ink on black, laid out like an MNIST digit."""
    return render_digit(digit_ink(find_ink(gray)))


def preprocess(source: Source) -> np.ndarray:
    """Load any image source and make it an MNIST-style input (see `to_mnist`)."""
    return to_mnist(load_gray(source, work_pixels=WORK_PIXELS))
