"""Recognition of real images with the model shipped in the package, through the API and the CLI."""
import copy
import io
import itertools
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from convnet.errors import ConfigError
from convnet.infer import BLOB, LINES, OUTLINE, SEVERAL, Recognizer, expand_paths
from convnet.preprocess import load_gray

# A shared drawing helper (tests/ is on sys.path under pytest's default import mode).
from test_preprocess import slanted_bar_five

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DIGITS = sorted((EXAMPLES / "digits").glob("*.*"))


def label_of(path: Path) -> str:
    return path.name.split("-")[0]  # examples/digits/<label>-<description>.<ext>


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def test_shipped_model_card(recognizer):
    card = recognizer.model.card
    assert card["architecture"] == "robust" and recognizer.model.classes == [str(i) for i in range(10)]
    assert card["metrics"]["test_accuracy"] >= 0.996 and 0.1 < card["temperature"] < 10


def test_sample_digits_are_recognised(recognizer):
    assert len(DIGITS) >= 8
    results = recognizer.predict([str(p) for p in DIGITS])
    wrong = [(p.name, r.label) for p, r in zip(DIGITS, results) if r.label != label_of(p)]
    assert not wrong
    for r in results:
        assert r.confidence >= 0.5 and len(r.top_k) == 3 and abs(sum(r.probabilities) - 1) < 1e-4
        assert r.top_k[0] == (r.label, r.confidence) and r.top_k[0][1] >= r.top_k[1][1] >= r.top_k[2][1]


@pytest.mark.parametrize("digit", ["0", "4", "5", "7", "2"])
def test_a_digit_written_on_an_answer_line_is_read_without_it(recognizer, digit):
    """The line under the digit, touching it, joined it into one piece read as a confident 2 (or a 1); without the
    line the digit reads as itself, and a 2, whose base the line may be, keeps it."""
    from PIL import ImageDraw

    from test_preprocess import draw_strokes

    canvas = Image.new("L", (400, 300), 0)
    draw = ImageDraw.Draw(canvas)
    draw_strokes(draw, digit, (160, 40, 65, 100), 12)
    draw.line([(95, 144), (290, 144)], fill=255, width=5)  # reaching a digit's width past it on both sides
    assert recognizer.predict(1 - np.asarray(canvas, np.float32) / 255).label == digit


@pytest.mark.parametrize("past, alternative", [(0.4, False), (0.8, True)])
def test_only_a_rule_reaching_well_past_the_digit_gives_a_second_reading(past, alternative):
    """A 2's base can reach past its narrow body on both sides (MNIST's 8031 and 8153, a third to a half of its
    width): read without it, the 2 was a surer 7. A line the digit stands on reaches further."""
    from convnet.preprocess import _under_all

    ink = np.zeros((100, 200), np.float32)
    ink[20:80, 90:110] = 1  # the body, 20 px wide
    rule = np.zeros(ink.shape, bool)
    rule[80:84, round(90 - 20 * past):round(110 + 20 * past)] = True
    assert _under_all(rule, np.where(rule, 1, ink)) == alternative


def test_every_input_kind_gives_the_same_answer(recognizer):
    path = DIGITS[0]
    image = Image.open(path)
    gray = np.asarray(image.convert("L"))
    inputs = [str(path), path, path.read_bytes(), image, gray, np.stack([gray / 255.0] * 3, -1),
              gray.astype(np.uint16) * 257]
    labels = {r.label for r in recognizer.predict(inputs)}
    assert labels == {label_of(path)}
    single = recognizer.predict(gray)
    assert single.label == label_of(path) and single.path is None


def test_blank_and_unsure_inputs_get_no_label(recognizer):
    blank = recognizer.predict(np.full((64, 64), 255, np.uint8))
    assert blank.label is None and blank.reason == "no ink found" and blank.error is None
    strict = Recognizer(recognizer.model, min_confidence=0.999999).predict(str(DIGITS[0]))
    assert strict.label is None and strict.reason == "low confidence" and strict.top_k


# A tap's dot, 3 and 5 px across (sharp, it was a confident 8: its rendering a cross), a dot; a filled oval
@pytest.mark.parametrize("box", [(98, 98, 101, 101), (98, 98, 103, 103), (90, 90, 104, 104), (40, 30, 150, 170)])
def test_a_solid_blob_gets_no_digit_unless_every_answer_is_asked_for(recognizer, box):
    page = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(page).ellipse(box, fill=0)
    blob = recognizer.predict(np.asarray(page))
    assert blob.label is None and blob.reason == BLOB and blob.top_k  # its guesses stay, as for low confidence
    assert Recognizer(recognizer.model, min_confidence=0).predict(np.asarray(page)).label == blob.top_k[0][0]
    other = copy.deepcopy(recognizer.model)
    other.classes = list("abcdefghij")  # a model of other things than digits: a blob may be one of them
    assert Recognizer(other).predict(np.asarray(page)).reason != BLOB


@pytest.mark.parametrize("dark", [True, False])
def test_a_blurred_dot_or_an_empty_box_gets_no_digit(recognizer, dark):
    # Each read as a confident 0: the dot's soft edge failed the blob check's evenness, and the box is no blob at all.
    dot, box = Image.new("L", (200, 200), 255), Image.new("L", (200, 200), 255)
    ImageDraw.Draw(dot).ellipse((80, 90, 100, 110), fill=0)
    ImageDraw.Draw(box).rectangle((50, 40, 150, 140), outline=0, width=6)
    pages = [np.asarray(page.filter(ImageFilter.GaussianBlur(blur))) for page, blur in ((dot, 8), (box, 1))]
    if not dark:
        pages = [255 - page for page in pages]
    assert [(p.label, p.reason) for p in recognizer.predict(pages)] == [(None, BLOB), (None, OUTLINE)]
    assert all(p.label == "0" for p in Recognizer(recognizer.model, min_confidence=0).predict(pages))


