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

from convnet.components import Components
from convnet.errors import ImageError, NoInkError
from convnet.preprocess.ink import blobs, digit_ink, find_ink, frames, outlines
from convnet.preprocess.load import MAX_PIXELS, WORK_PIXELS, Source, load_gray, load_gray_sized
from convnet.preprocess.render import BOX, SIZE, render_digit
from convnet.preprocess.rulings import LINE_ASPECT, find_underlines, remove_rulings

RULE_PAST = 0.6  # a rule under a digit reaches this share of the digit's width past it on both sides

__all__ = [
    "BOX", "LINE_ASPECT", "MAX_PIXELS", "SIZE", "WORK_PIXELS", "ImageError", "NoInkError", "Source", "blobs",
    "find_ink", "find_underlines", "frames", "load_gray", "load_gray_sized", "outlines", "preprocess", "readings",
    "remove_rulings", "render_digit", "to_mnist",
]


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """28x28 float32 in [0, 1], white ink on black, laid out like an MNIST digit."""
    return render_digit(digit_ink(find_ink(gray)))


def preprocess(source: Source) -> np.ndarray:
    """Load any image source and make it an MNIST-style input (see `to_mnist`)."""
    return to_mnist(load_gray(source, work_pixels=WORK_PIXELS))


def readings(ink: np.ndarray, components: Components) -> np.ndarray:
    """`to_mnist` of the ink `find_ink` found (and its components, labelled once for every use), and a second
    reading without the rule the digit stands on when there may be one (a digit written on an answer line, which its
    rule joins into one piece, often read as a confident 2; or a 2's own base): (1 or 2) x 28 x 28, for a caller that
    can tell which reads as the more convincing digit."""
    first = render_digit(digit_ink(ink, components))
    if not _under_all(rule := find_underlines(ink, components)[1], ink):
        return first[None]
    try:
        return np.stack([first, render_digit(digit_ink(np.where(rule, 0, ink)))])
    except NoInkError:  # the rule was all there was
        return first[None]


def _under_all(rule: np.ndarray, ink: np.ndarray) -> bool:
    """Whether the rule reaches past the rest of the ink on both sides, by RULE_PAST of the rest's width: a line the
    digit stands on does; a 2's base, which starts about where its body does (or a third of the narrow body left of
    it, in MNIST), or a 4's crossbar does not (without them, a 2 reads as a surer 7, a 4 as a 1)."""
    if not rule.any():
        return False
    rule_cols, rest_cols = np.nonzero(rule.any(axis=0))[0], np.nonzero(((ink > 0) & ~rule).any(axis=0))[0]
    if not len(rest_cols):
        return False
    reach = RULE_PAST * (rest_cols[-1] + 1 - rest_cols[0])
    return bool(rule_cols[0] <= rest_cols[0] - reach and rule_cols[-1] >= rest_cols[-1] + reach)
