"""Reading an image (a path, bytes, an open file, a PIL image, an array or a tensor) as float gray in [0, 1].

Every failure, PIL's own included, comes out as `ImageError` with a message for the user. Big images are
area-downscaled right after decoding, JPEGs decode at reduced size directly: a phone photo costs little.
"""

from __future__ import annotations

import io
import numbers
import os
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from convnet.errors import ConfigError, ImageError

MAX_PIXELS = 40_000_000  # refuse bigger images before decoding them
MAX_STREAM_BYTES = 256 << 20  # a stream that cannot seek is read whole first: no image file is near this size
WORK_PIXELS = 1024 * 1024  # larger inputs are area-downscaled to this many pixels before any analysis
UNIT_OVERSHOOT = 1.5  # float images up to this are [0, 1] with resampling overshoot, not 0..255 (see `_to_unit`)

ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")  # not LAB, whose A is a colour axis
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16 and 32 bits a pixel
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


def load_gray(source: Source, *, max_pixels: int = MAX_PIXELS, work_pixels: int | None = None) -> np.ndarray:
    """Read `source` as float32 gray in [0, 1] (1 = white), H x W.

    `source` may be a path (`StandardInput` for standard input), encoded bytes,
    an open binary file (from its start), a PIL image, a numpy array or a
    torch tensor (H x W, H x W x C or C x H x W, on any device).  EXIF
    orientation is applied and transparency is composited over paper (see
    `_over_paper`).
    `work_pixels` area-downscales bigger images to that many pixels right
    after decoding (JPEGs decode at reduced size directly), which is how
    `preprocess` keeps photos cheap. Images of over `max_pixels` are refused
    before decoding; for a JPEG that is the size it decodes at.
    Every failure, including PIL's own, is raised as `ImageError`.
    """
    return load_gray_sized(source, max_pixels=max_pixels, work_pixels=work_pixels)[0]


