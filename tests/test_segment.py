"""Tests for convnet.segment and the connected components it relies on."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw

from convnet.components import connected_components
from convnet.data import load_dataset
from convnet.infer import Recognizer
from convnet.preprocess import NoInkError, find_ink, find_underlines, render_digit, to_mnist
from convnet.segment import (
    MAX_PARTS, STRONG_OVERLAP, DigitBox, NotANumberError, _Group, _merge_overlapping, _x_overlap, digits_side_by_side,
    segment_digits
)

# Shared digit drawing helpers (tests/ is on sys.path under pytest's default import mode).
from test_preprocess import correlation, draw_digit, draw_strokes, notebook, reference, slanted_bar_five, to_u8

Layout = list[tuple[str, int, int, int, float]]  # digit, height, top, gap before, stroke
Box = tuple[int, int, int, int]  # x0, y0, x1, y1, half-open


def compose(
    layout: Layout, canvas_height: int = 400, aspect: float = 0.65
) -> tuple[np.ndarray, list[Box], list[np.ndarray]]:
    """Draw a number; also return each digit's true ink box and its drawing alone."""
    width = 60 + sum(gap + round(aspect * h) for _, h, _, gap, _ in layout)
    number = Image.new("L", (width, canvas_height), 0)
    boxes, alone = [], []
    x = 30
    for digit, height, top, gap, stroke in layout:
        x += gap
        box = (x, top, round(aspect * height), height)
        single = Image.new("L", number.size, 0)
        draw_strokes(ImageDraw.Draw(single), digit, box, stroke)
        draw_strokes(ImageDraw.Draw(number), digit, box, stroke)
        ink = np.asarray(single, np.float32) / 255
        rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
        boxes.append((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
        alone.append(ink)
        x += box[2]
    return np.asarray(number, np.float32) / 255, boxes, alone


def iou(found: DigitBox, truth: Box) -> float:
    """Intersection over union of two boxes."""
    box = (found.x0, found.y0, found.x1, found.y1)
    width = max(0, min(box[2], truth[2]) - max(box[0], truth[0]))
    inter = width * max(0, min(box[3], truth[3]) - max(box[1], truth[1]))
    return inter / (area(box) + area(truth) - inter)


def area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def assert_segmented(found: list[DigitBox], boxes: list[Box], alone: list[np.ndarray], min_iou: float = 0.85) -> None:
    found_boxes = [(d.x0, d.y0, d.x1, d.y1) for d in found]
    assert len(found) == len(boxes), f"found {found_boxes}, expected {boxes}"
    for i, (digit, truth, ink) in enumerate(zip(found, boxes, alone)):
        assert iou(digit, truth) > min_iou, f"digit {i}: box {found_boxes[i]}, expected {truth}"
        assert digit.image.shape == (28, 28) and digit.image.dtype == np.float32
        similarity = correlation(digit.image, reference(ink))
        assert similarity > 0.8, f"digit {i}: correlation {similarity:.2f} with the digit drawn alone"


# ------------------------------------------------------- connected components


def flood_labels(mask: np.ndarray) -> np.ndarray:
    """Plain breadth-first 8-connected labelling, the oracle for the fast one."""
    labels = np.zeros(mask.shape, int)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for ny in range(max(y - 1, 0), min(y + 2, mask.shape[0])):
                for nx in range(max(x - 1, 0), min(x + 2, mask.shape[1])):
                    if mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = count
                        queue.append((ny, nx))
    return labels


@pytest.mark.parametrize("density", [0.1, 0.35, 0.5, 0.7])
def test_components_match_flood_fill(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    ink = np.where(rng.random((37, 53)) < density, rng.random((37, 53)), 0).astype(np.float32)
    found = connected_components(ink)
    expected = flood_labels(ink > 0)
    assert len(found) == expected.max()
    # Same partition: each found label maps to exactly one expected label and back.
    pairs = np.unique(np.stack([found.labels[ink > 0], expected[ink > 0]]), axis=1)
    assert pairs.shape[1] == len(found) and (found.labels[ink == 0] == 0).all()
    for label in range(1, len(found) + 1):
        ys, xs = np.nonzero(found.labels == label)
        assert list(found.boxes[label - 1]) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert found.mass[label - 1] == pytest.approx(ink[found.labels == label].sum(), rel=1e-5)


def test_components_of_a_spiral() -> None:
    """A long winding component needs many hooking rounds; it must stay one."""
    spiral = np.zeros((41, 41), np.float32)
    top, left, bottom, right = 0, 0, 40, 40
    while top <= bottom and left <= right:
        spiral[top, left : right + 1] = spiral[top : bottom + 1, right] = 1
        spiral[bottom, left : right + 1] = 1
        spiral[top + 2 : bottom + 1, left] = 1
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        spiral[top - 1, left - 2] = 0
    assert len(connected_components(spiral)) == flood_labels(spiral > 0).max()


# ------------------------------------------------------------ segmentation


VARIED: Layout = [
    ("2", 200, 100, 0, 20),
    ("0", 150, 160, 25, 14),
    ("7", 230, 60, 70, 24),
    ("1", 190, 110, -15, 18),  # close to the 7, slanted boxes overlap
    ("4", 170, 140, 35, 26),
    ("3", 210, 90, 15, 16),
]


def test_varied_spacing_sizes_and_baselines() -> None:
    number, boxes, alone = compose(VARIED)
    assert_segmented(segment_digits(1 - number), boxes, alone)


def test_polarity_and_photo_conditions_agree() -> None:
    number, boxes, alone = compose(VARIED[:4])
    rng = np.random.default_rng(0)
    light = np.linspace(0.55, 1.0, number.shape[1])[None, :]
    photo = np.clip(light * (0.9 - 0.6 * number) + rng.normal(0, 0.03, number.shape), 0, 1)
    for image in (number, photo):
        assert_segmented(segment_digits(image), boxes, alone)


def test_a_number_on_ruled_paper_is_cut_as_on_blank_paper() -> None:
    number, boxes, alone = compose(VARIED[:4])
    pad = 80  # the page goes on beyond the number
    page = np.pad(number, ((0, 0), (pad, pad)))
    shifted = [(x0 + pad, y0, x1 + pad, y1) for x0, y0, x1, y1 in boxes]
    alone = [np.pad(a, ((0, 0), (pad, pad))) for a in alone]
    assert_segmented(segment_digits(notebook(page, "ruled", 90)), shifted, alone)


@pytest.mark.parametrize("pair", ["00", "47", "23", "70"])
def test_touching_pair_is_split(pair: str) -> None:
    for overlap in range(0, 60, 2):  # slide the second digit left until the two touch
        number, boxes, alone = compose([(pair[0], 200, 100, 0, 20), (pair[1], 200, 100, -overlap, 20)])
        if len(connected_components(number)) == 1:
            break
    assert len(connected_components(number)) == 1, "the digits never touched"
    assert_segmented(segment_digits(number), boxes, alone, min_iou=0.7)


def test_wide_single_digit_is_not_split() -> None:
    """A round 0 almost as wide as tall, among narrow 1s, is still one digit."""
    layout = [("1", 200, 100, 0, 18), ("0", 200, 100, 20, 18), ("1", 200, 100, 20, 18)]
    number, boxes, alone = compose(layout, aspect=1.05)
    zero = boxes[1]
    assert 0.9 < (zero[2] - zero[0]) / (zero[3] - zero[1]) < 1
    assert_segmented(segment_digits(number), boxes, alone)


def test_broken_five_and_dashed_one_are_one_digit_each() -> None:
    number, boxes, alone = compose([("5b", 200, 100, 0, 18), ("3", 200, 100, 30, 18), ("1", 200, 100, 30, 18)])
    gaps = (np.arange(number.shape[0]) // 30) % 3 == 2  # cut the 1 into dashes
    number[gaps, boxes[2][0] : boxes[2][2]] = 0
    alone[2][gaps] = 0
    assert len(connected_components(number)) >= 6
    assert_segmented(segment_digits(number), boxes, alone)


def test_one_broken_in_two_tall_pieces_is_merged() -> None:
    """Both halves are too tall to be fragments; they are one digit because they share columns."""
    number, boxes, alone = compose([("2", 200, 100, 0, 18), ("1", 250, 70, 30, 18), ("3", 200, 100, 30, 18)])
    gap = slice(190, 200)
    number[gap, boxes[1][0] : boxes[1][2]] = alone[1][gap] = 0
    assert len(connected_components(number)) == 4
    assert_segmented(segment_digits(number), boxes, alone)


def test_piece_beside_a_digit_is_absorbed() -> None:
    """The end of a 7's bar broken off: no column shared with the rest, yet part of the 7."""
    number, boxes, alone = compose([("2", 200, 100, 0, 18), ("7", 200, 100, 40, 18)])
    cut = slice(boxes[1][0] + 35, boxes[1][0] + 45)
    number[:, cut] = alone[1][:, cut] = 0
    assert len(connected_components(number)) == 3
    assert_segmented(segment_digits(number), boxes, alone)


def test_two_short_pieces_one_above_the_other_are_not_a_digit() -> None:
    """Two bits of a broken stroke stacked beside a 4 span over half a digit's height, but fill under half of its
    rows: they join the 4 (they read as a 1 of their own)."""
    number, boxes, alone = compose([("2", 200, 100, 0, 18), ("4", 200, 100, 60, 18)])
    x = boxes[1][0] - 25
    number[150:185, x : x + 14] = number[235:270, x : x + 14] = 1
    assert len(connected_components(number)) == 4
    found = segment_digits(number)
    assert len(found) == 2 and found[1].x0 <= x and iou(found[0], boxes[0]) > 0.85


def test_a_dashed_one_is_still_a_digit() -> None:
    """Five short dashes, with gaps longer than the dashes, fill under half of their rows but are one drawn stroke."""
    number, boxes, alone = compose([("4", 200, 100, 0, 18)])
    number = np.pad(number, ((0, 0), (0, 120)))
    dashes = np.zeros_like(number)
    for y in range(100, 300, 44):  # dashes of 18 px, gaps of 26
        dashes[y : y + 18, 200:216] = 1
    found = segment_digits(np.maximum(number, dashes))
    assert len(found) == 2 and iou(found[0], boxes[0]) > 0.85
    assert (found[1].x0, found[1].y0, found[1].x1, found[1].y1) == (200, 100, 216, 294)


def test_overhanging_neighbours_stay_apart() -> None:
    """A 1 tucked under the bar of a 7 shares some of its columns but is its own digit."""
    number, boxes, alone = compose([("7", 200, 60, 0, 18), ("1", 150, 140, -45, 14)])
    overlap = (boxes[0][2] - boxes[1][0]) / (boxes[1][2] - boxes[1][0])
    assert len(connected_components(number)) == 2 and 0.3 < overlap < STRONG_OVERLAP
    assert_segmented(segment_digits(number), boxes, alone)


def test_specks_are_not_digits() -> None:
    number, boxes, alone = compose(VARIED[:3])
    number[10:13, 10:13] = 1
    number[380:383, 300:302] = 1
    assert_segmented(segment_digits(number), boxes, alone)


def test_boxes_are_in_input_pixels_for_big_images() -> None:
    number, boxes, alone = compose(VARIED[:5])
    big = np.asarray(Image.fromarray(number).resize((number.shape[1] * 3, number.shape[0] * 3), Image.BILINEAR))
    found = segment_digits(big)
    scaled = [tuple(3 * v for v in box) for box in boxes]
    assert_segmented(found, scaled, alone)


def test_single_digit_matches_to_mnist() -> None:
    number, boxes, alone = compose([("4", 200, 100, 0, 20)])
    (digit,) = segment_digits(1 - number)
    assert correlation(digit.image, to_mnist(1 - number)) > 0.99


def test_blank_raises() -> None:
    with pytest.raises(NoInkError):
        segment_digits(np.ones((100, 300)))


@pytest.mark.parametrize("whole_confidence, kept_whole", [(0.99, True), (0.05, False)])
def test_a_scorer_decides_whether_a_wide_group_is_split(whole_confidence: float, kept_whole: bool) -> None:
    image = Image.new("L", (420, 200), 0)
    ImageDraw.Draw(image).ellipse([30, 40, 390, 160], outline=255, width=14)  # a very wide 0
    gray = np.asarray(image, np.float32) / 255
    assert len(segment_digits(gray)) >= 2  # without a classifier: cut by width alone
    whole = render_digit(find_ink(gray))

    def score(images: np.ndarray) -> np.ndarray:  # the whole as sure as said, any piece of it at 90 %; one class
        return np.array([whole_confidence if np.array_equal(image, whole) else 0.9 for image in images])[:, None]

    found = len(segment_digits(gray, score=score))
    assert found == 1 if kept_whole else found >= 2


@pytest.mark.parametrize("number", ["3721", "5432", "2345"])
def test_touching_digits_are_cut_where_the_model_reads_them_best(number: str) -> None:
    """Digits drawn 45 px into each other's boxes touch in one piece of ink. Cut evenly, at four equal widths, the
    pieces were "370", no number, no number; cut where the model reads each piece best, each number is read."""
    image = compose([(digit, 200, 100, -45 if k else 0, 18) for k, digit in enumerate(number)])[0]
    assert len(connected_components(find_ink(1 - image))) == 1
    assert Recognizer.load().read(1 - image).number == number


@pytest.mark.parametrize("one", [1, None])
def test_a_wide_group_is_not_cut_into_nothing_but_ones(one: int | None) -> None:
    """A zigzag (the strokes of a W) is one wide piece of ink whose every stroke the model reads as a sure 1: touching
    1s are too narrow to make so wide a group, so with the class of the 1 given it stays whole (and the model's doubt
    of it as a whole decides); without, it is cut into its strokes."""
    image = Image.new("L", (400, 160), 0)
    ImageDraw.Draw(image).line([(30, 20), (100, 140), (170, 20), (240, 140), (310, 20), (380, 140)], fill=255, width=12)
    gray = np.asarray(image, np.float32) / 255
    whole = render_digit(find_ink(gray))

    def score(images: np.ndarray) -> np.ndarray:  # the whole a doubtful 3, any piece of it a sure 1
        probs = np.full((len(images), 10), 0.001)
        for row, image in zip(probs, images):
            is_whole = np.array_equal(image, whole)
            row[3 if is_whole else 1] = 0.6 if is_whole else 0.991
        return probs

    found = len(segment_digits(gray, score=score, one=one))
    assert found == 1 if one is not None else found >= 3


def test_a_flat_loose_bar_joins_its_digit() -> None:
    image = Image.new("L", (300, 200), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 30), (160, 30)], fill=255, width=10)  # the loose bar of a 5, wide but flat
    draw.line([(55, 50), (50, 100)], fill=255, width=10)
    draw.arc([40, 80, 150, 170], start=-90, end=150, fill=255, width=10)
    found = segment_digits(np.asarray(image, np.float32) / 255)
    assert len(found) == 1 and found[0].y0 <= 30 <= found[0].y1


def test_a_slanted_stroke_cut_across_is_one_digit() -> None:
    """A slanted 1 (or a 7's stem) with a gap across it: the two halves stand one above the other, share few columns
    and are each half the height, so neither is a fragment of the other; a number is one line, so they are one."""
    image = Image.new("L", (300, 300), 0)
    ImageDraw.Draw(image).line([(190, 40), (110, 260)], fill=255, width=16)
    gray = np.asarray(image, np.float32) / 255
    gray[140:152] = 0  # the pen lifted
    assert len(connected_components(gray)) == 2
    (digit,) = segment_digits(gray)
    assert digit.y0 < 50 and digit.y1 > 250


def test_tall_pieces_sharing_columns_are_one_digit_when_the_model_is_surer_of_them_so() -> None:
    """Two tall strokes that share some columns, under STRONG_OVERLAP of them: a digit drawn in two strokes that miss
    (a 4's, a 0's two arcs), or two 1s crowded in slanted writing. The model decides, as for a split: one digit when
    it is surer of the whole than of both pieces."""
    image = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(100, 40), (160, 260)], fill=255, width=14)
    draw.line([(160, 40), (215, 250)], fill=255, width=14)
    gray = np.asarray(image, np.float32) / 255
    assert len(connected_components(gray)) == 2
    assert len(segment_digits(gray)) == 2  # without a model: two 1s

    def score(images: np.ndarray) -> np.ndarray:  # each piece, then the two as one; one class
        return np.array([0.9, 0.9, whole][: len(images)])[:, None]

    for whole, count in [(0.95, 1), (0.7, 2)]:
        assert len(segment_digits(gray, score=score)) == count


