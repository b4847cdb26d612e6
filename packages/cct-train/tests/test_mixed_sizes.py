"""Images of mixed sizes: per-sample random scale + crop before collation (training), padded batches
evaluated at each image's own size (validation), and the config-level error for a missing class count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from cct_train.config import config_from_dict
from cct_train.data import (
    FolderDataset,
    Sample,
    SampleCrop,
    SegmentationAugment,
    build_loader,
    cycle,
    pad_collate,
    random_scale_crop,
)
from cct_train.data.build import build_data
from cct_train.eval.evaluate import evaluate

SIZES = [(30, 40), (52, 36), (24, 24), (41, 63), (33, 50), (60, 45)]


class _Mixed(Dataset[Sample]):
    """Images of the sizes above; the mask is the class of each pixel block, the image its one-hot colour."""

    def __init__(self, sizes: list[tuple[int, int]] = SIZES, masks: bool = True) -> None:
        self.sizes, self.masks = sizes, masks

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> Sample:
        h, w = self.sizes[index]
        g = torch.Generator().manual_seed(index)
        coarse = torch.randint(0, 3, (-(-h // 3), -(-w // 3)), generator=g)
        mask = coarse.repeat_interleave(3, 0).repeat_interleave(3, 1)[:h, :w].contiguous()
        image = (torch.nn.functional.one_hot(mask, 3).permute(2, 0, 1) * 255).to(torch.uint8)
        sample: Sample = {"image": image, "name": f"m{index}"}
        if self.masks:
            sample["mask"] = mask
        return sample


def test_random_scale_crop_matches_the_batched_geometry() -> None:
    """The per-sample crop reads only the window it needs, yet gives the crop the whole image gives."""
    sample = _Mixed([(97, 131)])[0]
    for seed in range(6):
        image, mask = random_scale_crop(
            sample["image"],
            sample["mask"],
            (40, 56),
            (0.5, 2.0),
            generator=torch.Generator().manual_seed(seed),
        )
        assert image.shape == (3, 40, 56)
        assert image.dtype == torch.uint8
        assert mask is not None
        assert mask.shape == (40, 56)
        assert mask.dtype == torch.int64
        # the reference: the batched augmentation of the whole image with the same draws
        augment = SegmentationAugment((40, 56), (0.5, 2.0), hflip=False)
        params = augment.sample_params(1, (97, 131), torch.device("cpu"), torch.Generator().manual_seed(seed))
        ref, ref_mask = augment.warp(sample["image"][None].float() / 255, sample["mask"][None], params)
        assert torch.equal(mask, ref_mask[0])
        assert (image.float() - ref[0] * 255).abs().max() <= 0.5 + 1e-3
        valid = mask != 255
        assert (image.argmax(0)[valid] == mask[valid]).float().mean() > 0.97


def test_random_scale_crop_pads_with_the_ignore_label() -> None:
    sample = _Mixed([(10, 12)])[0]
    image, mask = random_scale_crop(sample["image"], sample["mask"], (32, 32), (1.0, 1.0), ignore_index=254)
    assert mask is not None
    padded = mask == 254
    assert int((~padded).sum()) == 10 * 12  # the whole image fits, the rest is padding
    assert torch.equal(image.sum(0) == 0, padded)  # padded pixels are black, the others are not
    alone, none = random_scale_crop(sample["image"], None, (8, 8), generator=torch.Generator().manual_seed(0))
    assert alone.shape == (3, 8, 8)
    assert none is None


def test_loader_crops_each_sample_of_a_mixed_batch_and_is_reproducible() -> None:
    crop = SampleCrop((32, 32), (0.5, 1.5))

    def batches(seed: int) -> list[dict[str, Any]]:
        stream = cycle(build_loader(_Mixed(), 3, shuffle=True, seed=seed, drop_last=True, crop=crop))
        return [next(stream) for _ in range(5)]

    first, again, other = batches(0), batches(0), batches(1)
    for batch in first:
        assert batch["image"].shape == (3, 3, 32, 32)
        assert batch["mask"].shape == (3, 32, 32)
        assert batch["cropped"] is True
        assert "seed" not in batch
        valid = batch["mask"] != 255
        assert (batch["image"].argmax(1)[valid] == batch["mask"][valid]).float().mean() > 0.97
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["mask"], b["mask"])
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True))
    # the loader's dataset reads as the one it wraps
    assert build_loader(_Mixed(), 3, seed=0, crop=crop).dataset.sizes == SIZES
    # one size: stacked as before, for the batched augmentation on the device
    same = next(iter(build_loader(_Mixed([(20, 20)] * 4), 2, seed=0, crop=crop)))
    assert same["image"].shape == (2, 3, 20, 20)
    assert "cropped" not in same
    with pytest.raises(ValueError, match="shuffled sampler"):
        build_loader(_Mixed(), 2, shuffle=False, crop=crop)


def test_resumed_stream_draws_the_same_crops() -> None:
    crop = SampleCrop((24, 24), (0.5, 2.0))
    straight = cycle(build_loader(_Mixed(), 2, seed=3, drop_last=True, crop=crop))
    expected = [next(straight) for _ in range(7)]
    resumed = cycle(build_loader(_Mixed(), 2, seed=3, drop_last=True, crop=crop))
    resumed.load_state_dict({"epoch": 1, "batches": 1}, samples_per_batch=2)  # after 3 + 1 batches
    for want in expected[4:]:
        got = next(resumed)
        assert got["name"] == want["name"]
        assert torch.equal(got["image"], want["image"])


def test_pad_collate_records_each_size() -> None:
    samples = [_Mixed()[i] for i in (0, 1, 2)]
    batch = pad_collate(samples, ignore_index=250)
    assert batch["image"].shape == (3, 3, 52, 40)
    assert batch["size"].tolist() == [[30, 40], [52, 36], [24, 24]]
    assert torch.equal(batch["image"][1, :, :52, :36], samples[1]["image"])
    assert bool((batch["mask"][2, 24:, :] == 250).all())
    assert bool((batch["image"][2, :, :, 24:] == 0).all())
    one = pad_collate([samples[0], samples[0]])
    assert one["image"].shape == (2, 3, 30, 40)
    assert one["size"].tolist() == [[30, 40]] * 2


class _ContextModel(nn.Module):
    """Predicts class 1 where a pixel is brighter than the image's mean: padding would change that mean."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.mean(1, keepdim=True) * self.scale
        above = grey - grey.mean((2, 3), keepdim=True)
        return torch.cat([-above, above, torch.full_like(above, -1e3)], 1)


