"""CCTModel and its modules: PSP, ICNR sub-pixel decoders, training losses and gradient routing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_train.models.cct import (
    DEFAULT_PERTURBATIONS,
    CCTModel,
    PSPModule,
    SubPixelBlock,
    UpsampleDecoder,
    icnr_,
)
from cct_train.objectives.cct import perturb_features

C = 3


def _batch(seed: int = 0, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, size, size, generator=g)
    targets = torch.randint(0, C, (2, size, size), generator=g)
    targets[:, :4] = 255
    unlabeled = torch.randn(2, 3, size, size, generator=g)
    return images, targets, unlabeled


def _model(**kwargs: Any) -> CCTModel:
    torch.manual_seed(0)
    kwargs.setdefault("psp_channels", 32)
    return CCTModel("timm:resnet18", C, **kwargs)


@pytest.fixture(scope="module")
def cct() -> CCTModel:
    """The paper's 30 auxiliary decoders on a small backbone."""
    return _model()


# ------------------------------------------------------------------------------------------------ modules


def test_psp_shape() -> None:
    psp = PSPModule(64, out_channels=16)
    assert psp(torch.randn(2, 64, 8, 8)).shape == (2, 16, 8, 8)
    assert len(psp.stages) == 4
    assert PSPModule(64, 8, bins=(1, 2))(torch.randn(2, 64, 5, 7)).shape == (2, 8, 5, 7)


def test_icnr_repeats_sub_kernel() -> None:
    w = torch.empty(32, 5, 1, 1)
    icnr_(w, upscale=2)
    groups = w.view(8, 4, 5)
    assert torch.equal(groups, groups[:, :1].expand_as(groups))
    with pytest.raises(ValueError, match="divisible"):
        icnr_(torch.empty(6, 5, 1, 1))


def test_fresh_subpixel_block_is_nearest_upsampling() -> None:
    torch.manual_seed(0)
    block = SubPixelBlock(4)
    x = torch.randn(2, 4, 5, 6)
    out = block(x)
    assert out.shape == (2, 4, 10, 12)
    sub = F.relu(F.conv2d(x, block.conv.weight[::4], block.conv.bias[::4]))  # type: ignore[index]
    torch.testing.assert_close(out, F.interpolate(sub, scale_factor=2, mode="nearest"))
    # Hence every 2x2 output block is constant.
    blocks = out.unfold(2, 2, 2).unfold(3, 2, 2)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))


@pytest.mark.parametrize(("upscale", "blocks"), [(8, 3), (16, 4), (32, 5)])
def test_decoder_output_size(upscale: int, blocks: int) -> None:
    dec = UpsampleDecoder(16, C, upscale=upscale)
    assert len(dec.blocks) == blocks
    assert dec(torch.randn(2, 16, 2, 3)).shape == (2, C, 2 * upscale, 3 * upscale)
    with pytest.raises(ValueError, match="power of two"):
        UpsampleDecoder(16, C, upscale=12)


def test_decoder_final_relu_option() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 16, 4, 4)
    assert (UpsampleDecoder(16, C, final_relu=True)(z) >= 0).all()  # paper: ReLU in every block
    assert (UpsampleDecoder(16, C)(z) < 0).any()  # default: unconstrained logits
    # The paper variant stays available through the model.
    model = _model(perturbations={}, decoder_final_relu=True)
    assert isinstance(model.main_decoder.blocks[-1].relu, nn.ReLU)
    assert isinstance(_model(perturbations={}).main_decoder.blocks[-1].relu, nn.Identity)


