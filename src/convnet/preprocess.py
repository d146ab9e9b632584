"""Turn any real image of a digit into an MNIST-style 28x28 input.

MNIST digits were made by scanning dark ink on paper, keeping white ink on a
black background, scaling each digit (anti-aliased) so that its longer side is
20 px, and pasting it into a 28x28 field so that its centre of mass sits at the
centre.  A network trained on MNIST only works on other images if they go
through the same steps, so this module reproduces them for photos, scans and
drawings: decide the polarity, remove uneven lighting and noise, erase the
lines of ruled or squared paper, crop the ink, bring the stroke width into
MNIST's range, resample and centre.

Only numpy and pillow are used, with no per-pixel Python loops.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convnet.components import Components, connected_components, speck_mask
from convnet.errors import ConvnetError

MAX_PIXELS = 40_000_000  # refuse bigger images before decoding them
WORK_PIXELS = 1024 * 1024  # larger inputs are area-downscaled to this many pixels before any analysis
UNIT_OVERSHOOT = 1.5  # float images up to this are [0, 1] with resampling overshoot, not 0..255 (see `_to_unit`)
SIZE, BOX = 28, 20  # MNIST field size and the box the digit is scaled into
MIN_CONTRAST = 0.06  # ink fainter than this (of full white) is not ink
MIN_SNR = 6.0  # ...nor is ink that does not stand out of the noise this much
STROKE_RANGE = (1.6, 3.0)  # stroke widths kept (px at 28x28): MNIST 5th-75th percentile
LINE_ASPECT = 10  # a thin piece of ink this many times as wide as tall is a piece of a line, not of a digit

ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")  # not LAB, whose A is a colour axis
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]


class ImageError(ConvnetError, ValueError):
    """The input cannot be used as an image; the message says why."""


class NoInkError(ImageError):
    """The image is readable but holds nothing that looks like a digit."""


# --------------------------------------------------------------------- loading


def load_gray(
    source: Source, *, max_pixels: int = MAX_PIXELS, max_side: int | None = None, work_pixels: int | None = None
) -> np.ndarray:
    """Read `source` as float32 gray in [0, 1] (1 = white), H x W.

    `source` may be a path, encoded bytes, a PIL image, a numpy array or a
    torch tensor (H x W, H x W x C or C x H x W, on any device).  EXIF
    orientation is applied and transparency is composited over white paper.
    `max_side` (longer side) and `work_pixels` (area) area-downscale big
    images right after decoding (JPEGs decode at reduced size directly),
    which is how `preprocess` keeps photos cheap.
    Every failure, including PIL's own, is raised as `ImageError`.
    """
    if hasattr(source, "detach") and hasattr(source, "numpy"):  # a torch tensor, without importing torch here
        source = _tensor_to_array(source)
    if isinstance(source, np.ndarray):
        gray = _array_to_gray(source)
    elif isinstance(source, Image.Image):
        gray = _decode(source, "image", max_pixels)  # no draft: the caller's image stays as it is
    else:
        image, name = _open(source, max_pixels)
        with image:
            gray = _decode(image, name, max_pixels, max_side, work_pixels)
    return _downscale(gray, max_side, work_pixels)


def _tensor_to_array(tensor) -> np.ndarray:
    """A tensor as numpy, in float32 where numpy has no such type (bf16), and H x W x C where torch's C x H x W."""
    try:
        t = tensor.detach().cpu()
        array = (t.float() if t.is_floating_point() else t).numpy()
    except (RuntimeError, NotImplementedError, TypeError) as e:  # no plain numbers: meta, sparse, quantized, …
        raise ImageError(f"cannot read a {tensor.dtype} tensor on {tensor.device} as an image ({e})") from None
    if array.ndim == 3 and array.shape[0] <= 4 < array.shape[2]:
        array = array.transpose(1, 2, 0)
    return array


