"""Lines that are not digits: those of ruled and squared paper (erased before the digit is cropped), and the rules
drawn under a number (found for `convnet.segment`, which reads the digits both with and without a doubtful one)."""

from __future__ import annotations

import numpy as np

from convnet.components import Components, connected_components, major_box, speck_mask
from convnet.preprocess.morphology import running, stroke_width, vertical_run_bounds, vertical_runs

LINE_ASPECT = 10  # a thin piece of ink this many times as wide as tall is a piece of a line, not of a digit
RULING_SPAN = 0.75  # a ruling crosses at least this share of the image...
RULING_THIN = 0.1  # ...is thin (on average at most this share of its length thick: a stroke may join it)...
RULING_TILT = 0.2  # ...nearly level (its box at most this share of its length deep: under about 11 degrees)...
RULING_MARGIN = 0.05  # ...and goes on past the digit on both sides by this share of the image
RULING_DIGIT = 0.1  # a line alone along the image's side, or thin, goes only beside a digit this share of its length;
RULING_THIN_STROKE = 0.5  # (thin: at most this share of the other strokes' width)
RULING_INNER_DIGIT = 0.15  # any other (it might be a tightly cropped 1) beside a digit this share of it...
RULING_ALONE = 2.0  # ...and this many times shorter along it (no bar of a 7 or 4 is twice as long as the rest)
RULING_THROUGH = 0.5  # a thin one may cross the digit, going on past it both ways by this share of its length,
RULING_INSIDE = 0.1  # ...and this share of its width inside it
FRAME_THIN = 0.03  # a frame's lines are thinner than half the strokes and than this share of the image's shorter side
FRAME_CORNER = 0.05  # ...or of any thickness, ending where they meet to within this share of it: a box's corners
GRID_LINES = 3  # lines of a printed grid go even where a digit at the page's edge stops them going past it: as many,
GRID_SPAN = 0.95  # across this share of the image,
GRID_EVEN = 0.15  # evenly spaced to within this share of their spacing


