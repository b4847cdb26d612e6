"""Contract shared by the seven perturbations: shapes, dtypes, devices, determinism, no mutation."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cct_perturb
from cct_perturb import (
    PAPER_DECODERS,
    PERTURBATIONS,
    PerturbationInputs,
    context_mask,
    create_perturbation,
    feature_drop,
    feature_noise,
    guided_cutout,
    object_mask,
    spatial_dropout,
    vat,
)

RANDOM = ["feature_noise", "feature_drop", "dropout", "guided_cutout", "vat"]
ALL = [*RANDOM, "object_mask", "context_mask"]


def _inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    torch.manual_seed(0)
    z = (torch.randn(3, 8, 16, 16) + 0.5).relu().to(device=device, dtype=dtype)
    coarse = torch.randn(3, 4, 4, 4)
    coarse[:, 0] -= 0.5
    pred = F.interpolate(coarse, size=(64, 64), mode="bilinear").to(device=device, dtype=dtype)
    decoder = nn.Sequential(nn.Conv2d(8, 4, 1), nn.Upsample(scale_factor=4, mode="bilinear"))
    return z, pred, decoder.to(device=device, dtype=dtype)


def _call(
    name: str, z: torch.Tensor, pred: torch.Tensor, decoder: nn.Module, generator: torch.Generator | None
) -> torch.Tensor:
    fns: dict[str, Callable[[], torch.Tensor]] = {
        "feature_noise": lambda: feature_noise(z, generator=generator),
        "feature_drop": lambda: feature_drop(z, generator=generator),
        "dropout": lambda: spatial_dropout(z, generator=generator),
        "guided_cutout": lambda: guided_cutout(z, pred, min_region=4, generator=generator),
        "vat": lambda: vat(z, decoder, pred, generator=generator),
        "object_mask": lambda: object_mask(z, pred),
        "context_mask": lambda: context_mask(z, pred),
    }
    return fns[name]()


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_device_no_mutation(name: str, device: torch.device, dtype: torch.dtype) -> None:
    z, pred, decoder = _inputs(device, dtype)
    z0, pred0 = z.clone(), pred.clone()
    out = _call(name, z, pred, decoder, torch.Generator(device=device).manual_seed(0))
    assert out.shape == z.shape
    assert out.dtype == dtype
    assert out.device == z.device
    assert torch.isfinite(out.float()).all()
    assert torch.equal(z, z0)
    assert torch.equal(pred, pred0)
    assert out.data_ptr() != z.data_ptr()


@pytest.mark.parametrize("name", RANDOM)
def test_seeded_determinism(name: str, device: torch.device) -> None:
    z, pred, decoder = _inputs(device, torch.float32)

    def run(seed: int) -> torch.Tensor:
        return _call(name, z, pred, decoder, torch.Generator(device=device).manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("name", ALL)
def test_module_wrappers(name: str) -> None:
    z, pred, decoder = _inputs(torch.device("cpu"), torch.float32)
    module = create_perturbation(name)
    assert isinstance(module, nn.Module)
    assert isinstance(module, PERTURBATIONS[name])
    kind = type(module).inputs
    assert kind in ("features", "prediction", "decoder")
    args: tuple[object, ...] = {"features": (z,), "prediction": (z, pred), "decoder": (z, decoder, pred)}[
        kind
    ]
    module.eval()  # always applied, also in eval mode
    out = module(*args, generator=torch.Generator().manual_seed(0))
    assert out.shape == z.shape
    if name in RANDOM:
        assert not torch.equal(out, z)


def test_registry_and_builder() -> None:
    # The paper's seven, pinned: a perturbation registered later adds to them (its own test covers it).
    paper = {
        "feature_noise",
        "feature_drop",
        "dropout",
        "object_mask",
        "context_mask",
        "guided_cutout",
        "vat",
    }
    assert paper <= set(PERTURBATIONS)
    assert set(PAPER_DECODERS) == paper
    assert PERTURBATIONS["dropout"] is cct_perturb.SpatialDropout
    assert PERTURBATIONS["vat"] is cct_perturb.VAT
    expected_inputs = {
        "feature_noise": "features",
        "feature_drop": "features",
        "dropout": "features",
        "object_mask": "prediction",
        "context_mask": "prediction",
        "guided_cutout": "prediction",
        "vat": "decoder",
    }
    assert {k: PERTURBATIONS[k].inputs for k in paper} == expected_inputs
    # What a model dispatches on: every registered perturbation declares one of the known inputs.
    assert {v.inputs for v in PERTURBATIONS.values()} <= set(get_args(PerturbationInputs))
    m = create_perturbation("guided_cutout", erase=0.3, background=(3, 5))
    assert isinstance(m, cct_perturb.GuidedCutout)
    assert m.erase == 0.3
    assert m.background == (3, 5)
    with pytest.raises(ValueError, match="feature_noise") as info:
        create_perturbation("gaussian_blur")
    assert "gaussian_blur" in str(info.value)
    assert "vat" in str(info.value)


def test_public_api() -> None:
    assert cct_perturb.__version__ == "0.4.0"
    for name in cct_perturb.__all__:
        assert hasattr(cct_perturb, name)


def test_no_forbidden_imports() -> None:
    import pathlib

    src = pathlib.Path(cct_perturb.__file__).parent
    text = "\n".join(p.read_text() for p in src.glob("*.py"))
    for forbidden in ("timm", "accelerate", "cct_losses", "cct_weak", "cct_train", "cv2", "numpy"):
        assert f"import {forbidden}" not in text
        assert f"from {forbidden}" not in text


def test_float16_input() -> None:
    z, pred, _ = _inputs(torch.device("cpu"), torch.float32)
    z16 = z.half()
    for fn in (feature_noise, feature_drop, spatial_dropout):
        assert fn(z16, generator=torch.Generator().manual_seed(0)).dtype == torch.float16
    assert object_mask(z16, pred).dtype == torch.float16
    assert guided_cutout(z16, pred.half()).dtype == torch.float16


@pytest.mark.parametrize("name", ["feature_drop", "object_mask", "dropout"])
def test_no_graph_breaks_under_dynamo(name: str) -> None:
    import torch._dynamo

    z, pred, decoder = _inputs(torch.device("cpu"), torch.float32)
    explanation = torch._dynamo.explain(lambda a, b: _call(name, a, b, decoder, None))(z, pred)
    assert explanation.graph_break_count == 0
