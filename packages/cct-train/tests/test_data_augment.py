"""Batched on-device augmentation: alignment of images and masks, mask values, determinism, shapes."""

from __future__ import annotations

import pytest
import torch

from cct_train.data import Normalize, SegmentationAugment, to_float_image

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _encoded(batch: int, h: int, w: int, block: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of 3 classes in blocks of ``block`` pixels; image colour = one-hot of the class."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 3, (batch, -(-h // block), -(-w // block)), generator=g)
    masks = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w].contiguous()
    images = torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    return images, masks


def _agreement(images: torch.Tensor, masks: torch.Tensor) -> float:
    valid = masks != 255
    return (images.argmax(1)[valid] == masks[valid]).float().mean().item()


@pytest.mark.parametrize("device", DEVICES)
def test_alignment_random_scale_crop_flip(device: str) -> None:
    images, masks = _encoded(8, 40, 56, block=4)
    aug = SegmentationAugment((32, 48), scale_range=(0.5, 2.0))
    out, out_masks = aug(
        images.to(device), masks.to(device), generator=torch.Generator(device).manual_seed(1)
    )
    assert out.shape == (8, 3, 32, 48)
    assert out.dtype == torch.float32
    assert out_masks.shape == (8, 32, 48)
    assert out_masks.dtype == torch.int64
    assert set(out_masks.unique().tolist()) <= {0, 1, 2, 255}
    assert (out_masks != 255).float().mean() > 0.3
    assert _agreement(out, out_masks) > 0.99
    # padding: ignored mask pixels are exactly the image's fill pixels
    assert torch.equal(out.sum(1) == 0, out_masks == 255)


def test_alignment_exact_at_pixel_level() -> None:
    # one-pixel classes: any half-pixel misalignment between image and mask would show
    images, masks = _encoded(4, 24, 32, block=1, seed=3)
    for scale in (1.0, 2.0):
        aug = SegmentationAugment((20, 28), scale_range=(scale, scale))
        out, out_masks = aug(images, masks, generator=torch.Generator().manual_seed(0))
        assert _agreement(out, out_masks) == 1.0
    identity = SegmentationAugment((24, 32), scale_range=(1.0, 1.0), hflip=False)
    out, out_masks = identity(images, masks)
    assert torch.allclose(out, images, atol=1e-5)
    assert torch.equal(out_masks, masks)


def test_flip_is_a_mirror() -> None:
    images, masks = _encoded(16, 8, 10, block=1)
    aug = SegmentationAugment((8, 10), scale_range=(1.0, 1.0), hflip=True)
    _out, out_masks = aug(images, masks, generator=torch.Generator().manual_seed(0))
    flipped = torch.equal(out_masks, masks.flip(-1))
    per_sample = [
        torch.equal(out_masks[b], masks[b].flip(-1)) or torch.equal(out_masks[b], masks[b]) for b in range(16)
    ]
    assert all(per_sample)
    assert not flipped
    n_flipped = sum(torch.equal(out_masks[b], masks[b].flip(-1)) for b in range(16))
    assert 0 < n_flipped < 16


def test_mask_values_preserved_and_padding() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 7, (4, 30, 30), generator=g)
    masks[:, :3] = 255
    images = torch.rand(4, 3, 30, 30, generator=g)
    aug = SegmentationAugment((64, 64), scale_range=(0.5, 0.9), fill=(0.1, 0.2, 0.3))
    out, out_masks = aug(images, masks, generator=torch.Generator().manual_seed(1))
    assert set(out_masks.unique().tolist()) <= set(range(7)) | {255}
    assert (out_masks != 255).any()
    # the scaled image (at most 27 px) is smaller than the crop: padding elsewhere, filled with `fill`
    _, coverage = aug(images, torch.zeros_like(masks), generator=torch.Generator().manual_seed(1))
    pad = coverage == 255
    assert pad.float().mean() > 0.7
    assert ((out_masks == 255) >= pad).all()
    padded_pixels = out.permute(0, 2, 3, 1)[pad]
    assert torch.allclose(padded_pixels, torch.tensor([0.1, 0.2, 0.3]).expand_as(padded_pixels))
    assert not torch.allclose(out.permute(0, 2, 3, 1)[~pad][:, 0], torch.tensor(0.1))


def test_determinism_and_unlabeled() -> None:
    images, masks = _encoded(4, 32, 32, block=4)
    aug = SegmentationAugment((24, 24))
    a = aug(images, masks, generator=torch.Generator().manual_seed(7))
    b = aug(images, masks, generator=torch.Generator().manual_seed(7))
    c = aug(images, masks, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # without masks the same draws are made: same images as with masks
    d, none = aug(images, generator=torch.Generator().manual_seed(7))
    assert none is None
    assert torch.equal(d, a[0])
    torch.manual_seed(3)
    e = aug(images)[0]
    torch.manual_seed(3)
    assert torch.equal(e, aug(images)[0])


def test_uint8_input_and_errors() -> None:
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out, _ = SegmentationAugment((8, 8))(images)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    with pytest.raises(ValueError, match="masks"):
        SegmentationAugment((8, 8))(images, torch.zeros(2, 15, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="crop_size"):
        SegmentationAugment((0, 8))
    with pytest.raises(ValueError, match="scale_range"):
        SegmentationAugment((8, 8), scale_range=(2.0, 1.0))


def test_normalize_and_to_float() -> None:
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    x = to_float_image(u8)
    assert x.dtype == torch.float32
    assert torch.allclose(x * 255, u8.float())
    norm = Normalize()
    y = norm(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - 0.485) / 0.229)
    assert torch.allclose(norm.denormalize(y), x, atol=1e-6)
    assert torch.allclose(norm(u8), y)
    assert len(norm.state_dict()) == 0