def _drawn_in_pieces(*strokes: tuple[str, tuple, dict], width: int = 280) -> np.ndarray:
    """Strokes drawn as on a 280-pixel canvas, 16 pixels wide: (ImageDraw method, its position, its options)."""
    image = Image.new("L", (width, 280), 0)
    draw = ImageDraw.Draw(image)
    for method, where, options in strokes:
        getattr(draw, method)(where, **{"fill": 255, "width": 16, **options})
    return np.asarray(image, np.float32) / 255


def _arcs(apart: int = 0) -> np.ndarray:
    """A 0 drawn as a '(' and a ')' that miss each other at its top and bottom; `apart` pixels more between them."""
    return _drawn_in_pieces(("arc", (70, 40, 210, 240), {"start": 110, "end": 250}),
                            ("arc", (70 + apart, 40, 210 + apart, 240), {"start": -70, "end": 70}), width=280 + apart)


def _reads(*readings: tuple[int, float]) -> Callable[[np.ndarray], np.ndarray]:
    """A scorer that reads the images it is asked about, in turn and over again, as these (digit, confidence)."""
    def score(images: np.ndarray) -> np.ndarray:
        rows = np.empty((len(images), 10))
        for row, (digit, confidence) in zip(rows, itertools.cycle(readings)):
            row[:] = (1 - confidence) / 9
            row[digit] = confidence
        return rows
    return score


