"""Finding the ink: paper and lighting modelled and taken out, polarity decided, noise and specks dropped."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from convnet.components import Components, connected_components, major_box, speck_mask, strokes
from convnet.errors import NoInkError
from convnet.preprocess.load import WORK_PIXELS, array_to_gray, downscale, downscaled_size, resized
from convnet.preprocess.morphology import (convex_hull, corner_share, crop_to_ink, morph, polygon_area, row_extents,
                                          stroke_width)
from convnet.preprocess.rulings import LINE_ASPECT, loose_rules, remove_rulings

MIN_CONTRAST = 0.06  # ink fainter than this (of full white) is not ink
MIN_SNR = 6.0  # ...nor is ink that does not stand out of the noise this much
SHEET_AREA = 0.08  # light ink whose box covers this share of the image,
SHEET_FILL = 0.85  # which fills this share of its box, or of its convex hull
SHEET_CORNERS = 0.93  # when that is nearly a quadrilateral (`corner_share`; 640 bold digits: 91 % at most), is a sheet
SHEET_WRITING = 0.2  # dark strokes on it up to this share of its shorter side wide are what is written on it
SHEET_RIM = 0.02  # the rim of such a sheet, this share of its box's shorter side, is blurred into the desk: left out
COUNTER_ASPECT = 4.0  # a solid blob found on such a sheet is a bold digit's counter, unless longer than this: a 1
BLOB_ASPECT = 2.0  # a solid digit no longer than this is a blob, not a digit (a 1 from a thick marker is longer)
BLOB_FAINT = 0.3  # its fainter ink too, down to this, fills its hull (a filled 9's tail, which the stroke fix fades)
BLOB_EVEN = 0.5  # and half of that ink is within 10 % of the brightest: evenly dark, not a blurred bold digit
ROUND_FIT = 0.9  # ...or its ink, faint and dark alike, is the ellipse of its moments to this much overlap (IoU): a
# blurred disc or dot (96 of 100 drawn at random over this); real-world digits no longer than BLOB_ASPECT that the
# network reads right, 0.76 at most; a filled square, not round, 0.83-0.89 (left to the evenness test)
DOT_SIDE = 8  # solid ink at most this many pixels across is a dot (`dot`); bold digits as solid were 9 px or more
OUTLINE_FILL = 0.95  # one piece of ink round one hole that with it fills this share of its box is an empty box (an
# ellipse fills pi / 4 of its box; real-world digits with one hole, 0.87 at most of 4,000, a withheld 8 0.90)
BAND_STROKE = 3.0  # solid ink on the image's edge this many times as thick as the other ink's strokes is no writing,
BAND_WHOLE_STROKE = 2.0  # nor, this many times as thick, solid ink along one whole side
BAND_LONG = 2.0  # (along it: this many times as long as it is deep)
BAND_CUT = 0.01  # lines about twice this share of the image's shorter side thick are cut off a band to find it
FRAME_CONTENT = 0.3  # a ring whose hole holds other ink this share of the hole's height frames it,
FRAME_MASS = 0.1  # when that ink weighs this share of the ring at least (a digit in a circle: half of it; a 1: a fifth)
FRAME_STEP = 0.05  # a side's outer row of an image shrunk to find its paper, this much darker or lighter than the
FRAME_SPAN = 0.9  # rows inside it along this share of its length, where those are even to within half of that,
FRAME_SHRUNK = 2.0  # is a frame's where the image was shrunk to at most 1 / this of its pixels
FRAME_DEPTH = 4  # (or up to this many outer rows: a frame a few pixels inside the edge, or thick, darkens several)
BAND_WRITING = 0.03  # what the cut takes away whole is writing to measure a band against from this share of the side,
BAND_WRITING_STROKE = 2.0  # and with strokes this many pixels wide
PAPER_AREA = 64 * 64  # the paper's surface is fitted on a copy of about this many pixels,
PAPER_DEPTH = 8  # ...and at least this many deep across a long strip
SHADE_WINDOW = 1 / 6  # a shadow, or a patch of light, shows in squares of this share of that copy's shorter side
SHADE_STEP = 0.05  # whose lightest pixel lies this share of the paper's level below the fitted surface (or whose
# darkest lies above it): ink darkens (or lightens) only some pixels of such a square, a shadow all of them
SHADE_DEEP = 0.6  # but no deeper than this share of that level (no lighter than 1 / (1 - this) times it): darker is
# ink, as a marker's bar along the edge of a tight crop, or the desk beside the page (`_without_bands`)
SHADE_SHARE = 0.02  # when such squares cover this share of the image, in pieces that reach its edge (a shadow is
# cast from outside the picture; a bold stroke wider than a square lies inside it)
SHADE_EVEN = 2.0  # and squares even to within this many steps cover
SHADE_EVEN_SHARE = 0.1  # this share of it: a photo of paper is mostly even paper, shaded or not; a smooth texture
# (fabric, foliage), which the fitted surface cannot follow either, nowhere (2 % at most)
SHADE_MIN = 64  # not in images under this many pixels a side: tight crops, with no room for a shadow beside the ink
TIGHT_MARGIN = 0.1  # a tight crop's ink reaches within this share of each side (the faint outer pixels of an
# enlarged MNIST digit fall below the noise floor)
ENVELOPE_AREA = 256 * 256  # shaded paper is followed on a copy of about this many pixels,
ENVELOPE_WINDOW = 0.4  # by its lighter (darker) envelope over squares of this share of its side: wider than strokes


def find_ink(gray: np.ndarray) -> np.ndarray:
    """White-on-black ink in [0, 1] with paper and noise at exactly 0.

    Works whatever the polarity, lighting or noise; inputs of more than
    WORK_PIXELS come back area-downscaled to it.  Raises NoInkError on blanks.
    """
    # By area, not by the longer side: that would shrink the digits of a long strip to specks, for no time saved.
    work = downscale(array_to_gray(np.asarray(gray)), WORK_PIXELS)
    ink, light = _ink(work)
    # A sheet of paper photographed on a darker desk: the desk was taken for the paper and the sheet, lighter, for
    # the ink. The sheet is read again on its own, what lies outside it painted over in its colour.
    if not light or (sheet := _sheet(ink)) is None:
        return _without_bands(ink)
    (x0, y0, x1, y1), inside = sheet
    page = work[y0:y1, x0:x1]
    # Painted over, with the desk: the sheet's rim, which the photo's blur darkens (read as a frame of ink, a 0).
    rim = max(2.0, SHEET_RIM * min(page.shape))
    # In the colour of its paper, not of its paper and writing: a big digit darkened that, the sheet's paper then
    # stood out of it as much as the digit did, and the digit was lost in that "noise" ("no ink found").
    paper = inside & (ink[y0:y1, x0:x1] > 0.5)
    colour = np.median(page[paper if paper.any() else inside])
    written = _ink(np.where(morph(inside.astype(np.float32), rim, np.minimum) > 0.5, page, colour))[0]
    if _blob(written):  # the "sheet" was a bold light digit, a boxy 0 or 8 on a dark board, and this its counter
        return ink
    found = np.zeros_like(ink)
    found[y0:y1, x0:x1] = written
    return _without_bands(found)


def _without_bands(ink: np.ndarray) -> np.ndarray:
    """The ink less the bands along the image's edge: the desk beside the page, a shadow, a finger. Each touches the
    edge, fills its convex hull and is thicker than the strokes of the other ink: several times as thick, or twice as
    thick when it runs along a whole side, end to end, and is twice as long as it is deep. A digit's strokes are not
    (a 1 drawn as a bar is as thick as its flag or the digits beside it). Nothing goes when no other ink is left: a
    marker's bar alone is a 1. The lines of ruled paper that ran into a band, and so were no lines across the page,
    go with it."""
    if not (ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any()):
        return ink  # the usual case, and no labelling needed
    # Bands are sought with thin lines cut off (an opening): a notebook's lines join a band into one piece, no band.
    # Not in images under 1 / BAND_CUT pixels a side, whose strokes would be cut off too.
    cut = int(BAND_CUT * min(ink.shape))
    opened = morph(morph((ink > 0).astype(np.float32), cut, np.minimum), cut, np.maximum)
    components = connected_components(opened)
    (height, width), (x0, y0, x1, y1) = ink.shape, components.boxes.T
    across, down = (x0 == 0) | (x1 == width), (y0 == 0) | (y1 == height)  # on the left or right, top or bottom side
    # Along a side, end to end, and at least BAND_LONG times as long as it is deep: a bold digit of a tightly cropped
    # number touches three sides too, but is no longer than it is wide.
    whole = ((across & (y0 == 0) & (y1 == height) & (height >= BAND_LONG * (x1 - x0)))
             | (down & (x0 == 0) & (x1 == width) & (width >= BAND_LONG * (y1 - y0))))
    need = np.zeros(len(components))  # how much thicker than the rest's strokes each band must be
    for k in np.nonzero(across | down)[0]:
        if _fills_hull(components.labels[y0[k]:y1[k], x0[k]:x1[k]] == k + 1):
            need[k] = BAND_WHOLE_STROKE if whole[k] else BAND_STROKE
    if not need.any():
        return ink
    # The other pieces, measured as the bands are (on the same mask: a band's soft edge and the strokes' count alike).
    others = (need == 0) & ~speck_mask(components, ink.shape)
    if others.any():
        stroke = stroke_width(np.concatenate([[False], others])[components.labels])
    elif (stroke := _thin_stroke(ink, _grown(components, need > 0, cut))) is None:
        return ink
    bands = np.zeros(len(components), bool)
    for k in np.nonzero(need)[0]:
        bands[k] = stroke_width(components.labels == k + 1) >= need[k] * stroke
    return remove_rulings(np.where(_grown(components, bands, cut), 0, ink)) if bands.any() else ink


def _thin_stroke(ink: np.ndarray, candidates: np.ndarray) -> float | None:
    """The stroke width of the ink clear of the band candidates, where the opening took all of it away: a digit
    written a few hundredths of the image high beside the desk. None when that ink is no writing: pieces under
    BAND_WRITING of the image's longer side (a speck or a hair beside a marker's 1; against a band, `speck_mask`
    would take a digit for dust), stretches of lines LINE_ASPECT times as long as thick, or strokes thinner than
    BAND_WRITING_STROKE, what is left of a notebook's lines beside a digit cropped at the edge (the candidate then)."""
    pieces = connected_components(ink)
    touching = np.bincount(pieces.labels[candidates], minlength=len(pieces) + 1)[1:] > 0
    width, height = (pieces.boxes[:, 2:] - pieces.boxes[:, :2]).T
    writing = ~touching & (np.maximum(width, height) >= max(2.0, BAND_WRITING * max(ink.shape)))  # 2: as specks
    writing &= (width < LINE_ASPECT * height) & (height < LINE_ASPECT * width)
    if not writing.any():
        return None
    stroke = stroke_width(np.concatenate([[False], writing])[pieces.labels])
    return stroke if stroke >= BAND_WRITING_STROKE else None


