"""CUDA graphs for training steps (`--cuda-graphs`).

On a fast GPU a small CNN's training step is bound by Python launching its hundred-odd small kernels one by one,
not by arithmetic. Here one step's gather, augmentation, forward pass, loss and backward pass are recorded once as a
CUDA graph and replayed with a single launch per batch. The optimiser step, the learning-rate schedule and the
weight average stay outside the graph, as in an eager step (a fused optimiser is one launch): recorded, they would
keep the learning rate and momentum of the moment of recording.

Replays write the gradients into the same tensors each time (the ones `backward` created while recording), so
nothing may set `.grad` to None while a graph is in use, nor replace the tensors the step adds its loss to. What the
step does must not depend on values read back to the host: BatchNorm with `momentum=None` (a cumulative average)
would, and the zoo's networks keep PyTorch's default momentum.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from convnet.errors import ConfigError, first_line

WARM_UP = 3  # eager passes before recording: cuDNN and autograd set themselves up, which a graph cannot hold


def check_graphs(device: torch.device, distributed: bool, compiled: bool, augment: dict) -> None:
    """Refuse --cuda-graphs where a recorded step would not be the eager one, or cannot be recorded."""
    if device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA GPU, and this run trains on {device}: leave it out.")
    if compiled:
        raise ConfigError("--compile records CUDA graphs of its own on a GPU: give --compile or --cuda-graphs, "
                          "not both.")
    if distributed:
        raise ConfigError("--cuda-graphs trains in one process: under torchrun leave it out.")
    if augment.get("lowres"):
        # random_lowres draws its blur size on the host each step; a graph would replay the size it recorded.
        raise ConfigError("--cuda-graphs cannot record this recipe's low-resolution blur (its size changes each "
                          "step): train without --cuda-graphs, or with --no-augment.")


class StepGraph:
    """`step(idx)` (forward and backward of the batch of images `idx` into the gradients) recorded as a CUDA graph.

    `first` is a real batch's indices for the warm-up passes; `model`'s buffers (BatchNorm's running statistics),
    which those passes move, are put back afterwards, and its gradients are set to None so that the recording
    creates its own. Calling the object runs one recorded step on the batch `idx`.
    """

    def __init__(self, step: Callable[[torch.Tensor], None], first: torch.Tensor, model: torch.nn.Module):
        # Recording and replaying take the current device's streams: with --device cuda:1 that must be cuda:1.
        with torch.cuda.device(first.device):
            self.idx = first.clone()  # the graph reads its batch's indices from here
            buffers = list(model.buffers())
            kept = [b.clone() for b in buffers]
            # Warm up on a side stream, as PyTorch's CUDA graph notes ask: its lazy set-up stays out of the graph.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARM_UP):
                    step(self.idx)
            torch.cuda.current_stream().wait_stream(side)
            if buffers:  # foreach calls refuse empty lists
                torch._foreach_copy_(buffers, kept)
            model.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(self.graph, stream=side):
                    step(self.idx)
            except RuntimeError as e:  # an operation this PyTorch cannot record, or out of memory
                raise ConfigError(f"--cuda-graphs could not record a training step ({first_line(e)}); train without "
                                  "--cuda-graphs.") from None

    def __call__(self, idx: torch.Tensor) -> None:
        self.idx.copy_(idx)
        with torch.cuda.device(self.idx.device):
            self.graph.replay()
