"""How often `convnet read` gets a whole handwritten number right, on numbers composed from MNIST test digits.

    python benchmarks/read_numbers.py [--count 1000] [--model default] [--seed 0] [--save DIR]

Each image holds 2–6 test-set digits (never seen in training) with their own size, baseline, spacing (touching
and overlapping neighbours included), stroke colour and paper, as a phone photo or scan of a written number would.
Prints the share of images whose whole number is read exactly, and the per-digit-count breakdown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from convnet.cli import positive_int, report_errors
from convnet.data import load_dataset
from convnet.infer import Recognizer


def compose(digits: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Paste 28×28 white-on-black digits as dark ink on light paper, with varied size, baseline and spacing."""
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
        x += ink.shape[1] + int(base * rng.uniform(0.02, 0.35))
    height = int(base * 1.7)
    canvas = np.zeros((height, x + int(rng.integers(10, 40))), np.float32)
    for ink, (px, py) in zip(parts, pos):
        h, w = ink.shape
        region = canvas[py : py + h, px : px + w]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    paper, pen = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.3)
    gray = paper - canvas * (paper - pen)
    gray += rng.normal(0, rng.uniform(0, 0.03), gray.shape)  # sensor noise
    return Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=positive_int, default=1000)
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="also write the images here (NUMBER-INDEX.png)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    recognizer = Recognizer.load(args.model, min_confidence=0.0)  # a bad --model fails before the data loads
    data = load_dataset("mnist")
    right, by_length = 0, {n: [0, 0] for n in range(2, 7)}
    for i in range(args.count):
        n = int(rng.integers(2, 7))
        idx = rng.integers(0, len(data.test_x), n)
        truth = "".join(str(int(v)) for v in data.test_y[idx])
        image = compose(data.test_x[idx], rng)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            image.save(args.save / f"{truth}-{i}.png")
        got = recognizer.read(image).number
        ok = got == truth
        right += ok
        by_length[n][0] += ok
        by_length[n][1] += 1
        if not ok and args.save:
            print(f"  {i}: {truth} read as {got}", file=sys.stderr)
    print(f"whole numbers read exactly: {right}/{args.count} = {right / args.count:.1%}")
    for n, (ok, total) in by_length.items():
        print(f"  {n} digits: {ok}/{total} = {ok / max(total, 1):.1%}")


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
