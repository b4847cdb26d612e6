from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


class TinyEncoder(nn.Module):
    """Two convs, output stride 2, returns a list of maps (the last is the deepest)."""

    def __init__(self, width: int = 8, positive: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width * 2, 3, stride=2, padding=1)
        self.positive = positive

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.conv1(x))
        b = self.conv2(a)
        return [a, torch.relu(b) if self.positive else b]


EncoderFactory = Callable[..., TinyEncoder]


@pytest.fixture
def make_encoder() -> EncoderFactory:
    """Factory for :class:`TinyEncoder` (test modules cannot import conftest in importlib mode)."""
    return TinyEncoder