def _grown(components: Components, chosen: np.ndarray, by: int) -> np.ndarray:
    """The mask of the chosen components, grown by `by` pixels (an opening's rounded corners, a soft edge)."""
    mask = np.concatenate([[False], chosen])[components.labels].astype(np.float32)
    return morph(mask, by + 1, np.maximum) > 0.5


def _ink(work: np.ndarray) -> tuple[np.ndarray, bool]:
    """`find_ink` of an image already at its working size, without looking for a sheet on a desk; and whether the
    ink is lighter than the paper."""
    small = _small_copy(work)
    surface = _paper(small, work.size / small.size)
    level = _shade(small, _surface(surface, small.shape)) if min(work.shape) >= SHADE_MIN else None
    if level is None:
        return _against(work, _surface(surface, work.shape))
    # A shadow or a patch of light that the surface cannot follow: the paper is followed where it goes.
    dark = _darker(work - resized(level, work.shape[::-1], Image.BILINEAR), float(np.median(level)))
    try:
        shaded = _against(work, _shaded_paper(work, dark), dark)
    except NoInkError:
        # A digit cropped tightly to its ink: its strokes along the edges pass for a shadow cast from outside, and the
        # paper followed under them took the digit with it.
        return _tight_crop(work, surface)
    if not shaded[1]:  # dark ink, as on nearly every photo of paper
        return shaded
    # A bold digit cropped tightly covers half the picture, and the paper's level over the shadow's squares lay
    # between it and the paper: the digit's counter and the corners were read as light ink (an 8 as a 1 at 99 %).
    # (Light digits cropped so on dark paper were not read as dark.)
    try:
        tight = _tight_crop(work, surface)
    except NoInkError:
        return shaded
    return shaded if tight[1] else tight