def _open(source: Source, max_pixels: int) -> tuple[Image.Image, str]:
    """Open (header only) a path or bytes, turning every failure into ImageError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("image data is empty")
        fp, name = io.BytesIO(source), "image data"
    elif isinstance(source, (str, os.PathLike)):
        fp, name = Path(source), str(source)
        if not name:
            raise ImageError("empty path")
        try:
            size = fp.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read file ({exc.strerror})") from exc
        except ValueError as exc:  # e.g. an embedded NUL byte
            raise ImageError(f"{name!r}: not a valid path ({exc})") from None
        if fp.is_dir():
            raise ImageError(f"{name}: is a directory, not an image file")
        if size == 0:
            raise ImageError(f"{name}: file is empty")
    else:
        raise ImageError(f"cannot read an image from {type(source).__name__}: give a path, encoded bytes, a PIL "
                         "image or an array")
    try:
        with _pil_warnings():
            return Image.open(fp), name
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: image is too large (limit {max_pixels:,} pixels)") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file, or an unsupported format") from exc
    except Exception as exc:  # PIL plugins raise many types on malformed headers
        raise ImageError(f"{name}: cannot read image ({exc})") from exc


@contextmanager
def _pil_warnings() -> Iterator[None]:
    """PIL's warnings while an image is opened or decoded: a decompression bomb's becomes an error (PIL only warns
    between 89M and 179M pixels); those about damaged metadata, such as an EXIF tag pointing past the file's end,
    are dropped: PIL skips the tag, the pixels are read all the same, and the user has nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _decode(
    image: Image.Image, name: str, max_pixels: int, draft_side: int | None = None, draft_pixels: int | None = None
) -> np.ndarray:
    """Check size and frame count from the header, then decode to gray.

    With `draft_side` or `draft_pixels`, JPEGs decode at 1/2, 1/4 or 1/8 scale
    when that still leaves at least the size `_downscale` would make: far less
    work for phone photos.
    """
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: image is too large: {width}x{height} pixels (limit {max_pixels:,})")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has no pixels")
    try:
        with _pil_warnings():
            # Cameras write MPO: the photo first, then previews; that is not an animation.
            if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
                raise ImageError("animated images are not supported")
            if (draft_side or draft_pixels) and image.format in ("JPEG", "MPO"):
                factor = _shrink_factor(height, width, draft_side, draft_pixels)
                image.draft("L", (int(width / factor), int(height / factor)))
            return _pil_to_gray(ImageOps.exif_transpose(image))
    except ImageError as exc:  # raised by the checks above and below, which do not know the name
        raise ImageError(f"{name}: {exc}") from None
    except Exception as exc:  # truncated or corrupt data surfaces here, in many types
        raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from exc


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    """Any PIL mode to float gray: alpha over white, 16/32-bit by their range."""
    image.load()  # corrupt data fails here, as corrupt; a mode PIL cannot convert fails below
    try:
        if image.mode in ALPHA_MODES or "transparency" in image.info:
            la = image.convert("LA")
            paper = Image.new("L", image.size, 255)
            paper.paste(la.getchannel("L"), mask=la.getchannel("A"))
            image = paper
        elif image.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = image.convert("L")
    except ValueError:
        raise ImageError(f"unsupported image mode {image.mode}") from None
    return _to_unit(np.asarray(image))


def _array_to_gray(array: np.ndarray) -> np.ndarray:
    """H x W or H x W x C (C = 1..4, last channel alpha when C is 2 or 4)."""
    if array.size == 0:
        raise ImageError(f"the array is empty (shape {array.shape})")
    if array.ndim == 3 and 1 <= array.shape[2] <= 4:
        channels = _to_unit(array)
        alpha = channels[..., -1] if array.shape[2] in (2, 4) else None
        color = channels[..., :3] if array.shape[2] >= 3 else channels[..., :1]
        gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if color.shape[2] == 3 else color[..., 0]
        return gray if alpha is None else gray * alpha + (1 - alpha)
    if array.ndim != 2:  # a stack of images, most often: which axis holds them is not for us to guess
        raise ImageError(f"shape {array.shape} is not one image (H x W, H x W x C or, for a tensor, C x H x W, with "
                         "C = 1..4): give several images as a list, e.g. predict(list(images))")
    return _to_unit(array)