def test_decoder_hidden_relu_option_makes_the_decoder_linear() -> None:
    torch.manual_seed(0)
    linear = UpsampleDecoder(16, C, upscale=8, hidden_relu=False)
    assert all(isinstance(b.relu, nn.Identity) for b in linear.blocks)
    z1, z2 = torch.randn(2, 16, 3, 3), torch.randn(2, 16, 3, 3)
    # Linear in z up to the biases: g(a + b) - g(0) == (g(a) - g(0)) + (g(b) - g(0)).
    zero = linear(torch.zeros_like(z1))
    torch.testing.assert_close(linear(z1 + z2) - zero, (linear(z1) - zero) + (linear(z2) - zero))
    paper = UpsampleDecoder(16, C, upscale=8)
    assert all(isinstance(b.relu, nn.ReLU) for b in paper.blocks[:-1])
    # Through the model and its stored config: every decoder (main and auxiliary) follows it, and a model
    # rebuilt from the config gets the same decoders.
    model = _model(perturbations={"feature_noise": 1}, decoder_hidden_relu=False)
    for dec in [model.main_decoder, *model.aux_decoders]:
        assert all(isinstance(b.relu, nn.Identity) for b in dec.blocks)
    assert model.config["decoder_hidden_relu"] is False
    rebuilt = CCTModel.from_config(model.config)
    assert all(isinstance(b.relu, nn.Identity) for b in rebuilt.main_decoder.blocks)


# ------------------------------------------------------------------------------------------------ model


def test_paper_default_has_30_aux_decoders(cct: CCTModel) -> None:
    assert cct.num_aux_decoders == 30 == len(cct.aux_decoders) == len(cct.perturbations)
    assert Counter(cct.aux_names) == Counter(DEFAULT_PERTURBATIONS)
    assert cct.output_stride == 8
    assert len(cct.main_decoder.blocks) == 3
    names = [name for name, _, _ in cct.perturbation_instances()]
    assert names == cct.aux_names


@pytest.mark.parametrize("size", [(64, 64), (60, 68)])
def test_inference_shape_and_main_path_only(cct: CCTModel, size: tuple[int, int]) -> None:
    calls: list[int] = []
    hooks = [d.register_forward_hook(lambda *_: calls.append(1)) for d in cct.aux_decoders]
    try:
        cct.eval()
        with torch.no_grad():
            out = cct(torch.randn(2, 3, *size))
        cct.train()
        with torch.no_grad():
            out_train_mode = cct(torch.randn(2, 3, *size))
    finally:
        for h in hooks:
            h.remove()
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, C, *size)
    assert out_train_mode.shape == (2, C, *size)
    assert calls == []


def test_training_forward_losses_and_gradients(cct: CCTModel) -> None:
    cct.train()
    cct.zero_grad(set_to_none=True)
    images, targets, unlabeled = _batch()
    out = cct(images, targets, unlabeled, consistency_weight=2.0)
    assert set(out) == {"loss", "loss_sup", "loss_unsup", "loss_weak", "logits"}
    for key in ("loss", "loss_sup", "loss_unsup", "loss_weak"):
        assert out[key].dim() == 0
        assert torch.isfinite(out[key])
    assert out["loss_unsup"] > 0
    assert out["loss_weak"] == 0
    torch.testing.assert_close(out["loss"].detach(), out["loss_sup"] + 2.0 * out["loss_unsup"])
    assert out["logits"].shape == (2, C, 64, 64)
    assert not out["logits"].requires_grad
    out["loss"].backward()

    def has_grad(module: nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert has_grad(cct.encoder)
    assert has_grad(cct.psp)
    assert has_grad(cct.main_decoder)
    assert all(has_grad(d) for d in cct.aux_decoders)
    cct.zero_grad(set_to_none=True)


def test_consistency_never_trains_main_decoder(cct: CCTModel) -> None:
    cct.train()
    cct.zero_grad(set_to_none=True)
    images, targets, unlabeled = _batch(1)
    void = torch.full_like(targets, 255)  # Ls = 0 with no gradient: only Lu remains
    out = cct(images, void, unlabeled)
    assert out["loss_sup"] == 0
    out["loss"].backward()
    for p in cct.main_decoder.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in cct.encoder.parameters())
    assert all(any(p.grad is not None for p in d.parameters()) for d in cct.aux_decoders)
    cct.zero_grad(set_to_none=True)


