import torch
import torch.nn.functional as F

from convnet.augment import augment_batch, random_affine, random_lowres, shrink


def _digits(n: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a vertical stroke in the middle
    return x


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    cols = torch.arange(x.shape[-1], dtype=x.dtype)
    return (x.sum(-2) * cols).sum(-1) / x.sum((-2, -1))


def test_no_augmentation_is_the_identity():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(random_affine(x), x, atol=1e-5)


def test_shift_moves_the_digit_and_fills_with_background():
    x = _digits()
    out = random_affine(x, shift=0.1, generator=torch.Generator().manual_seed(0))
    moved = (_centre_of_mass(out) - _centre_of_mass(x)).abs().flatten()
    assert moved.max() > 0.5 and moved.max() <= 2.8 + 1e-3  # up to 10 % of 28 px
    background = -0.4
    shifted = random_affine(torch.full((2, 1, 28, 28), background), shift=0.2, background=background)
    assert torch.allclose(shifted, torch.full_like(shifted, background), atol=1e-5)


def test_rotation_and_scale_turn_and_resize_the_digit_in_place():
    x = _digits()
    out = random_affine(x, rotate=10, scale=0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(out, x, atol=1e-3)
    assert (_centre_of_mass(out) - _centre_of_mass(x)).abs().max() < 0.5  # about the image centre: no shift
    ink = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ink.min() > 0.8 ** 2 and ink.max() < 1.2 ** 2  # area changes by the square of a zoom in 1 ± 0.1


def test_lowres_blurs_only_the_asked_share():
    x = torch.rand(8, 1, 28, 28)
    out = random_lowres(x, 0.25)
    assert not torch.allclose(out[:2], x[:2]) and torch.equal(out[2:], x[2:])
    assert out[:2].std() < x[:2].std()
    assert augment_batch(x, background=0.0).is_contiguous(memory_format=torch.channels_last)


def test_lowres_does_without_adaptive_pooling_which_mps_refuses(monkeypatch):
    """MPS's adaptive_avg_pool2d (interpolate's "area") refuses sizes that do not divide the image's: 28 → 8..16 but
    14. The blur scales down as "area" does, without it."""
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    expected = {side: F.interpolate(x, size=(side, side), mode="area") for side in range(8, 17)}
    for side, want in expected.items():
        assert torch.allclose(shrink(x, side), want, atol=1e-6)
    assert torch.allclose(shrink(x[..., :20], 8), F.interpolate(x[..., :20], size=(8, 8), mode="area"), atol=1e-6)

    pool = F.adaptive_avg_pool2d

    def as_on_mps(x, output_size):
        if any(size % out for size, out in zip(x.shape[-2:], output_size)):
            raise RuntimeError("Adaptive pool MPS: input sizes must be divisible by output sizes.")
        return pool(x, output_size)

    monkeypatch.setattr(F, "adaptive_avg_pool2d", as_on_mps)
    for seed in range(20):  # the blur's size is drawn anew each time: 8 of the 9 sizes were refused
        torch.manual_seed(seed)
        assert random_lowres(x, 0.5).shape == x.shape


def test_augment_batch_warps_every_image_then_blurs_its_share():
    x = _digits()
    torch.manual_seed(0)
    out = augment_batch(x, background=0.0, lowres=0.5, rotate=10, shift=0.1, scale=0.1)
    moved = (out - x).abs().flatten(1).amax(1)
    assert (moved > 0.1).all()  # each image is warped
    # Blurring spreads the 4-pixel-wide stroke: few pixels keep nearly full ink, where a warp alone keeps dozens.
    full = (out > 0.95).sum((1, 2, 3))
    assert (full[:4] < 15).all() and (full[4:] > 20).all()