@pytest.mark.parametrize("case, image, number", [
    ("a 0 drawn as two arcs", _arcs, "0"),
    ("a 4 whose stem misses its bar", lambda: _drawn_in_pieces(("line", [(110, 40), (70, 160), (150, 160)], {}),
                                                               ("line", [(170, 40), (170, 250)], {})), "4"),
])
def test_a_digit_in_two_pieces_side_by_side_is_one(case: str, image, number: str) -> None:
    """Its pieces share no column, and each reads as a digit of its own (a '(' as a confident 1), but they face each
    other close by, and the model is far surer of the digit they make together."""
    gray = image()
    assert len(connected_components(gray)) == 2, case
    assert Recognizer.load().read(gray).number == number, case


@pytest.mark.parametrize("whole, count", [((0, 0.99), 1), ((1, 0.99), 2), ((0, 0.9), 2), ((0, 0.7), 2)])
def test_pieces_side_by_side_are_one_digit_when_the_model_clearly_reads_another(whole: tuple[int, float],
                                                                               count: int) -> None:
    """A '(' and a ')', each read as a 1 at 0.9: one digit when the model reads the two as a digit that neither is,
    with at most DOUBT of its doubt of the two 1s (0.19): not as a 1, the other piece overlooked, nor as a 0 it is
    only a little surer of (0.9), or less sure (0.7)."""
    assert len(segment_digits(_arcs(), score=_reads((1, 0.9), (1, 0.9), whole))) == count


