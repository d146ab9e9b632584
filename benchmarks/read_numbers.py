"""How often `convnet read` gets a whole handwritten number right, on numbers composed from MNIST test digits.

    python benchmarks/read_numbers.py [--count 1000] [--model default] [--seed 0] [--save DIR] [--underline 0.5]
                                      [--gap -0.1 0] [--predict]

Each image holds 2–6 test-set digits (never seen in training) with their own size, baseline, spacing (by default 2–35
% of a digit's height between the ink of neighbours, whose faint edges may touch; `--gap LOW HIGH` draws it from
another range, negative for overlapping digits), stroke colour and paper, as a phone photo or scan of a written number
would.
`--underline SHARE` draws a rule under that share of the numbers, half of them touching the digits (the same numbers
as without it). Prints the share of images whose whole number is read exactly, and the per-digit-count breakdown.
`--predict` gives each number to `predict` instead, which reads one digit, at its default minimum confidence: the
share it gives no digit for (the right answer: it should say to use `read`), and why.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from convnet.cli import fraction, positive_int, report_errors
from convnet.data import load_dataset
from convnet.infer import DEFAULT_MIN_CONFIDENCE, Recognizer


def compose(digits: np.ndarray, rng: np.random.Generator, underline: np.random.Generator | None = None,
            gap: tuple[float, float] = (0.02, 0.35)) -> Image.Image:
    """Paste 28×28 white-on-black digits as dark ink on light paper, with varied size, baseline and spacing; with
    `underline`, a rule under them drawn from that generator's draws."""
    base = int(rng.integers(40, 140))  # typical digit height in px
    parts, x, pos = [], int(rng.integers(10, 40)), []
    for d in digits:
        size = int(base * rng.uniform(0.85, 1.15))
        glyph = Image.fromarray(d).resize((size, size), Image.Resampling.BICUBIC)
        ink = np.asarray(glyph, np.float32) / 255
        cols = np.nonzero(ink.max(0) > 0.1)[0]
        ink = ink[:, cols[0] : cols[-1] + 1]  # crop side margins so spacing is controlled below
        top = int(base * rng.uniform(0.1, 0.4))
        parts.append(ink)
        pos.append((x, top))
        x = max(0, x + ink.shape[1] + int(base * rng.uniform(*gap)))
    height = int(base * 1.7)
    right = max(x, *(px + ink.shape[1] for ink, (px, _) in zip(parts, pos)))  # an overlapping last digit ends past x
    canvas = np.zeros((height, right + int(rng.integers(10, 40))), np.float32)
    for ink, (px, py) in zip(parts, pos):
        h, w = ink.shape
        region = canvas[py : py + h, px : px + w]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    if underline is not None:
        canvas = _underline(canvas, base, underline)
    paper, pen = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.3)
    gray = paper - canvas * (paper - pen)
    gray += rng.normal(0, rng.uniform(0, 0.03), gray.shape)  # sensor noise
    return Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))


def _underline(canvas: np.ndarray, base: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a slightly tilted rule of about a stroke's thickness under the digits: touching their lowest ink, or a
    little below it, and reaching a little past them on each side."""
    rows, cols = np.nonzero(canvas.max(1) > 0.3)[0], np.nonzero(canvas.max(0) > 0.3)[0]
    touching = rng.random() < 0.5
    top = rows[-1] - (0.05 * base if touching else -rng.uniform(0.05, 0.2) * base)
    thickness = max(2.0, rng.uniform(0.06, 0.12) * base)
    reach = rng.uniform(0.0, 0.25) * base
    x0, x1 = max(cols[0] - reach, 0), min(cols[-1] + reach, canvas.shape[1] - 1)
    slope = np.tan(np.radians(rng.uniform(-2, 2)))
    below = int(top + thickness + abs(slope) * canvas.shape[1] + 10) - len(canvas)
    canvas = np.pad(canvas, ((0, max(below, 0)), (0, 0)))
    y, x = np.mgrid[: canvas.shape[0], : canvas.shape[1]]
    centre = top + thickness / 2 + slope * (x - (x0 + x1) / 2)
    rule = np.clip(thickness / 2 + 0.5 - np.abs(y - centre), 0, 1) * ((x >= x0) & (x <= x1))
    return np.maximum(canvas, rule.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=positive_int, default=1000)
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="also write the images here (NUMBER-INDEX.png)")
    parser.add_argument("--underline", type=fraction, default=0.0, help="share of the numbers with a rule under them")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.02, 0.35), metavar=("LOW", "HIGH"),
                        help="space between neighbours' ink, as a share of the digit height (negative: overlap)")
    parser.add_argument("--predict", action="store_true", help="count the numbers predict answers with no digit")
    args = parser.parse_args()
    if not -0.5 <= args.gap[0] <= args.gap[1] <= 2:
        parser.error(f"--gap needs -0.5 <= LOW <= HIGH <= 2, not {args.gap[0]:g} {args.gap[1]:g}")
    if args.seed < 0:  # numpy's generators take none
        parser.error(f"--seed must be 0 or more, not {args.seed}")
    rng = np.random.default_rng(args.seed)
    rules = np.random.default_rng([args.seed, 1])  # its own draws: the numbers are the same with or without rules
    # `read` is asked for every answer, `predict` as the command line asks. A bad --model fails before the data loads.
    recognizer = Recognizer.load(args.model, min_confidence=DEFAULT_MIN_CONFIDENCE if args.predict else 0.0)
    data = load_dataset("mnist")
    right, by_length, reasons = 0, {n: [0, 0] for n in range(2, 7)}, Counter()
    for i in range(args.count):
        n = int(rng.integers(2, 7))
        idx = rng.integers(0, len(data.test_x), n)
        truth = "".join(str(int(v)) for v in data.test_y[idx])
        image = compose(data.test_x[idx], rng, rules if rules.random() < args.underline else None, args.gap)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            image.save(args.save / f"{truth}-{i}.png")
        if args.predict:
            answer = recognizer.predict(image)
            got, ok = answer.label, answer.label is None
            if ok:
                reasons[answer.reason] += 1
        else:
            got = recognizer.read(image).number
            ok = got == truth
        right += ok
        by_length[n][0] += ok
        by_length[n][1] += 1
        if not ok and args.save:
            print(f"  {i}: {truth} read as {got}", file=sys.stderr)
    if args.predict:
        said = ", ".join(f"{count} {reason!r}" for reason, count in reasons.most_common())
        print(f"numbers given no digit by predict: {right}/{args.count} = {right / args.count:.1%} ({said})")
    else:
        print(f"whole numbers read exactly: {right}/{args.count} = {right / args.count:.1%}")
    for n, (ok, total) in by_length.items():
        if total:  # a small --count may draw no number of this length
            print(f"  {n} digits: {ok}/{total} = {ok / total:.1%}")


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
