"""G-Cutout: erase a random rectangle inside the bounding box of every detected object, batched."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import (
    DEFAULT_IGNORE,
    _as_background,
    _as_ignore,
    _check_features,
    _check_generator,
    _check_number,
    _check_prediction,
    _classes_and_objects,
)

__all__ = ["GuidedCutout", "guided_cutout", "guided_cutout_mask", "label_regions"]

Rounding = Literal["round", "stochastic"]

#: Default minimum region area in pixels of the INPUT IMAGE: 512 is 8 feature pixels at the paper's output
#: stride 8 (about what the original's "contour of more than 50 points" at full resolution encloses) and
#: 2 at stride 16 (``stride=16``).
DEFAULT_MIN_AREA = 512.0
#: The output stride of ``z`` assumed when ``stride`` is not given (the paper's).
DEFAULT_STRIDE = 8

Stride = int | float | tuple[int | float, int | float]

# "Nothing cut" check, per configuration (h, w, minimum region, erase, rounding): the number of batches with
# objects that got no rectangle so far and the largest region seen in them, or None once settled (a cut
# was seen, or the warning was given): then no more checks, no more host synchronisations.
_NO_CUT_PATIENCE = 10
_NO_CUT_CHECKED: dict[tuple[object, ...], tuple[int, int] | None] = {}

# Half of the 8-neighbourhood: every undirected edge of the pixel grid appears once.
_OFFSETS = ((0, 1), (1, -1), (1, 0), (1, 1))


def _default_iterations(h: int, w: int) -> int:
    # Hooking + pointer jumping converges in about log2 of the region size for compact regions and in
    # a few more steps for long winding ones (a 40 x 40 snake needs 5, see the tests).
    return int(max(h, w) - 1).bit_length() + 4


def label_regions(keys: torch.Tensor, num_iterations: int | None = None) -> torch.Tensor:
    r"""Label the 8-connected regions of equal non-negative ``keys``, for the whole batch at once.

    Every region gets as label the flat index ``b * h * w + y * w + x`` of one of its pixels (the largest
    one once converged), so labels are unique across the batch and can be used directly as segment
    indices. Runs on the device with a fixed number of steps and no host synchronisation: a parent array
    over all pixels starts as the identity; each step hooks, for every pair of neighbouring pixels of equal
    key, the parent of one onto the parent of the other when larger (``scatter_reduce`` amax), then
    shortcuts parents twice (``parent <- parent[parent]``). Parents always stay inside the region and
    only grow, so a too-small ``num_iterations`` can only leave a region split into several labels
    (each part inside the region), never merge two regions. Pixels with a negative key get -1.

    Args:
        keys: integer map :math:`(B, h, w)`, e.g. the class per pixel, -1 where there is no object.
        num_iterations: hooking steps; ``None`` picks ``bit_length(max(h, w) - 1) + 4``
            (10 for a 40 x 40 map).

    Returns:
        labels :math:`(B, h, w)`, ``torch.long``, -1 where ``keys < 0``.
    """
    if keys.ndim != 3:
        raise ValueError(f"expected keys of shape (B, h, w), got {tuple(keys.shape)}")
    batch, h, w = keys.shape
    keys = keys.long()
    steps = _default_iterations(h, w) if num_iterations is None else int(num_iterations)
    n = batch * h * w
    valid = keys >= 0
    index = torch.arange(n, device=keys.device, dtype=torch.long).view(batch, h, w)
    padded_keys = F.pad(keys, (1, 1, 1, 1), value=-1)
    padded_index = F.pad(index, (1, 1, 1, 1), value=0)
    sources, targets = [], []
    for dy, dx in _OFFSETS:
        nb_keys = padded_keys[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        nb_index = padded_index[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        edge = valid & (nb_keys == keys)
        sources.append(index.reshape(-1))
        # A pixel without this neighbour gets a self-loop, which changes nothing.
        targets.append(torch.where(edge, nb_index, index).reshape(-1))
    src = torch.cat(sources)
    dst = torch.cat(targets)
    parent = torch.arange(n, device=keys.device, dtype=torch.long)
    for _ in range(steps):
        ps, pd = parent.index_select(0, src), parent.index_select(0, dst)
        parent = parent.scatter_reduce(0, ps, pd, reduce="amax")
        parent = parent.scatter_reduce(0, pd, ps, reduce="amax")
        parent = parent.index_select(0, parent)
        parent = parent.index_select(0, parent)
    labels = parent.view(batch, h, w)
    return torch.where(valid, labels, torch.full_like(labels, -1))


def _check_stride(fn: str, stride: object) -> tuple[float, float]:
    if stride is None:
        return float(DEFAULT_STRIDE), float(DEFAULT_STRIDE)
    pair = stride if isinstance(stride, tuple | list) and len(stride) == 2 else (stride, stride)
    out = []
    for s in pair:
        if isinstance(s, bool) or not isinstance(s, int | float) or not s > 0:
            hint = " (pass a generator as generator=)" if isinstance(stride, torch.Generator) else ""
            raise TypeError(
                f"{fn}: `stride` must be None (the paper's 8) or z's output stride relative to the input "
                f"image, a number > 0 or a pair (rows, columns), got {stride!r}{hint}"
            )
        out.append(float(s))
    return out[0], out[1]


def _check_cutout_args(
    fn: str, erase: object, min_region: object, min_area: object, rounding: object, stride: object
) -> tuple[float, float | None, float, tuple[float, float]]:
    e = _check_number(fn, "erase", erase)
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"erase must be in [0, 1], got {erase}")
    if min_region is not None and (
        isinstance(min_region, bool) or not isinstance(min_region, int) or min_region < 0
    ):
        raise TypeError(
            f"{fn}: `min_region` must be None or an int >= 0 (pixels at z's size), got {min_region!r}"
        )
    area = _check_number(fn, "min_area", min_area)
    if area < 0:
        raise ValueError(f"{fn}: `min_area` must be >= 0, got {min_area}")
    if rounding not in ("round", "stochastic"):
        raise ValueError(f"{fn}: `rounding` must be 'round' or 'stochastic', got {rounding!r}")
    return e, None if min_region is None else float(min_region), area, _check_stride(fn, stride)


def _warn_once_if_nothing_cut(
    key: tuple[object, ...],
    objects: torch.Tensor,
    count: torch.Tensor,
    active: torch.Tensor,
    how: str,
) -> None:
    """Warn (once per configuration) when the first batches with objects get no rectangle at all.

    A minimum region the caller's objects never reach (a wrong ``stride``, or ``min_area`` given at
    another resolution) switches G-Cutout off silently. Checking costs a host synchronisation: it stops at
    the first batch with a cut (in a sound setting, the first batch with objects), and warns after
    ``_NO_CUT_PATIENCE`` batches with objects and no cut (one such batch is no evidence: an untrained
    main decoder predicts speckles). Never while compiling.
    """
    state = _NO_CUT_CHECKED.get(key, (0, 0))
    if state is None or torch.compiler.is_compiling():
        return
    has_objects, any_cut, largest = torch.stack(
        [objects.any().long(), active.any().long(), count.max()]
    ).tolist()
    if not has_objects:
        return  # e.g. a main decoder that predicts background everywhere: nothing to judge
    if any_cut:
        _NO_CUT_CHECKED[key] = None
        return
    batches, largest = state[0] + 1, max(state[1], int(largest))
    if batches < _NO_CUT_PATIENCE:
        _NO_CUT_CHECKED[key] = (batches, largest)
        return
    _NO_CUT_CHECKED[key] = None
    h, w, min_z, erase, rounding = key
    if largest < min_z:  # type: ignore[operator]
        why = (
            f"their largest object region had {largest} feature pixels, below the minimum of {min_z:g} "
            f"({how}). The minimum is in input-image pixels at z's output stride (stride=, default 8), "
            "whatever the prediction's resolution: pass z's stride (e.g. stride=16), a smaller min_area, "
            "or min_region= (feature pixels)"
        )
    else:
        why = (
            f"their regions reach the minimum of {min_z:g} feature pixels ({how}) but their boxes are too "
            f"small to erase {erase:g} of a side with rounding={rounding!r} (rounding='stochastic' erases "
            "erase**2 of any box on average)"
        )
    warnings.warn(
        f"guided_cutout: the first {batches} batches with objects got no cut at all (z {h}x{w}): {why}. "
        "Warned once.",
        RuntimeWarning,
        stacklevel=4,
    )


def guided_cutout_mask(
    pred: torch.Tensor,
    size: tuple[int, int],
    erase: float = 0.4,
    background: Sequence[int] | int = (0,),
    min_region: int | None = None,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    stride: Stride | None = None,
    ignore: int | None = DEFAULT_IGNORE,
    rounding: Rounding = "round",
    per_class: bool = True,
    num_iterations: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The keep-mask of :func:`guided_cutout` at ``size``: ``False`` inside the erased rectangles.

    Args:
        pred: logits :math:`(B, C, H, W)` of any spatial size, or a class map :math:`(B, H, W)`.
        size: spatial size ``(h, w)`` of the features.
        erase, background, min_region, min_area, stride, ignore, rounding, per_class, num_iterations,
            generator: see :func:`guided_cutout`.

    Returns:
        boolean mask :math:`(B, 1, h, w)` on ``pred.device``, ``True`` where features are kept.
    """
    erase, min_z, min_area, (stride_h, stride_w) = _check_cutout_args(
        "guided_cutout", erase, min_region, min_area, rounding, stride
    )
    _check_generator("guided_cutout", generator)
    h, w = int(size[0]), int(size[1])
    device = pred.device
    labels_map, objects = _classes_and_objects(pred, (h, w), background, _as_ignore("guided_cutout", ignore))
    batch = labels_map.shape[0]
    keys = labels_map if per_class else torch.zeros_like(labels_map)
    keys = torch.where(objects, keys, torch.full_like(keys, -1))
    regions = label_regions(keys, num_iterations)

    n = batch * h * w
    # Segment ids are the region labels; background pixels go to the dummy segment n.
    seg = torch.where(regions >= 0, regions, torch.full_like(regions, n)).view(-1)
    pix = torch.arange(n, device=device, dtype=torch.long)
    rows = (pix // w) % h
    cols = pix % w
    count = torch.zeros(n + 1, device=device, dtype=torch.long).scatter_add_(0, seg, torch.ones_like(seg))
    big = torch.full((n + 1,), max(h, w), device=device, dtype=torch.long)
    small = torch.full((n + 1,), -1, device=device, dtype=torch.long)
    r_min = big.scatter_reduce(0, seg, rows, reduce="amin")[:n]
    r_max = small.scatter_reduce(0, seg, rows, reduce="amax")[:n]
    c_min = big.scatter_reduce(0, seg, cols, reduce="amin")[:n]
    c_max = small.scatter_reduce(0, seg, cols, reduce="amax")[:n]
    if min_z is None:
        # min_area is in input-image pixels: one feature pixel covers stride_h * stride_w of them. The
        # prediction's resolution plays no part (UniMatch's logits are at stride 4 over a stride-16 z).
        min_z = min_area / (stride_h * stride_w)
        how = f"min_area={min_area:g} input pixels at stride {stride_h:g}x{stride_w:g}"
    else:
        how = f"min_region={min_z:g}"
    active = (count[:n] > 0) & (count[:n].float() >= min_z)

    box_h = (r_max - r_min + 1).clamp(min=0)
    box_w = (c_max - c_min + 1).clamp(min=0)
    u = torch.rand(
        (4 if rounding == "stochastic" else 2, n), generator=generator, device=device, dtype=torch.float32
    )
    # "round": nearest (half up); "stochastic": up with probability the fractional part, so the expected
    # side is exactly erase * box even when a box is 1-3 feature pixels wide (coarse strides).
    shift_h = u[2] if rounding == "stochastic" else 0.5
    shift_w = u[3] if rounding == "stochastic" else 0.5
    rect_h = torch.minimum(torch.floor(box_h.float() * erase + shift_h).long(), box_h)
    rect_w = torch.minimum(torch.floor(box_w.float() * erase + shift_w).long(), box_w)
    slack_h = box_h - rect_h
    slack_w = box_w - rect_w
    off_h = torch.minimum(torch.floor(u[0] * (slack_h + 1).float()).long(), slack_h)
    off_w = torch.minimum(torch.floor(u[1] * (slack_w + 1).float()).long(), slack_w)
    active = active & (rect_h > 0) & (rect_w > 0)
    if erase > 0 and n > 0:  # erase=0 asks for no cut
        _warn_once_if_nothing_cut((h, w, min_z, erase, rounding), objects, count[:n], active, how)
    zero = torch.zeros_like(r_min)
    r0 = torch.where(active, r_min + off_h, zero)
    c0 = torch.where(active, c_min + off_w, zero)
    r1 = torch.where(active, r0 + rect_h, zero)
    c1 = torch.where(active, c0 + rect_w, zero)
    b = pix // (h * w)
    weight = active.long()

    # Paint all rectangles at once: a 2-d difference array per image, then two cumulative sums.
    stride_b, stride_r = (h + 1) * (w + 1), w + 1
    diff = torch.zeros(batch * stride_b, device=device, dtype=torch.long)
    base = b * stride_b
    diff.index_add_(0, base + r0 * stride_r + c0, weight)
    diff.index_add_(0, base + r0 * stride_r + c1, -weight)
    diff.index_add_(0, base + r1 * stride_r + c0, -weight)
    diff.index_add_(0, base + r1 * stride_r + c1, weight)
    covered = diff.view(batch, h + 1, w + 1).cumsum(1).cumsum(2)[:, :h, :w] > 0
    return ~covered.unsqueeze(1)


def guided_cutout(
    z: torch.Tensor,
    pred: torch.Tensor,
    erase: float = 0.4,
    background: Sequence[int] | int = (0,),
    min_region: int | None = None,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    stride: Stride | None = None,
    ignore: int | None = DEFAULT_IGNORE,
    rounding: Rounding = "round",
    per_class: bool = True,
    num_iterations: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero a random rectangle inside the bounding box of every detected object (G-Cutout).

    Objects are the positions where ``argmax(pred)`` is not a background class, resized to ``z``'s size
    (nearest). Each 8-connected region of one class (``per_class=True``, the default: touching objects of
    different classes get their own boxes; ``per_class=False`` uses the connected regions of the binary
    object mask) that is large enough gets a rectangle of ``round(erase * box_h) x round(erase * box_w)``
    pixels at a uniformly random position inside its bounding box, zeroed in all channels (so about
    ``erase**2`` of the box: 16% with ``erase=0.4``). The rectangle may cover background pixels inside the
    box, as in the original.

    Large enough, whatever the prediction's resolution: ``min_area`` is in pixels of the INPUT IMAGE
    and one feature pixel covers ``stride**2`` of them, so a region needs ``min_area / stride**2``
    feature pixels. ``stride`` is z's output stride relative to the input (default ``None``: the paper's
    8); the default 512 is 8 feature pixels at stride 8 (about what the original's "contours of more than
    50 points at full resolution" enclose) and 2 at ``stride=16`` (a 32x32-pixel object is cut). The
    prediction only says where the objects are: logits at the input's size, at stride 4 (UniMatch's
    decoder) or a class map at z's size give the same threshold. ``min_region`` (pixels at z's
    resolution) overrides both. When the first 10 batches with objects (per configuration and process)
    get no rectangle at all, a ``RuntimeWarning`` says why (their largest region and the minimum): the
    check costs a host synchronisation per batch until the first cut (in a sound setting, the first batch
    with objects), then none. ``rounding="stochastic"`` rounds each side up with
    probability its fractional part, so that the expected erased side is ``erase * box`` exactly even for
    boxes of 1-3 feature pixels (``"round"``, the default: 1 of 2 pixels, 0 of 1).

    Everything runs on ``z``'s device for the whole batch at once (region labelling by label propagation,
    bounding boxes by ``scatter_reduce``, rectangles painted with a difference array): no per-sample or
    per-region Python loop and, past the check above, no host synchronisation.

    Args:
        z: features :math:`(B, D, h, w)`.
        pred: the main decoder's logits :math:`(B, C, H, W)` (any ``H, W``), or an integer class map
            :math:`(B, H, W)` (e.g. ``logits.argmax(1)`` or labels; void pixels: ``ignore``).
        erase: side fraction of the box to erase, in ``[0, 1]`` (paper: 0.4).
        background: background class indices.
        min_region: ``None`` (default: from ``min_area``) or the minimum region size in pixels at ``z``'s
            resolution.
        min_area: minimum region area in pixels of the input image (default 512).
        stride: z's output stride relative to the input image, a number or ``(rows, columns)``; ``None``
            (default): 8, the paper's. Converts ``min_area`` to feature pixels.
        ignore: the void label of an integer class map (default 255): never an object. ``None``: no
            void label. Does not apply to logits (their argmax is always a class).
        rounding: ``"round"`` (default) or ``"stochastic"`` rounding of the rectangle's sides.
        per_class: label connected regions per class (default) or on the binary object mask.
        num_iterations: label-propagation steps, see :func:`label_regions`.
        generator: optional generator on ``z.device``.

    Returns:
        features :math:`(B, D, h, w)` with the rectangles zeroed, same dtype as ``z``.

    >>> z = torch.ones(1, 3, 8, 8)
    >>> pred = torch.zeros(1, 2, 8, 8)
    >>> pred[:, 1, 2:6, 2:6] = 5.0  # one object, a 4 x 4 box
    >>> out = guided_cutout(z, pred, erase=0.5, generator=torch.Generator().manual_seed(0))
    >>> int((out[0, 0] == 0).sum())  # a 2 x 2 rectangle zeroed inside the box
    4
    """
    _check_features(z, "guided_cutout")
    _check_prediction("guided_cutout", z, pred)
    keep = guided_cutout_mask(
        pred.to(z.device),
        (int(z.shape[-2]), int(z.shape[-1])),
        erase,
        background,
        min_region,
        min_area=min_area,
        stride=stride,
        ignore=ignore,
        rounding=rounding,
        per_class=per_class,
        num_iterations=num_iterations,
        generator=generator,
    )
    return torch.where(keep, z, z.new_zeros(()))


class GuidedCutout(Perturbation):
    r"""Module form of :func:`guided_cutout`: ``forward(z, pred)``, :math:`(B, D, h, w)` in and out."""

    inputs: ClassVar[PerturbationInputs] = "prediction"

    def __init__(
        self,
        erase: float = 0.4,
        background: Sequence[int] | int = (0,),
        min_region: int | None = None,
        *,
        min_area: float = DEFAULT_MIN_AREA,
        stride: Stride | None = None,
        ignore: int | None = DEFAULT_IGNORE,
        rounding: Rounding = "round",
        per_class: bool = True,
        num_iterations: int | None = None,
    ) -> None:
        super().__init__()
        self.erase, _, self.min_area, _ = _check_cutout_args(
            "GuidedCutout", erase, min_region, min_area, rounding, stride
        )
        self.stride = stride
        self.ignore = _as_ignore("GuidedCutout", ignore)
        self.background = _as_background(background)
        self.min_region = min_region
        self.rounding: Rounding = rounding
        self.per_class = bool(per_class)
        self.num_iterations = num_iterations

    def forward(
        self, z: torch.Tensor, pred: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return guided_cutout(
            z,
            pred,
            self.erase,
            self.background,
            self.min_region,
            min_area=self.min_area,
            stride=self.stride,
            ignore=self.ignore,
            rounding=self.rounding,
            per_class=self.per_class,
            num_iterations=self.num_iterations,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"erase={self.erase}, background={self.background}, min_region={self.min_region}, "
            f"min_area={self.min_area}, stride={self.stride}, ignore={self.ignore}, rounding={self.rounding!r}, "
            f"per_class={self.per_class}"
        )
