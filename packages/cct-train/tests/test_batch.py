"""TrainBatch (issue #42): the one typed batch from the trainer's augmentation to the objective, and the one
call, ``model(batches={name: batch})``, that both models take (a single-domain run is a multi-domain run
of one)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cct_train.models.batch import BATCH_KEYS, TrainBatch
from cct_train.models.cct import CCTModel
from cct_train.models.multidomain import MultiDomainCCT

C = 3
PERTS = {"feature_noise": 1, "guided_cutout": 1, "vat": 1}


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU())


def _inputs(seed: int = 0, n: int = 2, size: int = 16) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randn(n, 3, size, size, generator=g),
        "targets": torch.randint(0, C, (n, size, size), generator=g),
        "unlabeled": torch.randn(n, 3, size, size, generator=g),
        "weak_targets": torch.randint(0, C, (n, size, size), generator=g),
        "consistency_weight": 2.0,
        "weak_weight": 0.4,
        "ce_threshold": 0.6,
    }


def _step(model: nn.Module, **call: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The outputs of one seeded training call and the gradients it leaves."""
    model.zero_grad(set_to_none=True)
    out = model(generator=torch.Generator().manual_seed(1), **call)
    out["loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def _assert_same(
    a: tuple[dict[str, Tensor], dict[str, Tensor]], b: tuple[dict[str, Tensor], dict[str, Tensor]]
) -> None:
    (out_a, grads_a), (out_b, grads_b) = a, b
    assert set(out_a) == set(out_b)
    for key in out_a:
        assert torch.equal(out_a[key].detach(), out_b[key].detach()), key
    assert set(grads_a) == set(grads_b)
    assert grads_a
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


@pytest.mark.parametrize("cross_view", [False, True])
def test_single_domain_batches_call_is_the_keyword_call(cross_view: bool) -> None:
    """``CCTModel(batches={name: TrainBatch})``, the trainer's call, computes exactly what the keyword call
    does: the same losses and the same gradients, bit for bit."""
    model = CCTModel(_backbone(), C, perturbations=PERTS, psp_channels=8).train()
    inputs = _inputs()
    if cross_view:
        box = torch.zeros(2, 16, 16, dtype=torch.bool)
        box[:, 4:10, 2:12] = True
        inputs.update(
            strong=inputs["unlabeled"] * 0.5,
            cutmix_box=box,
            cutmix_partner=torch.tensor([1, 0]),
            target_confidence=0.2,
            strong_weight=0.7,
        )
    keyword = _step(model, **inputs)
    batched = _step(model, batches={"scenes": TrainBatch(**inputs)})
    _assert_same(keyword, batched)
    assert ("loss_strong" in batched[0]) == cross_view


def test_multi_domain_model_takes_batches_or_mappings_alike() -> None:
    """A mapping of a TrainBatch's fields and the TrainBatch itself are the same step; a bad key is named."""
    torch.manual_seed(0)
    heads = {"a": {"num_classes": C, "perturbations": PERTS}, "b": {"num_classes": 2, "perturbations": {}}}
    model = MultiDomainCCT(_backbone(), heads, psp_channels=8).train()
    a, b = _inputs(0), _inputs(1)
    b["targets"] = b["targets"].clamp_max(1)
    b["loss_weight"] = 0.5
    mappings = _step(model, batches={"a": a, "b": b})
    batches = _step(model, batches={"a": TrainBatch(**a), "b": TrainBatch(**b)})
    _assert_same(mappings, batches)
    with pytest.raises(ValueError, match=r"batches\['a'\]: unknown keys \['labels'\]"):
        model(batches={"a": {**a, "labels": 1}})


def test_single_domain_model_takes_one_batch() -> None:
    model = CCTModel(_backbone(), C, perturbations=PERTS, psp_channels=8).train()
    batch = TrainBatch(**_inputs())
    with pytest.raises(ValueError, match="one entry"):
        model(batches={"a": batch, "b": batch})
    with pytest.raises(ValueError, match="no images"):
        model(batch.images, batches={"a": batch})


def test_train_batch_of_and_moved() -> None:
    inputs = _inputs()
    assert set(inputs) <= set(BATCH_KEYS)
    batch = TrainBatch.of(inputs, where="here")
    assert TrainBatch.of(batch) is batch
    with pytest.raises(ValueError, match="here needs 'images' and 'targets'"):
        TrainBatch.of({"images": inputs["images"]}, where="here")
    cut = batch.moved(torch.device("cpu"), limit=1)
    assert cut.images.shape[0] == cut.targets.shape[0] == cut.weak_targets.shape[0] == 1  # type: ignore[union-attr]
    assert cut.consistency_weight == 2.0
    assert cut.ce_threshold == 0.6
    assert torch.equal(cut.images, batch.images[:1])
    assert batch.images.shape[0] == 2  # a copy: the batch itself is unchanged


def test_build_model_takes_the_one_domain_as_a_mapping() -> None:
    from cct_train.config import load_config
    from cct_train.models.factory import build_model

    small = ["model.encoder=timm:resnet18", "model.psp_channels=8", "model.perturbations={dropout: 1}"]
    cfg = load_config(None, small)
    model = build_model(cfg, {"scenes": 5})
    assert isinstance(model, CCTModel)
    assert model.num_classes == 5
    with pytest.raises(TypeError, match="one entry"):
        build_model(cfg, {"a": 2, "b": 3})
