"""Build a labelled folder of real-world-looking handwritten digits that are not from MNIST.

    python benchmarks/make_realworld_digits.py OUT [--count 2000] [--seed 0] [--paper plain|ruled|squared] [--shadow]

Writes OUT/<label>/<source>-<index>.(png|jpg) and OUT/manifest.csv (path, label,
source, size, polarity, format, mode), mixing two offline sources:

* uci: real handwriting from the UCI optical digits bundled with scikit-learn
  (its test set: 13 writers, 8x8 ink counts), upscaled and given pen-like edges.
  Needs `pip install scikit-learn`.
* font-<name>: digits typeset in handwriting-style fonts from Debian packages
  (`apt-get install fonts-dkg-handwriting fonts-bwht fonts-breip
  fonts-humor-sans fonts-rufscript fonts-sjfonts fonts-comic-neue`).

Each image gets a random size (16 to ~1500 px), margins, stroke width,
rotation, polarity, paper and ink tones, uneven lighting, blur and noise, and
is saved as grey or RGB PNG or JPEG.  `--paper ruled` or `squared` writes the
digits on a notebook's lines or squares (dark ink only: a board has none);
`--shadow` casts a soft shadow across part of each picture, its edge through
the digit half of the time.
The same seed gives the same files.
A missing source is skipped with a message; the script fails only when none
is available.
"""

from __future__ import annotations

import argparse
import csv
import glob
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from convnet.cli import fraction, positive_int, report_errors

# Debian package -> font files whose digits look handwritten.  fonts-femkeklaver
# is left out: its glyphs are hollow outlines, not strokes.
FONT_PACKAGES = {
    "fonts-dkg-handwriting": ["/usr/share/fonts/truetype/fifthhorseman/dkg*.ttf"],
    "fonts-bwht": ["/usr/share/fonts/opentype/bwht/BecauseWe*.otf"],
    "fonts-breip": ["/usr/share/fonts/truetype/breip/Breip.ttf"],
    "fonts-humor-sans": ["/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf"],
    "fonts-rufscript": ["/usr/share/fonts/truetype/rufscript/Rufscript*.ttf"],
    "fonts-sjfonts": ["/usr/share/fonts/truetype/sjfonts/*.ttf"],
    "fonts-comic-neue": ["/usr/share/fonts/opentype/comic-neue/ComicNeue-*.otf"],
}
GLYPH = 256  # side of the square a glyph is drawn in before augmentation

Glyph = Callable[[int, np.random.Generator, int], np.ndarray]  # (label, rng, px) -> white-on-black ink


