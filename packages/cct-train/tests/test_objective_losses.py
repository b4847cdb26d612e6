"""The owners of the two losses (objectives.losses): one definition per consistency kind shared by the fused
and plain paths, which agree for every kind; the supervised loss owns ab-CE's threshold schedule."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import cct_losses
from cct_losses import AnnealedBootstrappedCE, ab_ce_loss
from cct_train.models.cct import CCTModel
from cct_train.models.decoders import UpsampleDecoder
from cct_train.objectives.fused import fused_consistency_loss
from cct_train.objectives.losses import ConsistencyTerm, SupervisedTerm

KINDS = ["mse", "kl", "js"]


def _rel(a: Tensor, b: Tensor) -> float:
    """Relative difference of two tensors, ``||a - b|| / ||b||`` (0 when both are 0)."""
    scale = float(torch.linalg.vector_norm(b.double()))
    diff = float(torch.linalg.vector_norm(a.double() - b.double()))
    return diff if scale == 0.0 else diff / scale


def _decoders(
    k: int, dtype: torch.dtype, seed: int = 0
) -> tuple[list[UpsampleDecoder], list[Tensor], Tensor]:
    """K decoders (a hidden ReLU, a final one off: every kind of block), their inputs and a main prediction
    whose max-probability spreads across 0.5 (the confidence mask keeps some pixels, not all)."""
    torch.manual_seed(seed)
    b, d, c, h, w, up = 2, 8, 5, 3, 4, 4
    decs = [UpsampleDecoder(d, c, up).to(dtype) for _ in range(k)]
    zs = [torch.randn(b, d, h, w, dtype=dtype, requires_grad=True) for _ in range(k)]
    main = 2.0 * torch.randn(b, c, h * up, w * up, dtype=dtype)
    return decs, zs, main


def _loss_and_grads(loss: Tensor, decs: list[UpsampleDecoder], zs: list[Tensor]) -> list[Tensor]:
    """``[loss, grad of every z, grad of every decoder parameter]``, the gradients then cleared."""
    (3.0 * loss).backward()
    out = [loss.detach().clone()]
    for t in [*zs, *(p for dec in decs for p in dec.parameters())]:
        assert t.grad is not None
        out.append(t.grad.clone())
        t.grad = None
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("confidence", [None, 0.5])
@pytest.mark.parametrize("k", [2, 3])
def test_fused_and_plain_paths_agree_for_every_kind(kind: str, confidence: float | None, k: int) -> None:
    """The consistency term's fused and plain paths: the same loss and the same gradients of every decoder
    parameter and of every z, within 1e-5 relative, in float32 (the training dtype), chunked or not."""
    decs, zs, main = _decoders(k, torch.float32)
    if confidence is not None:
        kept = float(cct_losses.confidence_mask(torch.softmax(main, 1), confidence).float().mean())
        assert 0.1 < kept < 0.9
    plain = _loss_and_grads(ConsistencyTerm(kind, confidence, fused=False)(decs, zs, main), decs, zs)
    for chunk in (1 << 21, 1):  # all decoders in one chunk; one decoder per chunk
        term = ConsistencyTerm(kind, confidence, fused=True, chunk_elements=chunk)
        fused = _loss_and_grads(term(decs, zs, main), decs, zs)
        assert len(fused) == len(plain) == 1 + k + k * len(list(decs[0].parameters()))
        for i, (a, b) in enumerate(zip(fused, plain, strict=True)):
            assert _rel(a, b) <= 1e-5, (kind, confidence, chunk, i, _rel(a, b))


def _shared_definition_loss(
    outputs: list[Tensor], main: Tensor, kind: str, confidence: float | None
) -> Tensor:
    """Lu by plain autograd on cct_losses' per-element definition, reduced as documented."""
    q = torch.softmax(main, 1)
    keep = torch.ones_like(q[:, 0], dtype=torch.bool) if confidence is None else q.amax(1) >= confidence
    losses = []
    for out in outputs:
        elem = cct_losses.CONSISTENCY_POINTWISE[kind](out, q, 1)
        per_pixel = elem.mean(1) if kind == "mse" else elem.sum(1)
        losses.append(per_pixel[keep].mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("confidence", [None, 0.5])
def test_fused_gradient_is_autograds_gradient_of_the_shared_definition(
    kind: str, confidence: float | None
) -> None:
    """The fused path's hand-written gradients (mse, kl) and its chunked autograd (js) equal autograd's
    gradient of the per-element definition in cct_losses (float64: to rounding)."""
    decs, zs, main = _decoders(3, torch.float64, seed=1)
    ref = _loss_and_grads(
        _shared_definition_loss([d(z) for d, z in zip(decs, zs, strict=True)], main, kind, confidence),
        decs,
        zs,
    )
    got = fused_consistency_loss(
        decs, zs, torch.softmax(main, 1), kind, confidence=confidence, chunk_elements=1
    )
    for a, b in zip(_loss_and_grads(got, decs, zs), ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def _tiny_model(**kwargs: Any) -> CCTModel:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=8, padding=1), nn.ReLU())
    perturbations = {"feature_noise": 1, "object_mask": 1, "vat": 1, "dropout": 1}
    return CCTModel(backbone, 4, perturbations=perturbations, psp_channels=None, **kwargs).train()


