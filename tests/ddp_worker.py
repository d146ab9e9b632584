"""Launched by test_distributed.py under torchrun: trains through the public API, then saves this rank's weights."""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from convnet.distributed import exit_process
from convnet.config import TrainConfig
from convnet.train import train

data_dir, out, ema = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
result = train(TrainConfig(model="fast", data_dir=data_dir, epochs=2, batch_size=16, device="cpu", ema=ema,
                           out=str(out / "run")))
rank = int(__import__("os").environ["RANK"])
state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items() if v.dtype != torch.long}
save_file(state, str(out / f"rank{rank}.safetensors"))
exit_process(0)  # as `convnet train` does under torchrun: see its docstring
