"""Grey morphology on ink maps in O(n) numpy passes: running max/min, dilation/erosion, stroke measures."""

from __future__ import annotations

import itertools

import numpy as np

from convnet.components import run_pixels, runs
from convnet.errors import NoInkError


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width = 2 * area / perimeter, the perimeter from edge crossings.

    Crossings count the boundary in the city-block metric, which overestimates
    a curve's length by 4/pi on average (Cauchy-Crofton), hence the factor.
    """
    mask = np.pad(ink > 0.5, 1)
    crossings = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return 2 * np.count_nonzero(mask) / max(crossings * np.pi / 4, 1)


def morph(ink: np.ndarray, radius: float, op: np.ufunc) -> np.ndarray:
    """Grey dilation/erosion by a square of fractional `radius` (blend of two sizes)."""
    whole = int(abs(radius))
    frac = abs(radius) - whole
    inner = _square_filter(ink, whole, op)
    return inner + frac * (_square_filter(ink, whole + 1, op) - inner) if frac else inner


def _square_filter(ink: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """Running max/min over a (2r+1)^2 square, separable, van Herk/Gil-Werman O(n)."""
    for axis in (0, 1):
        ink = np.moveaxis(running(np.moveaxis(ink, axis, -1), radius, op), -1, axis)
    return ink


def running(rows: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """op over windows of 2r+1 along the last axis, outside counted as paper (0)."""
    if radius <= 0:
        return rows
    window, n = 2 * radius + 1, rows.shape[-1]
    padded_len = -(-(n + 2 * radius) // window) * window
    padded = np.zeros(rows.shape[:-1] + (padded_len,), rows.dtype)
    padded[..., radius : radius + n] = rows
    blocks = padded.reshape(rows.shape[:-1] + (-1, window))
    prefix = op.accumulate(blocks, axis=-1).reshape(padded.shape)
    suffix = op.accumulate(blocks[..., ::-1], axis=-1)[..., ::-1].reshape(padded.shape)
    return op(suffix[..., :n], prefix[..., window - 1 : window - 1 + n])


def vertical_runs(mask: np.ndarray) -> np.ndarray:
    """For each ink pixel, the length of the vertical run of ink it belongs to (0 on paper)."""
    return vertical_run_bounds(mask)[1]


def vertical_run_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ink pixel, the first row of the vertical run of ink it belongs to, and the run's length (0 on paper)."""
    columns, starts, ends = runs(mask.T)  # the columns' runs, column by column
    lengths = ends - starts
    first, out = np.zeros(mask.T.shape, np.int32), np.zeros(mask.T.shape, np.int32)
    run_of, offsets = run_pixels(lengths)
    where = columns[run_of], starts[run_of] + offsets
    first[where], out[where] = starts[run_of], lengths[run_of]
    return first.T, out.T


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The box of the ink (non-zero pixels); a NoInkError where there is none."""
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if not len(rows):
        raise NoInkError("no ink found")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Corners (x, y) of the convex hull of a mask's pixels, each a unit square, in order round it; (0, 2) if empty."""
    rows = np.nonzero(mask.any(1))[0]
    if not len(rows):
        return np.zeros((0, 2))
    left, right = row_extents(mask[rows])
    # Each row's ink spans [left, right) x [row, row + 1): the hull of those corners is the hull of the pixels.
    xs = np.concatenate([left, left, right, right]).astype(np.float64)
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(np.float64)
    points = sorted(set(zip(xs.tolist(), ys.tolist())))
    return np.array(_half_hull(points) + _half_hull(points[::-1]))  # Andrew's monotone chain: lower, upper half


def row_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first pixel and one past its last (along the last axis, of a mask or a stack of masks); a row
    without any spans nothing, from 0 to 0."""
    filled = mask.any(-1)
    left = np.where(filled, mask.argmax(-1), 0)
    return left, np.where(filled, mask.shape[-1] - mask[..., ::-1].argmax(-1), 0)


def _half_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """One half of the convex hull of `points` (sorted), without its last point (the other half's first)."""
    chain: list[tuple[float, float]] = []
    for p in points:
        while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                   - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
            chain.pop()
        chain.append(p)
    return chain[:-1]


def polygon_area(corners: np.ndarray) -> np.ndarray:
    """Area of a polygon given its corners (..., n, 2) in order (the shoelace formula); of each, for a stack."""
    x, y = corners[..., 0], corners[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, axis=-1) - y * np.roll(x, -1, axis=-1)).sum(-1))


def corner_share(corners: np.ndarray) -> float:
    """How much of a convex polygon (corners in order round it) the largest quadrilateral on its corners covers: all
    of a sheet of paper at any angle or seen in perspective, 64 % of an ellipse. The quadrilateral's corners are
    sought among the points farthest out in 16 directions: a corner that is farthest out in none of them is nearly
    flat, and leaving it out costs little."""
    area = float(polygon_area(corners))
    if area == 0:
        return 0.0
    angles = np.arange(16) * (np.pi / 8)
    extremes = corners[sorted(set((corners @ np.stack([np.cos(angles), np.sin(angles)])).argmax(0).tolist()))]
    if len(extremes) <= 4:
        return float(polygon_area(extremes)) / area
    quads = extremes[np.array(list(itertools.combinations(range(len(extremes)), 4)))]  # each still in order round
    return float(polygon_area(quads).max()) / area