def load_gray_sized(source: Source, *, max_pixels: int = MAX_PIXELS,
                    work_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_gray`, and the (height, width) of the image itself, upright: what the gray may have been downscaled
    from, to map what is found in it back to the image's own pixels."""
    max_pixels, work_pixels = _counts(max_pixels, work_pixels)
    if hasattr(source, "detach") and hasattr(source, "numpy"):  # a torch tensor, without importing torch here
        source = _tensor_to_array(source)
    if isinstance(source, np.ndarray):
        gray = array_to_gray(source)
        size = gray.shape
    elif isinstance(source, Image.Image):
        gray, size = _decode(source, "image", max_pixels)  # no draft: the caller's image stays as it is
    else:
        image, name = _open(source)
        with image:
            gray, size = _decode(image, name, max_pixels, work_pixels)
    return downscale(gray, work_pixels), (int(size[0]), int(size[1]))


def _counts(max_pixels: int, work_pixels: int | None) -> tuple[int, int | None]:
    """Both as plain ints: counts of pixels (numpy's integers too, and floats that are whole, such as 4e7); work_pixels
    may be None."""
    counts = []
    for name, value, none in (("max_pixels", max_pixels, False), ("work_pixels", work_pixels, True)):
        whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
        if value is None and none:
            counts.append(None)
        elif isinstance(value, bool) or not whole or value < 1:
            allowed = " (or None: as it is)" if none else ""
            raise ConfigError(f"{name} must be a whole number of pixels, at least 1{allowed}, not {value!r}.")
        else:
            counts.append(int(value))
    return counts[0], counts[1]


def _stream(stream) -> BinaryIO | bytes:
    """A file-like object as `_open` takes it: itself if it can seek (PIL reads it from its start, as a file), else
    all that is left in it (a pipe, a socket), read by `_read_all`."""
    if isinstance(stream, io.TextIOBase):
        raise ImageError(f"{getattr(stream, 'name', 'the file')} is open as text: open the image's file in binary "
                         "mode ('rb')")
    try:
        if callable(getattr(stream, "seekable", None)) and stream.seekable():
            if stream.seek(0, io.SEEK_END) == 0:
                raise ImageError("image data is empty")
            stream.seek(0)
            return stream
    except (OSError, ValueError) as exc:  # ValueError: a closed file
        raise ImageError(f"cannot read the image from {type(stream).__name__} ({exc})") from None
    return _read_all(stream)


def _read_all(stream: BinaryIO) -> bytes:
    """All that is left in a binary stream, read to its end but never past MAX_STREAM_BYTES."""
    chunks, size = [], 0
    try:
        while size <= MAX_STREAM_BYTES and (chunk := stream.read(MAX_STREAM_BYTES + 1 - size)):
            if not isinstance(chunk, (bytes, bytearray)):
                raise ImageError(f"{type(stream).__name__} gave {type(chunk).__name__}, not bytes: open the image's "
                                 "file in binary mode ('rb')")
            chunks.append(chunk)
            size += len(chunk)  # an unbuffered pipe gives at most its buffer per read: read on to the end
    except (OSError, ValueError) as exc:  # ValueError: a closed file
        raise ImageError(f"cannot read the image from {type(stream).__name__} ({exc})") from None
    if size > MAX_STREAM_BYTES:
        raise ImageError(f"the stream holds over {MAX_STREAM_BYTES >> 20} MiB: too large for an image")
    return b"".join(chunks)


def _read_pipe(path: Path, name: str) -> bytes:
    """All a named pipe holds. Opened without waiting for a writer (a stray pipe in a folder would hang the walk),
    then read waiting for data: one with no writer reads as empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as pipe:
        return _read_all(pipe)


def _is_stdin(info: os.stat_result) -> bool:
    """Whether a file (by its `stat`) is this process's standard input, and one whose size says nothing of what it
    holds: a pipe, a socket or a terminal (a redirected file, or /dev/null, is read as the file it is)."""
    mode = info.st_mode
    return (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(0))) and _is_fd0(info)


def _is_fd0(info: os.stat_result) -> bool:
    try:
        return os.path.samestat(info, os.fstat(0))
    except OSError:  # no standard input at all
        return False


class StandardInput(str):
    """The process's standard input as an image source, named as this str (the command line's `-`): read from its
    descriptor, not opened by a path, which Windows does not have (/dev/stdin)."""


def _read_stdin(name: str) -> bytes:
    """All of standard input, read from the process's own descriptor: a socket's path cannot be opened. A redirected
    file is read from its start, as its path would be (a second `-` reads it again)."""
    if os.isatty(0):
        raise ImageError(f"{name}: standard input is a terminal; pipe or redirect an image into it, e.g. "
                         "convnet predict - < digit.png")
    try:
        stdin = os.fdopen(os.dup(0), "rb")
    except OSError as exc:  # `<&-`: there is none
        raise ImageError(f"{name}: cannot read standard input ({exc.strerror})") from None
    with stdin:
        if stdin.seekable():
            stdin.seek(0)
        data = _read_all(stdin)
    if not data:
        raise ImageError(f"{name}: standard input is empty")
    return data


def tensor_to_numpy(tensor) -> np.ndarray:
    """A tensor's values as numpy, from any device, in float32 where numpy has no such type (bf16); an ImageError for
    a tensor without plain numbers to read (meta, sparse, quantized, ...)."""
    try:
        t = tensor.detach().cpu()
        return (t.float() if t.is_floating_point() else t).numpy()
    except (RuntimeError, NotImplementedError, TypeError) as e:
        raise ImageError(f"cannot read a {tensor.dtype} tensor on {tensor.device} as an image ({e})") from None


def _tensor_to_array(tensor) -> np.ndarray:
    """A tensor as numpy (`tensor_to_numpy`), H x W x C where torch's is C x H x W."""
    array = tensor_to_numpy(tensor)
    if array.ndim == 3 and array.shape[0] <= 4 < array.shape[2]:
        array = array.transpose(1, 2, 0)
    return array


def _open(source: Source) -> tuple[Image.Image, str]:
    """Open (header only) a path, bytes or an open binary file, turning every failure into ImageError."""
    if hasattr(source, "read") and not isinstance(source, (str, os.PathLike)):  # an open file, BytesIO, an upload
        source = _stream(source)
    if hasattr(source, "read"):  # a stream that can seek: PIL reads it from its start, as a file
        fp, name = source, str(getattr(source, "name", "image data"))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("image data is empty")
        fp, name = io.BytesIO(source), "image data"
    elif isinstance(source, StandardInput):
        fp, name = io.BytesIO(_read_stdin(source)), str(source)
    elif isinstance(source, (str, os.PathLike)):
        fp, name = Path(source), str(source)
        if not name:
            raise ImageError("empty path")
        try:
            mode, size = (info := fp.stat()).st_mode, info.st_size
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read file ({exc.strerror})") from exc
        except ValueError as exc:  # e.g. an embedded NUL byte
            raise ImageError(f"{name!r}: not a valid path ({exc})") from None
        if stat.S_ISDIR(mode):
            raise ImageError(f"{name}: is a directory, not an image file")
        if _is_stdin(info):  # /dev/stdin: a socket (a parent process's) or a pipe, read whole; a terminal, refused
            fp = io.BytesIO(_read_stdin(name))
            size = len(fp.getvalue())
        elif stat.S_ISFIFO(mode):  # <(…): a pipe's size says nothing, its contents are read to the end
            fp = io.BytesIO(_read_pipe(fp, name))
            size = len(fp.getvalue())
        elif (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and not _is_fd0(info):  # /dev/zero would never end
            raise ImageError(f"{name}: not a regular file (a device); an image must be in a file")
        if size == 0:
            raise ImageError(f"{name}: file is empty")
    else:
        raise ImageError(f"cannot read an image from {type(source).__name__}: give a path, encoded bytes, an open "
                         "binary file, a PIL image or an array")
    try:
        with _pil_warnings():
            return Image.open(fp), name
    except Image.DecompressionBombError as exc:  # PIL's own limit, far above ours (see _pil_warnings)
        raise ImageError(f"{name}: image is too large (over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, past "
                         "which no image is opened)") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file, or an unsupported format") from exc
    except Exception as exc:  # PIL plugins raise many types on malformed headers
        raise ImageError(f"{name}: cannot read image ({exc})") from exc


@contextmanager
def _pil_warnings() -> Iterator[None]:
    """PIL's warnings while an image is opened or decoded are dropped: those about damaged metadata, such as an EXIF
    tag pointing past the file's end (PIL skips the tag, the pixels are read all the same, and the user has nothing
    to act on), and the decompression bomb's between 89M and 179M pixels: `_decode` refuses what would decode to
    over `max_pixels` itself, and a JPEG of a 108-megapixel phone may decode at an eighth of its size."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


class _StderrShut:
    """Standard error (the descriptor, which C libraries write to) sent to /dev/null while any thread is inside, and
    given back when the last one leaves: two threads saving and restoring it each on its own could leave it shut for
    good. Another thread's writes to standard error are lost meanwhile."""

    def __init__(self) -> None:
        self.lock, self.inside, self.saved = threading.Lock(), 0, -1

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.inside == 0:
                self.saved = self._shut()
            self.inside += 1
        try:
            yield
        finally:
            with self.lock:
                self.inside -= 1
                if self.inside == 0 and self.saved >= 0:
                    os.dup2(self.saved, 2)
                    os.close(self.saved)

    @staticmethod
    def _shut() -> int:
        """The descriptor that was standard error, after sending it to /dev/null; -1 where there is none to shut."""
        if sys.stderr is not None:
            sys.stderr.flush()  # what Python holds for it goes out first
        try:
            saved = os.dup(2)
        except OSError:
            return -1
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        return saved


_shut_stderr = _StderrShut()


def _quiet_libtiff(image: Image.Image) -> AbstractContextManager[None]:
    """For a TIFF, standard error is shut while it decodes: libtiff, which decodes its compressed kinds, writes its
    complaints about a damaged file there itself ("tempfile.tif: Using code not yet in table."), past Python, on top
    of the one line that says which file is damaged. Other formats and their decoders say nothing there."""
    return _shut_stderr() if image.format == "TIFF" else nullcontext()


def _decode(image: Image.Image, name: str, max_pixels: int,
            work_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Check size and frame count from the header, then decode to gray; also the image's (height, width), upright.

    With `work_pixels`, JPEGs decode at 1/2, 1/4 or 1/8 scale when that still
    leaves at least the size `downscale` would make: far less work for phone
    photos, and the size limit applies to what is decoded.
    """
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has no pixels")
    try:
        with _pil_warnings(), _quiet_libtiff(image):
            # Cameras write MPO: the photo first, then previews; that is not an animation.
            if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
                raise ImageError("images of several frames (an animation, a multi-page TIFF) are not supported: "
                                 "save the frame to read as an image of its own")
            if work_pixels and image.format in ("JPEG", "MPO"):
                factor = _shrink_factor(height, width, work_pixels)
                image.draft("L", (int(width / factor), int(height / factor)))
            if image.size[0] * image.size[1] > max_pixels:  # before decoding; a JPEG's draft size once drafted
                raise ImageError(f"image is too large: {width}x{height} pixels (limit {max_pixels:,})")
            upright = _upright(image)
            turned = upright.size != image.size  # EXIF said to turn it a quarter: height and width swap
            return _pil_to_gray(upright), (width, height) if turned else (height, width)
    except ImageError as exc:  # raised by the checks above and below, which do not know the name
        raise ImageError(f"{name}: {exc}") from None
    except Exception as exc:  # truncated or corrupt data surfaces here, in many types
        raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from exc


# EXIF's Orientation tag: how to turn the stored pixels upright.
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says. Not `ImageOps.exif_transpose`, which writes the EXIF anew and
    fails on a camera's odd tag next to it (a name stored as a number, say): the pixels are what is wanted here. A
    tag that cannot be read leaves the image as it is stored, like one without."""
    # Decoded first: a TIFF's loader turns the pixels itself as it decodes, and a PNG's EXIF may lie past pixels that
    # fail to decode (an error to raise, not to take for unreadable EXIF).
    image.load()
    try:
        orientation = image.getexif().get(0x0112)  # Orientation
    except Exception:  # damaged EXIF raises many types; the pixels may still be fine
        orientation = None
    method = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    """Any PIL mode to float gray: alpha over white, 16/32-bit by their range."""
    image.load()  # corrupt data fails here, as corrupt; a mode PIL cannot convert fails below
    if image.mode in ("P", "PA") and image.palette is None:  # a PNG without its PLTE chunk: PIL would make it black
        raise ImageError("image data is damaged: its pixels index a palette the file does not hold")
    if image.mode in WIDE_MODES:  # by value, as arrays are: PIL's conversions clip them to 8 bits
        array = np.asarray(image)
        clear = image.info.get("transparency")  # a PNG's one transparent gray value
        if isinstance(clear, (int, float)) and not isinstance(clear, bool):
            return _over_paper(_to_unit(array), (array != clear).astype(np.float32))
        return _to_unit(array)
    if image.mode == "LAB":  # PIL converts it to nothing; its L is lightness
        image = image.getchannel("L")
    try:
        if image.mode in ALPHA_MODES or "transparency" in image.info:
            la = image.convert("LA")
            return _over_paper(_to_unit(np.asarray(la.getchannel("L"))), _to_unit(np.asarray(la.getchannel("A"))))
        image = image.convert("L")
    except ValueError:
        raise ImageError(f"unsupported image mode {image.mode}") from None
    return _to_unit(np.asarray(image))


def array_to_gray(array: np.ndarray) -> np.ndarray:
    """H x W or H x W x C (C = 1..4, last channel alpha when C is 2 or 4)."""
    if array.size == 0:
        raise ImageError(f"the array is empty (shape {array.shape})")
    if array.dtype == np.uint8 and array.max() <= 1:  # 0s and 1s: a mask, as (gray > t).astype(np.uint8) makes
        array = array.astype(bool)  # (not a decoded file's: a channel of one is scaled on its own, and may be dim)
    if array.ndim == 3 and 1 <= array.shape[2] <= 4:
        channels = _to_unit(array)
        alpha = channels[..., -1] if array.shape[2] in (2, 4) else None
        color = channels[..., :3] if array.shape[2] >= 3 else channels[..., :1]
        gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if color.shape[2] == 3 else color[..., 0]
        return gray if alpha is None else _over_paper(gray, alpha)
    if array.ndim != 2:  # a stack of images, most often: which axis holds them is not for us to guess
        raise ImageError(f"shape {array.shape} is not one image (H x W, H x W x C or, for a tensor, C x H x W, with "
                         "C = 1..4): give several images as a list, e.g. predict(list(images))")
    return _to_unit(array)


def _over_paper(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over paper: white, unless the shape is in the transparency alone (what is opaque is of one light
    shade: white ink on a transparent canvas, as drawing apps export it), which would vanish on white: then black."""
    weight = float(alpha.sum())
    mean = float((gray * alpha).sum()) / weight if weight else 0.0
    spread = np.sqrt(float((alpha * (gray - mean) ** 2).sum()) / weight) if weight else 0.0
    paper = 0.0 if mean > 0.5 and spread < 0.1 else 1.0
    return (gray * alpha + paper * (1 - alpha)).astype(np.float32)


def _to_unit(array: np.ndarray) -> np.ndarray:
    """Scale to float32 [0, 1]: by the dtype's range for 8-bit, by value otherwise.

    16-bit and wider integers are read by value: uint16 arrays often hold 0..255 (a 0..65535 image that low would be
    black throughout, nothing to read either way)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
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


def _shrink_factor(height: int, width: int, max_area: int | None) -> float:
    """How many times to shrink for an area of at most `max_area` pixels (<= 1: no need)."""
    return float(np.sqrt(height * width / max_area)) if max_area else 1.0


def downscaled_size(height: int, width: int, max_area: int | None) -> tuple[int, int]:
    """The (width, height) `downscale` gives an image of that shape: its own where it is small enough."""
    factor = _shrink_factor(height, width, max_area)
    if factor <= 1:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


def downscale(gray: np.ndarray, max_area: int | None) -> np.ndarray:
    """Area-average so that the area is at most `max_area` pixels (None: as it is)."""
    size = downscaled_size(*gray.shape, max_area)
    return gray if size == gray.shape[::-1] else resized(gray, size)


def resized(gray: np.ndarray, size: tuple[int, int], resample: Image.Resampling = Image.BOX) -> np.ndarray:
    """A float image resized to (width, height) `size`, each axis on its own: area-averaged unless `resample` says
    otherwise."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(gray, np.float32), "F").resize(size, resample))
