"""The lesson's own Keras network and recipe on the same MNIST arrays, for a side-by-side comparison.

Needs TensorFlow (`pip install '.[bench]'`). Prints one JSON line: test accuracy, training seconds (`model.fit`'s
whole wall time, as the lesson measured its 49.6 s) and seconds per epoch: the median epoch, which leaves out the
first epoch's graph tracing, so the per-epoch ratio against convnet's lesson (whose mean epoch it is set against) is
no kinder to convnet than the measured time.
"""
from __future__ import annotations

import argparse
import json
import statistics
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
    epochs: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(time.perf_counter()),
                                           on_epoch_end=lambda epoch, logs: epochs.append(time.perf_counter()))
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0, callbacks=[clock])
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    per_epoch = statistics.median(end - begin for begin, end in zip(epochs[::2], epochs[1::2]))
    print(json.dumps({"name": "Keras lesson (10 epochs, batch 32)", "accuracy": accuracy,
                      "train_seconds": seconds, "epoch_seconds": per_epoch}))


if __name__ == "__main__":
    sys.exit(report_errors(main, Path(__file__).name))