def _batch() -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=g)
    targets = torch.randint(0, 4, (2, 32, 32), generator=g)
    return images, targets, torch.rand(2, 3, 32, 32, generator=g)


def _step(model: CCTModel, **kwargs: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One training forward and backward from a fixed random state: (outputs, {parameter: gradient})."""
    model.zero_grad(set_to_none=True)
    state = torch.get_rng_state()
    out = model(*_batch(), consistency_weight=30.0, generator=torch.Generator().manual_seed(3), **kwargs)
    torch.set_rng_state(state)
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("confidence", [None, 0.67])
def test_model_step_fused_equals_plain_for_every_kind(kind: str, confidence: float | None) -> None:
    """A whole training step (encoder, main and 4 auxiliary decoders) routed through the fused path or the
    plain one: the same Lu and the same gradient of every parameter, within 1e-5 relative."""
    model = _tiny_model(consistency=kind, confidence=confidence)
    assert model.consistency_term.kind == kind
    assert model.consistency_term.confidence == confidence
    if confidence is not None:  # the mask leaves some of this batch's pixels out, not all
        with torch.no_grad():
            main_u = model.main_decoder(model.encode(_batch()[2]))
        kept = float(cct_losses.confidence_mask(torch.softmax(main_u, 1), confidence).float().mean())
        assert 0.1 < kept < 0.9
    fused, fused_grads = _step(model)
    model.fuse_aux_decoders = False
    assert not model.consistency_term.fused
    plain, plain_grads = _step(model)
    assert _rel(fused["loss_unsup"], plain["loss_unsup"]) <= 1e-5
    assert float(plain["loss_unsup"]) > 0
    assert fused_grads.keys() == plain_grads.keys()
    assert any(name.startswith("aux_decoders.") for name in fused_grads)
    for name in fused_grads:
        assert _rel(fused_grads[name], plain_grads[name]) <= 1e-5, name


def test_an_edit_of_the_shared_definition_reaches_the_default_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default run (kind mse, fused path, no weak targets) computes Lu from cct_losses' definition: an
    edit there changes the default objective's loss."""
    model = _tiny_model()
    assert (model.consistency, model.fuse_aux_decoders) == ("mse", True)
    before, _ = _step(model)
    original = cct_losses.CONSISTENCY_POINTWISE["mse"]
    monkeypatch.setitem(cct_losses.CONSISTENCY_POINTWISE, "mse", lambda a, q, dim: 2.0 * original(a, q, dim))
    after, _ = _step(model)
    torch.testing.assert_close(after["loss_unsup"], 2.0 * before["loss_unsup"])
    assert float(after["loss"].detach()) != pytest.approx(float(before["loss"].detach()))


def test_the_supervised_term_owns_abces_threshold_schedule() -> None:
    """eta(step) is AnnealedBootstrappedCE's log ramp from 1/C; the model's step reads it; CE has none."""
    term = SupervisedTerm("abce", num_classes=4, iterations=100, ramp_fraction=0.4)
    schedule = AnnealedBootstrappedCE(4, 100, ramp_fraction=0.4)
    assert [term.threshold(s) for s in (0, 7, 40, 99)] == [schedule.threshold(s) for s in (0, 7, 40, 99)]
    assert SupervisedTerm("ce").threshold(5) is None
    logits, targets = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    torch.testing.assert_close(
        term(logits, targets, step=7), ab_ce_loss(logits, targets, schedule.threshold(7))
    )
    with pytest.raises(ValueError, match="step"):
        term(logits, targets)
    with pytest.raises(ValueError, match="iterations"):
        SupervisedTerm("abce", num_classes=4)
    with pytest.raises(ValueError, match="supervised loss"):
        SupervisedTerm("focal")

    model = _tiny_model(supervised_loss="abce", abce_iterations=100)
    assert model.supervised_term.threshold(7) == schedule.threshold(7)
    assert model.config["supervised_loss"] == "abce"
    rebuilt = CCTModel.from_config(model.config, encoder=model.encoder)
    assert rebuilt.supervised_term.threshold(7) == term.threshold(7)
    by_step, _ = _step(model, step=7)
    explicit, _ = _step(model, ce_threshold=schedule.threshold(7))
    later, _ = _step(model, step=40)
    torch.testing.assert_close(by_step["loss_sup"], explicit["loss_sup"])
    assert float(later["loss_sup"]) != pytest.approx(float(by_step["loss_sup"]))
    plain, _ = _step(_tiny_model(), step=7)  # CE: the step changes nothing
    assert float(plain["loss_sup"]) != pytest.approx(float(by_step["loss_sup"]))