@pytest.mark.parametrize("case, image, number", [
    ("two arcs spaced as digits are", lambda: _arcs(apart=120), "11"),
    ("two 1s close together are", lambda: compose([("1", 200, 40, 0, 16), ("1", 200, 40, 0, 16)], 280, 0.45)[0], "11"),
    ("a 1 close beside a 4 is", lambda: compose([("1", 200, 40, 0, 16), ("4", 200, 40, -10, 16)], 280, 0.4)[0], "14"),
    ("a 7 close beside a 1 is", lambda: compose([("7", 200, 40, 0, 16), ("1", 200, 40, -10, 16)], 280, 0.4)[0], "71"),
])
def test_digits_side_by_side_stay_apart(case: str, image, number: str) -> None:
    assert Recognizer.load().read(image()).number == number, f"{case} not {number}"


@pytest.mark.parametrize("case, image", [
    ("too far apart", lambda: _arcs(apart=40)),
    ("parallel strokes", lambda: _drawn_in_pieces(("line", [(110, 40), (110, 240)], {}),
                                                  ("line", [(150, 40), (150, 240)], {}))),
])
def test_pieces_side_by_side_that_do_not_face_each_other_stay_apart(case: str, image) -> None:
    """However sure the model would be of them as one digit: two arcs well apart, or two strokes side by side."""
    gray = image()
    assert len(connected_components(gray)) == 2, case
    assert len(segment_digits(gray, score=_reads((1, 0.9), (1, 0.9), (0, 0.999)))) == 2, case


def test_a_finished_digit_beside_a_stroke_stays_apart(real_mnist_cache, monkeypatch) -> None:
    """MNIST's test 6 (339) with its test 1 (4201) two columns to the right, four rows lower: close, facing, and the
    model is surer of the two as a 9 than of both; but the 6's loop encloses paper, a finished digit."""
    monkeypatch.setenv("CONVNET_HOME", str(real_mnist_cache.parent.parent))
    data = load_dataset("mnist")
    six, one = (data.test_x[i][:, np.nonzero(data.test_x[i].max(0) > 25)[0]] for i in (339, 4201))
    number = np.pad(np.concatenate([np.pad(six, ((0, 4), (0, 2))), np.pad(one, ((4, 0), (0, 0)))], axis=1), 6)
    reading = Recognizer.load().read(number)
    assert len(reading.digits) == 2 and reading.digits[0].label == "6"


def test_a_texture_of_many_pieces_is_not_a_number_and_is_quick() -> None:
    """Hundreds of short bars (a texture, a page of text): a clear no-answer, given before the passes whose work
    grows faster than the number of pieces (they took minutes on such pages)."""
    rng = np.random.default_rng(0)
    image = np.ones((600, 600), np.float32)
    for x, y in zip(rng.integers(0, 596, 3 * MAX_PARTS), rng.integers(0, 580, 3 * MAX_PARTS)):
        image[y : y + 20, x : x + 3] = 0
    with pytest.raises(NotANumberError, match="not a number: .* pieces of ink"):
        segment_digits(image)


