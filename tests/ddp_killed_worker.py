"""Launched by test_distributed.py under torchrun: `convnet train`, whose rank 1 is killed (SIGKILL) in epoch 2, as
the out-of-memory killer would, once rank 0 waits for it in the first gradient all-reduce."""
import os
import signal
import sys
import time

import convnet.train  # noqa: F401 (the module, for its _Loop)
from convnet.cli import main

loop = sys.modules["convnet.train"]._Loop
epoch = loop.epoch


def epoch_or_death(self, x, y, number):
    if number == 2 and os.environ["RANK"] == "1":
        time.sleep(3)
        os.kill(os.getpid(), signal.SIGKILL)
    return epoch(self, x, y, number)


loop.epoch = epoch_or_death
sys.exit(main(["train", *sys.argv[1:]]))