def _tight_crop(work: np.ndarray, surface: np.ndarray) -> tuple[np.ndarray, bool]:
    """The ink of `work` against the fitted `surface` (coefficients) where that is a digit cropped tightly to its ink:
    its ink spans the image (to within TIGHT_MARGIN, its faint outer pixels) and is deeper than a shadow is
    (SHADE_DEEP: a blank page's shadow is not). NoInkError where it is not."""
    plain = _surface(surface, work.shape)  # only now: most shaded pictures never need it
    ink, light = _against(work, plain)
    ys, xs = np.nonzero(ink)
    (height, width), margin = ink.shape, TIGHT_MARGIN
    strokes = np.abs(work - plain)[ink > 0.5]
    depth = float(np.median(strokes)) / max(float(np.median(plain)), 0.05) if strokes.size else 0.0
    if (not ys.size or ys.min() > margin * height or ys.max() < (1 - margin) * height - 1
            or xs.min() > margin * width or xs.max() < (1 - margin) * width - 1 or depth < SHADE_DEEP):
        raise NoInkError("no ink found")
    return ink, light


def _against(work: np.ndarray, paper: np.ndarray, dark: bool | None = None) -> tuple[np.ndarray, bool]:
    """The ink of `work` on `paper`, darker than it or lighter (None: whichever stands out more), and whether it is
    lighter."""
    residual = work - paper
    dark = _darker(residual, float(paper.mean())) if dark is None else dark
    if dark:
        residual = -residual / np.maximum(paper, 0.05)  # dark ink dims with the light on the paper
    return remove_rulings(_suppress_noise(residual)), not dark