def test_merging_leaves_no_strongly_overlapping_pair() -> None:
    """Random boxes, many of them chained in x: the sweep ends where restarting after every join did."""
    rng = np.random.default_rng(1)
    x0 = rng.integers(0, 2000, MAX_PARTS)
    y0 = rng.integers(0, 200, MAX_PARTS)
    boxes = np.stack([x0, y0, x0 + rng.integers(2, 60, MAX_PARTS), y0 + rng.integers(2, 60, MAX_PARTS)], axis=1)
    merged = _merge_overlapping([_Group([i], box, [(int(box[1]), int(box[3]))]) for i, box in enumerate(boxes)])
    assert sorted(i for g in merged for i in g.ids) == list(range(MAX_PARTS))
    for a in merged:
        assert list(a.box) == [*boxes[a.ids, :2].min(axis=0), *boxes[a.ids, 2:].max(axis=0)]
        assert all(_x_overlap(a, b) < STRONG_OVERLAP for b in merged if b is not a)


def test_a_small_number_on_a_big_page_keeps_all_its_digits() -> None:
    """Digits under 1 % of the page's side look like dust to the image-wide speck rule; one taller digit vouches for
    the others, as they are of its size."""
    layout = [("7", 34, 10, 0, 4), ("2", 24, 20, 12, 4), ("1", 24, 20, 12, 4), ("0", 24, 20, 12, 4)]
    number, boxes, _ = compose(layout, canvas_height=60)
    page = np.ones((2000, 3000), np.float32)
    page[900:960, 1200 : 1200 + number.shape[1]] = 1 - number
    found = segment_digits(page)
    assert len(found) == 4, [(d.x0, d.y0, d.x1, d.y1) for d in found]
    for digit, (x0, y0, x1, y1) in zip(found, boxes):
        assert abs((digit.x0 + digit.x1) / 2 - 1200 - (x0 + x1) / 2) < 5 and abs(digit.y0 - 900 - y0) < 5


def test_a_long_tight_strip_of_digits_is_read() -> None:
    """The paper is fitted on a small copy: shrunk by its longer side, a strip of 30 digits 28 px tall kept 2 px of
    height, where ink and paper blend, and the strip read as blank."""
    layout = [("0123457"[i % 7], 20, 4, 9, 3) for i in range(30)]
    number, boxes, alone = compose(layout, canvas_height=28)
    assert_segmented(segment_digits(1 - number), boxes, alone)


def test_a_strip_of_a_hundred_digits_is_read() -> None:
    """Specks are measured against the image's longer side: 1 % of a strip 100 digits long is taller than its
    digits, which were all dropped as dust ("no ink found"). No speck is half as tall as the strip."""
    layout = [("0123457"[i % 7], 20, 4, 9, 3) for i in range(100)]
    number, boxes, alone = compose(layout, canvas_height=28)
    assert 0.01 * number.shape[1] > 20
    assert_segmented(segment_digits(1 - number), boxes, alone)


def test_a_strip_of_five_hundred_digits_is_refused_for_its_length_not_as_blank() -> None:
    """The paper is fitted on a copy of 64 x 64 pixels' area: shrunk evenly, a strip 400 times as long as high kept
    3 rows, where ink and paper blend into a grey that passed for the paper ("no ink found"). The copy keeps 8 rows,
    and the strip is refused for what it is: more pieces than a number has."""
    layout = [("0123457"[i % 7], 20, 4, 9, 3) for i in range(500)]
    number = compose(layout, canvas_height=28)[0]
    assert number.shape[1] > 390 * number.shape[0]
    for gray in (number, 1 - number):
        with pytest.raises(NotANumberError, match=f"not a number: 500 separate pieces of ink .*{MAX_PARTS}"):
            segment_digits(gray)


def test_a_straight_line_is_not_a_number() -> None:
    image = np.ones((100, 300), np.float32)
    image[49:51] = 0
    with pytest.raises(NotANumberError, match="only straight lines"):
        segment_digits(image)


LEVEL = [("3", 200, 100, 0, 18), ("1", 200, 100, 40, 18), ("4", 200, 100, 40, 18), ("7", 200, 100, 40, 18)]


def underlined(layout: Layout, touching: bool, tilt: float = 0.02) -> tuple[np.ndarray, list[Box], list[np.ndarray]]:
    """A number with a slightly tilted rule of a stroke's thickness under it, touching its digits or just below."""
    number, boxes, alone = compose(layout, canvas_height=420)
    top = max(b[3] for b in boxes) - (8 if touching else -15)
    x = np.arange(number.shape[1])
    rows = np.arange(number.shape[0])[:, None] - (top + tilt * (x - x.mean()))
    rule = (rows >= 0) & (rows < 16) & (x >= 15) & (x < len(x) - 15)
    return np.maximum(number, rule), boxes, alone


@pytest.mark.parametrize("frame", ["box", "circle"])
def test_a_frame_drawn_around_a_number_is_not_part_of_it(frame: str) -> None:
    """The frame was the heaviest ink: read as a 0 that hid the digits, or as no number at all."""
    number, boxes, alone = compose(LEVEL)
    pad = 150
    canvas = Image.fromarray(to_u8(np.pad(number, pad)))
    height, width = number.shape
    if frame == "box":
        ImageDraw.Draw(canvas).rectangle((pad, pad + 60, pad + width, pad + height - 60), outline=255, width=8)
    else:
        ImageDraw.Draw(canvas).ellipse((pad - 80, pad - 20, pad + width + 80, pad + height + 20), outline=255, width=8)
    framed = np.asarray(canvas, np.float32) / 255
    assert len(connected_components(framed)) == len(boxes) + 1
    shifted = [(x0 + pad, y0 + pad, x1 + pad, y1 + pad) for x0, y0, x1, y1 in boxes]
    assert_segmented(segment_digits(1 - framed), shifted, [np.pad(ink, pad) for ink in alone])


