"""Where convnet keeps downloaded data, how it writes files without ever leaving half of one behind, and how
processes that share it take turns."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from convnet.errors import DataError

try:
    import fcntl
except ImportError:  # Windows: see held_alone
    fcntl = None

LOCK_POLL_SECONDS = 0.1  # how often a process that waits for a lock tries it again
WAIT_NOTE_SECONDS = 2.0  # a wait for a lock longer than this is said: the other process is at work, not glancing


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


@contextmanager
def held_alone(lock: Path, waiting: Callable[[], object]) -> Iterator[bool]:
    """Inside, no other process holds `lock`: yields whether one held it first, which this one waited for.
    `waiting()` is called once if that wait lasts over WAIT_NOTE_SECONDS, to say what it waits for.

    The lock is flock's on the file `lock`, which is made if missing and then stays: the lock itself dies with its
    process, so a file left by a killed process blocks no one. It is tried every LOCK_POLL_SECONDS rather than waited
    for in flock, so that the wait can be said, and Ctrl-C stops it even where the signal reaches a thread other than
    the main one (PyTorch starts several), which would leave a wait in C to go on. Where there is no flock (Windows has
    no fcntl) or it cannot be had (a lock file that is not this user's to open, a network file system without locks),
    nobody waits, as before there was a lock: what is written inside must be safe without it (see atomic_write).
    """
    try:
        fd = None if fcntl is None else os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # NFS locks only writers' files
    except OSError:
        fd = None
    waited, started, said = False, time.monotonic(), False
    try:
        while fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another process holds it
                waited = True
            except OSError:  # no locks on this file system
                break
            if not said and time.monotonic() - started > WAIT_NOTE_SECONDS:
                said = True
                waiting()
            time.sleep(LOCK_POLL_SECONDS)
        yield waited
    finally:
        if fd is not None:
            os.close(fd)  # which lets the lock go