def _darker(residual: np.ndarray, paper: float) -> bool:
    """Whether the ink is darker than the paper (of level `paper`), `residual` apart: the side whose tail sticks out
    further past the noise, counting only what could be ink, what stands out by MIN_CONTRAST (of the paper's level
    for dark ink, as `_against` measures it). A white canvas in a screenshot's light grey window, 5 % lighter,
    outweighed a thin digit drawn on it, and was too faint to be ink ("no ink found"). What counts, counts whole:
    weighed less that floor, a canvas 15 % lighter than a darker window lost to the digit and the window's dark title
    bar, and was no sheet to read again."""
    tail = 3 * min(_paper_noise(residual), _paper_noise(-residual))
    darker = np.where(-residual >= MIN_CONTRAST * max(paper, 0.05), np.maximum(-residual - tail, 0), 0).sum()
    return bool(darker > np.where(residual >= MIN_CONTRAST, np.maximum(residual - tail, 0), 0).sum())


def _shade(small: np.ndarray, surface: np.ndarray) -> np.ndarray | None:
    """The level of the paper in the small copy when a shadow or a patch of light bends it away from the fitted
    `surface` (`_shaded`), to tell the ink's polarity by; None when the surface is the paper. A median over squares
    of ENVELOPE_WINDOW: over smaller ones, the strokes of a bold digit that fills the picture were the level, and the
    paper between them light ink."""
    if not _shaded(small, surface, _radius(SHADE_WINDOW, small.shape)):
        return None
    radius = _radius(ENVELOPE_WINDOW, small.shape)
    wide = Image.fromarray(np.ascontiguousarray(np.pad(small, radius, mode="edge"), np.float32), "F")
    return np.asarray(wide.filter(ImageFilter.MedianFilter(2 * radius + 1)))[radius:-radius, radius:-radius]


def _shaded(small: np.ndarray, surface: np.ndarray, radius: int) -> bool:
    """Whether a shadow or a patch of light bends the paper of the small copy away from the fitted `surface`, by the
    SHADE_ constants, seen in squares of side 2 `radius` + 1.

    A phone's or a hand's shadow across the page has a soft edge that no quadratic follows: the shadow was read as
    ink (the digit a 1 beside it), or the light side was, or the noise measured about the bent fit hid the digit."""
    lightest, darkest = _square(small, radius, np.maximum), _square(small, radius, np.minimum)
    step = SHADE_STEP * max(float(np.median(surface)), 0.05)
    shaded = (lightest < surface - step) & (lightest > (1 - SHADE_DEEP) * surface)
    lit = (darkest > surface + step) & (darkest * (1 - SHADE_DEEP) < surface)
    off = shaded | lit
    if np.mean(off) < SHADE_SHARE or np.mean(lightest - darkest < SHADE_EVEN * step) < SHADE_EVEN_SHARE:
        return False
    # Strips narrower than half a square, measured within the image (`morph` takes what lies outside for no shade),
    # are left out: a bold stroke along the edge of a tight crop, continued past it by `_square`, passed for a shadow.
    half = radius // 2
    pieces = connected_components(morph(morph(off.astype(np.float32), half, np.minimum), half, np.maximum))
    x0, y0, x1, y1 = pieces.boxes.T
    on_edge = (x0 == 0) | (y0 == 0) | (x1 == small.shape[1]) | (y1 == small.shape[0])
    return bool(np.mean(np.concatenate([[False], on_edge])[pieces.labels]) >= SHADE_SHARE)


def _shaded_paper(work: np.ndarray, dark: bool) -> np.ndarray:
    """The paper under a shadow or a patch of light: the image's lighter envelope for dark ink (a closing: the strokes,
    narrower than its squares, lifted out; the shadow and its soft edge, broader, kept as they are), its darker one for
    light ink, on a copy of ENVELOPE_AREA pixels. It is shrunk by one pixel more, so that enlarged it never rises
    above the paper beside a sharp edge (the desk along a page), where a line of ink would show. It runs along the
    paper's lightest (darkest) pixels, so it is lowered to the paper's median: the noise about it is then measured as
    about the fitted surface, and a smooth texture still hides what lies on it."""
    small = downscale(work, ENVELOPE_AREA)
    radius = _radius(ENVELOPE_WINDOW, small.shape)
    spread, shrink = (np.maximum, np.minimum) if dark else (np.minimum, np.maximum)
    envelope = resized(_square(_square(small, radius, spread, shrink), 1, shrink), work.shape[::-1], Image.BILINEAR)
    return envelope - np.median(envelope - work)


def _radius(share: float, shape: tuple[int, ...]) -> int:
    """The radius of squares whose side is about `share` of an image's shorter side: at least 1."""
    return max(1, int(share * min(shape) / 2))


def _square(image: np.ndarray, radius: int, *ops: np.ufunc) -> np.ndarray:
    """The running `ops` (np.maximum, np.minimum) over squares of side 2 `radius` + 1, one after the other, with the
    image's edge continued past it (`morph` counts what lies outside as black)."""
    margin = radius * len(ops)
    out = np.pad(image, margin, mode="edge")
    for op in ops:
        out = morph(out, radius, op)
    return out[margin:-margin, margin:-margin]


