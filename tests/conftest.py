"""Shared fixtures: a small, learnable synthetic digit set written as the four standard IDX files."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from convnet.data import mnist
from convnet.data.cache import convnet_home
from convnet.data.idx import encode_idx

# The user's cache, read before any test points CONVNET_HOME at its own folder (CONVNET_REAL_HOME, if set, wins);
# absolute, as each test runs in a folder of its own (isolated_home).
USER_HOME = Path(os.environ.get("CONVNET_REAL_HOME") or convnet_home()).absolute()
# For the same reason a relative PYTHONPATH (`PYTHONPATH=src` where the package is not installed, as on the GPU
# machine) is made absolute: else the commands that tests start could not import convnet.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))


def synthetic_arrays(n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Class k is a bright 6×6 square at one of ten fixed places, with noise: easy to learn, not trivial."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            r, c = 3 + (k // 5) * 12, 2 + (k % 5) * 5
            x[i, r : r + 6, c : c + 6] = rng.integers(180, 256, size=(6, 6))
        return x, y.astype(np.uint8)

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, stem in mnist.FILES.items():
        raw = encode_idx(arrays[part])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


@pytest.fixture(scope="session")
def tiny_arrays() -> dict[str, np.ndarray]:
    return synthetic_arrays()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_arrays) -> Path:
    return write_idx_folder(tmp_path_factory.mktemp("tiny-idx"), tiny_arrays)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """No test touches the user's cache; runs go to the test's own folder."""
    home = tmp_path / "convnet-home"
    monkeypatch.setenv("CONVNET_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def real_mnist_cache() -> Path:
    """The user's real cached MNIST, if present (integration tests only)."""
    path = USER_HOME / "datasets" / "mnist.npz"
    if not path.exists():
        pytest.skip(f"real MNIST not cached in {USER_HOME} (run `convnet data fetch mnist`, or set CONVNET_REAL_HOME "
                    "to a convnet home that has it)")
    return path