@pytest.mark.parametrize("inset, width", [(6, 5), (2, 9), (10, 12)])
def test_a_box_near_the_image_s_edge_is_not_part_of_the_number(inset: int, width: int) -> None:
    """A box round a number, cropped close, its lines thicker than hairlines: its sides, which reach past the digits,
    went as lines across the image, and its top and bottom stayed, joined to the digits ("8888" read as "885858")."""
    number, boxes, alone = compose([("0", 200, 40, 0, 22), ("3", 200, 40, 40, 22), ("5", 200, 40, 40, 22)],
                                   canvas_height=280)
    canvas = Image.fromarray(to_u8(number))
    height, width_ = number.shape
    ImageDraw.Draw(canvas).rectangle((inset, inset, width_ - 1 - inset, height - 1 - inset), outline=255, width=width)
    assert_segmented(segment_digits(1 - np.asarray(canvas, np.float32) / 255), boxes, alone)


@pytest.mark.parametrize("touching", [False, True])
def test_an_underlined_number_is_cut_as_without_the_rule(touching: bool) -> None:
    """Left in, the rule joined the digits into one piece that read as one confident digit."""
    number, boxes, alone = underlined(LEVEL, touching)
    assert_segmented(segment_digits(1 - number), boxes, alone)


def test_a_rule_under_one_digit_of_a_number_is_erased() -> None:
    """The rule touches the 3 only: erasing it leaves one piece, but the rule reached far past that digit."""
    layout = [("3", 200, 110, 0, 18), ("1", 180, 100, 40, 18), ("4", 180, 100, 40, 18)]
    number, boxes, alone = underlined(layout, touching=True, tilt=0.0)
    assert len(connected_components(number)) == 3  # the 3 and the rule are one piece
    assert_segmented(segment_digits(number), boxes, alone)


def test_a_long_base_is_not_a_rule() -> None:
    """A 2 wider than tall whose base runs past its body, beside taller digits: its base stays (it read as a 7)."""
    image = Image.new("L", (560, 300), 0)
    draw = ImageDraw.Draw(image)
    draw_strokes(draw, "2", (30, 150, 90, 100), 12)
    draw.line([(40, 245), (170, 245)], fill=255, width=12)  # the base, far past the body
    draw_strokes(draw, "4", (220, 60, 120, 190), 12)
    draw_strokes(draw, "7", (380, 60, 120, 190), 12)
    loose, touching = find_underlines(np.asarray(image, np.float32) / 255)
    assert not loose.any() and not touching.any()


def test_a_base_drawn_apart_from_its_two_is_not_a_rule() -> None:
    """A wide 2 whose base is a separate stroke as long as the 2 is tall: it ends where the body does (it read as
    a 7, in `read` and in `predict`)."""
    image = Image.new("L", (320, 260), 0)
    draw = ImageDraw.Draw(image)
    draw.arc((70, 40, 230, 140), 190, 20, fill=255, width=14)
    draw.line([(226, 95), (75, 185)], fill=255, width=14)
    draw.line([(65, 203), (245, 203)], fill=255, width=14)
    ink = np.asarray(image, np.float32) / 255
    sure, doubtful = find_underlines(ink)
    assert not sure.any() and doubtful.any()  # read asks the model; predict, which cannot, keeps it
    assert correlation(to_mnist(1 - ink), reference(ink)) > 0.8


def test_a_rule_that_ends_with_two_overlapping_digits_is_erased() -> None:
    """Two digits that overlap into one piece about as wide as tall, a rule under them no longer than they are wide:
    in doubt (it could be a 2's base), and without a reader to ask, erased."""
    number, boxes, alone = compose([("4", 200, 100, 0, 18), ("7", 200, 100, -40, 18)])
    assert len(connected_components(number)) == 1
    x0, x1 = min(b[0] for b in boxes), max(b[2] for b in boxes)
    number[330:345, x0:x1] = 1
    sure, doubtful = find_underlines(number)
    assert not sure.any() and doubtful[330:345, x0:x1].all()
    assert len(segment_digits(number)) == 2


def test_a_scorer_can_keep_a_touching_rule_but_not_a_loose_one() -> None:
    """Two 2s whose bases touch look like digits on a rule: a reader that finds the ink with the rule more
    convincing keeps it (here, a scorer sure of any single image and unsure of pairs). A loose rule is never part
    of a digit: it goes whatever the scorer says."""

    def score(images: np.ndarray) -> np.ndarray:
        return np.full((len(images), 1), 0.99 if len(images) == 1 else 0.6)

    touching, _, _ = underlined(LEVEL[:2], touching=True)
    assert len(segment_digits(touching)) == 2
    assert len(segment_digits(touching, score=score)) == 1
    loose, _, _ = underlined(LEVEL[:2], touching=False)
    assert len(segment_digits(loose, score=score)) == 2


def _drawn(digit: str, height: int, stroke: float) -> np.ndarray:
    """A digit drawn white on black, cropped to its ink."""
    ink = np.asarray(draw_digit(digit, height, stroke), np.float32)
    rows, cols = np.nonzero(ink > 0.5)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _two_with_a_long_base() -> np.ndarray:
    image = Image.new("L", (320, 260), 0)
    draw = ImageDraw.Draw(image)
    draw.arc((70, 40, 230, 140), 190, 20, fill=255, width=14)
    draw.line([(226, 95), (75, 185)], fill=255, width=14)
    draw.line([(65, 203), (245, 203)], fill=255, width=14)
    return np.asarray(image, np.float32) / 255