def _sheet(ink: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The box of the heaviest ink and the mask of it with its holes, when it is a sheet of paper seen as ink: a
    solid shape over much of the image, with what is written on it as holes, that fills its box (a sheet lying
    square, a card with round corners) or is nearly a quadrilateral (a sheet at any angle or seen in perspective).
    No digit fills its box so, and bold ones are not quadrilaterals enough."""
    if (heaviest := _heaviest(ink)) is None:
        return None
    mass, (x0, y0, x1, y1), mine = heaviest
    if (x1 - x0) * (y1 - y0) < SHEET_AREA * ink.size:
        return None
    holes = _holes(mine)
    if not holes.any():  # a blob, as a marker can make of a digit: read as it is
        return None
    outline = mine | holes
    if not (_lying_square(mass, mine.shape) or _quadrilateral(ink[y0:y1, x0:x1], mine, outline)):
        return None
    return (x0, y0, x1, y1), outline


def _lying_square(mass: float, box: tuple[int, int]) -> bool:
    """A sheet lying square, its corners round or not: it fills its box."""
    return mass >= SHEET_FILL * box[0] * box[1]


def _quadrilateral(ink: np.ndarray, mine: np.ndarray, outline: np.ndarray) -> bool:
    """A sheet at any angle or seen in perspective: the light ink within its outline (the paper inside a big written 0
    too, which the 0 cuts off from the rest; not the dark inside of a frame), with what is written on it, fills its
    convex hull, and the hull is nearly a quadrilateral. Writing is the dark that the outline holds where its strokes
    are thin beside the sheet (SHEET_WRITING): a digit two thirds of a card's height took a fifth of it, and the card
    passed for no sheet, its outline for a 0. The dark inside of a frame is as broad as the frame."""
    hull = convex_hull(mine)
    dark = outline & ~mine & (ink < 0.5)
    writing = float((1 - ink[dark]).sum()) if stroke_width(dark) <= SHEET_WRITING * min(mine.shape) else 0.0
    return ink[outline].sum() + writing >= SHEET_FILL * polygon_area(hull) and corner_share(hull) >= SHEET_CORNERS


def _heaviest(ink: np.ndarray) -> tuple[float, tuple[int, int, int, int], np.ndarray] | None:
    """The heaviest piece of ink: its mass, its box (x0, y0, x1, y1) and its mask within that box; None for none."""
    components = connected_components(ink)
    if not len(components):
        return None
    k = int(np.argmax(components.mass))
    x0, y0, x1, y1 = (int(v) for v in components.boxes[k])
    return float(components.mass[k]), (x0, y0, x1, y1), components.labels[y0:y1, x0:x1] == k + 1


def _holes(mask: np.ndarray) -> np.ndarray:
    """What a mask encloses: the parts of the rest of its box that do not reach the box's side."""
    rest = connected_components((~mask).astype(np.float32))
    boxes, (height, width) = rest.boxes, mask.shape
    inner = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < width) & (boxes[:, 3] < height)
    return np.concatenate([[False], inner])[rest.labels]


def _blob(ink: np.ndarray) -> bool:
    """Whether the heaviest ink is a bold digit's counter: a solid blob that fills its convex hull as a sheet does,
    encloses nothing and is not long and thin (a 1 written with a thick marker is all that, but thin)."""
    return (heaviest := _heaviest(ink)) is not None and _solid(heaviest[2], COUNTER_ASPECT)


def blobs(digits: np.ndarray) -> np.ndarray:
    """Which digits in MNIST's layout (`render_digit`; a stack, N x 28 x 28) are solid blobs, not strokes: a filled
    disc, square or oval, a sharp dot. Such ink (the pixels over half white) fills its convex hull, encloses nothing
    and is at most BLOB_ASPECT times as long as wide; its faint ink fills the hull too, and it is evenly dark
    (BLOB_FAINT, BLOB_EVEN): a small bold digit blurred into a smudge, or a 9 whose loop is filled in, is neither. Or
    it is a round spot, blurred or not (`_round`): a soft dot or a disc with a blurred edge, which is not even. None
    of MNIST's 60,000 training digits is one once through `preprocess` (three raw ones are: solid 8s); the network,
    which has never seen one, calls it a confident 0."""
    digits = np.asarray(digits)
    masks = digits > 0.5
    # The cheap test on all of them at once: each row's span, from its first pixel to its last, lies in the hull, so
    # a digit that does not fill those spans (nearly all do not) does not fill its hull.
    left, right = row_extents(masks)
    spans = (right - left).sum(1)
    maybe = masks.sum((1, 2)) >= np.maximum(SHEET_FILL * spans, 3)
    return np.array([bool(m) and (_solid(mask, BLOB_ASPECT) and _even(digit) or _round(digit))
                     for m, mask, digit in zip(maybe, masks, digits)], bool)


