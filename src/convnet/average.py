"""A moving average of a model's weights (`--ema`), kept beside the model during training."""

from __future__ import annotations

import torch


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics, updated after every step.

    Late in training each step moves the weights a little along the noise of its batch; their average over the last
    thousand or so steps (decay 0.999) sits nearer the middle of the region they wander in (Polyak averaging). Like
    Adam's moments it is bias-corrected: step n weighs in by (1 - decay) / (1 - decay**n), so the initial random
    weights count for nothing and a run shorter than the decay's span averages all its steps. Lerping all tensors in
    one foreach call keeps it to a few kernel launches a step and no host sync.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        sources = [*model.parameters(), *model.buffers()]
        self._floats = [t for t in sources if t.is_floating_point()]
        self._others = [t for t in sources if not t.is_floating_point()]  # BatchNorm's batch counts: copied
        self.floats = [t.detach().clone() for t in self._floats]
        self.others = [t.detach().clone() for t in self._others]
        self.kept: list[torch.Tensor] | None = None  # the model's own weights while the average stands in for them

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        torch._foreach_lerp_(self.floats, self._floats, (1 - self.decay) / (1 - self.decay**self.steps))
        if self.others:  # foreach calls refuse empty lists
            torch._foreach_copy_(self.others, self._others)

    @torch.no_grad()
    def use(self) -> None:
        """Put the average in place of the model's own weights (the tensors it was made from), keeping those."""
        self.kept = [t.clone() for t in self._floats + self._others]
        torch._foreach_copy_(self._floats + self._others, self.floats + self.others)

    @torch.no_grad()
    def restore(self) -> None:
        """Give the model its own weights back, if the average stands in for them."""
        if self.kept is not None:
            torch._foreach_copy_(self._floats + self._others, self.kept)
            self.kept = None
