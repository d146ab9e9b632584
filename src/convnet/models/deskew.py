"""Deskewing, the classic MNIST preprocessing: shear each image so that its ink stands upright about its centre of
mass, and move that centre to the middle of the image. Slant is mostly handwriting style, not the digit's identity.

Done on whole batches by the same affine resampling as the augmentation (`convnet.augment.warp`).
"""
from __future__ import annotations

import torch
from torch import nn

from convnet.augment import warp

MAX_SHEAR = 1.0  # 45°: a wider, flat shape (a dash, a blot) has no slant worth undoing and would be torn apart


def deskew(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images on a dark background (each image's darkest value) → the same, deskewed and centred."""
    n, _, h, w = x.shape
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    ink = (x - background).sum(1, dtype=torch.float32)  # (N, H, W); the background weighs nothing
    # Pixel centres in affine_grid's coordinates ([-1, 1] across the image, align_corners=False).
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device).view(1, h, 1)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device).view(1, 1, w)
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    cx, cy = (ink * xs).sum((1, 2)) / mass, (ink * ys).sum((1, 2)) / mass
    dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
    var_y = (ink * dy * dy).sum((1, 2)) / mass
    # The slant: how far the ink moves right per unit down, from the second moments (a least-squares line x(y)).
    shear = ((ink * dx * dy).sum((1, 2)) / mass / var_y.clamp_min(1e-6)).clamp(-MAX_SHEAR, MAX_SHEAR)
    zero, one = torch.zeros_like(shear), torch.ones_like(shear)
    # affine_grid maps output coordinates to input ones: output (u, v) reads input (cx + u + shear·v, cy + v).
    theta = torch.stack([torch.stack([one, shear, cx], 1), torch.stack([zero, one, cy], 1)], 1)
    return warp(x, theta, background)


class Deskew(nn.Module):
    """First layer of a model that sees deskewed digits. It deskews at inference (evaluate, predict, read) and
    passes batches through untouched while training: `fit` deskews the training images once, before augmentation,
    because deskewing augmented batches would undo most of the augmentation's shifts and rotations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.training else deskew(x)


def deskew_training_images(model: nn.Sequential, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The training images as the model's first layer sees them at inference: deskewed if it is a `Deskew`."""
    if not (len(model) and isinstance(model[0], Deskew)):
        return x
    with torch.no_grad():
        return torch.cat([deskew(part) for part in x.split(chunk)])
