import errno
import gzip
import hashlib
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from convnet import data
from convnet.data import cache, mnist
from convnet.data.cache import atomic_write
from convnet.data.idx import encode_idx, parse_idx, read_idx
from convnet.errors import DataError
from conftest import write_idx_folder


def test_idx_round_trip_all_dtypes():
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        b = parse_idx(encode_idx(a))
        assert b.dtype == np.dtype(dtype) and b.shape == a.shape and np.array_equal(a, b)


def test_idx_header_is_the_standard_one():
    raw = encode_idx(np.zeros((60000, 28, 28), np.uint8)[:2])
    assert raw[:4] == b"\x00\x00\x08\x03"  # ubyte, 3 dimensions
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "empty or truncated"),
        (b"\x00\x00\x08", "empty or truncated"),
        (b"PK\x03\x04rest", "bad magic"),
        (encode_idx(np.zeros((3, 4), np.uint8))[:-1], "does not match its header"),
        (encode_idx(np.zeros((3, 4), np.uint8)) + b"x", "does not match its header"),
        # 2**31 * 2**31 * 4 wraps around to 0 in numpy's int64: the empty data must not pass for the right size
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 2**31, 4), "does not match its header"),
    ],
)
def test_idx_rejects_bad_files(raw, words):
    with pytest.raises(DataError, match=words):
        parse_idx(raw, "f.idx")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros((5, 28, 28), np.uint8)))[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*corrupt or truncated"):
        read_idx(path)


def test_gzip_bomb_is_not_decompressed_past_its_header(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:  # a header for 2 images, then 64 MiB of zeros in a file of some 64 KiB
        f.write(encode_idx(np.zeros((2, 28, 28), np.uint8)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    with pytest.raises(DataError, match="decompresses to more than the 1584 bytes its header declares"):
        read_idx(path)


@contextmanager
def _fails_if_it_hangs(seconds: int = 10):
    def stop(signum, frame):
        raise AssertionError(f"still blocked after {seconds}s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_idx_folder_refuses_what_is_not_a_regular_file(tmp_path, tiny_arrays, kind):
    folder = write_idx_folder(tmp_path / "d", tiny_arrays)
    special = folder / "train-labels-idx1-ubyte.gz"
    special.unlink()
    if kind == "fifo":  # reading it would wait forever for a writer
        os.mkfifo(special)
    elif kind == "device":  # /dev/zero would never end; /dev/null shows the same refusal without the risk
        special.symlink_to(os.devnull)
    else:
        special.mkdir()
    with _fails_if_it_hangs(), pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: not a regular file"):
        data.load_dataset("mnist", folder)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_folder(tmp_path, tiny_arrays, gz):
    ds = data.load_dataset("mnist", write_idx_folder(tmp_path / "d", tiny_arrays, gz=gz))
    assert ds.train_x.shape == (600, 28, 28) and ds.test_x.shape == (200, 28, 28)
    assert np.array_equal(ds.train_y, tiny_arrays["train_y"]) and ds.train_y.dtype == np.int64
    assert ds.files_sha256 == mnist.checksums(tiny_arrays)
    assert repr(ds) == (f"Dataset('mnist': 600 training and 200 test images of 28x28 pixels, 10 classes, from "
                        f"{tmp_path.resolve() / 'd'})")  # a line, not pages of pixels
    for name, value in [("classes", None), ("train_x", [[1, 2], [3]]), ("test_x", None)]:
        setattr(ds, name, value)
        assert repr(ds) == "Dataset('mnist': not a valid data set)"


def test_a_folder_is_recorded_as_the_source_by_its_full_path(tmp_path, tiny_arrays):
    write_idx_folder(tmp_path / "d", tiny_arrays)  # the tests run in tmp_path: "d" is relative
    assert data.load_dataset("mnist", "d").source == str(tmp_path.resolve() / "d")  # it goes into cards and runs


def test_a_gz_beside_its_plain_file_must_hold_the_same_data(tmp_path, tiny_arrays):
    folder = write_idx_folder(tmp_path / "d", tiny_arrays)
    write_idx_folder(folder, tiny_arrays, gz=False)  # as `gunzip -k` leaves them: the same data twice is fine
    assert np.array_equal(data.load_dataset("mnist", folder).train_y, tiny_arrays["train_y"])
    write_idx_folder(folder, {**tiny_arrays, "train_y": np.zeros(600, np.uint8)}, gz=False)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz and train-labels-idx1-ubyte hold different data"):
        data.load_dataset("mnist", folder)


def test_idx_folder_missing_file(tmp_path, tiny_arrays):
    folder = write_idx_folder(tmp_path / "d", tiny_arrays)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load_dataset("mnist", folder)


def test_idx_folder_mismatched_labels(tmp_path, tiny_arrays):
    arrays = dict(tiny_arrays, test_y=tiny_arrays["test_y"][:-1])
    with pytest.raises(DataError, match="do not match"):
        data.load_dataset("mnist", write_idx_folder(tmp_path / "d", arrays))


def test_pickle_with_wrong_hash_is_never_unpickled(monkeypatch):
    called = []
    monkeypatch.setattr(mnist._ArraysOnly, "load", lambda self: called.append(1))
    payload = gzip.compress(pickle.dumps(((np.zeros(3),) * 2,) * 3))
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        mnist.from_pickle(payload, "mnist.pkl.gz")
    assert called == []


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        mnist._ArraysOnly(io.BytesIO(pickle.dumps(Evil()))).load()
    arrays = mnist._ArraysOnly(io.BytesIO(pickle.dumps((np.arange(5, dtype=np.float32), np.eye(2))))).load()
    assert np.array_equal(arrays[0], np.arange(5)) and arrays[1].shape == (2, 2)


def test_verify_refuses_tampered_arrays(tiny_arrays, monkeypatch):
    monkeypatch.setattr(mnist, "SHA256", mnist.checksums(tiny_arrays))
    mnist.verify(tiny_arrays, "ok")
    tampered = dict(tiny_arrays, train_x=tiny_arrays["train_x"].copy())
    tampered["train_x"][0, 0, 0] ^= 1
    with pytest.raises(DataError, match="train_x does not match the SHA-256"):
        mnist.verify(tampered, "cache")


def _fake_sources(monkeypatch, arrays, first_fails=True):
    def broken():
        raise DataError("unreachable")

    sources = [("mirror", broken)] if first_fails else []
    monkeypatch.setattr(mnist, "SHA256", mnist.checksums(arrays))
    monkeypatch.setattr(mnist, "sources", lambda: sources + [("offline", lambda: arrays)])


def test_fetch_falls_back_and_cache_is_verified(tiny_arrays, monkeypatch, isolated_home):
    _fake_sources(monkeypatch, tiny_arrays)
    path = data.fetch("mnist", log=lambda m: None)
    assert path == isolated_home / "datasets" / "mnist.npz"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    ds = data.load_dataset("mnist")
    assert ds.source == "offline" and np.array_equal(ds.test_x, tiny_arrays["test_x"])
    info = data.describe(ds)
    assert info["train"]["images"] == 600 and sum(info["test"]["class_counts"].values()) == 200


def test_tampered_cache_is_refused(tiny_arrays, monkeypatch):
    _fake_sources(monkeypatch, tiny_arrays)
    path = data.fetch("mnist", log=lambda m: None)
    tampered = dict(tiny_arrays, test_y=(tiny_arrays["test_y"] + 1) % 10)
    np.savez(path, **tampered)
    with pytest.raises(DataError, match="test_y does not match.*Run `convnet data fetch mnist` to replace it"):
        data.load_dataset("mnist")


def test_fetch_keeps_a_sound_cache_unless_forced_and_replaces_a_damaged_one(tiny_arrays, monkeypatch):
    _fake_sources(monkeypatch, tiny_arrays, first_fails=False)
    path = data.fetch("mnist", log=lambda m: None)
    fetched = []
    monkeypatch.setattr(mnist, "sources", lambda: [("again", lambda: fetched.append(1) or tiny_arrays)])
    assert data.fetch("mnist", log=lambda m: None) == path and fetched == []
    assert data.fetch("mnist", force=True, log=lambda m: None) == path and fetched == [1]
    assert data.load_dataset("mnist").source == "again"
    fetched.clear()
    np.savez(path, **dict(tiny_arrays, test_y=(tiny_arrays["test_y"] + 1) % 10))
    said = []
    data.fetch("mnist", log=said.append)
    assert fetched == [1] and "fails its check" in said[0]
    assert np.array_equal(data.load_dataset("mnist").test_y, tiny_arrays["test_y"])


# A process of `convnet train` on a machine other than rank 0's, say: it fetches MNIST from a fake source that notes
# each call and takes a second, once every process is ready, so that all of them look for the cache at once.
_FETCHING_TOGETHER = """
import os, sys, time
from pathlib import Path
import numpy as np
from convnet import data
from convnet.data import mnist

calls, ready, processes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
x, y = np.zeros((10, 2, 2), np.uint8), np.arange(10, dtype=np.uint8)
arrays = {"train_x": x, "train_y": y, "test_x": x, "test_y": y}
mnist.SHA256 = mnist.checksums(arrays)

def fake():
    with calls.open("a") as f:
        f.write("fetched\\n")
    time.sleep(1)
    return arrays

mnist.sources = lambda: [("fake", fake)]
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < processes:
    time.sleep(0.01)
print("read", len(data.load_dataset("mnist").test_y), "labels")
"""


def test_processes_fetching_into_one_cache_at_once_fetch_it_once(tmp_path):
    calls, ready = tmp_path / "calls", tmp_path / "ready"
    ready.mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", _FETCHING_TOGETHER, str(calls), str(ready), "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert calls.read_text() == "fetched\n"
    assert all(out.endswith("read 10 labels\n") for out, _ in outputs)
    assert sorted(out.count("fetching mnist from fake") for out, _ in outputs) == [0, 1]  # one log, not one each


@contextmanager
def _locked_by_another_process():
    """The cache's lock, held as another process's fetch holds it (flock's locks belong to each opening of the file,
    so this process's own fetch waits for it too); yields a function that lets it go."""
    folder = data.cache_path("mnist").parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".mnist.lock", os.O_RDWR | os.O_CREAT)
    held = [fd]

    def release():
        if held:
            os.close(held.pop())

    cache.fcntl.flock(fd, cache.fcntl.LOCK_EX)
    try:
        yield release
    finally:
        release()


@pytest.mark.parametrize("force", [False, True])
def test_a_fetch_waits_for_another_one_says_so_and_takes_its_cache(tiny_arrays, monkeypatch, force):
    def must_not_run():
        raise AssertionError("a source was tried although another process has just fetched the data")

    monkeypatch.setattr(mnist, "SHA256", mnist.checksums(tiny_arrays))
    monkeypatch.setattr(mnist, "sources", lambda: [("a", must_not_run)])
    monkeypatch.setattr(cache, "WAIT_NOTE_SECONDS", 0.2)
    said = []
    with _locked_by_another_process() as release:
        def the_other_fetch_ends():
            data._write_cache(data.cache_path("mnist"), tiny_arrays, "the other one")
            release()

        threading.Timer(1.0, the_other_fetch_ends).start()
        with _fails_if_it_hangs():
            assert data.fetch("mnist", force=force, log=said.append) == data.cache_path("mnist")
    assert said == [f"waiting for another process's fetch of mnist into {data.cache_path('mnist').parent} …"]
    assert data.load_dataset("mnist").source == "the other one"


def test_a_lock_file_left_by_a_killed_process_blocks_no_one(tiny_arrays, monkeypatch):
    folder = data.cache_path("mnist").parent
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fcntl.flock(os.open(sys.argv[1], os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\ntime.sleep(60)", str(folder / ".mnist.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
    finally:
        holder.kill()  # SIGKILL: no chance to let go of anything
        holder.wait()
    _fake_sources(monkeypatch, tiny_arrays, first_fails=False)
    said = []
    monkeypatch.setattr(cache, "WAIT_NOTE_SECONDS", 0.0)
    assert data.fetch("mnist", log=said.append) == data.cache_path("mnist")
    assert said == ["fetching mnist from offline …"] and (folder / ".mnist.lock").exists()


@pytest.mark.parametrize("without", ["fcntl", "locks on the file system", "a lock file of its own"])
def test_without_a_lock_a_fetch_goes_on_as_before_there_was_one(tiny_arrays, monkeypatch, without):
    folder = data.cache_path("mnist").parent
    folder.mkdir(parents=True)
    if without == "fcntl":  # Windows
        monkeypatch.setattr(cache, "fcntl", None)
    elif without == "locks on the file system":  # flock on some NFS mounts
        def no_locks(*_args):
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(cache.fcntl, "flock", no_locks)
    else:  # as when another user's lock file is there, not writable
        (folder / ".mnist.lock").mkdir()
    _fake_sources(monkeypatch, tiny_arrays, first_fails=False)
    said = []
    assert data.fetch("mnist", log=said.append) == data.cache_path("mnist")
    assert said == ["fetching mnist from offline …"]


def test_ctrl_c_stops_a_fetch_that_waits_for_another():
    with _locked_by_another_process():
        fetch = subprocess.Popen([sys.executable, "-m", "convnet", "data", "fetch"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            said = fetch.stderr.readline()  # after WAIT_NOTE_SECONDS of waiting
            fetch.send_signal(signal.SIGINT)
            _, stderr = fetch.communicate(timeout=10)
        finally:
            fetch.kill()
    assert said.startswith("waiting for another process's fetch of mnist")
    assert fetch.returncode == 130 and stderr == "convnet: interrupted\n", stderr


def test_all_sources_failing_is_one_clear_error(monkeypatch):
    def broken():
        raise DataError("no route to host")

    monkeypatch.setattr(mnist, "sources", lambda: [("a", broken), ("b", broken)])
    with pytest.raises(DataError, match="any source") as err:
        data.fetch("mnist", log=lambda m: None)
    assert "a: no route to host" in str(err.value) and "b: no route to host" in str(err.value)
    assert not data.cache_path("mnist").exists()


def test_unwritable_cache_fails_before_any_download(tmp_path, monkeypatch):
    def must_not_run():
        raise AssertionError("a source was tried although the cache cannot be written")

    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    monkeypatch.setenv("CONVNET_HOME", str(in_the_way))
    monkeypatch.setattr(mnist, "sources", lambda: [("a", must_not_run)])
    with pytest.raises(DataError, match="cannot create the cache folder .*CONVNET_HOME"):
        data.fetch("mnist", log=lambda m: None)


def test_read_only_cache_folder_fails_before_any_download(monkeypatch):
    def must_not_run():
        raise AssertionError("a source was tried although the cache cannot be written")

    folder = data.cache_path("mnist").parent
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: fail the way a read-only mount does
        def read_only(*_args, **_kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(data.tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(mnist, "sources", lambda: [("a", must_not_run)])
    try:
        with pytest.raises(DataError, match="cannot write to the cache folder .*CONVNET_HOME to a writable folder"):
            data.fetch("mnist", log=lambda m: None)
    finally:
        folder.chmod(0o755)


def test_a_cache_without_read_permission_says_so(tiny_arrays, monkeypatch):
    data._write_cache(data.cache_path("mnist"), tiny_arrays, "test")

    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(data.np, "load", denied)  # root reads a file of mode 0 anyway
    with pytest.raises(DataError, match=r"unreadable cache \(Permission denied\); make it readable, or run "
                                        "`convnet data fetch mnist`"):
        data.load_dataset("mnist")


def test_a_cache_setting_with_an_unknown_home_is_a_clear_error(monkeypatch, capsys):
    from convnet.cli import main

    monkeypatch.setenv("CONVNET_HOME", "~no-such-user-of-convnet/cache")  # expanduser raised a bare RuntimeError
    assert main(["data", "info"]) == 1
    assert capsys.readouterr().err.strip() == ("convnet: error: CONVNET_HOME=~no-such-user-of-convnet/cache: the home "
                                               "folder of its ~ cannot be found; set CONVNET_HOME to a folder's full "
                                               "path.")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_fetch_refuses_a_folder_in_place_of_a_cache_file_before_any_download(monkeypatch, suffix):
    def must_not_run():
        raise AssertionError("a source was tried although its result cannot be saved")

    in_the_way = data.cache_path("mnist").with_suffix(suffix)
    in_the_way.mkdir(parents=True)
    monkeypatch.setattr(mnist, "sources", lambda: [("a", must_not_run)])
    with pytest.raises(DataError, match=f"mnist{suffix} is a folder, not a file; remove it"):
        data.fetch("mnist", log=lambda m: None)


def test_missing_cache_without_fetch():
    with pytest.raises(DataError, match="convnet data fetch mnist"):
        data.load_dataset("mnist", fetch_missing=False)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown data set"):
        data.load_dataset("imagenet")
    with pytest.raises(DataError, match="a data set is named by a string"):
        data.load_dataset(["mnist"])
    with pytest.raises(DataError, match="data_dir is a folder's path, not int"):
        data.load_dataset("mnist", data_dir=5)


def test_load_dataset_refuses_an_empty_folder_name_and_flags_that_are_no_bools(tmp_path, tiny_arrays):
    write_idx_folder(tmp_path, tiny_arrays)  # the current folder: "" read it
    with pytest.raises(DataError, match="data_dir is empty; name a folder of IDX files"):
        data.load_dataset("mnist", data_dir="")
    with pytest.raises(DataError, match="test_only must be True or False, not 'no'"):
        data.load_dataset("mnist", data_dir=tmp_path, test_only="no")
    with pytest.raises(DataError, match="fetch_missing must be True or False, not 0"):
        data.load_dataset("mnist", fetch_missing=0)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
def test_atomic_write_closes_its_file_when_setting_the_mode_fails(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(OSError, match="not permitted"):
            atomic_write(tmp_path / "out.bin", lambda f: f.write(b"data"))
    assert len(os.listdir("/proc/self/fd")) == before and not list(tmp_path.iterdir())


def test_normalised_tensor(tiny_arrays):
    x = data.to_tensor(tiny_arrays["test_x"][:4], 0.5, 0.25)
    assert x.shape == (4, 1, 28, 28) and x.dtype.is_floating_point
    assert abs(x[0, 0, 0, 0].item() - (tiny_arrays["test_x"][0, 0, 0] / 255 - 0.5) / 0.25) < 1e-6


def test_real_mnist_checksums(real_mnist_cache, monkeypatch):
    monkeypatch.setenv("CONVNET_HOME", str(real_mnist_cache.parent.parent))
    ds = data.load_dataset("mnist", fetch_missing=False)
    assert ds.train_x.shape == (60000, 28, 28) and ds.test_x.shape == (10000, 28, 28)
    assert list(ds.train_y[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.normalization() == (0.1307, 0.3081)


def _folder_with(tmp_path, tiny_arrays, **changes):
    return write_idx_folder(tmp_path / "idx", {**tiny_arrays, **changes})


@pytest.mark.parametrize("change, words", [
    ({"train_y": np.full(600, -1, np.int8)}, "labels must be 0–9 \\(found -1–-1\\)"),
    ({"test_y": np.zeros(200, np.float32)}, "labels must be whole numbers"),
    ({"test_x": np.zeros((0, 28, 28), np.uint8), "test_y": np.zeros(0, np.uint8)}, "test split holds no images"),
    ({"test_x": np.zeros((200, 32, 32), np.uint8)}, "train images are 28×28 pixels but test images 32×32"),
])
def test_idx_folders_that_cannot_be_a_data_set(tmp_path, tiny_arrays, change, words):
    with pytest.raises(DataError, match=words):
        data.load_dataset("mnist", _folder_with(tmp_path, tiny_arrays, **change))


def test_idx_of_an_absurd_rank_is_refused():
    with pytest.raises(DataError, match="rank 255"):
        parse_idx(b"\x00\x00\x08\xff" + b"\x00" * 1020)


def test_normalization_is_the_pixels_mean_and_deviation(tiny_arrays):
    x = np.random.default_rng(0).integers(0, 256, (9000, 28, 28), dtype=np.uint8)  # more than one chunk of 4,096
    x[:3000] //= 4  # and chunks unlike each other
    ds = data.Dataset("noise", **dict(tiny_arrays, train_x=x, train_y=np.zeros(9000, dtype=np.int64)))
    pixels = x.astype(np.float64) / 255
    assert ds.normalization() == (round(pixels.mean(), 4), round(pixels.std(), 4))


def test_images_of_one_shade_do_not_divide_by_zero(tmp_path, tiny_arrays):
    flat = np.zeros_like(tiny_arrays["train_x"])
    assert data.load_dataset("mnist", _folder_with(tmp_path, tiny_arrays, train_x=flat)).normalization() == (0.0, 1.0)


@pytest.mark.parametrize(
    "damage", ["not json", "list json", "fifo json", "truncated npz", "empty npz", "npy npz", "wrong dtypes",
               "fifo npz"]
)
def test_a_damaged_cache_is_a_clear_error_or_harmless(tiny_arrays, monkeypatch, damage):
    _fake_sources(monkeypatch, tiny_arrays, first_fails=False)
    path = data.fetch("mnist", log=lambda m: None)
    if damage.startswith("fifo"):  # reading one would wait forever for a writer
        special = path.with_suffix("." + damage.split()[1])
        special.unlink()
        os.mkfifo(special)
    elif damage == "not json":
        path.with_suffix(".json").write_text("{oops")
    elif damage == "list json":
        path.with_suffix(".json").write_text("[1, 2]")
    elif damage == "truncated npz":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "empty npz":  # what a crash or a full disk leaves
        path.write_bytes(b"")
    elif damage == "npy npz":  # np.load gives an array, not an archive
        with path.open("wb") as f:
            np.save(f, tiny_arrays["test_y"])
    else:
        np.savez(path, **{**tiny_arrays, "test_y": tiny_arrays["test_y"].astype(np.int64)})
    if "json" in damage:  # only the note of where the cache came from is lost
        with _fails_if_it_hangs():
            assert data.load_dataset("mnist").source == str(path)
    else:
        unreadable = "unreadable cache .*run `convnet data fetch mnist` to replace it"
        with _fails_if_it_hangs(), pytest.raises(DataError, match=unreadable):
            data.load_dataset("mnist")


def _made(tiny_arrays, **changes) -> data.Dataset:
    return data.Dataset("tiny", **{**tiny_arrays, **changes})


def test_a_dataset_takes_integer_labels_of_any_width_as_int64(tiny_arrays):
    ds = _made(tiny_arrays, test_y=tiny_arrays["test_y"].astype(">i4"))  # int32, and big-endian too
    assert ds.train_y.dtype == ds.test_y.dtype == np.int64 and np.array_equal(ds.test_y, tiny_arrays["test_y"])


def test_arrays_replaced_after_the_dataset_was_made_are_checked_on_use(tiny_arrays):
    from convnet import create_model, evaluate, fit

    ds, model = _made(tiny_arrays), create_model("fast")
    ds.test_x = tiny_arrays["test_x"] / 255.0  # would score near chance without a word
    with pytest.raises(DataError, match="test images must be uint8"):
        evaluate(model, ds)
    ds.test_x, ds.train_y = tiny_arrays["test_x"], tiny_arrays["train_y"].astype(np.int32)
    with pytest.raises(DataError, match="must be 0–9"):
        ds.train_y[0] = 12
        fit(model, ds, epochs=1, log=None)
    ds.train_y[0] = 1
    evaluate(model, ds)  # int32 labels are taken again, as int64
    assert ds.train_y.dtype == np.int64


def test_a_dataset_of_arrays_made_in_memory_has_a_fingerprint(tiny_arrays):
    a, b = _made(tiny_arrays), _made(tiny_arrays)
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    b.test_y = b.test_y.copy()
    b.test_y[0] = (b.test_y[0] + 1) % 10
    assert b.sha256 != a.sha256
    assert data.describe(a)["sha256"] == a.sha256


@pytest.mark.parametrize("change, words", [
    # float pixels would be divided by 255 a second time; NaN or infinity cannot be uint8
    ({"test_x": np.zeros((200, 784), np.uint8)}, r"not \(200, 784\); shape flat rows with"),
    ({"test_x": np.zeros((200, 28, 28), np.float32)}, "test images must be uint8 pixels 0–255, not float32; convert"),
    ({"train_x": np.full((600, 28, 28), np.nan)}, "train images must be uint8 pixels 0–255, not float64"),
    ({"test_x": np.zeros((200, 1, 28, 28), np.uint8)},
     r"one-channel, shaped \(N, height, width\), at least 1×1 pixel, not \(200, 1, 28, 28\); drop a channel axis"),
    ({"test_x": np.zeros(200, np.uint8)}, r"at least 1×1 pixel, not \(200,\)\.$"),  # a labels file: no reshape helps
    ({"test_x": np.zeros((200, 0, 28), np.uint8)}, r"at least 1×1 pixel, not \(200, 0, 28\)\.$"),
    ({"test_x": np.zeros((200, 28, 28, 1), np.uint8)}, r"not \(200, 28, 28, 1\)"),
    ({"test_x": np.zeros((200, 32, 32), np.uint8)}, "train images are 28×28 pixels but test images 32×32"),
    ({"test_y": np.zeros(200, np.float32)}, "test labels must be whole numbers, not float32"),
    ({"test_y": np.array(["1"] * 200)}, "test labels must be whole numbers, not <U1"),
    ({"test_y": np.zeros(200, bool)}, "test labels must be whole numbers, not bool"),
    ({"test_y": np.full(200, 10)}, r"test labels must be 0–9 \(found 10–10\)"),
    ({"train_y": np.full(600, -1)}, r"train labels must be 0–9 \(found -1–-1\)"),
    ({"test_y": np.zeros(199, np.int64)}, r"test images \(200, 28, 28\) and labels \(199,\) do not match"),
    ({"test_y": np.zeros((200, 1), np.int64)}, "do not match"),
    ({"test_y": [0] * 200}, "test images and labels must be numpy arrays, not list"),
    ({"train_x": list(np.zeros((600, 28, 28), np.uint8))}, "must be numpy arrays, not list"),
    ({"train_x": torch.zeros(600, 28, 28, dtype=torch.uint8)},
     r"not Tensor: pass np.asarray\(…\) or a tensor's .numpy\(\)"),
    ({"classes": []}, "classes must be a non-empty list"),
    # Caught before training, not when the model is saved: answers are printed one a line by their class names.
    ({"classes": ["a", *"bcdefghi", "a"]}, "class name 'a' is given more than once"),
    ({"classes": [*"abcdefghi", "j\nk"]}, "class name 'j.*k' is blank or holds a line break"),
    ({"classes": [*"abcdefghi", ""]}, "class name '' is blank"),
])
def test_a_dataset_refuses_arrays_it_cannot_hold(tiny_arrays, change, words):
    with pytest.raises(DataError, match=f"data set 'tiny': .*{words}"):
        _made(tiny_arrays, **change)


@pytest.mark.parametrize("name, source", [(5, ""), ("", ""), ("  ", ""), (None, ""), ("tiny", None)])
def test_a_dataset_needs_a_name_and_a_text_source(tiny_arrays, name, source):
    with pytest.raises(DataError, match="a data set's name must be a non-empty string and its source a string"):
        data.Dataset(name, **tiny_arrays, source=source)


def test_labels_are_checked_against_the_classes(tiny_arrays):
    with pytest.raises(DataError, match=r"labels must be 0–2 \(found 0–9\)"):
        _made(tiny_arrays, classes=["a", "b", "c"])
    y = tiny_arrays["train_y"] % 3
    assert _made(tiny_arrays, classes=["a", "b", "c"], train_y=y, test_y=y[:200]).train_y.max() == 2


def test_an_empty_train_split_is_refused_before_any_numpy_warning(tiny_arrays):
    ds = _made(tiny_arrays, train_x=np.zeros((0, 28, 28), np.uint8), train_y=np.zeros(0, np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="the train split of tiny holds no images"):
            ds.normalization()


def test_a_download_that_is_not_the_standard_file_is_refused(monkeypatch):
    """A mirror's IDX file that parses but is not MNIST's (tampered, or another data set) is refused by its SHA-256;
    the standard ones are taken."""
    served = {name: gzip.compress(encode_idx(np.full((2, 2), i, np.uint8)))
              for i, name in enumerate(mnist.FILES.values())}
    monkeypatch.setattr(mnist, "SHA256", {part: hashlib.sha256(gzip.decompress(served[name])).hexdigest()
                                          for part, name in mnist.FILES.items()})
    monkeypatch.setattr(mnist.urllib.request, "urlopen",
                        lambda url, timeout: io.BytesIO(served[url.removeprefix("https://mirror/").removesuffix(".gz")]))
    assert mnist.from_mirror("https://mirror/")["test_y"].tolist() == [[3, 3], [3, 3]]
    served["t10k-labels-idx1-ubyte"] = gzip.compress(encode_idx(np.full((2, 2), 4, np.uint8)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256 mismatch, refusing the download"):
        mnist.from_mirror("https://mirror/")


@pytest.mark.parametrize("failure", ["corrupt gzip", "dropped connection", "a gzip bomb"])
def test_a_bad_download_is_a_data_error_so_the_next_source_is_tried(monkeypatch, failure):
    import http.client

    class Response(io.BytesIO):
        def read(self, *args):
            if failure == "dropped connection":
                raise http.client.IncompleteRead(b"partial", 1000)
            return super().read(*args)

    body = {"corrupt gzip": b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate at all",
            "dropped connection": b"",
            "a gzip bomb": gzip.compress(encode_idx(np.zeros(3, np.uint8)) + bytes(1 << 20))}[failure]
    monkeypatch.setattr(mnist.urllib.request, "urlopen", lambda url, timeout: Response(body))
    with pytest.raises(DataError, match="https://mirror/train-images-idx3-ubyte.gz"):
        mnist.from_mirror("https://mirror/")


def test_evaluation_reads_a_folder_without_the_training_files(tiny_arrays, tmp_path):
    folder = write_idx_folder(tmp_path / "test-only", tiny_arrays)
    for stem in (mnist.FILES["train_x"], mnist.FILES["train_y"]):
        (folder / f"{stem}.gz").unlink()
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[.gz\] \(need train-images-idx3-ubyte, "):
        data.load_dataset("mnist", folder)
    (folder / f"{mnist.FILES['test_y']}.gz").rename(tmp_path / "labels.gz")
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[.gz\] \(need t10k-images-idx3-ubyte, "
                       r"t10k-labels-idx1-ubyte; IDX files, not images\)"):  # evaluation reads no training files
        data.load_dataset("mnist", folder, test_only=True)
    (tmp_path / "labels.gz").rename(folder / f"{mnist.FILES['test_y']}.gz")
    ds = data.load_dataset("mnist", folder, test_only=True)
    assert len(ds.train_x) == 0 and ds.train_x.shape[1:] == ds.test_x.shape[1:]
    assert np.array_equal(ds.test_y, tiny_arrays["test_y"])
    # Test images of the wrong shape are named as such, not the training images that were never there.
    for name, test_x, shown in [("flat", tiny_arrays["test_x"].reshape(-1, 784), r"\(200, 784\); shape flat rows"),
                                ("empty", np.zeros((200, 0, 28), np.uint8), r"\(200, 0, 28\)")]:
        bad = write_idx_folder(tmp_path / name, {**tiny_arrays, "test_x": test_x})
        for stem in (mnist.FILES["train_x"], mnist.FILES["train_y"]):
            (bad / f"{stem}.gz").unlink()
        with pytest.raises(DataError, match=rf"test images must be one-channel, .* not {shown}"):
            data.load_dataset("mnist", bad, test_only=True)