def test_generator_makes_step_deterministic(cct: CCTModel) -> None:
    cct.train()
    images, targets, unlabeled = _batch(2)
    with torch.no_grad():
        a = cct(images, targets, unlabeled, generator=torch.Generator().manual_seed(5))
        b = cct(images, targets, unlabeled, generator=torch.Generator().manual_seed(5))
        c = cct(images, targets, unlabeled, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a["loss_unsup"], b["loss_unsup"])
    assert not torch.equal(a["loss_unsup"], c["loss_unsup"])


def test_ab_ce_weak_labels_and_separate_unlabeled_shape(cct: CCTModel) -> None:
    cct.train()
    images, targets, _ = _batch(3)
    unlabeled = torch.randn(3, 3, 48, 40)  # another shape: encoded in its own pass
    weak = torch.randint(0, C, (3, 48, 40))
    with torch.no_grad():
        out = cct(images, targets, unlabeled, ce_threshold=0.9, weak_targets=weak, weak_weight=0.4)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert out["loss_weak"] > 0
    expected = out["loss_sup"] + out["loss_unsup"] + 0.4 * out["loss_weak"]
    torch.testing.assert_close(out["loss"], expected)


def test_supervised_only_ignores_unlabeled() -> None:
    model = _model(perturbations={})
    assert model.num_aux_decoders == 0
    assert len(model.aux_decoders) == 0
    seen: list[int] = []
    model.encoder.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].shape[0]))
    images, targets, unlabeled = _batch(4)
    out = model(images, targets, unlabeled, consistency_weight=5.0)
    assert seen == [2]
    assert out["loss_unsup"] == 0
    torch.testing.assert_close(out["loss"].detach(), out["loss_sup"])
    out["loss"].backward()


def test_vat_only_leaves_no_stray_grad() -> None:
    model = _model(perturbations={"vat": 1})
    assert model.aux_names == ["vat"]
    model.train()
    images, targets, unlabeled = _batch(5)
    out = model(images, targets, unlabeled)
    assert all(p.grad is None for p in model.parameters())  # the VAT search accumulated nothing
    out["loss"].backward()
    assert all(p.grad is not None for p in model.aux_decoders[0].parameters())


def test_background_and_perturbation_kwargs_propagate() -> None:
    model = _model(
        perturbations={"object_mask": 1, "context_mask": 1, "guided_cutout": 1, "feature_noise": 1, "vat": 1},
        background=(2,),
        perturbation_kwargs={"context_mask": {"background": (1,)}, "vat": {"eps": 0.5}},
    )
    by_name = {name: pert for name, pert, _ in model.perturbation_instances()}
    assert tuple(by_name["object_mask"].background) == (2,)  # type: ignore[arg-type]
    assert tuple(by_name["guided_cutout"].background) == (2,)  # type: ignore[arg-type]
    assert tuple(by_name["context_mask"].background) == (1,)  # type: ignore[arg-type]
    assert by_name["vat"].eps == 0.5
    # G-Cutout's minimum region is in input pixels at z's output stride: the model passes its own
    assert by_name["guided_cutout"].stride == model.output_stride
    told = _model(perturbations={"guided_cutout": 1}, perturbation_kwargs={"guided_cutout": {"stride": 4}})
    assert told.perturbations[0].stride == 4
    with pytest.raises(ValueError, match="feature_noise"):
        _model(perturbations={"feature_nois": 1})
    with pytest.raises(ValueError, match=">= 0"):
        _model(perturbations={"vat": -1})


def test_from_config_round_trip(cct: CCTModel) -> None:
    cfg = json.loads(json.dumps(cct.config))  # JSON-friendly, as stored in checkpoints
    assert cfg["encoder"] == "timm:resnet18"
    cfg["pretrained"] = True  # not downloaded by from_config (the state dict replaces it)
    clone = CCTModel.from_config(cfg)
    assert clone.aux_names == cct.aux_names
    clone.load_state_dict(cct.state_dict())
    cct.eval()
    clone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), cct(x))
    cct.train()


