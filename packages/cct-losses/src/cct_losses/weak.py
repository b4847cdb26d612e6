"""Weak-label loss of CCT (paper sec. 3.3): auxiliary decoders trained on pseudo-labels.

Pseudo-labels ``y_p`` (from CAMs of image-level labels, refined by a CRF; uncertain pixels are
``ignore_index``) supervise the AUXILIARY decoders with a pixel cross-entropy ``Lw``, averaged over the
decoders (weight 0.4 in the original config).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import as_tensor_list, compute_dtype, no_autocast, safe_divide

__all__ = ["WeakLabelLoss", "weak_label_loss"]


def _one_decoder(logits: Tensor, labels: Tensor, ignore_index: int, weight: Tensor | None) -> Tensor:
    dtype = compute_dtype(logits)
    x = logits.to(dtype)
    if tuple(x.shape[2:]) != tuple(labels.shape[1:]):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(x.dim() - 2)
        if mode is None:
            raise ValueError(f"cannot resize logits of shape {tuple(x.shape)}")
        x = F.interpolate(x, size=tuple(labels.shape[1:]), mode=mode, align_corners=False)
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    logp_true = F.log_softmax(x, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    if weight is None:
        w = valid.to(dtype)
    else:
        w = weight.detach().to(device=x.device, dtype=dtype)[safe] * valid.to(dtype)
    num = torch.where(valid, -logp_true * w, torch.zeros_like(logp_true)).sum()
    return safe_divide(num, w.sum())


def weak_label_loss(
    aux_logits: Tensor | Sequence[Tensor],
    pseudo_labels: Tensor,
    ignore_index: int = 255,
    weight: Tensor | None = None,
) -> Tensor:
    """Cross-entropy of each auxiliary decoder against the pseudo-labels, averaged over decoders.

    Per decoder: the mean pixel cross-entropy over the pixels that are not ``ignore_index`` (with
    ``weight``: ``sum w_y CE / sum w_y``, as ``F.cross_entropy``). If a decoder's logits have another
    spatial size than the labels, the LOGITS are resized bilinearly (``align_corners=False``) to the label
    size (labels are never interpolated, so no invented classes at region borders). All pixels ignored
    gives 0.0, attached to the graph with a zero gradient (no NaN). Computed in float32 (float64 stays
    float64) with autocast disabled.

    Args:
        aux_logits: (B, C, h, w) logits of one auxiliary decoder, or a list / tuple of them.
        pseudo_labels: (B, H, W) integer pseudo-labels, ``ignore_index`` for uncertain pixels.
        ignore_index: label that never counts.
        weight: optional (C,) class weights.

    Returns:
        0-d tensor.

    Raises:
        ValueError: on a non-integer label tensor, or batch / dimension mismatches.

    >>> aux = [torch.zeros(1, 3, 2, 2, requires_grad=True)]
    >>> pseudo = torch.tensor([[[0, 1], [255, 255]]])  # two ignored pixels
    >>> round(float(weak_label_loss(aux, pseudo)), 4)  # CE of uniform logits: log(3)
    1.0986
    """
    auxes = as_tensor_list(aux_logits, "aux_logits")
    if (
        not isinstance(pseudo_labels, Tensor)
        or pseudo_labels.is_floating_point()
        or pseudo_labels.is_complex()
    ):
        raise ValueError("pseudo_labels must be an integer tensor (B, H, W)")
    for i, a in enumerate(auxes):
        if a.dim() != pseudo_labels.dim() + 1 or a.shape[0] != pseudo_labels.shape[0]:
            raise ValueError(
                f"aux_logits[{i}] of shape {tuple(a.shape)} does not fit pseudo_labels "
                f"{tuple(pseudo_labels.shape)} (expected (B, C, h, w) and (B, H, W))"
            )
        if weight is not None and weight.shape != (a.shape[1],):
            raise ValueError(f"weight must have shape ({a.shape[1]},), got {tuple(weight.shape)}")
    with no_autocast(pseudo_labels.device.type):
        total = _one_decoder(auxes[0], pseudo_labels, ignore_index, weight)
        for a in auxes[1:]:
            total = total + _one_decoder(a, pseudo_labels, ignore_index, weight)
        return total / len(auxes)


class WeakLabelLoss(nn.Module):
    """Module form of :func:`weak_label_loss`.

    ``forward(aux_logits, pseudo_labels)``: aux_logits (B, C, h, w) or a list of them, pseudo_labels
    (B, H, W); returns the 0-d loss.
    """

    weight: Tensor | None

    def __init__(self, ignore_index: int = 255, weight: Tensor | None = None) -> None:
        super().__init__()
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def forward(self, aux_logits: Tensor | Sequence[Tensor], pseudo_labels: Tensor) -> Tensor:
        return weak_label_loss(aux_logits, pseudo_labels, ignore_index=self.ignore_index, weight=self.weight)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"
