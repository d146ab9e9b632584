"""Cut an image of a handwritten number into its digits, left to right.

Uses the same ink extraction as `convnet.preprocess` (polarity, lighting,
noise), erases a rule drawn under the number, then works on connected
components of the ink: specks are dropped,
pieces of one digit (the bar of a 5, the dashes of a broken stroke) are
merged, touching digits are split, and each digit is rendered MNIST-style.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convnet.components import MAJOR, Components, connected_components, strokes
from convnet.preprocess import LINE_ASPECT, NoInkError, find_ink, find_underlines, frames, render_digit

STRONG_OVERLAP = 0.7  # share of the narrower box's width over another box: same digit
FRAGMENT = 0.5  # pieces shorter than this share of the digit height belong to a neighbour
PAIR_WIDTH = 1.5  # groups this many expected widths wide are touching digits
CUT_STEP = 0.25  # touching digits are cut, with the model, at seams laid this share of a digit's expected width apart
CUT_WIDTHS = (0.4, 1.6)  # ...into digits this many expected widths wide
RULE_DOUBT = 0.001  # a rule that may be a digit's stroke stays unless the digits are this much more convincing without
STACKED = 0.2  # neighbours sharing at most this share of the shorter one's rows stand one above the other: one digit
SLIVER = 0.1  # neighbours in crowded writing may share this share of the narrower one's columns (numbers whose digits
# overlap: 0.01-0.24, median 0.06), the pieces of one digit more (MNIST's 5s with a bar drawn apart: 0.11-0.5)
ONE_LINE = 0.6  # ...and stand on one line, sharing this share of the taller one's rows (numbers: 0.49-1, median 0.8;
# those 5s: 0.17-0.35)
MAX_PARTS = 200  # more pieces of ink (30 digits, each broken in 6) are a texture or a page of text, not a number
CLOSE = 0.25  # pieces of one digit side by side (a 0's two arcs) come within this share of its height of each other
FACING = 0.1  # ... and face each other: their gap, row by row, widens by this share of the height away from its least
DOUBT = 0.25  # ... and the model's doubt of them as one digit is at most this share of its doubt of them as two
NARROW = 0.35  # digits narrower than this share of their height do not make several side by side on their own: a 1
# looks like a line of squared paper beside a digit, or an open 4's loose first stroke (0.27-0.29 in MNIST's digits
# scaled up)...
AS_TALL = 0.8  # ...but one beside a wider digit, from this share of its height to its inverse, is a 1 (the 1s of
# numbers beside a digit: 1 % under 0.78, 5 % under 0.84; an open 4's first stroke apart 0.74, its stem apart 1.3)


class NotANumberError(NoInkError):
    """The image holds ink, but not something that reads as one number (a texture, a page of text, a rule)."""


@dataclass(frozen=True)
class DigitBox:
    """One digit: its pixel box in the input (half-open, like slices) and its 28x28 rendering."""

    x0: int
    y0: int
    x1: int
    y1: int
    image: np.ndarray


@dataclass
class _Group:
    """Components believed to form one digit, with their joint box and the rows each of them spans."""

    ids: list[int]
    box: np.ndarray  # x0, y0, x1, y1 in ink-map pixels
    spans: list[tuple[int, int]]  # (y0, y1) of each component

    @property
    def width(self) -> int:
        return int(self.box[2] - self.box[0])

    @property
    def height(self) -> int:
        return int(self.box[3] - self.box[1])

    @property
    def rows(self) -> int:
        """How many rows its ink fills: two bits of a broken stroke, one above the other, span a digit's height but
        fill few of its rows. Three pieces or more (a dashed 1) count their whole box: a drawn stroke."""
        if len(self.spans) > 2:
            return self.height
        covered, end = 0, -1
        for y0, y1 in sorted(self.spans):
            covered += max(y1 - max(y0, end), 0)
            end = max(end, y1)
        return covered


Scorer = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) renderings -> (N, classes) probabilities


def segment_digits(gray: np.ndarray, score: Scorer | None = None, size: tuple[int, int] | None = None,
                   one: int | None = None) -> list[DigitBox]:
    """Digits of a handwritten number, ordered left to right, their boxes in the pixels of `gray`, or of an image of
    (height, width) `size` that `gray` was downscaled from.

    A rule drawn under the number is erased first (`find_underlines`). With `score` (a classifier's probabilities),
    touching digits are cut where the model reads them best, and a wide group is only split when its pieces,
    together, are more convincing digits than the whole: a wide 0 stays one digit, a touching pair is cut; and a rule
    that may be part of a digit is only erased when that makes the digits more convincing. `one`, the class of
    `score` that is the digit 1 if it has one: a group the model would cut into nothing but 1s stays whole (the
    strokes of a W each read as a sure 1). Raises NoInkError when there is no ink, NotANumberError when the ink is not
    a number (too many pieces, only lines).
    """
    gray = np.asarray(gray)
    ink = find_ink(gray)
    ink, components, doubtful = _cleaned(ink, connected_components(ink))
    pieces = _cut(*_undoubted(ink, components, doubtful), score, one)
    if doubtful.any() and score is not None:
        # A rule under the digits, or the touching bases of two 2s, or a 2's base drawn apart: the reading whose
        # digits are the more convincing on average wins (the least convincing one would favour one wide digit).
        # With the rule, touching digits are cut at even widths: cut where the model reads them best, stretches of a
        # rule with a digit's foot over them read as confident 2s, and won (underlined numbers 94.5 -> 93.6 %).
        kept = _cut(ink, components, score, one, cut_by_model=False)
        if _mean_confidence(kept, score) > _mean_confidence(pieces, score) - RULE_DOUBT:
            pieces = kept
    shape = size or gray.shape[:2]
    scale = np.array(shape) / ink.shape
    return [_digit_box(box, image, scale, shape) for box, image in pieces]


def digits_side_by_side(ink: np.ndarray, components: Components) -> int:
    """How many digits `find_ink`'s ink (with its components) clearly holds side by side, as `segment_digits` finds
    them without a model; 1 where that is not clear. A network reads one digit, and answers a number with one of its
    digits, often confidently: `predict` asks this to say so instead.

    Only pieces at least MAJOR as heavy as the heaviest count (not a stretch of a grid's line left beside a digit),
    and two neighbours are told apart only when they stand side by side (not one above the other, as a 5's loose bar),
    together are wider than tall (not the arcs of a broken 0) or one is a 1 beside the other (`_one_beside`), and
    share no column, or a sliver of one where they stand on one line (crowded writing, in which neighbours overlap a
    little); of the digits so told apart, two must be wider than NARROW, or one of them a 1 beside the other. Touching
    digits are not split here, which without a model would split a wide 0 too: a number whose digits all touch counts
    1, as does ink that is no number (too many pieces, only lines)."""
    try:
        # One piece of ink, as nearly every digit is (4,982 of MNIST's first 5,000 test digits): no more work.
        if len(components) < 2 or len(_parts(components, ink.shape)) < 2:
            return 1
        ink, components = _undoubted(*_cleaned(ink, components))
        components = connected_components(ink) if components is None else components
        groups = _groups(ink, components, None)
    except NoInkError:  # NotANumberError too
        return 1
    mass = np.array([components.mass[np.array(g.ids) - 1].sum() for g in groups])
    digits = sorted((g for g, m in zip(groups, mass) if m >= MAJOR * mass.max()), key=lambda g: int(g.box[0]))
    runs: list[_Group] = []
    for digit in digits:
        if runs and not _apart(runs[-1], digit):
            runs[-1] = _join(runs[-1], digit)
        else:
            runs.append(digit)
    wide = [_wide(run) for run in runs]
    ones = [not wide[i] and any(_one_beside(runs[i], runs[j]) for j in (i - 1, i + 1) if 0 <= j < len(runs))
            for i in range(len(runs))]
    return len(digits) if sum(wide) + sum(ones) > 1 else 1


def _wide(group: _Group) -> bool:
    """Wider than NARROW: no 1 (nor a line beside a digit, nor a stroke of one standing apart)."""
    return group.width > NARROW * group.height


def _one_beside(a: _Group, b: _Group) -> bool:
    """Whether one of two neighbours is a 1 beside the other, a wider digit: a narrow stroke of one piece of ink, from
    AS_TALL to 1 / AS_TALL of the digit's height, on one line with it. A line of squared paper left beside a digit is
    too light to count (MAJOR); an open 4's first stroke standing apart is shorter than the rest of the 4, its stem
    standing apart (missing the bar) taller; a dotted line is several pieces."""
    narrow, digit = (a, b) if _wide(b) else (b, a)
    return (not _wide(narrow) and _wide(digit) and len(narrow.ids) == 1 and _on_one_line(narrow, digit)
            and AS_TALL <= narrow.height / digit.height <= 1 / AS_TALL)


def _apart(left: _Group, right: _Group) -> bool:
    """Whether `right`, which starts no further left, is another digit than `left`: they stand side by side (not one
    above the other), together are wider than one digit or one of them is a 1 beside the other (`_one_beside`), and
    share no column, or only a SLIVER of the narrower one's where they stand on one line (`_on_one_line`)."""
    if _stacked(left, right) or (_digit_shaped(_join(left, right)) and not _one_beside(left, right)):
        return False
    return right.box[0] >= left.box[2] or (_x_overlap(left, right) <= SLIVER and _on_one_line(left, right))


def _on_one_line(a: _Group, b: _Group) -> bool:
    """Whether they share at least ONE_LINE of the taller one's rows, as neighbouring digits do, each about as tall as
    the other and on the same baseline. The pieces of one digit that share columns do not: a 5's bar drawn apart from
    its body, slanted over it, is shorter and stands higher (MNIST's training 5s 12083, 34841, 34843, 41949)."""
    return _shared_rows(a, b) >= ONE_LINE * max(a.height, b.height)


Piece = tuple[np.ndarray, np.ndarray]  # box in ink-map pixels, 28x28 rendering


def _cleaned(ink: np.ndarray, components: Components) -> tuple[np.ndarray, Components | None, np.ndarray]:
    """The ink without a frame drawn around the number or one of its digits, nor a rule surely under it; its
    components (None where erasing changed them), and the rule in doubt, which may be part of a digit."""
    kept = np.zeros(len(components), bool)
    kept[_parts(components, ink.shape)] = True  # a texture or a page of text is refused before any more work
    if (framed := frames(components, kept)).any():  # a box or a circle drawn around the number, or a digit of it
        ink = np.where(np.concatenate([[False], framed])[components.labels], 0, ink)
        components = connected_components(ink)
    sure, doubtful = find_underlines(ink, components)
    if sure.any():  # never part of a digit
        return np.where(sure, 0, ink), None, doubtful
    return ink, components, doubtful


def _undoubted(ink: np.ndarray, components: Components | None,
               doubtful: np.ndarray) -> tuple[np.ndarray, Components | None]:
    """The ink without the rule in doubt, and its components (None where erasing changed them): what is read without
    a model to ask whether the rule is a digit's stroke, and with one set against the ink with it."""
    return (np.where(doubtful, 0, ink), None) if doubtful.any() else (ink, components)


def _parts(components: Components, shape: tuple[int, ...]) -> np.ndarray:
    """The indices of the components that are not dust; NoInkError if none, NotANumberError if too many."""
    keep = strokes(components, shape)
    # Specks are small against the image, so on a big page the digits of a small number are too: one read as dust
    # is a digit dropped from a confident answer. Pieces half as tall as the tallest kept are not dust.
    heights = components.boxes[:, 3] - components.boxes[:, 1]
    parts = np.nonzero(keep | (heights >= FRAGMENT * heights[keep].max()))[0]
    if len(parts) > MAX_PARTS:  # before the passes that follow, whose work grows faster than the count
        raise NotANumberError(f"not a number: {len(parts)} separate pieces of ink (a number has at most {MAX_PARTS})")
    return parts


def _cut(ink: np.ndarray, components: Components | None, score: Scorer | None, one: int | None = None,
         cut_by_model: bool = True) -> list[Piece]:
    """The digits of an ink map, left to right; `components` are the ink's, or None to find them."""
    components = connected_components(ink) if components is None else components
    groups = _groups(ink, components, score)
    pieces = [piece for group in groups
              for piece in _split_touching(group, groups, ink, components.labels, score, one, cut_by_model)]
    return sorted(pieces, key=lambda piece: piece[0][0] + piece[0][2])


def _groups(ink: np.ndarray, components: Components, score: Scorer | None) -> list[_Group]:
    """The ink's components gathered into digits, touching digits not yet split: specks dropped, the pieces of one
    digit joined, rules left out."""
    parts = _parts(components, ink.shape)
    boxes = components.boxes
    if _flat(boxes[parts]).all():  # an "=" too: its lines, joined as one above the other, would pass for a digit
        raise NotANumberError("not a number: only straight lines")
    groups = [_Group([int(i) + 1], boxes[i].copy(), [(int(boxes[i, 1]), int(boxes[i, 3]))]) for i in parts]
    height = _digit_height(groups)
    groups = _absorb_fragments(_merge_overlapping(groups), height)
    # Far flatter than any digit, even after joining what stacks above or beside it: a rule or an underline.
    flat = _flat(np.array([g.box for g in groups]).reshape(-1, 4))
    groups = [g for g, line in zip(groups, flat) if not line]
    if not groups:
        raise NotANumberError("not a number: only straight lines")
    return _join_broken(groups, ink, components.labels, score)


def only_lines(ink: np.ndarray, components: Components) -> bool:
    """Whether `find_ink`'s ink (with its components) is nothing but straight lines, each LINE_ASPECT times as wide as
    tall, less the dust: a dash, an "=", no digit, whatever a network makes of it (an "=" read as a 2 at 85 %)."""
    flat = _flat(components.boxes)
    if not flat.any():  # nearly every digit: no more work
        return False
    try:
        return bool(flat[_parts(components, ink.shape)].all())
    except NoInkError:  # NotANumberError too: more pieces than a number has
        return False


def _flat(boxes: np.ndarray) -> np.ndarray:
    """Which boxes (x0, y0, x1, y1) are LINE_ASPECT times as wide as tall: a line's, no digit's."""
    return boxes[:, 2] - boxes[:, 0] >= LINE_ASPECT * (boxes[:, 3] - boxes[:, 1])


def _mean_confidence(pieces: list[Piece], score: Scorer) -> float:
    return float(score(np.stack([image for _, image in pieces])).max(1).mean())


def _digit_height(groups: list[_Group]) -> float:
    """Typical digit height: the median over components at least half as tall as the tallest.

    The tallest alone would be fooled by one big digit, a plain median by the
    many small pieces of a broken stroke.
    """
    heights = np.array([g.height for g in groups])
    return float(np.median(heights[heights >= heights.max() / 2]))


def _join(a: _Group, b: _Group) -> _Group:
    box = np.concatenate([np.minimum(a.box[:2], b.box[:2]), np.maximum(a.box[2:], b.box[2:])])
    return _Group(a.ids + b.ids, box, a.spans + b.spans)


def _x_overlap(a: _Group, b: _Group) -> float:
    """Horizontal overlap as a share of the narrower box (1 = one is above the other)."""
    overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    return overlap / max(min(a.width, b.width), 1)


def _distance(a: _Group, b: _Group) -> tuple[float, float]:
    """Horizontal gap between boxes (0 when they share columns), then distance of centres."""
    gap = max(b.box[0] - a.box[2], a.box[0] - b.box[2], 0)
    return gap, float(np.hypot(*((a.box[:2] + a.box[2:]) - (b.box[:2] + b.box[2:])) / 2))


def _merge_overlapping(groups: list[_Group]) -> list[_Group]:
    """Join groups stacked above each other: parts of one digit (a 5's bar, a broken 1).

    Neighbours in slanted writing overlap a little, hence a strong overlap;
    smaller pieces that share fewer columns are left to `_absorb_fragments`.
    Only boxes that share columns can join, and a joined box stays within
    the run of column-sharing boxes its parts came from: sorted by x, each
    such run (a digit, or a few slanted neighbours) is settled on its own.
    """
    merged: list[_Group] = []
    run: list[_Group] = []
    end = 0
    for group in sorted(groups, key=lambda g: int(g.box[0])):
        if run and group.box[0] >= end:  # shares no column with the run so far
            merged += _merge_run(run)
            run = []
        run.append(group)
        end = max(end, int(group.box[2]))
    return merged + _merge_run(run)


def _merge_run(run: list[_Group]) -> list[_Group]:
    """Join the strongly overlapping groups of one run, until no two overlap strongly."""
    kept: list[_Group] = []
    for group in run:
        # The grown group may now overlap one kept before: take it in too, until none does.
        while (j := next((j for j, k in enumerate(kept) if _x_overlap(group, k) >= STRONG_OVERLAP), None)) is not None:
            group = _join(kept.pop(j), group)
        kept.append(group)
    return kept


def _absorb_fragments(groups: list[_Group], height: float) -> list[_Group]:
    """Join each piece too small to be a digit to its horizontally nearest neighbour."""
    while len(groups) > 1:
        small = [g for g in groups if g.rows < FRAGMENT * height]  # digits are never flat: a 5's loose bar is
        if not small:
            break
        piece = min(small, key=lambda g: max(g.height, g.width))
        others = [g for g in groups if g is not piece]
        nearest = min(others, key=lambda o: _distance(piece, o))
        groups = [g for g in others if g is not nearest] + [_join(nearest, piece)]
    return groups


def _join_broken(groups: list[_Group], ink: np.ndarray, labels: np.ndarray, score: Scorer | None) -> list[_Group]:
    """Join neighbours that are one digit's pieces, broken by a lifted pen or a gap in the ink (a 7's stem cut through,
    a 4 drawn in two strokes that miss): too far apart in x for `_merge_overlapping`, too tall for `_absorb_fragments`.
    Only where the two together are no wider than a digit; then when one stands above the other (a number is one
    line of digits), or, with `score`, when they share columns and the model is surer of them as one digit than of
    both as two: neighbours in slanted or crowded writing share columns too, and there the two are the surer reading.
    Two neighbours side by side that share no column (a 0's two arcs) are joined only when they are close and face
    each other (`_facing`) and the model clearly reads them as one digit (`_join_gain`): a 1 beside a digit often
    reads as a convincing digit with it."""
    scored: dict[frozenset[int], np.ndarray] = {}  # the model's probabilities for the groups of earlier rounds
    while True:
        order = sorted(groups, key=lambda g: int(g.box[0]))
        pairs = [(a, b) for a, b in zip(order, order[1:]) if _digit_shaped(_join(a, b))]
        stacked = np.array([_stacked(a, b) for a, b in pairs], bool)
        sharing = np.array([b.box[0] < a.box[2] for a, b in pairs], bool) & ~stacked
        gain = np.where(stacked, np.inf, -np.inf)
        # Without a model nothing side by side is joined, so there is no need to look for pieces that face each other.
        facing = [score is not None and not s and _facing(a, b, labels) for (a, b), s in zip(pairs, stacked | sharing)]
        asked = sharing | np.array(facing, bool)
        if score is not None and asked.any():
            surer, clearly = _join_gain([pair for pair, s in zip(pairs, asked) if s], ink, labels, score, scored)
            gain[asked] = np.where(clearly | sharing[asked], surer, -np.inf)
        taken: set[int] = set()
        for k in np.argsort(-gain):  # the surest joins first; a group joins once a round
            a, b = pairs[k]
            if gain[k] > 0 and id(a) not in taken and id(b) not in taken:
                taken |= {id(a), id(b)}
                groups = [g for g in groups if g is not a and g is not b] + [_join(a, b)]
        if not taken:
            return groups


def _join_gain(pairs: list[tuple[_Group, _Group]], ink: np.ndarray, labels: np.ndarray, score: Scorer,
               scored: dict[frozenset[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """How much surer the model is of each pair as one digit than of both its digits (the product, as for a split),
    and whether clearly so: it reads the two as a digit that neither piece is read as (a 1 beside a 4 reads as the 4,
    the 1 overlooked), with at most DOUBT of its doubt of them as two digits.
    The model's probabilities for each group are kept in `scored`, by its components, and not asked again: a group
    stands in a pair with each neighbour, and a round's joins leave most pairs of a crowded line as they were."""
    trios = [(a, b, _join(a, b)) for a, b in pairs]
    new = {frozenset(g.ids): g for trio in trios for g in trio if frozenset(g.ids) not in scored}
    if new:
        scored.update(zip(new, score(np.stack([_render(g, ink, labels) for g in new.values()]))))
    probabilities = np.array([[scored[frozenset(g.ids)] for g in trio] for trio in trios])  # pair, group, class
    (first, second, whole), (one, other, both) = probabilities.max(2).T, probabilities.argmax(2).T
    split = first * second
    return whole - split, (both != one) & (both != other) & (1 - whole <= DOUBT * (1 - split))


def _facing(left: _Group, right: _Group, labels: np.ndarray) -> bool:
    """Whether `right`, which starts no further left, and `left` face each other as the two ends of a broken stroke
    do: in some row within CLOSE of the height of each other, the gap between them, row by row, widening by FACING of
    the height away from there (a 0's arcs, a 4's bar and its stem), and both open strokes. Two parallel strokes side
    by side (a 1 beside a 1, or beside a 4's stem) keep their gap, and a piece that encloses paper (a 0, a 6's loop) is
    a finished digit: the model reads a 0 or a 6 with the 7 or 1 beside it as a convincing 9."""
    joint = _join(left, right)
    x0, y0, x1, y1 = (int(v) for v in joint.box)
    window = labels[y0:y1, x0:x1]
    left_ink, right_ink = np.isin(window, left.ids), np.isin(window, right.ids)
    rows = left_ink.any(axis=1) & right_ink.any(axis=1)
    if not rows.any():
        return False
    last_left = window.shape[1] - np.argmax(left_ink[rows, ::-1], axis=1)  # one past each row's rightmost ink
    gaps = np.argmax(right_ink[rows], axis=1) - last_left
    near = gaps.min() <= CLOSE * joint.height and np.median(gaps) - gaps.min() >= FACING * joint.height
    return bool(near) and not _closed(left, labels) and not _closed(right, labels)


def _closed(group: _Group, labels: np.ndarray) -> bool:
    """Whether the group's ink encloses paper: paper in its box, not joined to the paper around it."""
    x0, y0, x1, y1 = (int(v) for v in group.box)
    paper = np.pad(~np.isin(labels[y0:y1, x0:x1], group.ids), 1, constant_values=True)
    return len(connected_components(paper)) > 1


def _digit_shaped(group: _Group) -> bool:
    """No wider than tall: one digit, not a run of touching ones (which the model may read as one wide digit)."""
    return group.width <= group.height


def _stacked(a: _Group, b: _Group) -> bool:
    """Whether one stands above the other: they share at most STACKED of the shorter one's rows."""
    return _shared_rows(a, b) <= STACKED * min(a.height, b.height)


def _shared_rows(a: _Group, b: _Group) -> int:
    """How many rows both boxes span (negative: the gap between them)."""
    return int(min(a.box[3], b.box[3]) - max(a.box[1], b.box[1]))


def _render(group: _Group, ink: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The group's own ink in MNIST's layout."""
    return render_digit(_own_ink(group, ink, labels))


def _own_ink(group: _Group, ink: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The ink within the group's box that belongs to its components (not a neighbour's stroke reaching in)."""
    x0, y0, x1, y1 = (int(v) for v in group.box)
    return np.where(np.isin(labels[y0:y1, x0:x1], group.ids), ink[y0:y1, x0:x1], 0)


def _split_touching(
    group: _Group, groups: list[_Group], ink: np.ndarray, labels: np.ndarray, score: Scorer | None = None,
    one: int | None = None, cut_by_model: bool = True
) -> list[Piece]:
    """Split a group wider than tall and much wider than a digit along its thinnest seams.

    The expected width comes from the other groups when some look like single
    digits, else from this group's height.  Each cut is a top-to-bottom path
    of least ink; a path rather than a column, because slanted digits touch
    diagonally. Without the model, or without `cut_by_model`, the cuts lie near
    where an even split would put them; with it, where it reads the digits best
    (`_best_cuts`).
    """
    x0, y0, x1, y1 = (int(v) for v in group.box)
    digit = _own_ink(group, ink, labels)
    singles = [g.width for g in groups if g.width <= g.height]
    expected = max(np.median(singles) if singles else 0, 0.6 * group.height)
    wide = group.width > group.height and group.width >= PAIR_WIDTH * expected  # some digits are as wide as tall
    count = int(round(group.width / expected)) if wide else 1
    if wide and score is not None and cut_by_model:  # []: no cut leaves ink on each side, or only 1s: one piece
        pieces = (_best_cuts(digit, expected, count, (x0, y0), score, one)
                  or [(np.array(group.box), render_digit(digit))])
    else:
        seams = [_seam(digit, k * group.width / count, group.width / count / 3) for k in range(1, count)]
        seams = [np.zeros(group.height, int), *seams, np.full(group.height, group.width)]
        pieces = [p for left, right in zip(seams[:-1], seams[1:]) if (p := _between(digit, left, right, (x0, y0)))]
    if score is not None and len(pieces) > 1:
        whole = render_digit(digit)
        confidence = score(np.stack([whole] + [image for _, image in pieces])).max(1)
        if confidence[0] >= np.prod(confidence[1:]):
            return [(np.array([x0, y0, x1, y1]), whole)]
    return pieces


def _between(digit: np.ndarray, left: np.ndarray, right: np.ndarray, origin: tuple[int, int]) -> Piece | None:
    """The ink between two seams (columns, row by row), its box moved to `origin`; None if there is none. Only the
    columns the seams span are masked: `_best_cuts` asks for hundreds of narrow pieces of a wide group."""
    first, end = int(left.min()), int(right.max())
    columns = np.arange(first, end)
    piece = np.where((columns >= left[:, None]) & (columns < right[:, None]), digit[:, first:end], 0)
    rows, cols = np.nonzero(piece.any(axis=1))[0], np.nonzero(piece.any(axis=0))[0] + first
    if not len(rows):
        return None
    x0, y0 = origin
    return np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1]), render_digit(piece)


def _best_cuts(digit: np.ndarray, expected: float, count: int, origin: tuple[int, int], score: Scorer,
               one: int | None = None) -> list[Piece]:
    """Touching digits cut where the model reads them best: seams at every CUT_STEP of a digit's expected width, the
    ink between any two of them CUT_WIDTHS wide a candidate digit, and of the ways to cut the group into `count` - 1
    to `count` + 2 digits, the one whose digits the model is surest of on average (mean log-probability; a product
    would favour too few digits, a confident 7 taking in the 3 that touches it). Even cuts go through digits of
    unlike widths, and where digits overlap the count from the width alone is often one off."""
    height, width = digit.shape
    step = CUT_STEP * expected
    at = np.concatenate([[0.0], np.arange(step, width - step / 2, step), [width]])
    seams = [np.zeros(height, int), *(_seam(digit, c, step / 2) for c in at[1:-1]), np.full(height, width)]
    low, high = (share * expected for share in CUT_WIDTHS)
    spans = [(i, j) for i in range(len(at)) for j in range(i + 1, len(at)) if low <= at[j] - at[i] <= high]
    pieces = {(i, j): p for i, j in spans if (p := _between(digit, seams[i], seams[j], origin))}
    if not pieces:
        return []
    probs = score(np.stack([image for _, image in pieces.values()]))
    sure, read = np.log(probs.max(1)), dict(zip(pieces, probs.argmax(1)))
    # best[n, j]: the largest sum of log-probabilities of n digits from the left edge to seam j; came: where the last
    # of them began.
    most = count + 2
    best, came = np.full((most + 1, len(at)), -np.inf), np.zeros((most + 1, len(at)), int)
    best[0, 0] = 0
    for n in range(1, most + 1):
        for (i, j), s in zip(pieces, sure):
            if best[n - 1, i] + s > best[n, j]:
                best[n, j], came[n, j] = best[n - 1, i] + s, i
    counts = [n for n in range(max(count - 1, 1), most + 1) if np.isfinite(best[n, -1])]
    if not counts:
        return []
    n = max(counts, key=lambda n: best[n, -1] / n)
    chosen, j = [], len(at) - 1
    for n in range(n, 0, -1):
        chosen.append((came[n, j], j))
        j = came[n, j]
    if one is not None and all(read[span] == one for span in chosen):
        # Touching 1s are too narrow to make a group this wide: these are the strokes of a W or a zigzag, each a
        # confident 1 on its own.
        return []
    return [pieces[span] for span in chosen[::-1]]


def _seam(ink: np.ndarray, centre: float, reach: float) -> np.ndarray:
    """Column, per row, of the top-to-bottom path through least ink.

    The path moves at most one column a row and stays within `reach` of
    `centre`; dynamic programming, one row at a time.
    """
    lo, hi = max(int(centre - reach), 0), min(int(np.ceil(centre + reach)) + 1, ink.shape[1])
    band = ink[:, lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - centre) / reach  # straight and central on ties
    cost, steps = band[0].copy(), np.zeros(band.shape, np.int8)
    for row in range(1, len(band)):
        options = np.stack([np.r_[np.inf, cost[:-1]], cost, np.r_[cost[1:], np.inf]])
        choice = options.argmin(axis=0)
        steps[row] = choice - 1
        cost = band[row] + options[choice, np.arange(len(cost))] + 1e-3 * (choice != 1)
    path = np.empty(len(band), int)
    path[-1] = int(cost.argmin())
    for row in range(len(band) - 1, 0, -1):
        path[row - 1] = path[row] + steps[row, path[row]]
    return path + lo


def _digit_box(box: np.ndarray, image: np.ndarray, scale: np.ndarray, shape: tuple[int, ...]) -> DigitBox:
    """Map a box from ink-map pixels back to the input's pixels."""
    sy, sx = scale
    return DigitBox(
        x0=int(np.floor(box[0] * sx)),
        y0=int(np.floor(box[1] * sy)),
        x1=min(int(np.ceil(box[2] * sx)), shape[1]),
        y1=min(int(np.ceil(box[3] * sy)), shape[0]),
        image=image,
    )
