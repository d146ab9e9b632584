"""The lesson's own Keras network and recipe on the same MNIST arrays, for a side-by-side comparison.

Needs TensorFlow (`pip install '.[bench]'`). Prints one JSON line: test accuracy and training seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from convnet.cli import report_errors
from convnet.data import load_dataset
from convnet.errors import ConvnetError


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    try:
        from tensorflow import keras  # optional: only this benchmark needs it
    except ImportError as e:
        raise ConvnetError(f"needs TensorFlow ({e}): pip install '.[bench]'") from None

    data = load_dataset("mnist")
    x_train = data.train_x.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = data.test_x.reshape(-1, 28, 28, 1).astype("float32") / 255
    y_train = keras.utils.to_categorical(data.train_y, 10)
    y_test = keras.utils.to_categorical(data.test_y, 10)
    model = keras.Sequential([
        keras.layers.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({"name": "Keras lesson (10 epochs, batch 32)", "accuracy": accuracy,
                      "train_seconds": seconds, "epoch_seconds": seconds / 10}))


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
