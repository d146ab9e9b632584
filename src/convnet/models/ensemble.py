"""An ensemble: several trained models voting by averaging their calibrated probabilities.

Its output is the log of the mean probability, so it drops in wherever a model's logits are used (argmax,
cross-entropy, softmax) and an ensemble can be saved, loaded, evaluated and used for prediction like any model.
"""
from __future__ import annotations

import torch
from torch import nn

from convnet.errors import ModelError
from convnet.models.registry import Network


class Ensemble(nn.Module):
    arch = "ensemble"

    def __init__(self, members: list[Network]):
        super().__init__()
        if len(members) < 2:
            raise ModelError("an ensemble needs at least two models.")
        first = members[0]
        for m in members[1:]:
            same = (m.classes, m.mean, m.std, m.in_channels, tuple(m.input_size))
            if same != (first.classes, first.mean, first.std, first.in_channels, tuple(first.input_size)):
                raise ModelError("ensemble members must share classes, input size and normalisation "
                                 "(train them on the same data set).")
        self.members = nn.ModuleList(members)
        self.num_classes, self.in_channels, self.input_size = first.num_classes, first.in_channels, first.input_size
        self.classes, self.mean, self.std = list(first.classes), first.mean, first.std
        self.temperature = 1.0  # members are calibrated one by one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float() / m.temperature, 1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()

    def member_cards(self) -> list[dict]:
        return [
            {"architecture": m.arch, "num_classes": m.num_classes, "in_channels": m.in_channels,
             "input_size": list(m.input_size), "temperature": float(m.temperature)}
            for m in self.members
        ]