def _to_unit(array: np.ndarray) -> np.ndarray:
    """Scale to float32 [0, 1]: by the dtype's range for 8/16-bit, by value otherwise."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535
    if array.dtype.kind not in "biuf":  # bool, integers, floats
        raise ImageError(f"an array of {array.dtype} values is not an image")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageError("image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        return array.astype(np.float32)
    if array.dtype.kind == "f" and low >= 0 and high <= UNIT_OVERSHOOT:
        # [0, 1] resampled with LANCZOS or bicubic rings past white by under 10 %; a 0..255 image this low would be
        # black throughout (under 0.6 % of white), nothing to read either way.
        return np.minimum(array, 1).astype(np.float32)
    if low >= 0 and high <= 255:
        return array.astype(np.float32) / 255
    if low >= 0 and high <= 65535 and array.dtype.kind in "iu":
        return array.astype(np.float32) / 65535
    if high == low:
        return np.zeros(array.shape, np.float32)
    # In float64: the span between float32's extremes, or of large integers, overflows float32.
    return ((array.astype(np.float64) - low) / (high - low)).astype(np.float32)


def _shrink_factor(height: int, width: int, max_side: int | None, max_area: int | None = None) -> float:
    """How many times to shrink for a longer side of at most `max_side` and an area of at most `max_area` (<= 1: no
    need)."""
    by_side = max(height, width) / max_side if max_side else 1.0
    return max(by_side, float(np.sqrt(height * width / max_area)) if max_area else 1.0)


def _downscale(gray: np.ndarray, max_side: int | None, max_area: int | None = None) -> np.ndarray:
    """Area-average so that the longer side is at most `max_side` and the area at most `max_area`."""
    height, width = gray.shape
    factor = _shrink_factor(height, width, max_side, max_area)
    if factor <= 1:
        return gray
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(gray, np.float32), "F").resize(size, Image.BOX))


# ----------------------------------------------------------------- ink finding


def find_ink(gray: np.ndarray) -> np.ndarray:
    """White-on-black ink in [0, 1] with paper and noise at exactly 0.

    Works whatever the polarity, lighting or noise; inputs of more than
    WORK_PIXELS come back area-downscaled to it.  Raises NoInkError on blanks.
    """
    # By area, not by the longer side: that would shrink the digits of a long strip to specks, for no time saved.
    work = _downscale(_array_to_gray(np.asarray(gray)), None, WORK_PIXELS)
    paper = _paper(work)
    residual = work - paper
    # The ink is the side whose tail sticks out further past the noise.
    tail = 3 * min(_paper_noise(residual), _paper_noise(-residual))
    if np.maximum(-residual - tail, 0).sum() > np.maximum(residual - tail, 0).sum():
        residual = -residual / np.maximum(paper, 0.05)  # dark ink dims with the light on the paper
    return remove_rulings(_suppress_noise(residual))


def _paper(gray: np.ndarray) -> np.ndarray:
    """Smooth surface through the paper, robust to ink of either polarity.

    Phone photos are lit unevenly, so a single paper level is not enough; a
    quadratic follows gradients and vignetting but cannot bend around strokes.
    It is fitted on a small copy, first to the border (mostly paper even when
    a bold digit fills the frame), then to every pixel close to the surface.
    Tiny images get a plane: there a quadratic could rise into a dome under a
    blurred digit.
    """
    small = _downscale(gray, 64)
    terms = 6 if min(small.shape) >= 32 else 3
    y, x = _centres(small.shape[0])[:, None], _centres(small.shape[1])[None, :]
    basis = np.stack(np.broadcast_arrays(np.ones_like(x), x, y, x * x, x * y, y * y)[:terms], axis=-1)
    basis, values = basis.reshape(-1, terms), small.ravel()
    inliers = np.zeros(small.shape, bool)
    inliers[[0, -1], :] = inliers[:, [0, -1]] = True
    inliers = inliers.ravel()
    for _ in range(3):
        if inliers.sum() < 12:
            return np.full(gray.shape, np.median(small), np.float32)
        chosen = basis[inliers]  # normal equations: a 6x6 solve is much cheaper than lstsq
        coef = np.linalg.lstsq(chosen.T @ chosen, chosen.T @ values[inliers], rcond=None)[0]
        residual = values - basis @ coef
        settled = inliers
        inliers = np.abs(residual) <= 3 * _noise(residual[inliers]) + 1e-3
        if np.array_equal(inliers, settled):
            break
    c0, cx, cy, cxx, cxy, cyy = np.pad(coef, (0, 6 - terms))
    y, x = _centres(gray.shape[0])[:, None], _centres(gray.shape[1])[None, :]
    return (c0 + cy * y + cyy * y * y) + (cx + cxx * x + cxy * y) * x


def _centres(n: int) -> np.ndarray:
    """Pixel centres in [-1, 1], so fits on a small copy apply to the full image."""
    return (np.arange(n, dtype=np.float32) + 0.5) * (2 / n) - 1


def _noise(values: np.ndarray) -> float:
    """Robust standard deviation (scaled median absolute deviation)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _paper_noise(residual: np.ndarray) -> float:
    """Noise of the paper from the side of zero that holds no ink.

    A bold digit can cover half the picture, which inflates any two-sided
    estimate; paper noise is symmetric about the fitted surface, ink is not.
    """
    below = residual[residual <= 0]
    return 1.4826 * float(np.median(-below)) if below.size else 0.0