def test_a_base_that_may_be_a_rule_stays_unless_the_digit_is_clearly_better_without_it(monkeypatch) -> None:
    """A 2 whose base reaches past its body may be a digit on a rule: a review found such 2s read as 7s at 100 %,
    the reading without the base ahead by 0.0004. Both readings near certain, the ink stays as written."""
    import convnet.segment

    two = _two_with_a_long_base()
    assert find_underlines(two)[1].any()
    readings = {}
    for name, with_base, without in [("kept", 0.99, 0.6), ("erased", 0.6, 0.99), ("a shade surer without", 0.9995,
                                                                                      0.9999)]:
        means = iter([with_base, without])  # segment_digits asks of the reading with the base first
        monkeypatch.setattr(convnet.segment, "_mean_confidence", lambda pieces, score, means=means: next(means))
        readings[name] = [d.image.sum() for d in segment_digits(two, score=lambda images: np.ones((len(images), 1)))]
    assert readings["kept"] != readings["erased"]
    assert readings["a shade surer without"] == readings["kept"]


@pytest.mark.parametrize("sides", ["tblr", "tb"])
def test_a_frame_or_lines_along_the_image_s_edges_are_no_digits(sides: str) -> None:
    """A number cropped from a table's row: lines along the image's edges, one of them touching a digit that reaches
    down to it. The lines the digit kept from being erased as lines across the image were read as 1s beside it."""
    number, boxes, alone = compose([("7", 300, 40, 0, 22), ("4", 300, 40, 30, 22)], canvas_height=342)
    framed = number.copy()
    for side in sides:
        framed[{"t": np.s_[:2, :], "b": np.s_[-2:, :], "l": np.s_[:, :2], "r": np.s_[:, -2:]}[side]] = 1
    assert_segmented(segment_digits(1 - framed), boxes, alone, min_iou=0.8)


def test_a_bold_digit_at_the_edge_of_a_tight_crop_is_no_band() -> None:
    """A bold 0 filling its height at the left edge of a tightly cropped number touches three sides, as a band along a
    whole side does, fills its hull and is over twice as thick as the digits beside it: it was erased ("051" read
    as "51"). A band along a side is longer than it is deep; a digit is not."""
    number, boxes, _ = compose([("5", 240, 30, 200, 35), ("1", 260, 20, 40, 35)], canvas_height=300)
    zero = Image.new("L", (boxes[-1][2], 300), 0)
    ImageDraw.Draw(zero).ellipse((0, 0, 200, 299), fill=255)
    ImageDraw.Draw(zero).ellipse((80, 110, 120, 190), fill=0)  # a small counter, as a marker leaves
    tight = np.maximum(number[:, : boxes[-1][2]], np.asarray(zero, np.float32) / 255)
    found = segment_digits(1 - tight)
    assert len(found) == 3 and found[0].x0 == 0 and found[0].x1 >= 200


def test_a_bar_just_inside_the_image_s_edge_is_not_taken_for_the_paper() -> None:
    """A 1 drawn as a bar two pixels inside the edge of a tightly cropped "10": the shrunk copy's outer column is
    paper, the two inside it the bar, even and apart from it as paper beside a frame is. Taken for the paper, they
    left the image's ink muddled ("no ink found", or four digits); paper is what most of the image is."""
    zero = _drawn("0", 120, 16)
    for width in (12, 18, 24):
        bar = np.zeros((zero.shape[0], width + 20), np.float32)
        bar[:, 2 : 2 + width] = 1
        ink = np.concatenate([bar, zero], axis=1)
        assert [len(segment_digits(1 - ink)), len(segment_digits(ink))] == [2, 2], width


def test_the_upright_1s_of_a_tightly_cropped_number_on_a_rule_are_no_frame() -> None:
    """Two 1s drawn as thin bars at the image's sides and a rule along its bottom edge pass for lines on three sides
    of the digit between them; erased as a frame, "171" read as 7. A frame's lines are hairlines, under 3 % of the
    image's side."""
    seven = _drawn("7", 50, 8)
    ink = np.zeros((60, seven.shape[1] + 24), np.float32)
    ink[: seven.shape[0], 12 : 12 + seven.shape[1]] = seven
    ink[:, 1:4] = ink[:, -4:-1] = 1
    ink[-2:] = 1
    assert len(segment_digits(1 - ink)) == 3


def test_a_crowded_line_scores_each_join_once() -> None:
    """Broken pieces are joined round by round; a pair left apart in one round was scored again in the next (200
    crowded strokes: 33 images scored, 21 of them distinct). The answer is the same either way."""
    reader, rng = Recognizer.load(), np.random.default_rng(0)
    image = Image.new("L", (4000, 120), 255)
    draw, x = ImageDraw.Draw(image), 10
    for _ in range(200):
        top, height, slant = (int(v) for v in (rng.integers(10, 50), rng.integers(20, 60), rng.integers(-12, 12)))
        draw.line([(x, top), (x + slant, top + height)], fill=0, width=4)
        x += int(rng.integers(8, 30))
    scored: list[bytes] = []

    def score(images: np.ndarray) -> np.ndarray:
        scored.extend(image.tobytes() for image in images)
        return reader.probabilities(images)

    segment_digits(np.asarray(image.crop((0, 0, x + 20, 120)), np.float32) / 255, score=score)
    assert len(scored) > 10 and len(set(scored)) == len(scored)


# ------------------------------------------------------ digits side by side


def side_by_side(image: np.ndarray) -> int:
    ink = find_ink(image)
    return digits_side_by_side(ink, connected_components(ink))


def test_the_digits_of_a_number_are_counted_side_by_side() -> None:
    assert side_by_side(compose([("2", 200, 100, 0, 18), ("5", 200, 100, 40, 18), ("7", 200, 100, 40, 18)])[0]) == 3
    assert side_by_side(1 - compose(VARIED)[0]) == 6  # the 1 under the 7's bar counted too, as `read` cuts it


@pytest.mark.parametrize("layout, gap, count", [("17", 40, 2), ("41", 40, 2), ("11", 40, 1), ("14", -40, 2),
                                               ("17", -40, 2)])
