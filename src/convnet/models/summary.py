"""A Keras-style `summary()`: the table the lesson shows (layer, output shape, parameters, totals)."""
from __future__ import annotations

import torch
from torch import nn

from convnet.models.registry import Network, blank_pass


def layer_rows(model: Network) -> list[tuple[str, str, int]]:
    """(Keras-style name and type, output shape, parameters) of each layer, from one forward pass of a zero image."""
    rows: list[tuple[str, str, int]] = []

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        shape = "(None, " + ", ".join(str(s) for s in output.shape[1:]) + ")"
        rows.append((f"{module._summary_name} ({type(module).__name__})", shape, params))

    leaves = [m for m in model.modules() if not list(m.children())]
    seen: dict[str, int] = {}
    handles = []
    for module in leaves:  # Keras-style names: conv2d, conv2d_1, …
        kind = type(module).__name__.lower()
        module._summary_name = kind + (f"_{seen[kind]}" if seen.get(kind) else "")
        seen[kind] = seen.get(kind, 0) + 1
        handles.append(module.register_forward_hook(hook))
    try:
        blank_pass(model, handles)
    finally:
        for module in leaves:
            del module._summary_name
    return rows


def summary_table(model: Network) -> str:
    rows = layer_rows(model)
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(header[i]), *(len(str(r[i])) for r in rows)) + 2 for i in range(3)]
    width = sum(widths)

    def line(cells) -> str:
        return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = [f'Model: "{getattr(model, "arch", type(model).__name__)}"', "_" * width, line(header), "=" * width]
    for r in rows:
        out += [line((r[0], r[1], f"{r[2]:,}")), "_" * width]
    out[-1] = "=" * width
    out += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(out)