def _suppress_noise(residual: np.ndarray) -> np.ndarray:
    """Map ink-positive residual to [0, 1]: noise to 0, full strokes to 1, edges between.

    The full-ink level is the median of what Otsu's threshold calls ink, so the
    stroke interiors saturate like MNIST's; anything under a floor well above
    the noise (and JPEG ringing) becomes exactly 0.
    """
    sigma = _paper_noise(residual)
    strong = residual[residual > max(_otsu(residual), 4 * sigma)]
    full = float(np.median(strong)) if strong.size else 0.0
    if full < MIN_CONTRAST or full < MIN_SNR * sigma:
        raise NoInkError("no ink found")
    floor = max(3.5 * sigma, 0.25 * full)
    return np.clip((residual - floor) * (1 / (full - floor)), 0, 1).astype(np.float32)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximising between-class variance."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        return high
    step = (high - low) / (bins - 1)
    hist = np.bincount(((values - low) / step).astype(np.intp).ravel(), minlength=bins)[:bins]
    weight0 = np.cumsum(hist, dtype=np.float64)
    sum0 = np.cumsum(hist * np.arange(bins), dtype=np.float64)
    weight1 = weight0[-1] - weight0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = weight0 * weight1 * (sum0 / weight0 - (sum0[-1] - sum0) / weight1) ** 2
    return low + (int(np.nanargmax(between[:-1])) + 1) * step