def test_a_1_beside_a_wider_digit_is_two(layout: str, gap: int, count: int) -> None:
    """A 1 is a thin upright stroke, as a line of squared paper left beside a digit is: it counts beside a wider
    digit, as tall and on one line with it, even where the two together are no wider than tall (a gap of -40 leaves
    13 px between their ink, 189 px wide in all, 206 tall); two 1s alone, two upright strokes, are not clearly two
    digits."""
    assert side_by_side(compose([(layout[0], 200, 100, 0, 18), (layout[1], 200, 100, gap, 18)])[0]) == count


@pytest.mark.parametrize("top, height", [(130, 150), (220, 200)])
def test_a_short_or_sunken_stroke_beside_a_digit_is_no_1(top: int, height: int) -> None:
    """A stroke beside a digit counts as a 1 only when it is at least AS_TALL as the digit and on one line with it:
    an open 4's first stroke standing apart is shorter than the rest of it. The 0 stands in rows 100-300."""
    page = np.pad(compose([("0", 200, 100, 0, 18)])[0], ((0, 150), (250, 0)))
    page[top : top + height, 40:58] = 1
    assert side_by_side(page) == 1
    page[:, 40:58] = 0
    page[100:300, 40:58] = 1
    assert side_by_side(page) == 2


@pytest.mark.parametrize("overlap", [10, 15])
def test_neighbours_sharing_a_sliver_of_columns_are_two(overlap: int) -> None:
    """In crowded or slanted writing, neighbours' boxes overlap a little while their ink stays apart: each as tall
    as the other, on one line, unlike the pieces of one digit that share columns (a 5's bar drawn apart, below)."""
    assert side_by_side(compose([("2", 200, 100, 0, 18), ("5", 200, 100, -overlap, 18)])[0]) == 2


def _broken(digit: str, cut: tuple[slice, slice], aspect: float = 0.65) -> np.ndarray:
    number = compose([(digit, 200, 100, 0, 18)], aspect=aspect)[0].copy()
    number[cut] = 0
    return number


def _beside(digit: str, *marks: tuple[slice, slice]) -> np.ndarray:
    """The digit on a page 100 px wider, with marks of ink on it."""
    page = np.pad(compose([(digit, 200, 100, 0, 18)])[0], ((0, 0), (0, 100)))
    for mark in marks:
        page[mark] = 1
    return page


@pytest.mark.parametrize("case, image", [
    ("a round 0 broken at its top and bottom", lambda: _broken("0", np.s_[:, 125:135], aspect=1.0)),
    ("a 3 beside a grid's thin lines", lambda: _beside("3", np.s_[100:300, 200:203], np.s_[297:300, 200:290])),
    ("a 5 whose bar is apart", lambda: compose([("5b", 200, 100, 0, 18)])[0]),
    ("a 5 whose bar is off to its upper right", lambda: compose([("5r", 200, 100, 0, 18)])[0]),
    ("a 5 whose bar slants up and away over a sliver of its columns", slanted_bar_five),
    ("a 4 whose stem misses its bar", lambda: compose([("4o", 200, 100, 0, 18)])[0]),
    ("a 7 whose bar is broken", lambda: _broken("7", np.s_[:, 65:75])),
    ("a 4 cut across", lambda: _broken("4", np.s_[190:200, :])),
    ("a 3 with specks", lambda: _beside("3", np.s_[10:14, 10:14])),
    ("a 3 with a dash beside it", lambda: _beside("3", np.s_[200:215, 190:230])),
    ("a 0 with a line as tall beside it", lambda: _beside("0", np.s_[100:300, 200:203])),
    ("an underlined 3", lambda: _beside("3", np.s_[305:312, 0:240])),
    ("a thin 2", lambda: compose([("2", 200, 100, 0, 4)])[0]),
    ("a bold 2", lambda: compose([("2", 200, 100, 0, 40)])[0]),
    ("a 1", lambda: compose([("1", 200, 100, 0, 18)])[0]),
    ("a 4 on squared paper", lambda: notebook(np.pad(draw_digit("4", 200, 16), ((40, 40), (160, 160))), "squared", 70)),
    ("a 7 on ruled paper", lambda: notebook(np.pad(draw_digit("7", 200, 16), ((40, 40), (160, 160))), "ruled", 70)),
])
def test_one_digit_in_pieces_or_beside_other_ink_is_one(case: str, image) -> None:
    assert side_by_side(image()) == 1, case


def test_mnist_digits_in_pieces_side_by_side_are_one(real_mnist_cache, monkeypatch) -> None:
    """Five of MNIST's training 5s in two pieces, together wider than tall: 14389's bar stands above its body, off to
    the right; the others' pieces share columns, 11-50 % of the narrower one's, and their bars at most 35 % of the
    body's rows. None of the 60,000 is counted as several (benchmarks/README.md). A 1 with a dotted line beside it,
    as tall and as close as a 1 to a digit, but in pieces. And a test 4 whose first stroke stands apart, slanted,
    scaled up as a photo of it would be: no 1."""
    monkeypatch.setenv("CONVNET_HOME", str(real_mnist_cache.parent.parent))
    data = load_dataset("mnist")
    assert [side_by_side(data.train_x[i]) for i in (14389, 34841, 12083, 34843, 41949, 31597)] == [1] * 6
    assert side_by_side(np.asarray(Image.fromarray(data.test_x[5676]).resize((112, 112), Image.BICUBIC))) == 1


def test_no_number_counts_one() -> None:
    """Ink that `read` refuses as no number is no several digits either: `predict` answers it as before."""
    lines = np.zeros((100, 300), np.float32)
    lines[20:23, 10:290] = lines[70:73, 10:290] = 1
    assert side_by_side(lines) == 1
