"""Data augmentation on whole batches: one random affine map per image, applied with `affine_grid`/`grid_sample`.

Doing a batch in two tensor ops is much faster than per-image transforms, and works on any device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    rotate: float = 0.0,
    shift: float = 0.0,
    scale: float = 0.0,
    background: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate by up to ±`rotate` degrees, shift by up to ±`shift` of the image size, scale by 1 ± `scale`.

    x: (N, C, H, W). `background` is the value of empty pixels (normalised black for MNIST), which fill the borders.
    """
    n = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:  # in [-limit, limit]
        return (torch.rand(n, device=x.device, generator=generator) * 2 - 1) * limit

    angle, zoom = uniform(math.radians(rotate)), 1 + uniform(scale)
    # affine_grid maps output coordinates in [-1, 1] to input ones, so a shift of s image widths is 2·s there.
    tx, ty = uniform(2 * shift), uniform(2 * shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out + background).contiguous(memory_format=torch.channels_last)