def remove_rulings(ink: np.ndarray) -> np.ndarray:
    """Erase the lines of ruled or squared paper, keeping the strokes that cross or lie on them.

    A notebook's lines are ink as much as the digit is, and the heaviest ink would
    be taken for the digit. Lines are told from strokes by being several, straight,
    nearly across the whole image and going on past the digit on both sides: the
    bars of a tightly cropped 7 or Z-like 2 are as long as the image, but they end
    where the rest of the digit does, so they are left alone.
    """
    rows, row_boxes = _rulings(ink)  # horizontal lines
    cols, col_boxes = _rulings(ink.T)  # vertical lines, found as horizontal ones in the transpose
    cols = cols.T
    if not len(row_boxes) + len(col_boxes):
        return ink
    unlined = np.where((rows > 0) | (cols > 0), 0, ink)
    x0, y0, x1, y1 = _digit_box(unlined)
    height, width = ink.shape
    row_ok = _past(row_boxes[:, [0, 2]], x0, x1, RULING_MARGIN * width)
    col_ok = _past(col_boxes[:, [0, 2]], y0, y1, RULING_MARGIN * height)
    if not (row_ok.all() and col_ok.all()):
        # A digit at the page's edge stops the lines there from going on past it; a printed grid goes all the same,
        # and so does a frame around the digit (a table's cell, a form's field, a canvas's border).
        stroke = stroke_width(unlined)
        row_thick, col_thick = _thickness(rows, row_boxes, ink), _thickness(cols, col_boxes, ink)
        row_ok |= _grid(row_boxes, row_thick <= RULING_THIN_STROKE * stroke, width)
        col_ok |= _grid(col_boxes, col_thick <= RULING_THIN_STROKE * stroke, height)
        hairline = min(RULING_THIN_STROKE * stroke, FRAME_THIN * min(ink.shape))
        frame_rows, frame_cols = _frame(row_boxes, col_boxes, [row_thick <= hairline, col_thick <= hairline],
                                        (x0, y0, x1, y1), ink.shape)
        row_ok |= frame_rows
        col_ok |= frame_cols
    erase = None  # the lines' pixels to erase, once known
    if row_ok.sum() + col_ok.sum() == 1:
        # One line alone (a margin, a form's line, the edge of a scan or of a desk) is no ruled paper: out only when
        # it keeps clear of all the other ink, which is of some size (not a speck beside a tightly cropped 1), and
        # the line lies along the image's side, or is thinner than the strokes, or is over twice as long as the rest
        # in its direction: a digit's own straight stroke (a 1 beside a 2, a 7's bar, a 4's crossbar) is none of them.
        across = bool(col_ok.any())  # the line runs down the image
        line = (col_boxes[col_ok] if across else row_boxes[row_ok])[0]  # as a row of the image or its transpose
        mine = np.concatenate([[False], row_ok])[rows] | np.concatenate([[False], col_ok])[cols]
        rest = np.where(mine, 0, ink)  # every other stroke, line-shaped or not
        x0, y0, x1, y1 = _digit_box(rest)
        # The digit's extent along the line and across it.
        (start, stop), (side0, side1) = ((y0, y1), (x0, x1)) if across else ((x0, x1), (y0, y1))
        length, along = line[2] - line[0], stop - start
        edge = line[1] == 0 or line[3] == (width if across else height)  # along the image's side: a scan's edge
        thin = float(ink[mine].sum()) / length <= RULING_THIN_STROKE * stroke_width(rest)
        sized = max(x1 - x0, y1 - y0) >= (RULING_DIGIT if edge or thin else RULING_INNER_DIGIT) * length
        alone = sized and (edge or thin or along * RULING_ALONE <= length)
        clear = bool(_clear(line[None, [1, 3]], side0, side1)[0])
        # A thin line may cross the digit (a margin drawn through it) if it goes on past it both ways by half as much
        # as the digit is long along it: no stroke of the digit's own is so much thinner than the rest, and so long.
        # Through it, not along its edge: a rule the digits stand on is `read`'s to take off (find_underlines), and
        # erased here it left the stair-steps of its slant beside them. Through the digit whole, its strokes across
        # the line kept: the line taken out with them cut the open arms of a 4 off below it, the digit then began at
        # the line, which lay along its edge, stayed, and was cropped with the 4 (read 7).
        erase = _erased(rows, cols, row_ok, col_ok, ink)
        x0, y0, x1, y1 = _digit_box(np.where(erase, 0, ink))
        (start, stop), (side0, side1) = ((y0, y1), (x0, x1)) if across else ((x0, x1), (y0, y1))
        along = stop - start
        inside = RULING_INSIDE * (side1 - side0)
        through = (thin and bool(_past(line[None, [0, 2]], start, stop, RULING_THROUGH * along).all())
                   and side0 + inside <= line[1] and line[3] <= side1 - inside)
        row_ok &= alone & (clear | through)
        col_ok &= alone & (clear | through)
    if not row_ok.any() and not col_ok.any():
        return ink
    return np.where(_erased(rows, cols, row_ok, col_ok, ink) if erase is None else erase, 0, ink)


