"""Connected components of an ink map, and which of them are specks rather than strokes.

Used by `convnet.preprocess` (to drop specks before cropping) and `convnet.segment` (to find the digits of a number).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnet.errors import NoInkError

SPECK_SIDE = 0.01  # components smaller than this share of the image side are specks,
SPECK_MASS = 0.015  # ...as are small ones lighter than this share of the heaviest
SPECK_SHORT = 0.5  # ...but none this share of the image's shorter side is tiny (a long strip's digits)
PALE_PEAK = 0.5  # ...and so are pieces whose strongest pixel is under this share of a full stroke's ink,
PALE_MASS = 0.1  # ...and that weigh less than this share of the heaviest (a faint grid's last stretches)
MAJOR = 0.25  # pieces at least this share as heavy as the heaviest are the main ink, not a stray stroke


@dataclass(frozen=True)
class Components:
    """8-connected components of the non-zero ink, numbered 1..n in `labels`."""

    labels: np.ndarray  # int32, 0 = paper
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1, half-open
    mass: np.ndarray  # (n,) summed ink
    peak: np.ndarray  # (n,) strongest pixel

    def __len__(self) -> int:
        return len(self.mass)


def runs(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of ink (non-zero pixels) along the rows, row by row: each run's row, first column and end column
    (one past its last)."""
    edges = np.diff(np.pad(ink > 0, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    return rows, starts, np.nonzero(edges == -1)[1]


def run_pixels(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of runs of these lengths, one run after another: the index of its run, and how far into the
    run it lies. Scattering through these fills whole runs with no loop over them."""
    run_of = np.repeat(np.arange(len(lengths)), lengths)
    return run_of, np.arange(len(run_of)) - (np.cumsum(lengths) - lengths)[run_of]


def connected_components(ink: np.ndarray) -> Components:
    """Label runs of ink per row, then join runs that touch across rows.

    Working on runs instead of pixels keeps the graph small; the union is done
    by vectorised min-label hooking plus pointer jumping.
    """
    height, width = ink.shape
    rows, starts, ends = runs(ink)
    # Run j in the next row touches run i (8-connected) iff s_j <= e_i and e_j >= s_i.
    stride = width + 2
    below = (rows + 1) * stride
    first = np.searchsorted(rows * stride + ends, below + starts, "left")
    stop = np.searchsorted(rows * stride + starts, below + ends, "right")
    count = np.maximum(stop - first, 0)
    a = np.repeat(np.arange(len(rows)), count)
    b = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
    root = np.arange(len(rows))
    while not np.array_equal(root[a], root[b]):
        low = np.minimum(root[a], root[b])
        np.minimum.at(root, root[a], low)
        np.minimum.at(root, root[b], low)
        while not np.array_equal(root[root], root):
            root = root[root]
    _, comp = np.unique(root, return_inverse=True)
    n = int(comp.max()) + 1 if len(comp) else 0
    labels = np.zeros(height * width, np.int32)
    run_of, offsets = run_pixels(ends - starts)
    labels[(rows * width + starts)[run_of] + offsets] = (comp + 1)[run_of]
    cumulative = np.pad(np.cumsum(ink, axis=1, dtype=np.float64), ((0, 0), (1, 0)))
    boxes = np.empty((n, 4), np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    boxes[:, 2:] = 0
    np.minimum.at(boxes, (comp, 0), starts)
    np.minimum.at(boxes, (comp, 1), rows)
    np.maximum.at(boxes, (comp, 2), ends)
    np.maximum.at(boxes, (comp, 3), rows + 1)
    mass = np.bincount(comp, cumulative[rows, ends] - cumulative[rows, starts], minlength=n)
    # Each run's strongest pixel, then each component's: the runs lie one after another in the flattened image, and
    # from one run's start to the next's there is only that run and paper (no ink, nothing stronger).
    peak = np.zeros(n, np.float32)
    if len(rows):
        np.maximum.at(peak, comp, np.maximum.reduceat(ink.ravel(), rows * width + starts))
    return Components(labels.reshape(height, width), boxes, mass, peak)


def speck_mask(components: Components, shape: tuple[int, ...]) -> np.ndarray:
    """True for components that are dust or noise rather than (part of) a digit.

    A speck is tiny against the image, or both light and small against the
    heaviest component (the dot-like pieces of a broken stroke are not light),
    or pale and light: never as dark as half a full stroke anywhere, as the
    stretches of a faint grid that `remove_rulings` could not follow are (left
    in, they widened the crop, and a 0 scaled down with them read as a 9).
    Tiny is measured on the longer side, but never reaches half of the
    shorter one: in a long strip of digits the digits themselves would be.
    """
    boxes = components.boxes
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    tiny = sides < max(2.0, min(SPECK_SIDE * max(shape), SPECK_SHORT * min(shape)))
    heaviest = components.mass.max()
    pale = (components.peak < PALE_PEAK) & (components.mass < PALE_MASS * heaviest)
    return tiny | pale | ((components.mass < SPECK_MASS * heaviest) & (sides < 0.1 * sides.max()))


def strokes(components: Components, shape: tuple[int, ...]) -> np.ndarray:
    """True for the components that are not specks (`speck_mask`); NoInkError if none is left."""
    keep = ~speck_mask(components, shape) if len(components) else np.zeros(0, bool)
    if not keep.any():
        raise NoInkError("no ink found")
    return keep


def major_box(components: Components, keep: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) around the components in `keep` at least MAJOR as heavy as the heaviest of them."""
    major = keep & (components.mass >= MAJOR * components.mass[keep].max())
    (x0, y0), (x1, y1) = components.boxes[major, :2].min(axis=0), components.boxes[major, 2:].max(axis=0)
    return int(x0), int(y0), int(x1), int(y1)