def _equals_sign(width: int, gap: int) -> np.ndarray:
    page = Image.new("L", (200, 200), 255)
    for y in (100 - gap // 2, 100 + gap // 2):
        ImageDraw.Draw(page).line([(50, y), (150, y)], fill=0, width=width)
    return np.asarray(page)


@pytest.mark.parametrize("width, gap", [(4, 40), (8, 40), (8, 60)])
def test_an_equals_sign_is_no_digit_nor_a_number(recognizer, width, gap):
    """Joined as one above the other, as a 5's bar joins its body, an "=" of thin strokes passed for a digit: a 2 at
    up to 85 %. Nothing but straight lines is no digit, whatever the model says, and no number."""
    equals = _equals_sign(width, gap)
    answer = recognizer.predict(equals)
    assert answer.label is None and answer.reason == LINES and answer.top_k
    assert Recognizer(recognizer.model, min_confidence=0).predict(equals).label == answer.top_k[0][0]
    reading = recognizer.read(equals)
    assert reading.number is None and reading.reason == "not a number: only straight lines"


def test_a_number_gets_no_digit_and_is_sent_to_read(recognizer):
    """`predict` reads one digit: it answered 156 with a 4 at 74 %, and any number with one of its digits or a guess
    at a low confidence. Now it says how many digits it sees, and what reads them, whatever its confidence."""
    numbers = sorted((EXAMPLES / "numbers").glob("*-mnist-test-digits.png"))  # digits apart, as MNIST's are
    results = recognizer.predict([str(p) for p in numbers])
    assert [(r.label, r.reason) for r in results] == [(None, SEVERAL.format(len(p.name.split("-")[0])))
                                                      for p in numbers]
    assert all(r.top_k for r in results)  # its guesses stay, as for a low confidence
    assert Recognizer(recognizer.model, min_confidence=0).predict(str(numbers[0])).label == results[0].top_k[0][0]
    other = copy.deepcopy(recognizer.model)
    other.classes = list("abcdefghij")  # a model of other things than digits: they may stand side by side
    assert Recognizer(other).predict(str(numbers[0])).reason != results[0].reason
    done = cli("predict", numbers[0], "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["reason"] == results[0].reason == \
        "3 digits, not one: read numbers with `convnet read`"
    assert cli("predict", numbers[0]).stdout.startswith(f"{numbers[0]}: ? ({results[0].reason})   4:")


def test_digits_sharing_a_sliver_of_columns_get_no_digit_a_5_with_its_bar_apart_does(recognizer):
    """905 on squared paper: its 9 and 0 touch, and its 5 shares a sliver of the 0's columns; predict answered it as
    one digit ('low confidence', an 8 at 40 %). The touching 9 and 0 count as one, as touching digits do: 2, not 3.
    A 5 whose bar is drawn apart over a sliver of its body's columns, together wider than tall, is still a 5."""
    number = recognizer.predict(str(EXAMPLES / "numbers" / "905-stevehand-squared-paper.png"))
    assert (number.label, number.reason) == (None, SEVERAL.format(2))
    assert recognizer.predict(1 - slanted_bar_five()).label == "5"


def bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {"empty": folder / "empty.png", "text": folder / "notes.png", "truncated": folder / "cut.png",
             "huge": folder / "huge.png", "animated": folder / "anim.gif", "no images": folder / "emptydir"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(DIGITS[0].read_bytes()[:200] if DIGITS[0].suffix == ".png" else b"\x89PNG\r\n")
    files["huge"].write_bytes(_png_header(20_000, 20_000))
    frames = [Image.new("L", (32, 32), v) for v in (0, 255)]
    frames[0].save(files["animated"], save_all=True, append_images=frames[1:])
    files["no images"].mkdir()
    (files["no images"] / "readme.txt").write_text("nothing here")
    return files


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a huge size (made without allocating it): the header is all a reader should look at."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    data = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + data + chunk(b"IEND", b"")


def test_bad_files_each_get_a_clear_error(recognizer, tmp_path):
    files = bad_files(tmp_path / "bad")
    items = list(expand_paths([str(p) for p in files.values()] + [str(DIGITS[0])]))
    results = list(recognizer.predict_files(items))
    assert len(results) == len(files) + 1
    for result in results[:-1]:
        assert result.label is None and result.error, result
    assert results[-1].label == label_of(DIGITS[0]) and results[-1].error is None
    errors = {name: r.error for name, r in zip(files, results)}
    assert "empty" in errors["empty"].lower()
    assert "no images found" in errors["no images"]
    assert "several frames (an animation" in errors["animated"]
    assert "pixels" in errors["huge"].lower() or "too large" in errors["huge"].lower()


def test_a_folder_or_pattern_given_to_predict_says_how_to_read_its_images(recognizer, tmp_path):
    way = "predict_files(expand_paths([...])) reads the images of folders and patterns"
    folder = DIGITS[0].parent
    for source in (str(folder), folder, str(folder / "*.png")):
        assert recognizer.predict(source).error.endswith(way)
    assert way not in recognizer.predict(tmp_path / "missing.png").error  # a plain missing file: no such advice
    (tmp_path / "scan[1].png").write_bytes(b"not a png")  # a file whose name has a pattern's brackets: no advice
    assert way not in recognizer.predict(tmp_path / "scan[1].png").error
    assert [p.label for p in recognizer.predict_files(expand_paths([str(folder / "*.png")]))][:1] == [
        label_of(sorted(folder.glob("*.png"))[0])]


def test_paths_stream_lazily(recognizer):
    endless = ((str(DIGITS[0]), None) for _ in itertools.count())  # would never end if collected first
    first = list(itertools.islice(recognizer.predict_files(endless, chunk=8), 20))
    assert len(first) == 20 and {r.label for r in first} == {label_of(DIGITS[0])}


def test_files_may_be_plain_paths_and_one_path_alone_is_refused_with_the_way(recognizer, tmp_path):
    folder = DIGITS[0].parent
    plain = [p.label for p in recognizer.predict_files([DIGITS[0], str(DIGITS[1])])]  # paths, not expand_paths' pairs
    assert plain == [label_of(DIGITS[0]), label_of(DIGITS[1])]
    assert [r.path for r in recognizer.read_files([DIGITS[0]])] == [str(DIGITS[0])]
    for method in (recognizer.predict_files, recognizer.read_files):
        for one in (str(folder), folder):  # iterated, its characters would be paths ("/": the whole disk)
            with pytest.raises(ConfigError, match=r"not one path: \w+\(expand_paths\(\["):
                next(iter(method(one)))
        for wrong in ([b"x.png"], [("a.png",)], [(str(DIGITS[0]), None, None)], [7]):
            with pytest.raises(ConfigError, match="file paths or the \\(path, error\\) pairs of expand_paths"):
                next(iter(method(wrong)))


def test_expand_paths_takes_one_path_alone_and_pathlib_paths(tmp_path):
    (tmp_path / "1.png").write_bytes(b"x")
    expected = [(str(tmp_path / "1.png"), None)]
    assert list(expand_paths(str(tmp_path))) == list(expand_paths(tmp_path)) == expected  # not one per character
    assert list(expand_paths([tmp_path / "*.png"])) == expected
    assert list(expand_paths([tmp_path / "missing.png"]))[0][1].endswith("no such file or folder")  # not a TypeError
    with pytest.raises(ConfigError, match="paths or glob patterns .* not bytes"):
        list(expand_paths([b"x.png"]))


def test_expand_paths_folders_and_globs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/1.png", "a/b/2.JPG", "a/skip.txt", "a/._1.png", "a/.hidden/3.png", "a/b/4.avif"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list[str] = []
    found = [p for p, error in expand_paths([str(tmp_path / "a")], skipped)]
    assert found == [str(tmp_path / "a" / "1.png"), str(tmp_path / "a" / "b" / "2.JPG"),
                     str(tmp_path / "a" / "b" / "4.avif")]
    assert skipped == [str(tmp_path / "a" / ".hidden") + os.sep, str(tmp_path / "a" / "._1.png"),
                       str(tmp_path / "a" / "skip.txt")]  # a hidden folder as itself, not its files
    assert [p for p, _ in expand_paths([str(tmp_path / "a" / "._1.png")])] == [str(tmp_path / "a" / "._1.png")]
    assert [p for p, _ in expand_paths([str(tmp_path / "a" / "*.png")])] == [str(tmp_path / "a" / "1.png")]
    assert list(expand_paths([str(tmp_path / "nope*.png")]))[0][1].endswith("no files match")
    # A glob reads the images it matches, as a folder does: `a/*` or `a/**` read no notes (they were read and failed,
    # listed after the subfolders' images).
    for pattern in ("*", "**"):
        skipped = []
        found = [p for p, error in expand_paths([str(tmp_path / "a" / pattern)], skipped)]
        assert found == [str(tmp_path / "a" / name) for name in ("1.png", "b/2.JPG", "b/4.avif")]
        assert str(tmp_path / "a" / "skip.txt") in skipped
    assert list(expand_paths([str(tmp_path / "a" / "*.txt")]))[0][1].endswith("none of the 1 files it matches is "
                                                                              "named as an image")
    assert [p for p, _ in expand_paths([str(tmp_path / "a" / ".*.png")])] == [str(tmp_path / "a" / "._1.png")]
    assert list(expand_paths([str(tmp_path / "missing.png")]))[0][1].endswith("no such file or folder")
    assert list(expand_paths([""])) == [("", "empty path")]


def test_globs_open_the_folders_they_match_and_list_each_image_once(tmp_path):
    for name in ("imgs/1.png", "imgs2/2.png", "imgs2/sub/3.bmp", "imgs2/skip.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    expected = [str(tmp_path / n) for n in ("imgs/1.png", "imgs2/2.png", "imgs2/sub/3.bmp")]
    assert [p for p, error in expand_paths([str(tmp_path / "imgs*")]) if error is None] == expected
    everything = [p for p, _ in expand_paths([str(tmp_path / "**")])]  # names each folder and each file
    assert len(everything) == len(set(everything)) and set(expected) <= set(everything)


def test_globs_do_not_follow_links_to_folders_and_list_each_image_once(tmp_path):
    (tmp_path / "gl" / "sub").mkdir(parents=True)
    (tmp_path / "gl" / "sub" / "a.png").write_bytes(b"x")
    (tmp_path / "gl" / "self").symlink_to(".")  # glob's `**` went gl/self/self/…/sub/a.png, 40 links deep
    expected = [(str(tmp_path / "gl" / "sub" / "a.png"), None)]
    for pattern in ("gl/**/*.png", "gl/**"):
        assert list(expand_paths([str(tmp_path / pattern)])) == expected
    assert len(list(expand_paths([str(tmp_path / "gl" / "*")]))) == 1  # gl/self/sub/a.png is gl/sub/a.png
    (tmp_path / "gl" / "sub" / "up").symlink_to("..")  # two links in a loop: glob's `**` did not end
    assert list(expand_paths([str(tmp_path / "gl" / "**" / "*.png")])) == expected
    (tmp_path / "gl" / "b.png").symlink_to("sub/a.png")  # a link to a file: the same image under another name
    assert list(expand_paths([str(tmp_path / "gl" / "**" / "*.png")])) == [(str(tmp_path / "gl" / "b.png"), None)]


def test_globs_stream_folder_by_folder(tmp_path, monkeypatch):
    for name in ("t/b.png", "t/a/c.png", "t/d.png", "t/e/f.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p for p, _ in expand_paths([str(tmp_path / "t" / "**" / "*.png")])]
    assert found == [str(tmp_path / "t" / n) for n in ("b.png", "d.png", "a/c.png", "e/f.png")]  # as a folder walk
    listed = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(path) or real(path))
    next(expand_paths([str(tmp_path / "t" / "**" / "*.png")]))
    assert len(listed) == 1  # the first answer comes before the subfolders are listed


def test_a_symlink_loop_named_directly_says_so(recognizer, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    [result] = recognizer.predict_files(expand_paths([str(tmp_path / "loop")]))
    assert "symbolic links" in result.error


def test_one_bad_item_in_a_list_spoils_nothing(recognizer):
    import torch

    good = str(DIGITS[0])
    bad = [np.zeros((0, 0, 3)), "a\0b.png", np.array([["a", "b"]]), None, 5]
    results = recognizer.predict([good, *bad, torch.from_numpy(load_gray(good))])
    assert results[0].label == label_of(DIGITS[0]) and results[-1].label == label_of(DIGITS[0])
    assert all(r.label is None and r.error for r in results[1:-1]), results[1:-1]


def test_tensors_in_torch_layouts_and_types(recognizer):
    import torch

    gray = torch.from_numpy(load_gray(str(DIGITS[0])))
    for tensor in (gray, gray[None], gray.to(torch.bfloat16), gray[None].expand(3, -1, -1)):
        assert recognizer.predict(tensor).label == label_of(DIGITS[0]), (tensor.shape, tensor.dtype)


def test_tensors_without_readable_numbers_are_errors_not_exceptions(recognizer):
    import torch

    good = torch.from_numpy(load_gray(str(DIGITS[0])))
    bad = [torch.empty(28, 28, device="meta"), good.to_sparse()]
    results = recognizer.predict([*bad, good])
    assert all(r.label is None and "tensor" in r.error for r in results[:-1]), results
    assert "meta" in results[0].error and results[-1].label == label_of(DIGITS[0])
    assert "meta" in recognizer.predict(bad[0]).error
    reading = recognizer.read(bad[0])
    assert reading.number is None and "meta" in reading.error


def test_one_array_is_one_image_and_a_stack_is_refused_with_the_way_out(recognizer):
    import torch

    grays = np.stack([load_gray(str(p)) for p in DIGITS[:1]] * 5)
    stacks = [grays, grays[:3], grays[..., None], torch.from_numpy(grays), torch.from_numpy(grays[:, None])]
    for stack in stacks:
        result = recognizer.predict(stack)  # one input, so one answer: an error, never a guess or an exception
        assert result.label is None and "not one image" in result.error and "list(" in result.error, stack.shape
        assert [r.label for r in recognizer.predict(list(stack))] == [label_of(DIGITS[0])] * len(stack)
    rgb = torch.from_numpy(grays[:3])  # three gray images, or one RGB image as torch loaders give it: channels
    assert recognizer.predict(rgb).label == label_of(DIGITS[0])


def test_flattened_images_are_refused_with_the_way_out(recognizer):
    import torch

    from convnet.preprocess import preprocess

    flat = np.stack([preprocess(path) for path in DIGITS[:3]]).reshape(3, 784)  # read as one strip: a confident 1
    for images, way_out in [(flat, "list(x.reshape(-1, 28, 28))"), (flat.T, "list(x.T.reshape(-1, 28, 28))"),
                            (flat[:1].T, "x.T.reshape"), (flat[..., None], "x.reshape"),
                            (torch.from_numpy(flat), "x.reshape")]:
        result = recognizer.predict(images)
        assert result.label is None and "flattened 28x28 images" in result.error and way_out in result.error
    no_data = recognizer.predict(torch.zeros(3, 784, device="meta"))  # checked before the loader's own check
    assert "cannot read a torch.float32 tensor on meta" in no_data.error
    # A picture 784 pixels wide is one image, however short: a digit on a strip of paper as an array.
    paper = np.full((150, 784), 255, np.uint8)
    paper[30:130, 300:400] = np.asarray(Image.open(DIGITS[0]).convert("L").resize((100, 100)))
    assert recognizer.predict(paper).label == label_of(DIGITS[0])


def test_recognition_needs_a_28_by_28_gray_model():
    from convnet.models import create_model

    with pytest.raises(ConfigError, match="takes 32×32 images with 1 channel"):
        Recognizer(create_model("fast", input_size=(32, 32)))


def test_predict_cli_survives_a_file_name_the_terminal_cannot_print(tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path / "odd") + b"/bad\xff\xfe.png"))
    odd.parent.mkdir()
    odd.write_bytes(DIGITS[0].read_bytes())
    (odd.parent / "z.png").write_bytes(DIGITS[1].read_bytes())
    done = subprocess.run([sys.executable, "-m", "convnet", "predict", str(odd.parent)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "bad\\udcff\\udcfe.png: " + label_of(DIGITS[0]) in lines[0]


def test_predict_cli_counts_each_file_left_out_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "._x.png").write_bytes(b"macOS metadata")
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "1.png").write_bytes(DIGITS[0].read_bytes())
    (tmp_path / "sub" / ".ipynb_checkpoints").mkdir()  # a hidden folder: said once, however many images it holds
    for name in ("2.png", "3.png"):
        (tmp_path / "sub" / ".ipynb_checkpoints" / name).write_bytes(DIGITS[1].read_bytes())
    done = cli("predict", tmp_path / "**")  # walks sub/ again under each folder above it, and matches notes.txt
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1, done.stdout
    assert "convnet: 3 file(s) or folder(s) of the folders and globs left out" in done.stderr, done.stderr
    done = cli("predict", tmp_path / "sub")
    assert f"2 file(s) or folder(s) of the folders and globs left out, as hidden or not named as images (first: " \
           f"{tmp_path / 'sub' / '.ipynb_checkpoints'}/)" in done.stderr, done.stderr


def test_predict_cli_prints_one_line_per_file_whatever_its_name(tmp_path):
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes(DIGITS[0].read_bytes())
    done = cli("predict", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path}/two\\nlines.png: {label_of(DIGITS[0])} ")


def test_a_folder_named_like_the_shipped_model_does_not_replace_it(tmp_path, monkeypatch, capsys):
    from convnet.cli import main
    from convnet.errors import ModelError

    (tmp_path / "default").mkdir()  # `convnet predict` gave "default: missing model.safetensors" here
    monkeypatch.chdir(tmp_path)
    assert Recognizer.load().predict(str(DIGITS[0])).label == label_of(DIGITS[0])
    for model in ([], ["--model", "default"]):
        assert main(["predict", str(DIGITS[0]), *model]) == 0
        assert capsys.readouterr().out.split()[1] == label_of(DIGITS[0])
    for ref in ("./default", Path("default")):  # the folder, named as a path
        with pytest.raises(ModelError, match="missing model.safetensors"):
            Recognizer.load(ref)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "convnet", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_dash_and_named_pipes_read_standard_input():
    image = DIGITS[0].read_bytes()
    named = [["predict", "/dev/stdin"]] if os.path.exists("/dev/stdin") else []  # Windows has no path for it
    for args in (["predict", "-"], *named, ["read", "-"]):
        done = subprocess.run([sys.executable, "-m", "convnet", *args], input=image, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().split()[:2 if args[0] == "predict" else 1][-1] == label_of(DIGITS[0])
    empty = subprocess.run([sys.executable, "-m", "convnet", "predict", "-"], input=b"", capture_output=True,
                           timeout=120)
    assert empty.returncode == 1 and b"-: error: standard input is empty" in empty.stdout


def test_a_dash_reads_standard_input_without_dev_stdin(tmp_path, monkeypatch, capsys):
    """Windows has no /dev/stdin, which `-` stood for: there it said "/dev/stdin: no such file". It names standard
    input itself now, read from descriptor 0; a redirected file from its start, each time it is named."""
    from convnet.cli import main

    stat = os.stat

    def no_dev_stdin(path, *args, **kwargs):
        if str(path) == "/dev/stdin":
            raise FileNotFoundError(2, "No such file or directory", path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", no_dev_stdin)
    monkeypatch.chdir(tmp_path)  # no file named `-` here
    saved = os.dup(0)
    try:
        with open(DIGITS[0], "rb") as image:  # `< digit.png`
            os.dup2(image.fileno(), 0)
        assert main(["predict", "-", "-", "--json"]) == 0
        answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(a["path"], a["label"]) for a in answers] == [("-", label_of(DIGITS[0]))] * 2
        assert main(["read", "-", "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert (answer["path"], answer["number"]) == ("-", label_of(DIGITS[0]))
        (tmp_path / "-").write_bytes(DIGITS[1].read_bytes())  # a file named `-` is read instead
        assert main(["predict", "-"]) == 0
        assert capsys.readouterr().out.split()[:2] == ["-:", label_of(DIGITS[1])]
    finally:
        os.dup2(saved, 0)
        os.close(saved)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no terminals to open, nor sockets as standard input")
def test_a_dash_reads_a_socket_and_refuses_a_terminal():
    """A parent process may hand its child a socket for standard input (Node's spawn does): its path cannot be
    opened, its size is 0, and "-" said "file is empty". A terminal holds no image: it said so too."""
    import socket

    parent, child = socket.socketpair()
    with parent, child:
        run = subprocess.Popen([sys.executable, "-m", "convnet", "predict", "-"], stdin=child, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        parent.sendall(DIGITS[0].read_bytes())
        parent.shutdown(socket.SHUT_WR)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert out.decode().split()[1] == label_of(DIGITS[0])
    leader, follower = os.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "convnet", "predict", "-"], stdin=follower, capture_output=True,
                              text=True, timeout=120)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 1 and "standard input is a terminal" in done.stdout, done.stdout + done.stderr
    with open(os.devnull, "rb") as nothing:  # a device too, that reads as empty
        done = subprocess.run([sys.executable, "-m", "convnet", "predict", "-"], stdin=nothing, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 1 and "-: error: standard input is empty" in done.stdout, done.stdout + done.stderr


def test_an_empty_image_path_is_a_usage_error():
    done = cli("predict", "")
    assert done.returncode == 2 and "an empty path names no image" in done.stderr and "Traceback" not in done.stderr


def test_a_named_pipe_with_no_writer_reads_as_empty_without_waiting(tmp_path):
    from convnet.errors import ImageError

    fifo = tmp_path / "stray.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="file is empty"):
        load_gray(fifo)


def test_predict_cli_json_lines(tmp_path):
    files = bad_files(tmp_path / "bad")
    done = cli("predict", *DIGITS[:3], files["text"], "--json", "--top-k", "2")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["label"] for r in rows[:3]] == [label_of(p) for p in DIGITS[:3]]
    assert all(set(r) >= {"path", "label", "confidence", "top_k", "error"} for r in rows)
    assert len(rows[0]["top_k"]) == 2 and rows[3]["label"] is None and rows[3]["error"]
    ok = cli("predict", EXAMPLES / "digits")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == len(DIGITS)
    text = cli("predict", DIGITS[0], files["text"])
    assert text.stdout.splitlines()[1] == f"{files['text']}: error: not an image file, or an unsupported format"


@pytest.mark.parametrize("args, words, code", [(["--min-confidence", "150"], "between 0 and 1", 2),
                                               (["--min-confidence", "-0.1"], "between 0 and 1", 2),
                                               (["--top-k", "0"], "at least 1", 2),
                                               (["--model", "nowhere"], "not a run folder", 1),
                                               (["--model", ""], "--model is empty", 1)])
def test_predict_cli_bad_options(args, words, code):
    done = cli("predict", DIGITS[0], *args)
    assert done.returncode == code and words in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("option, value, words", [("min_confidence", 1.5, "between 0 and 1"),
                                                  ("min_confidence", -0.1, "between 0 and 1"),
                                                  ("min_confidence", float("nan"), "between 0 and 1"),
                                                  ("min_confidence", "0.5", "a number"),
                                                  ("min_confidence", None, "a number"),
                                                  ("min_confidence", True, "a number"),
                                                  ("top_k", 0, "at least 1"), ("top_k", -5, "at least 1"),
                                                  ("top_k", 2.5, "whole number"), ("top_k", True, "whole number"),
                                                  ("batch_size", 0, "at least 1"), ("batch_size", -1, "at least 1"),
                                                  ("batch_size", "8", "whole number")])
def test_recognizer_rejects_bad_options_when_made(recognizer, option, value, words):
    with pytest.raises(ConfigError, match=words) as caught:
        Recognizer(recognizer.model, **{option: value})
    assert option in str(caught.value) and repr(value) in str(caught.value)


def test_recognizer_options_that_are_fine(recognizer):
    rec = Recognizer(recognizer.model, top_k=np.int64(20), batch_size=1, min_confidence=np.float32(0.25))
    assert rec.top_k == 10 and type(rec.top_k) is int and rec.min_confidence == 0.25  # top_k: at most the classes
    results = rec.predict([str(DIGITS[0]), str(DIGITS[1])])  # one image per batch
    assert [r.label for r in results] == [label_of(DIGITS[0]), label_of(DIGITS[1])] and len(results[0].top_k) == 10


def test_read_a_whole_number(recognizer):
    numbers = sorted((EXAMPLES / "numbers").glob("*.*"))
    assert len(numbers) >= 4
    for path in numbers:
        reading = recognizer.read(str(path))
        assert reading.number == path.name.split("-")[0] and reading.path == str(path), path.name
        assert len(reading.digits) == len(reading.number)
        xs = [d.box[0] for d in reading.digits]
        assert xs == sorted(xs) and 0 < reading.confidence <= 1


def test_a_blob_beside_a_number_withholds_it_and_says_why(recognizer):
    page = Image.open(EXAMPLES / "numbers" / "156-mnist-test-digits.png").convert("L")
    width, height = page.size
    ImageDraw.Draw(page).ellipse([width - 40, height // 2 - 15, width - 10, height // 2 + 15], fill=0)
    reading = recognizer.read(np.asarray(page))
    assert reading.number is None and reading.reason == BLOB and reading.path is None  # an array: no file
    assert [(d.label, d.reason) for d in reading.digits] == [("1", None), ("5", None), ("6", None), (None, BLOB)]


@pytest.mark.parametrize("angle", [2.5, -3.0])
def test_read_a_number_on_an_answer_line_a_little_off_level(recognizer, angle):
    """A thin rule through the digits' feet, far longer than the number, as a margin through a digit is: erased as
    one, its slant left stair-steps beside the number, read as a digit of their own (the number withheld)."""
    from test_preprocess import draw_strokes

    scale, width, height, digit = 4, 650, 216, 90  # drawn 4 times as large, then scaled down: smooth edges
    canvas = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(canvas)
    for k, name in enumerate("2573"):  # the number across the middle half
        draw_strokes(draw, name, ((162.5 + k * 89) * scale, 63 * scale, 58 * scale, digit * scale), 8.1 * scale)
    slope, feet = np.tan(np.radians(angle)), (63 + digit) * scale
    draw.line([(0, feet - slope * width * scale / 2), (width * scale, feet + slope * width * scale / 2)], fill=255,
              width=6)
    ink = np.asarray(canvas.resize((width, height), Image.BOX), np.float32) / 255
    assert recognizer.read(235 - 195 * ink).number == "2573"


def test_read_cli(tmp_path):
    number = sorted((EXAMPLES / "numbers").glob("*.*"))[0]
    done = cli("read", number, "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["number"] == number.name.split("-")[0] and answer["path"] == str(number)
    assert all(p == round(p, 6) for digit in answer["digits"] for _, p in digit["top_k"])  # as predict's
    unsure = cli("read", number, "--min-confidence", "1")  # which digits fell short, and their best guesses
    expected = "  ".join(f"{d}?:" for d in number.name.split("-")[0])
    assert unsure.stdout.startswith("?   (low confidence: ") and re.sub(r"[<>]?\d+\.\d%", "", unsure.stdout) == \
        f"?   (low confidence: {expected})\n"
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 80), 255).save(blank)
    done = cli("read", blank)
    assert done.returncode == 0 and done.stdout == "?   (no ink found)\n"
    done = cli("read", blank, "--json")  # no digits: no confidence, as predict says it
    assert json.loads(done.stdout) | {"path": None} == {"path": None, "number": None, "digits": [],
                                                        "confidence": None, "reason": "no ink found", "error": None}
    done = cli("read", tmp_path / "missing.png")
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_read_cli_reads_every_image_of_folders_and_globs(tmp_path, monkeypatch, capsys):
    """Several numbers at once, as predict takes digits: a line each, with its file's name; a file that fails is one
    line among them, and the exit status says so. One file named alone keeps its bare answer."""
    from convnet.cli import main

    numbers = sorted((EXAMPLES / "numbers").glob("*.*"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["read", str(EXAMPLES / "numbers"), str(broken)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(n) for n in numbers] + [str(broken)]
    assert [line.split(": ")[1].split()[0] for line in lines[:-1]] == [n.name.split("-")[0] for n in numbers]
    assert lines[-1] == f"{broken}: error: not an image file, or an unsupported format"
    assert err == "convnet: 1 input(s) could not be read\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty)]) == 1  # a folder with no images is no file that could not be read
    out, err = capsys.readouterr()
    assert out == f"{empty}: error: no images found in this folder\n"
    assert err == "convnet: 1 input(s) could not be read\n"
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["read", f"{EXAMPLES / 'numbers'}/1*.png", str(tmp_path), "--json"]) == 1  # a glob, then a folder
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["path"], r["number"]) for r in rows] == [(str(numbers[0]), "156"), (str(broken), None)]
    assert "not an image file" in rows[1]["error"] and f"left out, as hidden or not named as images (first: " \
        f"{tmp_path / 'notes.txt'})" in err
    monkeypatch.chdir(numbers[0].parent)
    assert main(["read", f"./{numbers[0].name}"]) == 0
    assert capsys.readouterr().out.startswith("156   (1:")  # no name before it: the one file named
    assert main(["read", str(tmp_path / "missing.png")]) == 1
    assert capsys.readouterr().err == f"convnet: error: {tmp_path / 'missing.png'}: no such file or folder\n"


def test_non_finite_probabilities_give_an_error_never_a_label():
    from convnet.models import create_model

    broken = Recognizer(create_model("fast"), min_confidence=0)
    for p in broken.model.parameters():
        p.data.fill_(float("nan"))  # NaN < min_confidence is False: unchecked, every digit would be asserted
    number = sorted((EXAMPLES / "numbers").glob("*.*"))[0]
    for result in [broken.predict(str(DIGITS[0])), *broken.predict_files(expand_paths([str(DIGITS[1])]))]:
        assert result.label is None and "non-finite" in result.error and result.confidence is None, result
        json.dumps(result.to_dict(), allow_nan=False)
    reading = broken.read(str(number))
    assert reading.number is None and "non-finite" in reading.error and reading.digits == []
    assert reading.confidence is None
    json.dumps(reading.to_dict(), allow_nan=False)


def test_a_name_too_long_is_one_bad_path_among_good_ones(recognizer, tmp_path):
    good, long = str(DIGITS[0]), str(tmp_path / ("a" * 300 + ".png"))  # ENAMETOOLONG from stat, not "not there"
    items = list(expand_paths([good, long, long + "/x.png", good]))
    assert [path for path, _ in items] == [good, long, long + "/x.png", good]
    assert [error is None for _, error in items] == [True, False, False, True]
    assert "too long" in items[1][1].lower() and items[1][1].startswith(long)
    done = cli("predict", good, long, good, "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["label"] for r in rows] == [label_of(DIGITS[0]), None, label_of(DIGITS[0])]
    assert "too long" in rows[1]["error"].lower()


def _image_tree(root: Path) -> None:
    for name in ("a/1.png", "a/locked/2.png", "a/z/3.png", "top/4.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_folders_that_cannot_be_listed_are_reported(tmp_path, monkeypatch):
    _image_tree(tmp_path)
    locked = {str(tmp_path / "a" / "locked"), str(tmp_path / "top")}
    real = os.scandir

    def scandir(path="."):  # what a folder without read permission does for a user who is not root
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = list(expand_paths([str(tmp_path / "a"), str(tmp_path / "top")]))
    assert [path for path, _ in items] == [str(tmp_path / n) for n in ("a/1.png", "a/locked", "a/z/3.png", "top")]
    errors = [error for _, error in items]
    assert errors[0] is None and errors[2] is None
    for error in errors[1], errors[3]:
        assert "Permission denied" in error and "no images found" not in error
    globbed = list(expand_paths([str(tmp_path / "a*")]))
    assert [error is None for _, error in globbed] == [True, False, True]
    # `**` lists the folders itself: it left the locked one out without a word. Said once, though both `**` and the
    # walk of the folder it matches find it locked.
    for pattern, images in [("**/*.png", ["a/1.png", "a/z/3.png"]), ("**", ["a/1.png", "a/z/3.png"]),
                            ("a/**/3.png", ["a/z/3.png"])]:
        globbed = list(expand_paths([str(tmp_path / pattern)]))
        assert sorted(p for p, error in globbed if error is None) == [str(tmp_path / i) for i in images], pattern
        errors = {p: error for p, error in globbed if error is not None}
        locked_here = sorted(p for p in locked if pattern != "a/**/3.png" or "/a/" in p)
        assert sorted(errors) == locked_here and all("cannot list this folder (Permission denied)" in e
                                                    for e in errors.values()), (pattern, errors)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may list any folder")
def test_folders_without_read_permission_are_reported(tmp_path):
    _image_tree(tmp_path)
    for name in ("a/locked", "top"):
        (tmp_path / name).chmod(0)
    try:
        errors = [error for _, error in expand_paths([str(tmp_path / "a"), str(tmp_path / "top")])]
    finally:
        for name in ("a/locked", "top"):
            (tmp_path / name).chmod(0o755)
    assert errors[0] is None and "Permission denied" in errors[1] and errors[2] is None
    assert "Permission denied" in errors[3]


def test_the_python_entry_points_name_what_they_take(tmp_path):
    from convnet import create_model, load_model, save_model
    from convnet.errors import ModelError

    rec = Recognizer.load()
    assert rec.probabilities(np.zeros((0, 28, 28), np.float32)).shape == (0, 10)
    for images, words in [
        (np.zeros((2, 28, 28), np.uint8), "not uint8 images of shape"),  # 0..255 read as 0..1 would be nonsense
        (np.zeros((28, 28), np.float32), r"shape \(28, 28\)"),
        (np.zeros((1, 1, 28, 28), np.float32), r"shape \(1, 1, 28, 28\)"),
        (np.full((1, 28, 28), 255.0), "values from 255 to 255"),
    ]:
        with pytest.raises(ConfigError, match=words):
            rec.probabilities(images)
    with pytest.raises(ConfigError, match="not str; Recognizer.load"):
        Recognizer("runs/x")
    with pytest.raises(ModelError, match="name is empty"):  # not quietly the shipped model
        Recognizer.load("")
    model = create_model("fast")
    assert Recognizer.load(model, top_k=2).model.arch == "fast"  # a model in memory is taken as it is
    with pytest.raises(ModelError, match="not int"):
        load_model(5)
    with pytest.raises(ModelError, match=r"not str \(the model comes first"):
        save_model(str(tmp_path / "out"), model)
    assert not (tmp_path / "out").exists()


def test_probabilities_leave_the_callers_images_as_they_were(recognizer):
    images = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    before = images.copy()
    recognizer.probabilities(images)  # normalised in place, on a copy
    assert np.array_equal(images, before)


def test_read_gives_boxes_in_the_pixels_of_a_big_photo(recognizer):
    """A big photo is read at the working size (a JPEG decodes at that size), its boxes mapped back to its pixels."""
    path = sorted((EXAMPLES / "numbers").glob("*.*"))[0]
    small = recognizer.read(str(path))
    image = Image.open(path).convert("RGB")
    big = image.resize((image.width * 8, image.height * 8), Image.BICUBIC)  # 2.3 megapixels, past WORK_PIXELS
    data = io.BytesIO()
    big.save(data, "JPEG", quality=92)
    reading = recognizer.read(data.getvalue())
    assert reading.number == small.number
    for digit, reference in zip(reading.digits, small.digits, strict=True):
        assert np.allclose(digit.box, [8 * v for v in reference.box], atol=8 * 3), (digit.box, reference.box)


def _tight_crops(cache: Path, monkeypatch: pytest.MonkeyPatch, digits: list[tuple[int, int]]) -> list[Image.Image]:
    """MNIST test digits (index, height) cropped to their ink and enlarged to that height, dark on white."""
    monkeypatch.setenv("CONVNET_HOME", str(cache.parent.parent))
    from convnet.data import load_dataset

    data = load_dataset("mnist")
    crops = []
    for i, height in digits:
        ys, xs = np.nonzero(data.test_x[i] > 12)
        ink = data.test_x[i][ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        crops.append(Image.fromarray(255 - ink).resize((round(height * ink.shape[1] / ink.shape[0]), height),
                                                       Image.LANCZOS))
    return crops


def test_digits_cropped_tightly_to_their_ink_are_read(recognizer, real_mnist_cache, monkeypatch):
    """An MNIST 0 cropped to its ink and enlarged: its strokes on all four edges passed for a shadow cast from outside,
    and the paper followed under them took the digit with it ("no ink found" for half of such 0s from 100 px up)."""
    crops = _tight_crops(real_mnist_cache, monkeypatch, [(i, 150) for i in (3, 13, 25, 28, 71)])  # no answer before
    assert [p.label for p in recognizer.predict(crops)] == ["0"] * 5


def test_bold_digits_cropped_tightly_are_not_read_as_their_counters(recognizer, real_mnist_cache, monkeypatch):
    """A bold digit cropped to its ink covers half the picture: the paper's level over the squares that looked for a
    shadow lay between ink and paper, and the counter and the corners were read as light ink (8s as 1s at 99 %)."""
    digits = [(5710, 150), (9088, 80), (4092, 300), (7892, 300), (8515, 150)]  # 8, 8, 8, 9, 6
    crops = _tight_crops(real_mnist_cache, monkeypatch, digits)
    assert [p.label for p in recognizer.predict(crops)] == ["8", "8", "8", "9", "6"]


def test_a_bold_digit_on_dark_ruled_lines_is_read(recognizer, real_mnist_cache, monkeypatch):
    """MNIST's test 3 number 200, 150 px tall, on ruled paper with dark lines (0.55 on 0.9) 32 px apart: the lines
    across it stayed, joined into one piece by its strokes, and it read as a 2 at up to 96 %."""
    digit = np.asarray(_tight_crops(real_mnist_cache, monkeypatch, [(200, 150)])[0], np.float32) / 255
    for first in (5, 14, 23):
        page = np.full((400, 400), 0.9, np.float32)
        page[125:275, 150:150 + digit.shape[1]] *= 0.15 + 0.85 * digit
        for row in range(first, 400, 32):
            page[row:row + 2] = np.minimum(page[row:row + 2], 0.55)
        assert recognizer.predict(page).label == "3", first


@pytest.mark.parametrize("width, first", [(4, 400), (6, 600)])
def test_a_number_in_boxes_that_share_their_walls_has_no_1s_for_walls(recognizer, real_mnist_cache, monkeypatch,
                                                                        width, first):
    """A form's comb: three boxes side by side, the digits close to the walls. Its outer walls, top and bottom were
    erased as one box round the number, and the inner walls, which join its top and bottom, stayed: read as 1s
    ("283" as "21813", "686" as "61816")."""
    digits = _tight_crops(real_mnist_cache, monkeypatch, [(i, 60) for i in range(first, first + 3)])
    ink = np.full((110, 292), 242, np.uint8)
    for j, digit in enumerate(digits):
        dark = np.asarray(digit.filter(ImageFilter.MinFilter(3)))[:, : 84 - 2 * width - 4]
        left = 20 + 84 * j + (84 - dark.shape[1]) // 2
        ink[25:85, left:left + dark.shape[1]] = np.minimum(ink[25:85, left:left + dark.shape[1]], dark)
    page = Image.fromarray(ink)
    for j in range(3):
        ImageDraw.Draw(page).rectangle((20 + 84 * j, 13, 104 + 84 * j, 97), outline=40, width=width)
    from convnet.data import load_dataset

    truth = "".join(str(label) for label in load_dataset("mnist").test_y[first:first + 3])
    assert recognizer.read(np.asarray(page)).number == truth


def test_a_zero_nearly_filling_its_card_on_a_desk_is_read(recognizer):
    """A review's photo (made from an MNIST 0, blurred, noisy, JPEG-compressed): the 0 covers most of the card, so the
    colour the card's rim was painted in, the median of card and writing, was darker than the card's paper, which
    then stood out of it as much as the 0 did ("no ink found")."""
    assert recognizer.predict(str(Path(__file__).parent / "images" / "big-zero-on-a-card.png")).label == "0"


@pytest.mark.parametrize("name, label", [("seven-on-squared-paper.png", "7"), ("eight-on-squared-paper.png", "8")])
def test_a_digit_on_faint_squared_paper_is_read(recognizer, name, label):
    """UCI handwriting on a photo of squared paper (`benchmarks/make_realworld_digits.py --paper squared`, seed 0): the
    stretches of the faint grid that `remove_rulings` could not follow stayed beside the digit, which was cropped and
    scaled down with them and read as a 1 (the 7 at 56 %, the 8 at 97 %)."""
    assert recognizer.predict(str(Path(__file__).parent / "images" / name)).label == label


def test_one_ruled_line_through_a_digit_is_erased(recognizer):
    """UCI handwriting on a photo of ruled paper (`make_realworld_digits.py --paper ruled`, seed 0), one line crossing
    the 6 near its top: taken out whole, that line cut the top of the 6 off the rest, which then seemed to begin at
    the line. The line stayed, was cropped with the 6, and the answer was withheld ('low confidence')."""
    assert recognizer.predict(str(Path(__file__).parent / "images" / "six-with-a-line-through-it.jpg")).label == "6"


@pytest.mark.parametrize("turn", [0, 60, 150, 260])
def test_a_blank_page_under_a_soft_shadow_has_no_ink(recognizer, turn):
    """The tight crop's second reading against the fitted surface must not take a shadow on a blank page for ink:
    a shadow is no deeper than SHADE_DEEP of the paper, a digit's strokes are."""
    ys, xs = np.indices((300, 400), dtype=np.float32)
    across = (xs - 200) * np.cos(np.radians(turn)) + (ys - 150) * np.sin(np.radians(turn))
    page = 0.9 * (1 - 0.4 / (1 + np.exp(-(across - 20) / 9)))
    assert recognizer.predict(page).reason == "no ink found"