def _digit_ink(ink: np.ndarray) -> np.ndarray:
    """Keep the heavy components and the smaller ones next to them; drop specks."""
    components = connected_components(ink)
    keep = ~speck_mask(components, ink.shape) if len(components) else np.zeros(0, bool)
    if not keep.any():
        raise NoInkError("no ink found")
    boxes = components.boxes
    widths = boxes[:, 2] - boxes[:, 0]
    solid = keep & (widths < LINE_ASPECT * (boxes[:, 3] - boxes[:, 1]))
    if solid.any():  # a rule drawn under the digit would be cropped and scaled with it
        keep &= ~_loose_rules(components, solid)[0]  # without a reader to ask, only the sure ones
    # A stretch of a faint notebook line that `remove_rulings` could not follow across the page: flatter than a
    # digit's strokes (the bar of a 5 or a 7 is a few times as wide as it is thick, not ten) and thinner or paler.
    heaviest = int(np.argmax(np.where(keep, components.mass, -1)))
    flat = keep & (widths >= LINE_ASPECT * (boxes[:, 3] - boxes[:, 1]))
    flat[heaviest] = False
    if flat.any():  # the stroke width costs a pass over the image: only when there is a candidate
        stroke = _stroke_width(np.where(components.labels == heaviest + 1, ink, 0))
        keep &= ~(flat & (components.mass < 0.6 * stroke * widths))
    x0, y0, x1, y1 = _major_box(components, keep)
    reach = 0.25 * max(x1 - x0, y1 - y0)
    near = (boxes[:, 0] < x1 + reach) & (boxes[:, 2] > x0 - reach)
    near &= (boxes[:, 1] < y1 + reach) & (boxes[:, 3] > y0 - reach)
    lookup = np.concatenate([[False], keep & near])
    return np.where(lookup[components.labels], ink, 0)


def _major_box(components: Components, keep: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) around the components in `keep` at least a quarter as heavy as the heaviest of them."""
    major = keep & (components.mass >= 0.25 * components.mass[keep].max())
    (x0, y0), (x1, y1) = components.boxes[major, :2].min(axis=0), components.boxes[major, 2:].max(axis=0)
    return int(x0), int(y0), int(x1), int(y1)


# --------------------------------------------------------- ruled and squared paper

RULING_SPAN = 0.75  # a ruling crosses at least this share of the image...
RULING_THIN = 0.1  # ...is thin (on average at most this share of its length thick: a stroke may join it)...
RULING_TILT = 0.2  # ...nearly level (its box at most this share of its length deep: under about 11 degrees)...
RULING_MARGIN = 0.05  # ...and goes on past the digit on both sides by this share of the image


def remove_rulings(ink: np.ndarray) -> np.ndarray:
    """Erase the lines of ruled or squared paper, keeping the strokes that cross or lie on them.

    A notebook's lines are ink as much as the digit is, and the heaviest ink would
    be taken for the digit. Lines are told from strokes by being several, straight,
    nearly across the whole image and going on past the digit on both sides: the
    bars of a tightly cropped 7 or Z-like 2 are as long as the image, but they end
    where the rest of the digit does, so they are left alone.
    """
    rows, row_spans = _rulings(ink)  # horizontal lines
    cols, col_spans = _rulings(ink.T)  # vertical lines, found as horizontal ones in the transpose
    cols = cols.T
    if len(row_spans) + len(col_spans) < 2:
        return ink
    x0, y0, x1, y1 = _digit_box(np.where((rows > 0) | (cols > 0), 0, ink))
    height, width = ink.shape
    row_ok = _past(row_spans, x0, x1, RULING_MARGIN * width)
    col_ok = _past(col_spans, y0, y1, RULING_MARGIN * height)
    if row_ok.sum() + col_ok.sum() < 2:
        return ink
    rows, cols = np.concatenate([[False], row_ok])[rows], np.concatenate([[False], col_ok])[cols]
    # Where a stroke crosses a line or lies on it, the ink across the line is thicker than the line: keep it there.
    erase = _thin_across(rows, ink > 0) | _thin_across(cols.T, ink.T > 0).T
    return np.where(erase, 0, ink)


# A rule under a number, touching its digits: the lowest ink of at least UNDERLINE_SPAN of the columns of a piece
# UNDERLINE_WIDE times as wide as tall (a number, not one digit), below UNDERLINE_LOW of its height; without it the
# piece comes apart, or what is left above it fills at most UNDERLINE_PAST of its columns (it reaches past its digit).
UNDERLINE_SPAN = 0.8
UNDERLINE_WIDE = 1.2
UNDERLINE_LOW = 0.5
UNDERLINE_PAST = 0.6
# A loose rule is at most UNDERLINE_THIN of the tallest digit's height thick and at least that height long; under a
# single digit, it is sure only when it reaches past each side by UNDERLINE_REACH of the digit's width.
UNDERLINE_THIN = 0.3
UNDERLINE_REACH = 0.1
MAX_RULES = 8  # more candidates are hatching or dashes, not the rules of a number


def find_underlines(ink: np.ndarray, components: Components | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the rules drawn under a number: the sure ones, and the ones that may be part of a digit (without
    the strokes that join them, where the ink is thicker than the rule), for a caller that can read the digits to
    compare both readings. `components` are the ink's, when the caller has them.

    Left in, a rule joins the digits above it into one piece that reads as one wide digit, often a confident 2.
    A loose rule is a thin piece at least as long as the tallest digit is tall, below the ink it spans (see
    `_loose_rules`). A rule that touches the digits is the straight bottom edge of most of a piece wider than tall,
    which comes apart without it; two 2s whose bases touch can look like that too, so it is never sure.
    """
    sure, doubtful = np.zeros(ink.shape, bool), np.zeros(ink.shape, bool)
    components = connected_components(ink) if components is None else components
    if not len(components):
        return sure, doubtful
    boxes = components.boxes
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    solid = (widths < LINE_ASPECT * heights) & ~speck_mask(components, ink.shape)
    if not solid.any():  # nothing but lines and dust: not a number, which the caller says
        return sure, doubtful
    tallest = heights[solid].max()
    loose, maybe = _loose_rules(components, solid)
    sure = np.concatenate([[False], loose])[components.labels]
    doubtful = np.concatenate([[False], maybe])[components.labels]
    for i in np.nonzero(solid & (widths >= UNDERLINE_WIDE * heights))[0]:
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        mask = components.labels[y0:y1, x0:x1] == i + 1
        rule = _rule_along_bottom(mask)
        if not rule.any():
            continue
        # A rule joins the digits it underlines, which come apart without it, or reaches well past the one digit it
        # touches, as long as the tallest digit is tall (as a loose one does). A 2 without its base is one piece, and
        # its base no longer than a digit is tall.
        above = connected_components(mask & ~rule)
        tall = np.concatenate([[False], above.boxes[:, 3] - above.boxes[:, 1] >= (y1 - y0) / 4])[above.labels]
        past = np.count_nonzero(tall.any(axis=0)) <= UNDERLINE_PAST * (x1 - x0) and x1 - x0 >= tallest
        if past or len(np.unique(above.labels[tall])) >= 2:
            doubtful[y0:y1, x0:x1] |= rule
    return sure, doubtful


