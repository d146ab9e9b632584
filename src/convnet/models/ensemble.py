"""An ensemble: several trained models voting by averaging their calibrated probabilities.

Its output is the log of the mean probability, so it drops in wherever a model's logits are used (argmax,
cross-entropy, softmax) and an ensemble can be saved, loaded, evaluated and used for prediction like any model.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from convnet.errors import ModelError
from convnet.models.registry import Network, show


class Ensemble(nn.Module):
    arch = "ensemble"

    def __init__(self, members: Iterable[Network]):
        super().__init__()
        members = _members(members)
        if len(members) < 2:
            raise ModelError("an ensemble needs at least two models.")
        first = members[0]
        if problem := disagreement(first, members):
            raise ModelError(f"{problem}.")
        self.members = nn.ModuleList(members)
        self.num_classes, self.in_channels, self.input_size = first.num_classes, first.in_channels, first.input_size
        self.classes, self.mean, self.std = list(first.classes), first.mean, first.std
        self.temperature = 1.0  # members are calibrated one by one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output, and each member's features (`Network.forward_with_features`)."""
        outputs = [m.forward_with_features(x) for m in self.members]
        probs = torch.stack([torch.softmax(out.float() / m.temperature, 1)
                             for m, (out, _) in zip(self.members, outputs)]).mean(0)
        return probs.clamp_min(1e-12).log(), [f for _, (f,) in outputs]

    def predict(self, images: object, batch_size: int = 256) -> np.ndarray:
        """The members' averaged calibrated probabilities, as `Network.predict` gives one network's."""
        from convnet.models.arrays import predict_arrays  # it needs evaluate, which imports this module

        return predict_arrays(self, images, batch_size)

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Its members, one line each (architecture, parameters, temperature); each member's own `summary()` shows
        its layers."""
        counts = [sum(p.numel() for p in m.parameters()) for m in self.members]
        lines = [f"ensemble of {len(self.members)} models, averaging their calibrated probabilities"]
        lines += [f"  {i}. {m.arch:<18} {n:>10,} parameters   temperature {m.temperature:.3f}"
                  for i, (m, n) in enumerate(zip(self.members, counts), 1)]
        show("\n".join(lines + [f"total parameters: {sum(counts):,}"]), print_fn)

    def member_cards(self) -> list[dict]:
        return [
            {"architecture": m.arch, "num_classes": m.num_classes, "in_channels": m.in_channels,
             "input_size": list(m.input_size), "temperature": float(m.temperature),
             **({"typicality": m.typicality} if m.typicality else {})}
            for m in self.members
        ]


def disagreement(model: Network | Ensemble, members: list[Network]) -> str | None:
    """Which member does not take its input as `model` does (classes, input size, normalisation), and how; None when
    all do. The ensemble feeds every member with its own normalisation: a member's would be ignored."""
    def settings(m: Network | Ensemble) -> dict[str, object]:
        return {"classes": list(m.classes), "input size": (m.in_channels, *m.input_size),
                "normalisation (mean, std)": (m.mean, m.std)}

    # fit sets the normalisation from the data, and no images have mean 0 and std 1: (0, 1) is an untrained network's
    untrained = [i for i, m in enumerate(members) if (m.mean, m.std) == (0, 1)]
    if 0 < len(untrained) < len(members):  # named as such, first or not
        i = untrained[0]
        return f"ensemble members are trained networks: member {i + 1} ({members[i].arch}) is untrained"
    wanted = settings(model)
    for i, member in enumerate(members):
        for name, value in settings(member).items():
            if value != wanted[name]:
                return (f"ensemble members must share classes, input size and normalisation: member {i + 1} "
                        f"({member.arch}) has {name} {_short(value)}, not {_short(wanted[name])} (models trained on "
                        "other data, or on a part of it, differ so)")
    return None


def _short(value: object) -> str:
    if isinstance(value, tuple) and all(isinstance(v, float) for v in value):
        return "(" + ", ".join(f"{v:.6g}" for v in value) + ")"
    return f"{value!r:.80}"


def _members(members: Iterable[Network]) -> list[Network]:
    """The members as a list of distinct trained networks, or a ModelError that says what was given instead."""
    if isinstance(members, (str, bytes, nn.Module)) or not isinstance(members, Iterable):
        raise ModelError(f"an ensemble takes a list of trained models, not {type(members).__name__}.")
    members = list(members)
    for m in members:
        if isinstance(m, Ensemble):
            # An average of averages would weigh its members unevenly.
            raise ModelError("an ensemble cannot hold another ensemble: list that ensemble's members instead "
                             "(ensemble.members).")
        if not isinstance(m, Network):
            hint = "; load it with load_model first" if isinstance(m, (str, bytes, os.PathLike)) else ""
            raise ModelError(f"an ensemble's members are trained models, not {type(m).__name__} ({m!r:.60}){hint}.")
    if len({id(m) for m in members}) < len(members):  # an average with itself is the model again
        raise ModelError("the same model is listed twice in the ensemble; list each member once.")
    return members
