"""Launched by test_distributed.py under torchrun: `convnet train ARGS…` with a fault on rank 1 in epoch 2, named by
the first argument: `kill` (SIGKILL once rank 0 waits for it in the first gradient all-reduce, as the out-of-memory
killer would) or `nan` (its epoch reports a non-finite loss, which no other rank sees)."""
import os
import signal
import sys
import time

import convnet.train  # noqa: F401 (the module, for its _Loop)
from convnet.cli import main

loop = sys.modules["convnet.train"]._Loop
epoch = loop.epoch
fault = sys.argv[1]


def faulty_epoch(self, x, y, number):
    if number != 2 or os.environ["RANK"] != "1":
        return epoch(self, x, y, number)
    if fault == "kill":
        time.sleep(3)
        os.kill(os.getpid(), signal.SIGKILL)
    return {**epoch(self, x, y, number), "train_loss": float("nan")}


loop.epoch = faulty_epoch
sys.exit(main(["train", *sys.argv[2:]]))
