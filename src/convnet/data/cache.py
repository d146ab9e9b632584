"""Where convnet keeps downloaded data, and how it writes files without ever leaving half of one behind."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from convnet.errors import DataError


def convnet_home() -> Path:
    """The cache root: `$CONVNET_HOME`, else `~/.cache/convnet`."""
    setting = os.environ.get("CONVNET_HOME")
    try:
        return Path(setting or "~/.cache/convnet").expanduser()
    except RuntimeError:  # "~user" for no such user, or no home folder at all: Python's message names neither
        where = f"CONVNET_HOME={setting}: the home folder of its ~" if setting else "your home folder, for the cache,"
        raise DataError(f"{where} cannot be found; set CONVNET_HOME to a folder's full path.") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_json(path: Path, value: dict) -> None:
    """`value` as indented JSON, written as `atomic_write` does."""
    atomic_write(path, lambda f: f.write(json.dumps(value, indent=2).encode()))


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers see the old file or the whole new one.

    An interrupted write (Ctrl-C, full disk) leaves no partial file under `path`. A failure to write names `path`
    (a full disk says only "No space left on device"), unless it names another file, one that `write` wrote.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # it names the temporary file, which the user never asked for
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:  # the file object owns the descriptor now, and closes it on any failure
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename not in (None, tmp):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