def test_evaluation_scores_each_image_at_its_own_size() -> None:
    dataset = _Mixed()
    one_by_one = evaluate(_ContextModel(), build_loader(dataset, 1, shuffle=False), 3)
    padded = evaluate(_ContextModel(), build_loader(dataset, 4, shuffle=False, pad=True), 3)
    assert padded.iou == pytest.approx(one_by_one.iou)
    assert padded.pixel_accuracy == pytest.approx(one_by_one.pixel_accuracy)


def _write_folder(root: Path, sizes: list[tuple[int, int]], num_classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for index, (h, w) in enumerate(sizes):
        mask = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"p{index}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"p{index}.png")
        names.append(f"p{index}")
    (root / "train.txt").write_text("\n".join(names[:-2]) + "\n")
    (root / "val.txt").write_text("\n".join(names[-2:]) + "\n")
    return root


def _config(root: Path, tmp_path: Path, **data: Any) -> Any:
    return config_from_dict(
        {
            "experiment": {"output_dir": str(tmp_path / "run")},
            "model": {"encoder": "timm:resnet18", "psp_channels": 16, "perturbations": {"feature_noise": 1}},
            "data": {
                "dataset": "folder",
                "root": str(root),
                "crop_size": [32, 32],
                "split": {"n_labeled": 4},
                "batch_size": 2,
                "val_batch_size": 2,
                "num_workers": 0,
                **data,
            },
        }
    )


def test_folder_of_mixed_sizes_builds_training_and_validation_batches(tmp_path: Path) -> None:
    root = _write_folder(
        tmp_path / "photos", [(37, 50), (64, 48), (40, 40), (29, 71), (52, 33), (45, 45), (30, 61), (58, 40)]
    )
    bundle = build_data(_config(root, tmp_path, num_classes=3))
    labeled = next(iter(bundle.labeled_loader))
    images, masks = bundle.augment.batch(labeled, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32)
    assert masks is not None
    assert masks.shape == (2, 32, 32)
    unlabeled = next(iter(bundle.unlabeled_loader or []))
    assert unlabeled["image"].shape == (2, 3, 32, 32)
    assert "mask" not in unlabeled
    assert bundle.val_loader is not None
    val = next(iter(bundle.val_loader))
    assert val["size"].tolist() == [[30, 61], [58, 40]]
    assert FolderDataset(root, num_classes=3)[0]["image"].shape == (3, 37, 50)  # read at its own size


def test_missing_class_count_names_the_config_key(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "photos", [(20, 20)] * 4)
    with pytest.raises(ValueError, match=r"data\.num_classes is not set .*dataset\.json"):
        build_data(_config(root, tmp_path))


def test_crops_do_not_depend_on_worker_processes() -> None:
    crop = SampleCrop((24, 24), (0.5, 2.0))
    alone = [b["image"] for b in build_loader(_Mixed(), 2, seed=5, crop=crop)]
    workers = [b["image"] for b in build_loader(_Mixed(), 2, seed=5, crop=crop, num_workers=2)]
    assert len(alone) == len(workers) == 3
    assert all(torch.equal(a, b) for a, b in zip(alone, workers, strict=True))