def _loose_rules(components: Components, solid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which components are loose rules, and which may be: thin, at least as long as the tallest `solid` one is
    tall, and below the middle of the solid ink they span (a 5's loose bar is shorter, or on top of the rest of its
    5). Under a single digit-sized piece, only a rule that reaches past it on both sides is sure: one that ends where
    the piece does may be a wide 2's base drawn apart from its body, or a rule under two digits that overlap."""
    boxes = components.boxes
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    tallest = heights[solid].max()
    rules = (widths >= tallest) & (heights <= UNDERLINE_THIN * tallest)
    doubtful = np.zeros(len(rules), bool)
    if np.count_nonzero(rules) > MAX_RULES:  # hatching, a page of dashes: no number's rules
        return doubtful, doubtful
    for i in np.nonzero(rules)[0]:
        over = np.nonzero(solid & (boxes[:, 0] < boxes[i, 2]) & (boxes[:, 2] > boxes[i, 0]))[0]
        rules[i] = not len(over) or 2 * boxes[i, 1] >= boxes[over, 1].min() + boxes[over, 3].max()
        if rules[i] and len(over) == 1 and widths[over[0]] < UNDERLINE_WIDE * heights[over[0]]:
            margin = UNDERLINE_REACH * widths[over[0]]
            past = boxes[i, 0] <= boxes[over[0], 0] - margin and boxes[i, 2] >= boxes[over[0], 2] + margin
            rules[i], doubtful[i] = past, not past
    return rules, doubtful


def _rule_along_bottom(mask: np.ndarray) -> np.ndarray:
    """The pixels of a straight, thin rule that makes the lowest ink of most columns of `mask`; none if there is no
    such rule. Where a stroke joins the rule, the ink is thicker than the rule and stays."""
    height, width = mask.shape
    columns = np.nonzero(mask.any(axis=0))[0]
    lowest = height - 1 - np.argmax(mask[::-1, columns], axis=0)
    thickness = _vertical_runs(mask)[lowest, columns]
    # The rule is most of the columns: the medians of each half put a line through it, whatever hangs below it.
    half = len(columns) // 2
    xl, xr = np.median(columns[:half]), np.median(columns[half:])
    yl, yr = np.median(lowest[:half]), np.median(lowest[half:])
    slope = (yr - yl) / max(xr - xl, 1)
    line = yl + slope * (columns - xl)
    typical = float(np.median(thickness))
    on_rule = np.abs(lowest - line) <= 1 + typical / 2
    thin = on_rule & (thickness <= 1.5 * typical + 1)  # elsewhere on the rule a stroke joins it from above
    rule = np.zeros(mask.shape, bool)
    if on_rule.sum() < UNDERLINE_SPAN * width or abs(slope) > RULING_TILT or not thin.any():
        return rule
    if (lowest[thin] - thickness[thin]).min() < UNDERLINE_LOW * height:  # ink low in the piece, not under it
        return rule
    rows = np.arange(height)[:, None]
    rule[:, columns] = thin & (rows <= lowest) & (rows > lowest - thickness)
    return rule


def _rulings(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The horizontal lines that cross the image: their pixels numbered 1..n (0 elsewhere), and their (x0, x1)."""
    width = ink.shape[1]
    mask = ink > 0
    none = np.zeros(ink.shape, np.intp), np.zeros((0, 2), np.int64)
    if np.count_nonzero(mask.any(axis=0)) < RULING_SPAN * width:  # no ink across the image: no line (and no cost)
        return none
    # A pixel of slack up and down for slight tilt and anti-aliased edges.
    band = _running(mask.T.astype(np.float32), 1, np.maximum).T
    reach = max(2, int(0.05 * width))
    runs = _running(_running(band, reach, np.minimum), reach, np.maximum)  # inside horizontal runs of 10 % or more
    # A faint line breaks up where noise removal took its palest stretches: bridge gaps of up to 10 % of the width
    # (edge padding, so that the closing does not trim the lines' ends at the borders).
    padded = np.pad(runs, ((0, 0), (reach, reach)), mode="edge")
    joined = _running(_running(padded, reach, np.maximum), reach, np.minimum)[:, reach:-reach]
    components = connected_components(joined)
    if not len(components):
        return none
    boxes = components.boxes
    spans, depths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    thick = components.mass / np.maximum(spans, 1)
    lines = (spans >= RULING_SPAN * width) & (thick <= RULING_THIN * spans) & (depths <= RULING_TILT * spans)
    number = np.zeros(len(lines) + 1, np.intp)
    number[1:][lines] = np.arange(1, lines.sum() + 1)
    return np.where(mask, number[components.labels], 0), boxes[lines][:, [0, 2]]


def _digit_box(rest: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the heavy ink left once the lines are out; a point in the middle if none is left (a blank page)."""
    components = connected_components(rest)
    if not len(components):
        return rest.shape[1] // 2, rest.shape[0] // 2, rest.shape[1] // 2, rest.shape[0] // 2
    return _major_box(components, np.ones(len(components), bool))


def _past(spans: np.ndarray, start: int, stop: int, margin: float) -> np.ndarray:
    """Which lines go on at least `margin` past both ends of [start, stop)."""
    return (spans[:, 0] <= start - margin) & (spans[:, 1] >= stop + margin)


def _thin_across(lines: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pixels of horizontal `lines` whose vertical run of ink is no thicker than a line's."""
    if not lines.any():
        return lines
    runs = _vertical_runs(mask)
    # The commonest thickness is the lines' own: strokes that join a line may cover much of its pixels.
    limit = 1.5 * np.bincount(runs[lines]).argmax() + 1
    return lines & (runs <= limit)


def _vertical_runs(mask: np.ndarray) -> np.ndarray:
    """For each ink pixel, the length of the vertical run of ink it belongs to (0 on paper)."""
    edges = np.diff(np.pad(mask, ((1, 1), (0, 0))).astype(np.int8), axis=0)
    starts, ends = np.nonzero(edges.T == 1), np.nonzero(edges.T == -1)  # (column, row), in column-major order
    lengths = ends[1] - starts[1]
    out = np.zeros(mask.T.shape, np.int32)
    run_of = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[starts[0][run_of], starts[1][run_of] + offsets] = lengths[run_of]
    return out.T


# ------------------------------------------------------------------- rendering


def render_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST layout of isolated white-on-black ink: crop, fix stroke, scale to 20 px, centre."""
    crop = _crop(ink)
    crop = _crop(_fix_stroke(crop, BOX / max(crop.shape)))  # the stroke fix moves the outline
    zoom = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * zoom)), max(1, round(crop.shape[0] * zoom)))
    digit = np.asarray(Image.fromarray(np.ascontiguousarray(crop, np.float32), "F").resize(size, Image.LANCZOS))
    return _centre(np.clip(digit, 0, 1))


def _crop(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if not len(rows):
        raise NoInkError("no ink found")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fix_stroke(crop: np.ndarray, zoom: float) -> np.ndarray:
    """Bring the stroke width into MNIST's range before resampling.

    A 3 px pen on a 4000 px page would shrink to a few hundredths of a pixel
    and vanish, a marker would fill the digit's holes: dilate or (gently)
    erode at the crop's resolution, where the correction is still exact.
    """
    width = _stroke_width(crop) * zoom
    radius = (np.clip(width, *STROKE_RANGE) - width) / zoom / 2
    if radius == 0:
        return crop
    if radius < 0:  # never erode more than a quarter of the stroke: thin parts would break
        return _morph(crop, max(radius, -width / zoom / 4), np.minimum)
    return _morph(np.pad(crop, int(radius) + 1), radius, np.maximum)  # room to grow


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width = 2 * area / perimeter, the perimeter from edge crossings.

    Crossings count the boundary in the city-block metric, which overestimates
    a curve's length by 4/pi on average (Cauchy-Crofton), hence the factor.
    """
    mask = np.pad(ink > 0.5, 1)
    crossings = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return 2 * np.count_nonzero(mask) / max(crossings * np.pi / 4, 1)


def _morph(ink: np.ndarray, radius: float, op: np.ufunc) -> np.ndarray:
    """Grey dilation/erosion by a square of fractional `radius` (blend of two sizes)."""
    whole = int(abs(radius))
    frac = abs(radius) - whole
    inner = _square_filter(ink, whole, op)
    return inner + frac * (_square_filter(ink, whole + 1, op) - inner)


def _square_filter(ink: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """Running max/min over a (2r+1)^2 square, separable, van Herk/Gil-Werman O(n)."""
    for axis in (0, 1):
        ink = np.moveaxis(_running(np.moveaxis(ink, axis, -1), radius, op), -1, axis)
    return ink


def _running(rows: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
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


# ------------------------------------------------------------------ public API


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """28x28 float32 in [0, 1], white ink on black, laid out like an MNIST digit."""
    return render_digit(_digit_ink(find_ink(gray)))


def preprocess(source: Source) -> np.ndarray:
    """Load any image source and make it an MNIST-style input (see `to_mnist`)."""
    return to_mnist(load_gray(source, work_pixels=WORK_PIXELS))