def test_param_groups(cct: CCTModel) -> None:
    groups = cct.param_groups(lr=0.01, backbone_lr_factor=0.1, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(0.001)
    assert by_name["head"]["lr"] == pytest.approx(0.01)
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(cct.parameters()))
    assert {id(p) for p in by_name["backbone"]["params"]} == {id(p) for p in cct.encoder.parameters()}
    torch.optim.SGD(groups, lr=0.01, momentum=0.9)


def test_module_encoder_is_shared_or_probed() -> None:
    first = _model(perturbations={"feature_noise": 1})
    second = CCTModel(first.encoder, C, perturbations={}, psp_channels=16)
    assert second.encoder is first.encoder
    assert second.config["encoder"] is None
    with pytest.raises(ValueError, match="encoder"):
        CCTModel.from_config(second.config)
    assert CCTModel.from_config(second.config, encoder=first.encoder).encoder is first.encoder
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    third = CCTModel(plain, C, perturbations={"dropout": 1}, psp_channels=None)
    assert third.encoder.out_channels == 8
    assert third.output_stride == 4
    assert third(torch.randn(2, 3, 32, 32)).shape == (2, C, 32, 32)


# ------------------------------------------------------------------------------------ fused aux decoders


@pytest.mark.parametrize(
    ("kind", "upscale", "final_relu", "chunk", "confidence"),
    [
        ("mse", 8, False, 1, None),
        ("mse", 4, True, 2, None),
        ("kl", 8, True, 100, None),
        ("mse", 1, False, 3, None),
        ("mse", 8, False, 1, 0.5),
        ("kl", 4, True, 2, 0.5),
        ("mse", 4, False, 100, 1.0),  # nothing kept: 0 and zero gradients, as the plain path
    ],
)
def test_fused_consistency_loss_matches_decoders(
    kind: str, upscale: int, final_relu: bool, chunk: int, confidence: float | None
) -> None:
    """The fused GEMM path gives the ordinary decoders' loss and gradients (float64: to rounding)."""
    from cct_losses import consistency_loss
    from cct_train.objectives.fused import fused_consistency_loss

    torch.manual_seed(0)
    k, b, d, c, h, w = 4, 2, 8, 5, 3, 2
    decs = [UpsampleDecoder(d, c, upscale, final_relu=final_relu).double() for _ in range(k)]
    xs = [torch.randn(b, d, h, w, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    # Scaled so that the max-probability spreads across 0.5: the confidence mask keeps some pixels.
    main = 2.0 * torch.randn(b, c, h * upscale, w * upscale, dtype=torch.float64)
    if confidence == 0.5:
        kept = (torch.softmax(main, 1).amax(1) >= confidence).float().mean()
        assert 0.1 < kept < 0.9

    def grads() -> list[torch.Tensor]:
        out = [x.grad.clone() for x in xs if x.grad is not None]
        out += [p.grad.clone() for dec in decs for p in dec.parameters() if p.grad is not None]
        for x in xs:
            x.grad = None
        for dec in decs:
            dec.zero_grad(set_to_none=True)
        return out

    outputs = [dec(x) for dec, x in zip(decs, xs, strict=True)]
    ref = consistency_loss(outputs, main, kind=kind, confidence=confidence)
    (3.0 * ref).backward()
    expected = grads()
    chunk_elements = chunk * b * c * h * w * upscale**2
    fused = fused_consistency_loss(
        decs, xs, torch.softmax(main, 1), kind, confidence=confidence, chunk_elements=chunk_elements
    )
    (3.0 * fused).backward()
    got = grads()
    torch.testing.assert_close(fused.detach(), ref.detach())
    assert len(got) == len(expected) == k * (1 + 1 + 2 * len(decs[0].blocks))
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e)


def test_confidence_masked_lu_ignores_unconfident_pixels() -> None:
    """With confidence masking, an unconfident pixel of the main prediction sends no gradient to the
    auxiliary decoders whatever they predict there, and the loss is the mean over the confident pixels."""
    from cct_train.objectives.fused import fused_consistency_loss

    torch.manual_seed(0)
    dec = UpsampleDecoder(6, 4, 4, hidden_relu=False).double()  # linear: no dead unit hides a gradient
    z = torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    main = torch.zeros(1, 4, 8, 8, dtype=torch.float64)  # uniform: max-probability 0.25 everywhere
    main[:, 1, :4] = 10.0  # the top half confident in class 1 (p ~ 1)
    q = torch.softmax(main, 1)
    masked = fused_consistency_loss([dec], [z], q, "mse", confidence=0.9)
    masked.backward()
    assert z.grad is not None
    # Only the top half's low-resolution row of z feeds confident pixels (upscale 4: rows 0-3 <- z row 0).
    assert torch.count_nonzero(z.grad[:, :, 0]) > 0
    assert torch.count_nonzero(z.grad[:, :, 1]) == 0
    p = torch.softmax(dec(z.detach()), 1)
    torch.testing.assert_close(masked.detach(), ((p - q) ** 2)[:, :, :4].mean())


def test_subpixel_order_is_the_decoders_pixel_order() -> None:
    from cct_train.objectives.fused import (
        _block_params,  # private, moved out of decoders.py
        subpixel_order,
    )

    torch.manual_seed(0)
    dec = UpsampleDecoder(6, 4, 8).eval()
    z = torch.randn(2, 6, 3, 5)
    # The decoder as row-wise GEMMs with no shuffle, then compared with its output put in sub-pixel order.
    rows = dec.conv1x1(z).permute(0, 2, 3, 1).reshape(-1, 4)
    for block in dec.blocks:
        weight, bias, relu = _block_params(block)
        rows = rows @ weight + bias
        rows = (rows.relu() if relu else rows).reshape(-1, 4)
    torch.testing.assert_close(rows, subpixel_order(dec(z), 3))


def _fused_and_plain(model: CCTModel, batch: tuple[Tensor, Tensor, Tensor]) -> list[tuple[dict, dict]]:
    """One training forward and backward with the fused auxiliary decoders, then one with the plain ones,
    from the same random state: [(outputs, {parameter name: gradient})] in that order."""
    model.train()
    results = []
    for fused in (True, False):
        model.fuse_aux_decoders = fused
        model.zero_grad(set_to_none=True)
        state = torch.get_rng_state()
        out = model(*batch, generator=torch.Generator().manual_seed(3))
        torch.set_rng_state(state)
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    model.fuse_aux_decoders = True
    model.zero_grad(set_to_none=True)
    return results


def test_fused_model_step_equals_unfused(cct: CCTModel) -> None:
    """CCTModel's fused Lu: same losses and gradients as one ordinary call per auxiliary decoder."""
    (a, ga), (b, gb) = _fused_and_plain(cct, _batch(4))
    torch.testing.assert_close(a["loss_unsup"], b["loss_unsup"])
    torch.testing.assert_close(a["loss"], b["loss"])
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("confidence", [0.9, 1.0])
def test_model_confidence_masking(confidence: float) -> None:
    """CCTModel(confidence=): Lu over the confident unlabeled pixels only, fused and plain alike; at 1.0
    (nothing kept: no softmax reaches 1 here) Lu is 0 and the auxiliary decoders get no gradient."""
    model = _model(perturbations={"feature_noise": 1, "object_mask": 1, "vat": 1}, confidence=confidence)
    assert model.confidence == confidence
    assert model.config["confidence"] == confidence
    assert CCTModel.from_config(model.config).confidence == confidence
    images, targets, unlabeled = _batch(5)
    (fused, fused_grads), (plain, plain_grads) = _fused_and_plain(model, (images, targets, unlabeled))
    fused_lu = fused["loss_unsup"]
    torch.testing.assert_close(fused_lu, plain["loss_unsup"])
    aux = [f"aux_decoders.{name}" for name, _ in model.aux_decoders.named_parameters()]
    assert set(aux) <= fused_grads.keys()
    assert set(aux) <= plain_grads.keys()
    for name in aux:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    if confidence == 1.0:
        assert float(fused_lu) == 0.0
        assert all(torch.count_nonzero(fused_grads[name]) == 0 for name in aux)
    else:
        unmasked = _model(perturbations={"feature_noise": 1, "object_mask": 1, "vat": 1}).train()
        out = unmasked(images, targets, unlabeled, generator=torch.Generator().manual_seed(3))
        assert float(out["loss_unsup"]) != pytest.approx(float(fused_lu))
    with pytest.raises(ValueError, match="confidence"):
        _model(perturbations={"dropout": 1}, confidence=1.5)


def test_vat_through_subpixel_rows_gives_the_same_perturbation() -> None:
    """I-VAT on SubPixelRows(decoder) (GEMMs, sub-pixel order) finds the ordinary decoder's direction."""
    from cct_perturb import vat
    from cct_train.objectives.fused import SubPixelRows

    torch.manual_seed(0)
    dec = UpsampleDecoder(8, 5, 8).double()
    z = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    main = torch.randn(2, 5, 24, 32, dtype=torch.float64)
    rows = SubPixelRows(dec)
    torch.testing.assert_close(rows(z)[0, :, :, 0].t(), rows.target(dec(z))[0, :, :, 0].t())
    ref = vat(z, dec, main, xi=1e-3, generator=torch.Generator().manual_seed(1))
    got = vat(z, rows, rows.target(main), xi=1e-3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, ref)
    assert all(p.grad is None for p in dec.parameters())


def test_vat_own_target_through_subpixel_rows() -> None:
    """Standard VAT (the decoder's own target) on SubPixelRows finds the ordinary decoder's direction."""
    from cct_perturb import vat
    from cct_train.objectives.fused import SubPixelRows

    torch.manual_seed(0)
    dec = UpsampleDecoder(8, 5, 8).double()
    z = torch.randn(2, 8, 3, 4, dtype=torch.float64).relu()
    rows = SubPixelRows(dec)
    ref = vat(z, dec, generator=torch.Generator().manual_seed(1))
    got = vat(z, rows, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, ref)
    ref_fd = vat(z, dec, xi=1e-3, method="finite_difference", generator=torch.Generator().manual_seed(1))
    got_fd = vat(z, rows, xi=1e-3, method="finite_difference", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got_fd, ref_fd)
    assert all(p.grad is None for p in dec.parameters())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("target", ["decoder", "main"])
def test_model_vat_target(fused: bool, target: str) -> None:
    """CCTModel's VAT: the auxiliary decoder's own prediction by default, the main one as an option."""
    from cct_perturb import vat

    kwargs: dict[str, Any] = (
        {} if target == "decoder" else {"perturbation_kwargs": {"vat": {"target": "main"}}}
    )
    model = _model(perturbations={"vat": 1}, **kwargs).train()
    model.fuse_aux_decoders = fused
    (_, pert, dec), *_ = model.perturbation_instances()
    assert pert.target == target  # type: ignore[attr-defined]
    assert model.config["perturbation_kwargs"] == ({} if target == "decoder" else {"vat": {"target": "main"}})
    _, _, unlabeled = _batch(6)
    with torch.no_grad():
        z_u = model.encode(unlabeled)
        main_u = model.main_decoder(z_u)
    (got,) = perturb_features(model, z_u, main_u, torch.Generator().manual_seed(2))
    ref = vat(z_u, dec, None if target == "decoder" else main_u, generator=torch.Generator().manual_seed(2))
    other = vat(z_u, dec, main_u if target == "decoder" else None, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, other, rtol=1e-3, atol=1e-3)
    assert all(p.grad is None for p in model.parameters())