def uci_source() -> Glyph | None:
    """Real handwriting from scikit-learn's copy of the UCI optical digits, or None."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("skipping uci: scikit-learn is not installed (pip install scikit-learn)", file=sys.stderr)
        return None
    digits = load_digits()
    by_label = [digits.images[digits.target == label] / 16 for label in range(10)]

    def glyph(label: int, rng: np.random.Generator, px: int) -> np.ndarray:
        cells = by_label[label][rng.integers(len(by_label[label]))].astype(np.float32)
        coverage = np.asarray(Image.fromarray(np.pad(cells, 1)).resize((px, px), Image.BICUBIC))
        # Each cell counts the ink in a 4x4 block of the original 32x32 scan: a
        # soft threshold turns the blurred counts back into a pen line.
        level = rng.uniform(0.3, 0.55)
        return np.clip((coverage - level) / 0.12 + 0.5, 0, 1)

    return glyph


def font_sources(extra: list[str]) -> dict[str, Glyph]:
    """One source per installed handwriting font (plus any --font files)."""
    paths = sorted(p for patterns in FONT_PACKAGES.values() for pattern in patterns for p in glob.glob(pattern))
    paths += extra
    if not paths:
        packages = " ".join(FONT_PACKAGES)
        print(f"skipping fonts: no handwriting font found (apt-get install {packages})", file=sys.stderr)
    sources = {}
    for path in paths:
        try:
            ImageFont.truetype(path, 20)
        except OSError as exc:
            print(f"skipping font {path}: {exc}", file=sys.stderr)
            continue
        sources[f"font-{Path(path).stem}"] = _font_glyph(path)
    return sources


def _font_glyph(path: str) -> Glyph:
    def glyph(label: int, rng: np.random.Generator, px: int) -> np.ndarray:
        font = ImageFont.truetype(path, int(px * 0.7))
        canvas = Image.new("L", (px, px), 0)
        bold = int(rng.choice([0, 0, 0, 1, 2]) * px / GLYPH)  # PIL's text stroke thickens the glyph
        ImageDraw.Draw(canvas).text(
            (px / 2, px / 2), str(label), font=font, fill=255, anchor="mm", stroke_width=bold, stroke_fill=255
        )
        return np.asarray(canvas, np.float32) / 255

    return glyph


def render(glyph: Glyph, label: int, rng: np.random.Generator,
           paper: str = "plain", shadow: bool = False) -> tuple[Image.Image, dict[str, object]]:
    """One augmented image of `label` and a description of how it was made."""
    size = int(np.exp(rng.uniform(np.log(16), np.log(1500))))  # longer side of the picture
    ink = Image.fromarray(glyph(label, rng, min(max(GLYPH, size), 1200)))
    ink = _vary_stroke(ink, rng)
    ink = ink.rotate(rng.uniform(-12, 12), Image.BILINEAR, expand=True)
    ink = ink.resize((max(1, int(ink.width * rng.uniform(0.8, 1.2))), ink.height), Image.BILINEAR)
    ink = ink.crop(ink.getbbox())
    # The digit fills 35-90 % of the picture's height; the picture is roughly square.
    height = max(8, int(size * rng.uniform(0.35, 0.9)))
    width = max(3, int(ink.width * height / ink.height))
    canvas_w, canvas_h = max(width + 2, int(size * rng.uniform(0.75, 1.33))), max(height + 2, size)
    placed = np.zeros((canvas_h, canvas_w), np.float32)
    top, left = rng.integers(0, canvas_h - height + 1), rng.integers(0, canvas_w - width + 1)
    placed[top : top + height, left : left + width] = np.asarray(ink.resize((width, height), Image.LANCZOS))
    image, polarity = _photograph(np.clip(placed, 0, 1), rng, lambda: _rules(paper, placed.shape, height, rng), shadow)
    fmt = "jpg" if rng.random() < 0.4 else "png"
    return image, {"size": max(canvas_w, canvas_h), "polarity": polarity, "format": fmt, "mode": image.mode}


def _vary_stroke(ink: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Thinner or thicker pens: grey erosion or dilation at glyph resolution."""
    step = int(rng.choice([-2, -1, 0, 0, 1, 2, 3]))
    size = 2 * abs(step) * max(1, ink.width // GLYPH) + 1
    if step < 0:
        return ink.filter(ImageFilter.MinFilter(size))
    return ink.filter(ImageFilter.MaxFilter(size)) if step > 0 else ink


def _rules(paper: str, shape: tuple[int, int], digit_height: int, rng: np.random.Generator) -> np.ndarray | None:
    """A notebook's printed lines (ruled) or squares, as a mask: a digit fills most of a line's height, or one or two
    squares."""
    if paper == "plain":
        return None
    h, w = shape
    spacing = digit_height * (rng.uniform(1.0, 1.6) if paper == "ruled" else rng.uniform(0.45, 1.0))
    thick = max(1.0, rng.uniform(0.002, 0.006) * max(h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tilt = np.tan(np.radians(rng.uniform(-2, 2)))

    def lines(along: np.ndarray, across: np.ndarray) -> np.ndarray:
        phase = (along + tilt * across + rng.uniform(0, spacing)) % spacing
        return np.clip(thick / 2 + 0.5 - np.minimum(phase, spacing - phase), 0, 1)  # anti-aliased edges

    mask = lines(yy, xx)
    return np.maximum(mask, lines(xx, -yy)) if paper == "squared" else mask


def _photograph(ink: np.ndarray, rng: np.random.Generator, rules: Callable[[], np.ndarray | None] = lambda: None,
                shadow: bool = False) -> tuple[Image.Image, str]:
    """Paper (with its `rules` for dark ink), pen, light (and a `shadow`), blur and sensor noise around a white-on-black
    ink mask."""
    h, w = ink.shape
    dark_ink = rng.random() < 0.8
    if dark_ink:
        paper, pen = rng.uniform(0.65, 1.0), rng.uniform(0.0, 0.35)
    else:  # chalk or a white pen on a dark board, or an already inverted scan
        paper, pen = rng.uniform(0.0, 0.3), rng.uniform(0.75, 1.0)
    colour = rng.random() < 0.5
    tint = rng.uniform(0.9, 1.1, 3) if colour else np.ones(3)
    pens = [np.ones(3), np.array([0.4, 0.5, 1.4]), np.array([1.4, 0.5, 0.5])]  # black, blue, red
    pen_tint = pens[rng.integers(3)] if colour else np.ones(3)
    rgb = (paper * tint)[None, None] * (1 - ink[..., None]) + (pen * pen_tint)[None, None] * ink[..., None]
    printed = rules() if dark_ink else None
    if printed is not None:  # pale blue or grey lines under the ink, a quarter to half of the way to the pen's tone
        line = paper - rng.uniform(0.25, 0.5) * (paper - pen)
        line_tint = np.array([0.8, 0.9, 1.15]) if colour and rng.random() < 0.7 else np.ones(3)
        under = printed * (1 - ink)
        rgb = rgb * (1 - under[..., None]) + (line * line_tint)[None, None] * under[..., None]
    if rng.random() < 0.6:  # light falling off across the page, and a vignette
        yy, xx = np.mgrid[0:1:h * 1j, 0:1:w * 1j]
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle)
        light = 1 - rng.uniform(0, 0.5) * (ramp + 0.5) - rng.uniform(0, 0.3) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
        rgb = rgb * light[..., None]
    if shadow:
        rgb = rgb * _shade(ink, rng)[..., None]
    image = Image.fromarray(np.uint8(np.clip(rgb, 0, 1) * 255))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * max(h, w) / 300))
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(0, 0.04) * 255, (h, w, 3))
    image = Image.fromarray(np.uint8(np.clip(noisy, 0, 255)))
    return (image if colour else image.convert("L")), ("dark-on-light" if dark_ink else "light-on-dark")


