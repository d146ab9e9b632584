"""Data augmentation on whole batches: one random affine map per image, applied with `affine_grid`/`grid_sample`.

Doing a batch in two tensor ops is much faster than per-image transforms, and works on any device.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

# The zoo's augmentation (`accurate`'s recipe), and what `--augment` turns on for a recipe that has none of its own.
STANDARD = {"rotate": 10.0, "shift": 0.1, "scale": 0.1}


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
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    return warp(x, theta, background)


def warp(x: torch.Tensor, theta: torch.Tensor, background: float | torch.Tensor) -> torch.Tensor:
    """Resample each image through its affine map `theta` (N, 2, 3), which takes output coordinates in [-1, 1] to
    input ones; what comes from outside the image is `background` (a number, or one per image as (N, 1, 1, 1))."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out + background).contiguous(memory_format=torch.channels_last)


def random_lowres(x: torch.Tensor, fraction: float, sizes: tuple[int, int] = (8, 16),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur a random `fraction` of the batch by scaling it down to a random s×s (s in `sizes`) and back up.

    Real inputs are often low-resolution (a small scan, a thumbnail, a digit a few pixels tall) and come out of
    preprocessing soft and blobby; MNIST's crisp digits never look like that unless training shows them so.
    """
    n = int(round(x.shape[0] * fraction))
    if n == 0:
        return x
    # Drawn where the generator is, which may be a GPU's (random_affine's must be on the images' device).
    where = generator.device if generator is not None else None
    side = int(torch.randint(sizes[0], sizes[1] + 1, (1,), generator=generator, device=where))
    small = shrink(x[:n], side)
    x = x.clone()
    x[:n] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def shrink(x: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, H, W) images scaled down to side×side as interpolate's "area" mode does (each pixel the mean of its
    window), as two matrix products. "area" is adaptive_avg_pool2d, which MPS refuses ("input sizes must be divisible
    by output sizes") for all of random_lowres's sizes but 14 of 28: `robust` could not train on a Mac."""
    height, width = x.shape[-2:]
    return _window_means(side, height, x.device, x.dtype) @ x @ _window_means(side, width, x.device, x.dtype).T


@functools.lru_cache(maxsize=64)  # a few sizes, made once: making them took three times the products' time
def _window_means(side: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(side, size): row i averages the pixels of adaptive pooling's window for output i."""
    i = torch.arange(side, device=device)
    start, stop = i * size // side, ((i + 1) * size + side - 1) // side
    j = torch.arange(size, device=device)
    inside = (j >= start[:, None]) & (j < stop[:, None])
    return inside.to(dtype) / (stop - start)[:, None].to(dtype)


def augment_batch(x: torch.Tensor, background: float, lowres: float = 0.0, **affine: float) -> torch.Tensor:
    """A recipe's augmentation: the random affine map, then low-resolution blur on a share of the batch."""
    x = random_affine(x, background=background, **affine)
    return random_lowres(x, lowres) if lowres else x