def _erased(rows: np.ndarray, cols: np.ndarray, row_ok: np.ndarray, col_ok: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The pixels to erase of the lines `row_ok` and `col_ok` of those numbered in `rows` and `cols` (as `_rulings`
    gives them, `cols` turned back to the image's orientation)."""
    rows = np.where(np.concatenate([[False], row_ok])[rows], rows, 0)
    cols = np.where(np.concatenate([[False], col_ok])[cols], cols, 0)
    # Where a stroke crosses a line or lies on it, the ink across the line is thicker than the line: keep it there.
    return _thin_across(rows, ink > 0) | _thin_across(cols.T, ink.T > 0).T


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
    `loose_rules`). A rule that touches the digits is the straight bottom edge of most of a piece wider than tall,
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
    loose, maybe = loose_rules(components, solid)
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


def loose_rules(components: Components, solid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    thickness = vertical_runs(mask)[lowest, columns]
    # The rule is most of the columns: the medians of each half put a line through it, whatever hangs below it.
    xl, yl, slope = _line_of_halves(columns, lowest)
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
    """The horizontal lines that cross the image: their pixels numbered 1..n (0 elsewhere), and their boxes (x0, y0,
    x1, y1)."""
    width = ink.shape[1]
    mask = ink > 0
    none = np.zeros(ink.shape, np.intp), np.zeros((0, 4), np.int64)
    if np.count_nonzero(mask.any(axis=0)) < RULING_SPAN * width:  # no ink across the image: no line (and no cost)
        return none
    # A pixel of slack up and down for slight tilt and anti-aliased edges.
    band = running(mask.T.astype(np.float32), 1, np.maximum).T
    reach = max(2, int(0.05 * width))
    runs = running(running(band, reach, np.minimum), reach, np.maximum)  # inside horizontal runs of 10 % or more
    # A faint line breaks up where noise removal took its palest stretches: bridge gaps of up to 10 % of the width
    # (edge padding, so that the closing does not trim the lines' ends at the borders).
    padded = np.pad(runs, ((0, 0), (reach, reach)), mode="edge")
    joined = running(running(padded, reach, np.maximum), reach, np.minimum)[:, reach:-reach]
    components = connected_components(joined)
    if not len(components):
        return none
    boxes = components.boxes.copy()
    spans, depths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    thick = components.mass / np.maximum(spans, 1)
    wide = spans >= RULING_SPAN * width
    lines = wide & (thick <= RULING_THIN * spans) & (depths <= RULING_TILT * spans)
    number = np.zeros(len(lines) + 1, np.intp)
    number[1:][lines] = np.arange(1, lines.sum() + 1)
    labels, found, count = np.where(mask, number[components.labels], 0), [boxes[lines]], int(lines.sum())
    # A line that crosses a long, flat stroke (a 4's crossbar, a 2's base) joins it into one piece as deep as the
    # digit, and the lines of ruled paper across a bold digit join through its strokes: lines still, where they are
    # thin and straight across most of the image, the strokes no part of them.
    for k in np.nonzero(wide & ~lines)[0]:
        x0, y0, x1, y1 = boxes[k]
        piece = components.labels[y0:y1, x0:x1] == k + 1
        for box, on in _lines_through(piece, width):
            count += 1  # numbered after the lines found whole
            found.append(box[None] + [x0, y0, x0, y0])
            labels[y0:y1, x0:x1][on & mask[y0:y1, x0:x1]] = count
    return labels, np.concatenate(found)


def _line_of_halves(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
    """A line through the points (xs in order) that most of them lie on, whatever the rest do: through the medians of
    each half. Returns the left half's median point (x, y) and the slope."""
    half = len(xs) // 2
    x0, x1, y0, y1 = (float(np.median(v)) for v in (xs[:half], xs[half:], ys[:half], ys[half:]))
    return x0, y0, (y1 - y0) / max(x1 - x0, 1)


def _lines_through(piece: np.ndarray, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The thin, straight lines through `piece`, a mask: each one's box (x0, y0, x1, y1) and the mask of its pixels.
    A column crosses a line in a short vertical run of ink; a line is such runs, in at least half the image's `width`
    columns and spread over RULING_SPAN of it, on one straight line: the most of them at one slope and height (a
    Hough transform over the slopes a ruling may have), then the next most, while there are lines. What lies off them
    is other strokes'. (The one line through the runs' mean in each column found none where a digit joined several
    lines of ruled paper: they all stayed across it, and a bold 3 read as a 2 at 95 %.)"""
    first, lengths = vertical_run_bounds(piece)
    rows, columns = np.nonzero(piece & (first == np.arange(piece.shape[0])[:, None]))  # each run's first pixel
    lengths = lengths[rows, columns]
    typical = float(np.median(lengths))
    thin = lengths <= 2 * typical + 2
    xs, ys = columns[thin].astype(np.float32), rows[thin] + (lengths[thin] - 1) / 2
    slack = typical / 2 + 1
    slopes = np.linspace(-RULING_TILT, RULING_TILT, 2 * int(np.ceil(RULING_TILT * piece.shape[1])) + 1)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    free = np.ones(len(xs), bool)
    pixel_rows = np.arange(piece.shape[0])[:, None]
    while np.count_nonzero(free) >= width / 2:
        slope, intercept = _densest_line(xs[free], ys[free], slopes, slack)
        on = free & (np.abs(ys - (intercept + slope * xs)) <= slack)
        for _ in range(2):  # refined through the runs near it
            if len(np.unique(xs[on])) < 2:
                return found
            slope, intercept = np.polyfit(xs[on], ys[on], 1)
            on = free & (np.abs(ys - (intercept + slope * xs)) <= slack)
        line = np.unique(xs[on]).astype(int)
        if (len(line) < width / 2 or line[-1] + 1 - line[0] < RULING_SPAN * width or typical > RULING_THIN * len(line)
                or abs(slope) > RULING_TILT):
            return found
        free &= ~on
        along = intercept + slope * np.arange(piece.shape[1])
        ends = along[[line[0], line[-1]]]
        box = [line[0], int(ends.min() - typical / 2), line[-1] + 1, int(np.ceil(ends.max() + typical / 2)) + 1]
        found.append((np.array(box, np.int64), piece & (np.abs(pixel_rows - along[None, :]) <= slack)))
    return found


def _densest_line(xs: np.ndarray, ys: np.ndarray, slopes: np.ndarray, slack: float) -> tuple[float, float]:
    """The slope among `slopes` and the intercept at which the most points (xs, ys) lie near one line, counted in
    bins of twice `slack` (two neighbouring bins together)."""
    step = 2 * slack
    intercepts = ys[None, :] - slopes[:, None] * xs[None, :]
    low = float(intercepts.min())
    bins = ((intercepts - low) / step).astype(np.intp)
    size = int(bins.max()) + 2
    counts = np.bincount((bins + size * np.arange(len(slopes))[:, None]).ravel(), minlength=size * len(slopes))
    counts = counts.reshape(len(slopes), size)
    pairs = counts[:, :-1] + counts[:, 1:]  # two bins: a line on a bin's edge counts whole
    best, start = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
    within = (bins[best] == start) | (bins[best] == start + 1)
    return float(slopes[best]), float(np.median(intercepts[best][within]))  # where those points lie, not the bins


def _digit_box(rest: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the heavy ink left once the lines are out; a point in the middle if none is left (a blank page)."""
    components = connected_components(rest)
    if not len(components):
        return rest.shape[1] // 2, rest.shape[0] // 2, rest.shape[1] // 2, rest.shape[0] // 2
    return major_box(components, np.ones(len(components), bool))


def _grid(boxes: np.ndarray, thin: np.ndarray, across: int) -> np.ndarray:
    """Which of the horizontal lines (boxes as `_rulings` gives them, in an image `across` pixels wide) are a printed
    grid's: at least GRID_LINES of them across the whole image, each `thin` (thinner than RULING_THIN_STROKE of the
    strokes), evenly spaced (a line not found leaves a gap twice as wide). No digit has such bars. A line that a
    digit's stroke joins is off the spacing (its middle moves towards the stroke) and stays; the others go all the
    same."""
    count = len(boxes)
    candidates = np.nonzero((boxes[:, 2] - boxes[:, 0] >= GRID_SPAN * across) & thin)[0]
    grid = np.zeros(count, bool)
    if len(candidates) < GRID_LINES:
        return grid
    centres = (boxes[candidates, 1] + boxes[candidates, 3]) / 2
    step = float(np.median(np.diff(np.sort(centres))))
    if step <= 0:
        return grid
    # The most lines on one even spacing, through each line in turn.
    on = max((np.abs(k - np.round(k)) <= GRID_EVEN for k in ((centres - c) / step for c in centres)),
             key=np.count_nonzero)
    if np.count_nonzero(on) >= GRID_LINES:
        grid[candidates[on]] = True
    return grid


def _thickness(lines: np.ndarray, boxes: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Each line's ink over its length: its thickness, strokes that cross it included."""
    mass = np.bincount(lines.ravel(), weights=ink.ravel(), minlength=len(boxes) + 1)[1:]
    return mass / np.maximum(boxes[:, 2] - boxes[:, 0], 1)


def _frame(row_boxes: np.ndarray, col_boxes: np.ndarray, thin: list[np.ndarray], digit: tuple[int, int, int, int],
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Which horizontal and vertical lines (boxes as `_rulings` gives them, the vertical ones transposed; `thin`:
    which of each are hairlines, FRAME_THIN) frame the digit's box: thin lines on all four sides of it, or along
    three of the image's sides (a digit touching the fourth line joins it, which is then no line across the image),
    or lines of any thickness on its four sides that end where they meet, a box's corners (`_box`).
    No digit draws hairlines on three sides of itself; the upright 1s of a tightly cropped number, which pass for
    lines beside what is left, are written with the pen of the other digits."""
    x0, y0, x1, y1 = digit
    height, width = shape
    (thin_rows, thin_cols) = thin
    outside = [row_boxes[:, 3] <= y0, row_boxes[:, 1] >= y1, col_boxes[:, 3] <= x0, col_boxes[:, 1] >= x1]
    sides = [(outside[0] & thin_rows, row_boxes[:, 1] == 0), (outside[1] & thin_rows, row_boxes[:, 3] == height),
             (outside[2] & thin_cols, col_boxes[:, 1] == 0), (outside[3] & thin_cols, col_boxes[:, 3] == width)]
    framed = all(beside.any() for beside, _ in sides) or sum(bool((beside & edge).any()) for beside, edge in sides) >= 3
    if not framed:
        # Clear of the digit, not only outside it: the inner walls of a row of boxes (a form's comb) join its top and
        # bottom, and were left as 1s where the rest went.
        clear = [row_boxes[:, 3] < y0, row_boxes[:, 1] > y1, col_boxes[:, 3] < x0, col_boxes[:, 1] > x1]
        return _box(row_boxes, col_boxes[:, [1, 0, 3, 2]], clear, FRAME_CORNER * min(shape))
    return sides[0][0] | sides[1][0], sides[2][0] | sides[3][0]


def _box(rows: np.ndarray, cols: np.ndarray, outside: list[np.ndarray], slack: float) -> tuple[np.ndarray, np.ndarray]:
    """Which horizontal and vertical lines (boxes x0, y0, x1, y1 in the image, both) make a box round the digit: a
    line `outside` it (and clear of it) on each side, top, bottom, left and right, each pair of neighbours ending
    where they meet, to within `slack` pixels. A box drawn a few pixels inside the image's edge, its lines thicker
    than hairlines, lost only its sides, which reach past the digit, and its top and bottom joined the digits into
    one piece ("8888" read as "885858"). The lines of squared paper cross each other and the page: no such corners."""
    def meet(horizontal: np.ndarray, vertical: np.ndarray, right: int, bottom: int) -> np.ndarray:
        """Whether each horizontal line's left (right) end meets each vertical line's top (bottom) end."""
        ends_x = np.abs(rows[horizontal, 2 * right][:, None] - cols[vertical, 2 * right][None, :]) <= slack
        ends_y = np.abs(rows[horizontal, 1 + 2 * bottom][:, None] - cols[vertical, 1 + 2 * bottom][None, :]) <= slack
        return (ends_x & ends_y).astype(np.intp)
    top, low, left, right = (np.nonzero(side)[0] for side in outside)
    top_left, top_right, low_left, low_right = (meet(top, left, 0, 0), meet(top, right, 1, 0), meet(low, left, 0, 1),
                                                meet(low, right, 1, 1))
    closed = ((top_left.T @ top_right > 0) & (low_left.T @ low_right > 0)).astype(np.intp)  # [left, right] pairs
    framing_rows, framing_cols = np.zeros(len(rows), bool), np.zeros(len(cols), bool)
    framing_rows[top] = ((top_left @ closed) * top_right).sum(axis=1) > 0
    framing_rows[low] = ((low_left @ closed) * low_right).sum(axis=1) > 0
    framing_cols[left], framing_cols[right] = closed.any(axis=1), closed.any(axis=0)
    return framing_rows, framing_cols


def _past(spans: np.ndarray, start: int, stop: int, margin: float) -> np.ndarray:
    """Which lines go on at least `margin` past both ends of [start, stop)."""
    return (spans[:, 0] <= start - margin) & (spans[:, 1] >= stop + margin)


def _clear(depths: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Which lines lie wholly before or after [start, stop) across their length."""
    return (depths[:, 1] <= start) | (depths[:, 0] >= stop)


def _thin_across(lines: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pixels of the horizontal `lines` (numbered 1..n, 0 elsewhere) whose vertical run of ink is no thicker than
    their own line, or lies within the line's own straight edges (a band that thickens along its length)."""
    on = lines > 0
    if not on.any():
        return on
    first, runs = vertical_run_bounds(mask)
    # A line's thickness is its pixels in a column, low in the range over its columns: strokes that cross it or lie
    # along it (a 1's stem on a line of squared paper, a bold digit's bar) may cover most of its columns, and each
    # line its own, so that one line's strokes set no other's limit.
    width = lines.shape[1]
    columns = np.broadcast_to(np.arange(width), lines.shape)[on]
    counts = np.bincount(lines[on] * width + columns, minlength=(lines.max() + 1) * width).reshape(-1, width)
    thickness = np.array([np.percentile(c[c > 0], 25) if c.any() else 0.0 for c in counts])
    thin = on & (runs <= 1.5 * thickness[lines] + 1)
    return thin | _within_edges(lines, thin, first, runs, thickness)


def _within_edges(lines: np.ndarray, thin: np.ndarray, first: np.ndarray, runs: np.ndarray,
                  thickness: np.ndarray) -> np.ndarray:
    """The pixels of the `lines` along the image's top or bottom side (each of their `thin` columns on it) whose
    vertical run of ink (from row `first`, `runs` long) lies between the line's edges: the side, and a straight line
    through the inner ends of those columns, give or take a quarter of its `thickness` (every run lies within the side
    itself). A band's thick end (a shadow's edge at a slant, thin at one end and thick at the other) lies so; a stroke
    that crosses the band or lies along it, over half as thick again, reaches past the inner edge by more. Not for lines
    inside the page: a review found a bold 4's crossbar, which filled the space between two lines of ruled paper and
    made one piece of them, erased between their outer edges, and strokes lying along a line widening its edges enough
    to go with it. (A pixel of slack instead of a quarter of the thickness let a 5's stem go where it ran down a faint
    line of squared paper.)"""
    inside = np.zeros(lines.shape, bool)
    ys, xs = np.nonzero(thin)
    numbers = lines[ys, xs]
    last = lines.shape[0] - 1
    for k in np.unique(numbers):
        rows, columns = ys[numbers == k], xs[numbers == k]
        top, bottom = np.full(lines.shape[1], lines.shape[0]), np.full(lines.shape[1], -1)
        np.minimum.at(top, columns, rows)
        np.maximum.at(bottom, columns, rows)
        present = np.nonzero(bottom >= 0)[0]
        at_top = bool((top[present] == 0).all())
        if len(present) < 2 or not (at_top or (bottom[present] == last).all()):
            continue
        ry, rx = np.nonzero((lines == k) & ~thin)
        x, y, slope = _line_of_halves(present, (bottom if at_top else top)[present])  # the inner edge
        edge, slack = y + slope * (rx - x), thickness[k] / 4
        within = (first[ry, rx] + runs[ry, rx] - 1 <= edge + slack) if at_top else (first[ry, rx] >= edge - slack)
        inside[ry[within], rx[within]] = True
    return inside
