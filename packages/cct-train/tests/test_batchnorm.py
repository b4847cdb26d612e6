"""cct_train.engine.batchnorm: precise BN, the plain average of BatchNorm statistics over batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cct_train.engine.batchnorm import has_batchnorm, recalibrate_batchnorm


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@pytest.mark.parametrize("training", [True, False])
def test_statistics_are_the_average_over_the_batches(training: bool) -> None:
    torch.manual_seed(0)
    model = _Encoder().train(training)
    batches = [torch.randn(3, 3, 5, 6) * (i + 1) + i for i in range(4)]
    weights = {
        k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    recalibrate_batchnorm(model, iter(batches))
    with torch.no_grad():
        features = [model.conv(b) for b in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    # update_bn averages the unbiased per-batch variance, as BatchNorm's running_var does
    var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert model.bn.momentum == 0.1  # restored
    assert model.training is training
    for key, value in weights.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_a_model_without_batchnorm_is_left_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    assert not has_batchnorm(model)
    recalibrate_batchnorm(model, iter([torch.randn(1, 3, 2, 2)]), encode=model)
    assert has_batchnorm(_Encoder())
