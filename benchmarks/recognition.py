"""Recognition of real images with a model (default: the shipped one): three measurements.

    python benchmarks/recognition.py realworld DIR     # accuracy on DIR/<label>/*.png|jpg (make_realworld_digits.py)
    python benchmarks/recognition.py nondigits         # how often non-digits get no digit for an answer
    python benchmarks/recognition.py throughput        # files/s of predict over a folder of 10,000 PNGs

Options: --model M, --min-confidence P (default: the CLI's default), --count N (nondigits, throughput).
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convnet.cli import fraction, positive_int, report_errors
from convnet.data import load_dataset
from convnet.errors import ConfigError
from convnet.infer import DEFAULT_MIN_CONFIDENCE, Recognizer, expand_paths


def realworld(rec: Recognizer, folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder; write one with benchmarks/make_realworld_digits.py")
    manifest = folder / "manifest.csv"
    sources = {}
    if manifest.exists():
        sources = {str(folder / r["path"]): r["source"].split("-")[0] for r in csv.DictReader(manifest.open())}
    right, total, unsure, unreadable = Counter(), Counter(), Counter(), []
    for p in rec.predict_files(expand_paths([str(folder)])):
        if p.error:  # not an answer of the model's: reported apart, not counted
            unreadable.append(p.error)
            continue
        truth = Path(p.path).parent.name
        if truth not in rec.model.classes:  # scored against a folder's name that is no label, it would count wrong
            raise ConfigError(f"{p.path}: not in a folder named by its label ({', '.join(rec.model.classes)}); "
                              "realworld reads a folder laid out as make_realworld_digits.py writes it (LABEL/NAME)")
        group = sources.get(p.path, "all")
        total[group] += 1
        right[group] += p.label == truth
        if p.label is None:
            unsure[p.reason] += 1
    n = sum(total.values())
    if not n:
        raise ConfigError(f"{folder}: no readable images ({'; '.join(unreadable[:3])})")
    withheld = ", ".join(f"{count} {reason!r}" for reason, count in unsure.most_common()) or "none"
    print(f"real-world digits: {sum(right.values())}/{n} = {sum(right.values()) / n:.2%} right "
          f"(min confidence {rec.min_confidence}; answers withheld, counted as wrong: {withheld})")
    for group in sorted(total):
        print(f"  {group}: {right[group]}/{total[group]} = {right[group] / total[group]:.2%}")
    if unreadable:
        print(f"  {len(unreadable)} file(s) could not be read, first: {unreadable[0]}")


def nondigit_images(count: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Things that are not digits: noise, smooth textures, clutter of lines, letters, blobs, blank pages."""
    fonts = [f for f in Path("/usr/share/fonts").rglob("DejaVuSans*.ttf")]
    if not fonts:  # the letters would be blank pages, which no model calls a digit: a score too good
        raise ConfigError("nondigits draws its letters in DejaVu Sans, which is not installed under /usr/share/fonts "
                          "(apt-get install fonts-dejavu-core)")
    images = []
    for i in range(count):
        kind = ["noise", "texture", "lines", "letter", "blob", "blank"][i % 6]
        size = int(rng.integers(48, 400))
        if kind == "noise":
            a = rng.random((size, size))
        elif kind == "texture":  # smooth random field, like a photo of fabric or foliage
            small = rng.random((6, 6))
            a = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)) / 255
        elif kind == "blank":
            a = np.full((size, size), rng.uniform(0.2, 1.0)) + rng.normal(0, 0.01, (size, size))
        else:
            img = Image.new("L", (size, size), 255)
            draw = ImageDraw.Draw(img)
            if kind == "lines":
                for _ in range(int(rng.integers(5, 15))):
                    draw.line([tuple(rng.integers(0, size, 2)) for _ in range(2)], fill=0, width=max(1, size // 40))
            elif kind == "blob":
                x0, y0 = rng.integers(0, size // 2, 2)
                draw.ellipse([x0, y0, x0 + size // 3, y0 + size // 2.5], fill=0)
            else:
                font = ImageFont.truetype(str(fonts[i % len(fonts)]), int(size * 0.7))
                draw.text((size * 0.15, 0), rng.choice(list("ABCDEFGHKMNPQRWXYZ")), font=font, fill=0)
            a = np.asarray(img) / 255
        images.append((kind, np.clip(a, 0, 1)))
    return images


def nondigits(rec: Recognizer, count: int) -> None:
    rng = np.random.default_rng(0)
    images = nondigit_images(count, rng)
    results = rec.predict([a for _, a in images])
    below, total, reasons = Counter(), Counter(), Counter()
    for (kind, _), r in zip(images, results):
        total[kind] += 1
        below[kind] += r.label is None
        reasons[r.reason] += r.label is None
    n = sum(total.values())
    said = ", ".join(f"{count} {reason!r}" for reason, count in reasons.most_common() if count)
    print(f"non-digits with no digit for an answer at min confidence {rec.min_confidence}: "
          f"{sum(below.values())}/{n} = {sum(below.values()) / n:.1%} ({said})")
    for kind in total:
        print(f"  {kind}: {below[kind]}/{total[kind]}")


def throughput(rec: Recognizer, count: int) -> None:
    data = load_dataset("mnist")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):  # dark digits on white, as a scan would give
            Image.fromarray(255 - data.test_x[i % len(data.test_x)]).save(Path(tmp) / f"{i:05d}.png")
        start = time.perf_counter()
        results = list(rec.predict_files(expand_paths([tmp])))
        seconds = time.perf_counter() - start
        right = sum(r.label == str(data.test_y[i % len(data.test_y)]) for i, r in enumerate(results))
    print(f"predict over a folder of {count:,} PNGs: {count / seconds:,.0f} files/s "
          f"({seconds:.1f}s, decoding and preprocessing included; {right / count:.2%} right)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["realworld", "nondigits", "throughput"])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--min-confidence", type=fraction, default=DEFAULT_MIN_CONFIDENCE)
    parser.add_argument("--count", type=positive_int, default=None)
    args = parser.parse_args()
    if args.what == "realworld" and not args.folder:
        parser.error("realworld needs the folder written by benchmarks/make_realworld_digits.py")
    if args.what == "realworld" and args.count:
        parser.error("--count is for nondigits and throughput: realworld reads the whole folder")
    if args.what != "realworld" and args.folder:
        parser.error(f"{args.what} makes its own images: a folder is for realworld")
    rec = Recognizer.load(args.model, min_confidence=args.min_confidence)
    if args.what == "realworld":
        realworld(rec, args.folder)
    elif args.what == "nondigits":
        nondigits(rec, args.count or 600)
    else:
        throughput(rec, args.count or 10_000)


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
