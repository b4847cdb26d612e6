"""generate_pseudo_labels with an oracle classifier whose CAMs are exact: the pipeline keeps images, names,
image-level labels and ground truth aligned through batches, blocks, CRF workers and the PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cct_train.data import IMAGENET_MEAN, IMAGENET_STD
from cct_train.weak import generate_pseudo_labels
from cct_weak import CAMClassifier, compute_cams, is_crf_available

SIZE = 32


class _Scenes:
    """In memory: black images with a red (class 1) and / or a green (class 2) square; class 0 = background."""

    def __init__(self, n: int, size: int = SIZE) -> None:
        rng = np.random.default_rng(0)
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        for i in range(n):
            image = np.zeros((size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), dtype=np.int64)
            for cls in (1, 2):
                if i % 3 == cls - 1 or i % 3 == 2:  # red only, green only, both
                    y, x = rng.integers(0, size - 12, 2)
                    image[y : y + 12, x : x + 12] = 0
                    image[y : y + 12, x : x + 12, cls - 1] = 255
                    mask[y : y + 12, x : x + 12] = cls
            self.images.append(torch.from_numpy(image.transpose(2, 0, 1).copy()))
            self.masks.append(torch.from_numpy(mask))
        self.names = [f"scene_{i:02d}" for i in range(n)]
        self.has_masks = True

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "mask": self.masks[i], "name": self.names[i]}


class _RGB(nn.Module):
    """Un-normalises the input: features = the RGB image in [0, 1] (stride 1)."""

    out_channels = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return x * std + mean


def _oracle() -> CAMClassifier:
    model = CAMClassifier(_RGB(), 3)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))
    return model


@pytest.mark.parametrize("crf", [False, True])
def test_oracle_cams_give_the_ground_truth(tmp_path: Path, crf: bool) -> None:
    if crf and not is_crf_available():
        pytest.skip("pydensecrf not installed")
    data = _Scenes(9)
    report = generate_pseudo_labels(
        _oracle(),
        data,
        tmp_path,
        class_names=["background", "red", "green"],
        from_masks=True,
        crf=crf,
        workers=2,
        batch_size=4,  # 3 batches, blocks of 5: batches and blocks do not line up
        block_size=5,
        device="cpu",
        quiet=True,
    )
    assert report["miou"] > 0.95
    assert report["ignore_fraction"] < 0.1  # square borders blurred by the 0.5 scale
    assert report["images_per_class"] == {"background": 9, "red": 6, "green": 6}
    assert json.loads((tmp_path / "report.json").read_text())["miou"] == report["miou"]
    for name, mask in zip(data.names, data.masks, strict=True):
        pseudo = np.asarray(Image.open(tmp_path / f"{name}.png")).astype(np.int64)
        labelled = pseudo != 255
        assert (pseudo[labelled] == mask.numpy()[labelled]).mean() > 0.97, name


def test_image_labels_restrict_the_classes(tmp_path: Path) -> None:
    data = _Scenes(3)  # scene_02 has both squares
    labels = {"scene_00": [1], "scene_01": [2], "scene_02": [1]}  # green withheld from scene_02
    report = generate_pseudo_labels(
        _oracle(), data, tmp_path, labels=labels, crf=False, device="cpu", quiet=True
    )
    assert report["settings"]["image_labels"] == "file"
    both = np.asarray(Image.open(tmp_path / "scene_02.png"))
    assert 2 not in both
    assert (both == 1).sum() > 0
    # no label for an image: refused
    with pytest.raises(ValueError, match="no image-level labels"):
        generate_pseudo_labels(_oracle(), data, tmp_path, labels={"scene_00": [1]}, crf=False, quiet=True)


def test_predicted_labels_and_no_background(tmp_path: Path) -> None:
    data = _Scenes(3)
    report = generate_pseudo_labels(
        _oracle(), data, tmp_path, background_index=None, crf=False, device="cpu", quiet=True
    )
    assert report["class_names"] == ["class_0", "class_1", "class_2"]
    assert report["settings"]["image_labels"] == "predicted"
    assert report["class_pixels"]["class_0"] == 0  # no background class: low pixels are ignored
    assert report["ignore_fraction"] > 0.5


class _StridedRGB(_RGB):
    """The RGB image averaged over 8 x 8 cells from the top-left corner: a stride-8 encoder that pads,
    declaring its ``output_stride`` as cct_train's encoders do."""

    output_stride = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 8, 8, ceil_mode=True)


@pytest.mark.parametrize("declared", [True, False])
def test_the_encoders_stride_reaches_the_cams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    # cct_weak.compute_cams crops stride-aligned maps onto an image whose size is not a multiple of the
    # stride (its own tests check the alignment); the pipeline must pass the encoder's stride, and none for a
    # module that declares none (maps resized as before).
    import cct_train.weak.generate as pseudo

    seen: list[int | None] = []

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(kwargs.get("stride"))
        return compute_cams(*args, **kwargs)

    monkeypatch.setattr(pseudo, "compute_cams", spy)
    encoder = _StridedRGB()
    if not declared:
        encoder.output_stride = None  # type: ignore[assignment]
    model = CAMClassifier(encoder, 3)
    with torch.no_grad():
        model.classifier.weight.copy_(_oracle().classifier.weight)
    report = generate_pseudo_labels(
        model, _Scenes(3, size=44), tmp_path, from_masks=True, crf=False, device="cpu", quiet=True
    )
    assert seen == [8 if declared else None]
    assert report["miou"] > 0.5
