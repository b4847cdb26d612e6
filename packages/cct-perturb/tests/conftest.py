from __future__ import annotations

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=DTYPES, ids=["float32", "bfloat16"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


def gen(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture
def make_gen():  # type: ignore[no-untyped-def]
    return gen


def one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits (B, C, H, W) whose argmax is ``labels`` (B, H, W)."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float() * 5.0


@pytest.fixture
def logits_from_labels():  # type: ignore[no-untyped-def]
    return one_hot_logits