def _shade(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The light left by a soft shadow (a hand's or a phone's) over part of the picture: 15-50 % darker in the shade,
    its edge a straight line at any angle, blurred over 1-8 % of the shorter side, through the digit half of the time
    and anywhere in the middle of the picture otherwise."""
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    across = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    weight = ink.sum()
    centre = (across * ink).sum() / weight if weight else 0.0
    side = min(h, w)
    edge = centre + rng.uniform(-0.3, 0.3) * side if rng.random() < 0.5 else rng.uniform(-0.4, 0.4) * side
    soft = rng.uniform(0.01, 0.08) * side
    return 1 - rng.uniform(0.15, 0.5) / (1 + np.exp(-np.clip((across - edge) / soft, -50, 50)))


def build(out: Path, count: int, seed: int, sources: dict[str, tuple[Glyph, float]], paper: str = "plain",
          shadow: bool = False) -> None:
    """Write `count` images, labels in turn and sources drawn by weight, plus the manifest."""
    names = sorted(sources)
    weights = np.array([sources[name][1] for name in names])
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "source", "size", "polarity", "format", "mode"])
        writer.writeheader()
        for index in range(count):
            rng = np.random.default_rng([seed, index])  # each file reproducible on its own
            label, source = index % 10, names[rng.choice(len(names), p=weights / weights.sum())]
            image, info = render(sources[source][0], label, rng, paper, shadow)
            path = out / str(label) / f"{source}-{index:05d}.{info['format']}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if info["format"] == "jpg":
                image.save(path, quality=int(rng.integers(50, 96)))
            else:
                image.save(path)
            writer.writerow({"path": path.relative_to(out).as_posix(), "label": label, "source": source, **info})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (new or empty); one sub-folder per label")
    parser.add_argument("--count", type=positive_int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--uci-share", type=fraction, default=0.5, help="share of UCI handwriting when available")
    parser.add_argument("--font", action="append", default=[], help="extra font file to use (repeatable)")
    parser.add_argument("--paper", choices=["plain", "ruled", "squared"], default="plain",
                        help="blank paper (default), or a notebook's lines or squares under dark ink")
    parser.add_argument("--shadow", action="store_true", help="a soft shadow across part of each picture")
    args = parser.parse_args(argv)
    if args.seed < 0:  # numpy's generators take none
        parser.error(f"--seed must be 0 or more, not {args.seed}")
    # Another set's files left beside this one's would be scored with it, though its manifest lists only its own.
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"{args.out} must be a new or empty folder: it is a file, or holds files already")
    fonts = font_sources(args.font)
    uci = uci_source()
    font_share = (1 - args.uci_share if uci else 1) / max(len(fonts), 1)
    sources = {name: (glyph, font_share) for name, glyph in fonts.items()}
    if uci:
        sources["uci"] = (uci, args.uci_share if fonts else 1)
    if not sources:
        print("no source of digits is available: see the messages above", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.out, args.count, args.seed, sources, args.paper, args.shadow)
    print(f"wrote {args.count} images from {len(sources)} sources to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
