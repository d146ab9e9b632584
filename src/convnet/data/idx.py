"""The IDX format of MNIST and Fashion-MNIST: a magic number giving dtype and rank, the dimensions, then raw data.

Reference: the format section of the MNIST database page (LeCun, Cortes, Burges).
"""
from __future__ import annotations

import gzip
import io
import math
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convnet.errors import DataError

# The third byte of the magic number names the element type; the data are big-endian.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _DTYPES.items()}
_MAX_RANK = 4


def _header(data: bytes, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, element type and header length from the start of an IDX file; a DataError if it is no IDX header."""
    if len(data) < 4:
        raise DataError(f"{name}: file is empty or truncated ({len(data)} bytes).")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise DataError(f"{name}: not an IDX file (bad magic number {data[:4].hex()}).")
    if ndim > _MAX_RANK:
        raise DataError(f"{name}: an IDX file of rank {ndim}; images have rank 3 and labels rank 1.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header.")
    return struct.unpack(f">{ndim}I", data[4:header]), np.dtype(_DTYPES[code]), header


def _file_size(shape: tuple[int, ...], dtype: np.dtype, header: int) -> int:
    """Bytes in the whole file as its header declares, in Python ints: np.prod wraps around at 2**64, to 0 even."""
    return header + math.prod(shape) * dtype.itemsize


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file, checking that the size matches the header."""
    shape, dtype, header = _header(data, name)
    expected = _file_size(shape, dtype, header)
    if len(data) != expected:
        raise DataError(
            f"{name}: size {len(data)} bytes does not match its header {shape} ({expected} bytes): "
            "the file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array (used for checksums of the canonical files and for test fixtures)."""
    code = _CODES.get(array.dtype.str)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(_DTYPES[code]).tobytes()


def read_raw(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file, `.gz` or not; clear errors for missing, special or corrupt files."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe would block forever, a device (/dev/zero) never end
            raise DataError(f"{path}: not a regular file (a folder, pipe or device); IDX data must be in a file.")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}).") from None
    return decompress(raw, str(path))


def decompress(raw: bytes, name: str) -> bytes:
    """IDX data as it is, or gunzipped when it is gzip: no further than its header declares, clear errors if corrupt."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            return _read_declared(f, name)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: corrupt or truncated gzip file ({e}).") from None


def _read_declared(f: BinaryIO, name: str) -> bytes:
    """Decompress no more than the header declares: a small gzip bomb must not fill the memory with zeros."""
    data = f.read(4 + 4 * _MAX_RANK)
    size = _file_size(*_header(data, name))
    chunks = [data]
    left = size + 1 - len(data)  # one byte more than declared shows that there is more
    while left > 0 and (chunk := f.read(min(left, 1 << 24))):
        chunks.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise DataError(f"{name}: decompresses to more than the {size} bytes its header declares; the file is corrupt.")
    return b"".join(chunks)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_raw(path), str(path))