def dot(crop: np.ndarray) -> bool:
    """Whether cropped ink (`crop_to_ink`) is a dot, such as a tap on a drawing canvas leaves: at most DOT_SIDE pixels
    across and solid (`_solid`: its pixels over half white fill their hull, enclose nothing and are at most
    BLOB_ASPECT times as long as wide). The stroke fix would thin it by a quarter of its stroke, a pixel at most, which
    at so coarse a resolution dims its rim instead and leaves a bump where its pixel outline runs straight; blown up
    to 20 px, that is a grey ring round a small core, or a cross: a confident 8 or 4, which `blobs` did not know for a
    blob (a 3 to 7 px dot, sharp). A bold digit is solid at its own resolution too, but larger: of 1,030 digits drawn
    8 to 24 px tall, the solid ones were 9 px across or more, and those of 9 px that read right do so only thinned."""
    return max(crop.shape) <= DOT_SIDE and _solid(crop > 0.5, BLOB_ASPECT)


def outlines(digits: np.ndarray) -> np.ndarray:
    """Which digits in MNIST's layout (a stack, N x 28 x 28) are an empty box: their ink (over half white) is one
    piece round one hole, and the two together fill OUTLINE_FILL of their box. The network, which has seen only
    rounder rings, calls it a confident 0; a 0 is an ellipse, or a box with rounded corners, which fills less."""
    return np.array([_box_outline(digit > 0.5) for digit in np.asarray(digits)], bool)


def _box_outline(mask: np.ndarray) -> bool:
    """Whether a mask is one piece round one hole that together fill OUTLINE_FILL of the mask's box."""
    if not mask.any():
        return False
    mask = crop_to_ink(mask)
    if np.count_nonzero(mask) == mask.size:  # a filled square: blobs' part
        return False
    holes = _holes(mask)
    if np.count_nonzero(mask | holes) < OUTLINE_FILL * mask.size:  # the cheapest test first
        return False
    pieces, inside = (connected_components(m.astype(np.float32)) for m in (mask, holes))
    return len(pieces) == 1 and len(inside) == 1  # a digit in a box is a piece of its own, and splits the hole


def _round(digit: np.ndarray) -> bool:
    """Whether a rendering is a round spot, however blurred: its faint ink (down to BLOB_FAINT) and its dark ink (over
    half white) are each a filled ellipse at most BLOB_ASPECT times as long as wide. Blur fails `_even` (a dot's core
    is darker than its rim, as a smudged bold digit's is), but a smudge keeps its arms, a 9's filled loop its tail."""
    return _ellipse(digit > BLOB_FAINT) and _ellipse(digit > 0.5)


def _ellipse(mask: np.ndarray) -> bool:
    """Whether a mask and the filled ellipse with its mean and covariance overlap by ROUND_FIT of their union, and the
    ellipse is at most BLOB_ASPECT times as long as wide."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 5:  # too few pixels for a shape
        return False
    points = np.stack([xs, ys]).astype(np.float64)
    centre = points.mean(1)
    spread = np.cov(points) + np.eye(2) / 12  # each pixel a unit square, not a point
    narrow, wide = np.linalg.eigvalsh(spread)
    if wide > BLOB_ASPECT**2 * narrow:
        return False
    rows, cols = np.indices(mask.shape)
    offsets = np.stack([cols - centre[0], rows - centre[1]], -1)
    # A uniform ellipse's edge lies two standard deviations from its centre along each axis.
    inside = np.einsum("...i,ij,...j->...", offsets, np.linalg.inv(spread), offsets) <= 4
    return np.count_nonzero(inside & mask) >= ROUND_FIT * np.count_nonzero(inside | mask)


def _even(digit: np.ndarray) -> bool:
    """Whether all of a rendering's ink, down to BLOB_FAINT, fills its hull, and BLOB_EVEN of it is nearly as bright
    as the brightest."""
    faint = digit > BLOB_FAINT
    return _fills_hull(faint) and np.count_nonzero(digit >= 0.9 * digit.max()) >= BLOB_EVEN * np.count_nonzero(faint)


def _solid(mask: np.ndarray, max_aspect: float) -> bool:
    """Whether a piece is at most `max_aspect` times as long as wide (at any angle), fills its convex hull
    (`_fills_hull`) and encloses nothing."""
    ys, xs = np.nonzero(mask)
    if len(xs) >= 3:  # the cheapest test first
        narrow, wide = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
        if wide > max_aspect**2 * max(narrow, 1e-6):
            return False
    return _fills_hull(mask) and not _holes(mask).any()


def _fills_hull(mask: np.ndarray) -> bool:
    """Whether a piece is solid: its pixels fill SHEET_FILL of its convex hull (by pixels, not ink: a small piece is
    mostly soft edge)."""
    return np.count_nonzero(mask) >= SHEET_FILL * polygon_area(convex_hull(mask))


def _paper(small: np.ndarray, shrunk: float) -> np.ndarray:
    """Smooth surface through the paper, robust to ink of either polarity: its coefficients (see `_surface`), fitted on
    the `small` copy of an image shrunk `shrunk` times by area.

    Phone photos are lit unevenly, so a single paper level is not enough; a
    quadratic follows gradients and vignetting but cannot bend around strokes.
    It is fitted on a small copy, first to the border (mostly paper even when
    a bold digit fills the frame), then to every pixel close to the surface.
    Tiny images get a plane: there a quadratic could rise into a dome under a
    blurred digit.
    """
    terms = 6 if min(small.shape) >= 32 else 3
    y, x = _centres(small.shape[0])[:, None], _centres(small.shape[1])[None, :]
    basis = np.stack(np.broadcast_arrays(np.ones_like(x), x, y, x * x, x * y, y * y)[:terms], axis=-1)
    basis, values = basis.reshape(-1, terms), small.ravel()
    inliers = _paper_border(basis, values, _border(small, shrunk).ravel())
    for _ in range(3):
        if inliers.sum() < 12:
            return np.array([np.median(small), 0, 0, 0, 0, 0])
        coef = _fit(basis, values, inliers)
        residual = values - basis @ coef
        settled = inliers
        inliers = np.abs(residual) <= 3 * _noise(residual[inliers]) + 1e-3
        if np.array_equal(inliers, settled):
            break
    return np.pad(coef, (0, 6 - terms))


def _surface(coef: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The fitted paper c0 + cx x + cy y + cxx x² + cxy xy + cyy y² over an image of this shape, x and y running over
    [-1, 1] at any size."""
    c0, cx, cy, cxx, cxy, cyy = coef
    y, x = _centres(shape[0])[:, None], _centres(shape[1])[None, :]
    return (c0 + cy * y + cyy * y * y) + (cx + cxx * x + cxy * y) * x


