"""Thresholding of normalised CAMs into pseudo-labels (paper 3.3)."""

from __future__ import annotations

import torch

__all__ = ["cams_to_pseudo_labels"]


def cams_to_pseudo_labels(
    cams: torch.Tensor,
    labels: torch.Tensor | None = None,
    theta_bg: float = 0.05,
    theta_fg: float = 0.30,
    background_index: int | None = 0,
    ignore_index: int = 255,
) -> torch.Tensor:
    r"""Turn CAMs normalised to [0, 1] into a pseudo-label map with background, classes and ignored pixels.

    With ``s`` the scores of the foreground classes at a pixel (the classes present in ``labels`` when
    given; absent classes score 0):

    - ``max(s) < theta_bg``  -> ``background_index`` (or ``ignore_index`` when ``background_index`` is None);
    - ``max(s) > theta_fg``  -> ``argmax(s)`` (ties: the lowest class index);
    - otherwise              -> ``ignore_index``.

    Background as one of the ``C`` classes (VOC style, class 0 = background): ``cams`` has one channel per
    class, background included, and the channel ``background_index`` is never read: the background is
    assigned by the threshold rule only, and ``labels[:, background_index]`` is not consulted either. A
    classifier trained on foreground classes only can be used by prepending a channel of zeros:
    ``torch.cat([cams.new_zeros(B, 1, H, W), fg_cams], 1)``.

    Without a background class (``background_index=None``): every channel is a foreground class, and the
    low-score pixels become ``ignore_index`` (there is nothing to call them).

    Args:
        cams: normalised CAMs :math:`(B, C, H, W)` (or :math:`(C, H, W)`), e.g. from
            :func:`cct_weak.compute_cams`.
        labels: optional multi-hot image labels :math:`(B, C)` (or :math:`(C,)`); only the classes with
            ``labels > 0`` (and the background) can appear in the output.
        theta_bg: background threshold (paper: 0.05).
        theta_fg: foreground threshold (paper: 0.30); needs ``0 <= theta_bg <= theta_fg``.
        background_index: the background class in ``[0, C)``, or ``None``.
        ignore_index: label of the pixels left undecided; must not be a class in ``[0, C)``.

    Returns:
        int64 pseudo-labels :math:`(B, H, W)` (:math:`(H, W)` for an unbatched input), on ``cams.device``.

    >>> cams = torch.zeros(1, 3, 1, 3)  # background channel 0 never read
    >>> cams[0, 1, 0] = torch.tensor([0.01, 0.2, 0.9])
    >>> cams_to_pseudo_labels(cams, theta_bg=0.05, theta_fg=0.30)[0].tolist()  # bg, unsure, class 1
    [[0, 255, 1]]
    """
    unbatched = cams.ndim == 3
    if unbatched:
        cams = cams[None]
        if labels is not None:
            labels = labels[None] if labels.ndim == 1 else labels
    if cams.ndim != 4:
        raise ValueError(f"cams must be (B, C, H, W), got {tuple(cams.shape)}")
    b, c = cams.shape[:2]
    if c < 1:
        raise ValueError("cams must have at least one class channel")
    if not 0.0 <= theta_bg <= theta_fg:
        raise ValueError(f"need 0 <= theta_bg <= theta_fg, got theta_bg={theta_bg}, theta_fg={theta_fg}")
    if 0 <= ignore_index < c:
        raise ValueError(f"ignore_index={ignore_index} is one of the {c} classes")
    if background_index is not None and not 0 <= background_index < c:
        raise ValueError(f"background_index must be in [0, {c}) or None, got {background_index}")

    scores = cams.float()
    keep = torch.ones(b, c, dtype=torch.bool, device=cams.device)
    if labels is not None:
        if labels.shape != (b, c):
            raise ValueError(f"labels must be (B, C) = {(b, c)}, got {tuple(labels.shape)}")
        keep = labels.to(cams.device) > 0
    if background_index is not None:
        keep[:, background_index] = False
    # Absent classes (and the background channel) score 0: they can never exceed theta_fg >= 0.
    scores = scores * keep[:, :, None, None].to(scores.dtype)
    top, arg = scores.max(dim=1)
    out = torch.full_like(arg, ignore_index)
    fg = (top > theta_fg) & keep.any(dim=1)[:, None, None]
    out = torch.where(fg, arg, out)
    if background_index is not None:
        out = torch.where(top < theta_bg, torch.full_like(out, background_index), out)
    return out[0] if unbatched else out