def _small_copy(gray: np.ndarray) -> np.ndarray:
    """The copy the paper is fitted on: area-averaged to PAPER_AREA pixels (by area: a long strip of digits keeps some
    height), but PAPER_DEPTH pixels deep at least, or as deep as the image. Shrunk evenly, a strip 500 digits long
    kept 3 rows, where ink and paper blend into one grey that passed for the paper ("no ink found")."""
    height, width = gray.shape
    depth = min(height, width, PAPER_DEPTH)
    if min(downscaled_size(height, width, PAPER_AREA)) >= depth:  # shrunk evenly, it stays deep enough
        return downscale(gray, PAPER_AREA)
    length = min(max(height, width), PAPER_AREA // depth)  # each axis is fitted in its own [-1, 1]: no distortion
    size = (length, depth) if width > height else (depth, length)
    return resized(gray, size)


def _border(small: np.ndarray, shrunk: float) -> np.ndarray:
    """The border of the small copy (`shrunk` times fewer pixels than the image), to find the paper on: on each side,
    its outer row or column of pixels, or the two inside its outer one to FRAME_DEPTH rows where those are even,
    nearer the image's median, and the outer ones are a line apart from them along FRAME_SPAN of their length. A thin
    frame or line along the image's edges (a table's cell, a form's field, a canvas's border) darkens the outer ring
    of a shrunk copy alike, which would then pass for the paper; drawn a few pixels inside the edge, or thick, it
    darkens several rows of the copy (an answer box cropped close: "no ink found"); a digit that reaches the edge is
    no such even line beside even rows. Not in images that were not shrunk by FRAME_SHRUNK at least: there a line is
    as dark in the copy as in the image, and the rows inside are as much the digit's or the squared paper's as the
    paper's."""
    border = np.zeros(small.shape, bool)
    whole = float(np.median(small))
    for turn in range(4):  # each side in turn as the top rows of a view
        side, marks = np.rot90(small, turn), np.rot90(border, turn)
        # Along the side less its ends, which a frame's other sides cover as deep.
        depth = next((d for d in range(1, FRAME_DEPTH + 1) if _framed(side[:d, d:-d], side[d:d + 2, d:-d], whole)),
                     0) if shrunk >= FRAME_SHRUNK else 0
        marks[depth:depth + 2 if depth else 1] = True
    return border


def _framed(edge: np.ndarray, within: np.ndarray, whole: float) -> bool:
    """Whether the outer rows `edge` of a side are a line along rows `within` that are even and nearer the image's
    median `whole` than they are: paper beside a frame, not a 1's bar just inside the edge."""
    if not within.size:  # a copy one or two pixels deep
        return False
    paper = float(np.median(within))
    even = np.mean(np.abs(within - paper) <= FRAME_STEP / 2) >= FRAME_SPAN
    step = edge - paper
    line = np.mean(step > FRAME_STEP) >= FRAME_SPAN or np.mean(step < -FRAME_STEP) >= FRAME_SPAN
    return bool(even and line and abs(paper - whole) < abs(float(np.median(edge)) - whole))


def _paper_border(basis: np.ndarray, values: np.ndarray, border: np.ndarray) -> np.ndarray:
    """The border's pixels that lie on the paper. A dark strip along one edge (a scan's edge, the desk beside the page)
    would bend a fit to the whole border towards it, and the noise measured about that fit would swallow the ink; its
    spread would also hide it from a test against the border's median when the light falls unevenly. So the surface
    is fitted to the closer half of the border, again and again, and the noise measured about it. A plane: on the
    border a quadratic could take each side to its own level, the strip's too."""
    basis, distance = basis[:, :3], np.abs(values - np.median(values[border]))  # from the median: no strip's pull
    for _ in range(4):
        residual = values - basis @ _fit(basis, values, border & (distance <= np.median(distance[border])))
        distance = np.abs(residual)
    return border & (distance <= 3 * _noise(residual[border]) + 0.02)


def _fit(basis: np.ndarray, values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of `basis` for the `chosen` values, solved on the small normal equations: much cheaper
    than on every chosen pixel."""
    rows = basis[chosen]
    return np.linalg.lstsq(rows.T @ rows, rows.T @ values[chosen], rcond=None)[0]


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
    full = _full_ink(residual, sigma)
    if not _stands_out(full, sigma):
        # A small digit on a whole page: a few hundred pixels of ink against a megapixel whose noise, texture or pale
        # ruled lines Otsu's threshold splits instead. Split again what stands out of the noise, ink and that tail.
        tail = residual[residual > 4 * sigma]
        full = _full_ink(tail, sigma) if tail.size else 0.0
    if not _stands_out(full, sigma):
        raise NoInkError("no ink found")
    floor = max(3.5 * sigma, 0.25 * full)
    return np.clip((residual - floor) * (1 / (full - floor)), 0, 1).astype(np.float32)


def _full_ink(values: np.ndarray, sigma: float) -> float:
    """The level of full strokes: the median of what Otsu's threshold (and the noise) leave as ink."""
    strong = values[values > max(_otsu(values), 4 * sigma)]
    return float(np.median(strong)) if strong.size else 0.0


def _stands_out(full: float, sigma: float) -> bool:
    return full >= MIN_CONTRAST and full >= MIN_SNR * sigma


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


def frames(components: Components, keep: np.ndarray) -> np.ndarray:
    """Which of the kept components frame other kept ink: a box or a circle drawn around a digit or a number, the
    heaviest ink, which was cropped and read (a circled 5 as 0). A frame's hole holds writing at least FRAME_CONTENT
    of the hole's height and weighs a tenth of the frame at least; a 0's, a 6's or an 8's loops hold nothing so tall
    but what is left inside them of a line of squared paper: a hair against them."""
    found = np.zeros(len(components), bool)
    boxes = components.boxes
    for k in np.nonzero(keep)[0]:
        x0, y0, x1, y1 = boxes[k]
        inside = keep & (boxes[:, 0] > x0) & (boxes[:, 1] > y0) & (boxes[:, 2] < x1) & (boxes[:, 3] < y1)
        if not inside.any():  # the usual case: no labelling of holes
            continue
        labels = components.labels[y0:y1, x0:x1]
        holes = _holes(labels == k + 1)
        outside = np.bincount(labels[~holes], minlength=len(components) + 1)[1:] > 0  # a piece reaching past it
        held = inside & ~outside
        if not held.any():
            continue
        rows = np.nonzero(holes.any(axis=1))[0]
        tall = boxes[held, 3].max() - boxes[held, 1].min() >= FRAME_CONTENT * (rows[-1] + 1 - rows[0])
        found[k] = tall and components.mass[held].sum() >= FRAME_MASS * components.mass[k]
    return found


def digit_ink(ink: np.ndarray, components: Components | None = None) -> np.ndarray:
    """Keep the heavy components and the smaller ones next to them; drop specks and a frame drawn around them.
    `components` are the ink's, when the caller has them."""
    components = connected_components(ink) if components is None else components
    keep = strokes(components, ink.shape)
    keep &= ~frames(components, keep)
    boxes = components.boxes
    widths = boxes[:, 2] - boxes[:, 0]
    solid = keep & (widths < LINE_ASPECT * (boxes[:, 3] - boxes[:, 1]))
    if solid.any():  # a rule drawn under the digit would be cropped and scaled with it
        keep &= ~loose_rules(components, solid)[0]  # without a reader to ask, only the sure ones
    # A stretch of a faint notebook line that `remove_rulings` could not follow across the page: flatter than a
    # digit's strokes (the bar of a 5 or a 7 is a few times as wide as it is thick, not ten) and thinner or paler.
    heaviest = int(np.argmax(np.where(keep, components.mass, -1)))
    flat = keep & (widths >= LINE_ASPECT * (boxes[:, 3] - boxes[:, 1]))
    flat[heaviest] = False
    if flat.any():  # the stroke width costs a pass over the image: only when there is a candidate
        stroke = stroke_width(np.where(components.labels == heaviest + 1, ink, 0))
        keep &= ~(flat & (components.mass < 0.6 * stroke * widths))
    x0, y0, x1, y1 = major_box(components, keep)
    reach = 0.25 * max(x1 - x0, y1 - y0)
    near = (boxes[:, 0] < x1 + reach) & (boxes[:, 2] > x0 - reach)
    near &= (boxes[:, 1] < y1 + reach) & (boxes[:, 3] > y0 - reach)
    lookup = np.concatenate([[False], keep & near])
    return np.where(lookup[components.labels], ink, 0)
